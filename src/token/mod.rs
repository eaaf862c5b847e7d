//! Deployment tokens: credentials scoped to one agent deployment, which carry its identity at
//! runtime. Ed25519 key pairs ([`keys`]), compact JWS tokens (JWTs) bound to one record's
//! identity ([`jws`]), and their verification against one commit's keys, records and
//! revocation list ([`verify`]). The JWS framing is written here by hand because it is small
//! and every byte of it matters. Tokens stand on the model only: verifying needs a commit's
//! records, not the history that made them. [`workflow`] issues and revokes them in a work
//! tree, for every front end.

pub mod jws;
pub mod keys;
pub mod verify;
pub mod workflow;

pub use jws::*;
pub use keys::*;
pub use verify::*;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    use ring::signature::{self, Ed25519KeyPair};

    use crate::model::config::Config;

    use crate::model::Deployment;
    use crate::model::ledger::Entry;

    fn config_with(key: &SigningKey) -> Config {
        crate::model::config::parse(
            "ledgit.yaml",
            &format!(
                "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: production\nkeys:\n  - id: k1\n    algorithm: Ed25519\n    public_key: {}\n",
                key.public_encoded()
            ),
        )
        .unwrap()
    }

    fn deployment(generation: &str) -> Deployment {
        Deployment {
            agent: "support-bot".into(),
            environment: "production".into(),
            version: "1.4.2".into(),
            path: "deployments/support-bot/production.yaml".into(),
            generation: generation.into(),
            updated_at: String::new(),
            updated_commit: generation.into(),
            updated_time: 0,
            generation_time: 0,
        }
    }

    const GEN: &str = "0123456789abcdef0123456789abcdef01234567";

    fn ttl(seconds: i64) -> IssueOptions {
        IssueOptions {
            ttl: Some(seconds),
            audience: None,
            issuer: None,
        }
    }

    fn setup() -> (SigningKey, Config, String) {
        let (key, _) = SigningKey::generate().unwrap();
        let config = config_with(&key);
        let (token, _) = issue(&key, "k1", &deployment(GEN), 1_000_000, &ttl(3600)).unwrap();
        (key, config, token)
    }

    fn verifier(config: &Config) -> Verifier {
        Verifier::new(config, &[deployment(GEN)], BTreeSet::new())
    }

    /// The issuer rule without any outside tool: `ledgit` always, the issuer ledgit.yaml names
    /// when it names one, nothing else.
    #[test]
    fn the_issuer_is_ledgit_or_the_one_the_config_names() {
        let (key, config, _) = setup();
        let named = |iss: Option<&str>| {
            let mut c = config.clone();
            c.issuer = iss.map(str::to_string);
            Verifier::new(&c, &[deployment(GEN)], BTreeSet::new())
        };
        let token = |iss: Option<&str>| {
            let options = IssueOptions {
                issuer: iss.map(str::to_string),
                ..ttl(3600)
            };
            issue(&key, "k1", &deployment(GEN), 1_000_000, &options)
                .unwrap()
                .0
        };
        let accepts = |v: &Verifier, t: &str| v.verify(t, 1_000_100).is_ok();
        let plain = named(None);
        let custom = named(Some("https://deploys.example"));
        // A token of `ledgit`: accepted with or without an issuer configured.
        assert!(accepts(&plain, &token(None)));
        assert!(accepts(&custom, &token(None)));
        // A token of the configured issuer: accepted where it is configured, only there.
        let theirs = token(Some("https://deploys.example"));
        assert!(accepts(&custom, &theirs));
        let refused = plain.verify(&theirs, 1_000_100).unwrap_err();
        assert!(
            refused
                .reason
                .to_string()
                .contains("issuer `https://deploys.example` is not ledgit"),
            "{}",
            refused.reason
        );
        // Another issuer: refused, naming the one expected.
        let other = custom
            .verify(&token(Some("https://evil.example")), 1_000_100)
            .unwrap_err();
        assert!(
            other
                .reason
                .to_string()
                .contains("is not https://deploys.example"),
            "{}",
            other.reason
        );
    }

    #[test]
    fn a_fresh_token_verifies() {
        let (_, config, token) = setup();
        let v = verifier(&config).verify(&token, 1_000_100).unwrap();
        assert_eq!(v.claims.sub, "support-bot/production");
        assert_eq!(v.version, "1.4.2");
        assert_eq!(v.claims.jti.len(), 32);
        let header =
            String::from_utf8(B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header, r#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#);
    }

    #[test]
    fn every_single_byte_change_is_rejected() {
        let (_, config, token) = setup();
        let v = verifier(&config);
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            for replacement in [b'A', b'z', b'-', b'.'] {
                if bytes[i] == replacement {
                    continue;
                }
                let mut altered = bytes.to_vec();
                altered[i] = replacement;
                let altered = String::from_utf8(altered).unwrap();
                assert!(
                    v.verify(&altered, 1_000_100).is_err(),
                    "byte {i} -> {}",
                    replacement as char
                );
            }
        }
    }

    #[test]
    fn refuses_other_algorithms_kids_and_shapes() {
        let (key, config, token) = setup();
        let v = verifier(&config);
        let claims: Claims =
            serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
        let reason = |t: &str| v.verify(t, 1_000_100).unwrap_err().reason.to_string();
        for alg in ["none", "HS256", "ES256", "eddsa"] {
            let h = Header {
                alg: alg.into(),
                typ: Some("JWT".into()),
                kid: "k1".into(),
            };
            assert!(
                reason(&sign(&key, &h, &claims)).contains("not accepted"),
                "{alg}"
            );
        }
        let unknown = Header {
            alg: "EdDSA".into(),
            typ: None,
            kid: "k9".into(),
        };
        assert!(reason(&sign(&key, &unknown, &claims)).contains("not listed"));
        let no_kid = format!(
            "{}.{}",
            B64.encode(r#"{"alg":"EdDSA"}"#),
            token.split_once('.').unwrap().1
        );
        assert!(reason(&no_kid).contains("header"));
        // Another key under the same kid.
        let (other, _) = SigningKey::generate().unwrap();
        let forged = sign(
            &other,
            &Header {
                alg: "EdDSA".into(),
                typ: Some("JWT".into()),
                kid: "k1".into(),
            },
            &claims,
        );
        assert_eq!(reason(&forged), "the signature does not verify");
        // Signature of the wrong length, padding, segments.
        let (hc, _) = token.rsplit_once('.').unwrap();
        assert!(reason(&format!("{hc}.{}", B64.encode([0u8; 63]))).contains("not 64"));
        assert!(reason(&format!("{token}=")).contains("base64url"));
        assert!(reason(&format!("{token}.x")).contains("3 segments"));
        assert!(reason(hc).contains("3 segments"));
        assert!(reason(&"a".repeat(1 << 20)).contains("longer than"));
    }

    #[test]
    fn claims_of_the_wrong_types_are_refused() {
        let (key, config, _) = setup();
        let h = B64.encode(r#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#);
        let c = B64.encode(r#"{"iss":"ledgit","sub":"a/b","agent":"a","environment":"b","path":"p","gen":"g","iat":"yesterday","jti":"x"}"#);
        let input = format!("{h}.{c}");
        let sig = B64.encode(key.pair.sign(input.as_bytes()).as_ref());
        let err = verifier(&config)
            .verify(&format!("{input}.{sig}"), 0)
            .unwrap_err();
        assert_eq!(err.reason.code(), "invalid_claims");
        assert!(err.to_string().contains("types"), "{err}");
    }

    #[test]
    fn time_revocation_and_identity() {
        let (key, config, token) = setup();
        let v = verifier(&config);
        assert!(
            v.verify(&token, 1_000_000 + 3600 + LEEWAY + 1)
                .unwrap_err()
                .reason
                .to_string()
                .contains("expired")
        );
        let (future, _) = issue(
            &key,
            "k1",
            &deployment(GEN),
            2_000_000,
            &IssueOptions::default(),
        )
        .unwrap();
        assert!(
            v.verify(&future, 1_000_000)
                .unwrap_err()
                .reason
                .to_string()
                .contains("future")
        );
        let jti = v.verify(&token, 1_000_001).unwrap().claims.jti;
        let revoked = Verifier::new(&config, &[deployment(GEN)], [jti].into_iter().collect());
        assert!(
            revoked
                .verify(&token, 1_000_001)
                .unwrap_err()
                .reason
                .to_string()
                .contains("revoked")
        );
        let recreated = Verifier::new(&config, &[deployment(&"f".repeat(40))], BTreeSet::new());
        assert!(
            recreated
                .verify(&token, 1_000_001)
                .unwrap_err()
                .reason
                .to_string()
                .contains("re-created")
        );
        let deleted = Verifier::new(&config, &[], BTreeSet::new());
        assert!(
            deleted
                .verify(&token, 1_000_001)
                .unwrap_err()
                .reason
                .to_string()
                .contains("no longer exists")
        );
        let no_key = crate::model::config::parse(
            "ledgit.yaml",
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: production\n",
        )
        .unwrap();
        assert!(
            verifier(&no_key)
                .verify(&token, 1_000_001)
                .unwrap_err()
                .reason
                .to_string()
                .contains("not listed")
        );
    }

    /// The exact seconds at which a token stops and starts being valid (mutants of the
    /// comparisons or of the leeway's sign must fail here).
    #[test]
    fn expiry_and_issue_time_boundaries() {
        let (_, config, token) = setup();
        let v = verifier(&config);
        let exp = 1_000_000 + 3600;
        assert!(v.verify(&token, exp + LEEWAY).is_ok());
        let late = v.verify(&token, exp + LEEWAY + 1).unwrap_err();
        assert_eq!(late.reason, Reason::Expired { exp });
        assert!(v.verify(&token, exp).is_ok());
        assert!(v.verify(&token, exp - LEEWAY).is_ok());
        // Issued at 1_000_000: valid from LEEWAY seconds before that.
        assert!(v.verify(&token, 1_000_000 - LEEWAY).is_ok());
        let early = v.verify(&token, 1_000_000 - LEEWAY - 1).unwrap_err();
        assert_eq!(early.reason, Reason::NotYetValid { iat: 1_000_000 });
        assert_eq!(early.reason.code(), "not_yet_valid");
    }

    #[test]
    fn times_at_the_ends_of_the_range_do_not_overflow() {
        let (key, config, _) = setup();
        assert!(issue(&key, "k1", &deployment(GEN), i64::MAX - 10, &ttl(3600)).is_err());
        assert!(issue(&key, "k1", &deployment(GEN), 0, &ttl(0)).is_err());
        let v = verifier(&config);
        let mut claims = v
            .verify(&setup_token(&key, &ttl(3600)), 1_000_000)
            .unwrap()
            .claims;
        claims.exp = Some(i64::MAX);
        claims.iat = i64::MIN;
        let token = sign(&key, &header("EdDSA", "k1"), &claims);
        assert!(v.verify(&token, i64::MAX).is_ok());
        claims.exp = Some(i64::MIN);
        claims.iat = 0;
        let token = sign(&key, &header("EdDSA", "k1"), &claims);
        assert_eq!(v.verify(&token, 0).unwrap_err().reason.code(), "expired");
        claims.exp = None;
        claims.iat = i64::MAX;
        let token = sign(&key, &header("EdDSA", "k1"), &claims);
        assert_eq!(
            v.verify(&token, i64::MAX - 100).unwrap_err().reason.code(),
            "not_yet_valid"
        );
    }

    fn header(alg: &str, kid: &str) -> Header {
        Header {
            alg: alg.into(),
            typ: Some("JWT".into()),
            kid: kid.into(),
        }
    }

    fn setup_token(key: &SigningKey, options: &IssueOptions) -> String {
        issue(key, "k1", &deployment(GEN), 1_000_000, options)
            .unwrap()
            .0
    }

    #[test]
    fn both_names_of_the_algorithm_verify() {
        let (key, config, token) = setup();
        let claims = verifier(&config).verify(&token, 1_000_000).unwrap().claims;
        let ed25519 = sign(&key, &header("Ed25519", "k1"), &claims);
        assert!(verifier(&config).verify(&ed25519, 1_000_000).is_ok());
    }

    #[test]
    fn header_text_in_reasons_is_escaped_and_cut_short() {
        let (key, config, token) = setup();
        let claims = verifier(&config).verify(&token, 1_000_000).unwrap().claims;
        let nasty = format!("\u{1b}[31mred\n{}", "x".repeat(500));
        for t in [
            sign(&key, &header(&nasty, "k1"), &claims),
            sign(&key, &header("EdDSA", &nasty), &claims),
        ] {
            let shown = verifier(&config)
                .verify(&t, 1_000_000)
                .unwrap_err()
                .to_string();
            assert!(
                !shown.contains('\u{1b}') && !shown.contains('\n'),
                "{shown:?}"
            );
            assert!(shown.contains("\\u{1b}[31mred\\n"), "{shown}");
            assert!(shown.len() < 150, "{}", shown.len());
        }
    }

    #[test]
    fn an_audience_is_issued_and_required() {
        let (key, config, plain) = setup();
        let options = IssueOptions {
            ttl: None,
            audience: Some("gateway".into()),
            issuer: None,
        };
        let aimed = setup_token(&key, &options);
        let open = verifier(&config);
        // A verifier with no audience refuses a token meant for one (RFC 7519, 4.1.3).
        let e = open.verify(&aimed, 1_000_000).unwrap_err();
        assert_eq!(e.reason, Reason::Audience { expected: None });
        assert!(open.verify(&plain, 1_000_000).is_ok());
        let strict = verifier(&config).require_audience(Some("gateway".into()));
        assert!(strict.verify(&aimed, 1_000_000).is_ok());
        for other in [
            plain,
            setup_token(
                &key,
                &IssueOptions {
                    ttl: None,
                    audience: Some("elsewhere".into()),
                    issuer: None,
                },
            ),
        ] {
            let e = strict.verify(&other, 1_000_000).unwrap_err();
            assert_eq!(e.reason.code(), "wrong_audience");
            assert!(e.claims.is_some());
        }
        // A list that contains it.
        let mut claims = strict.verify(&aimed, 1_000_000).unwrap().claims;
        claims.aud = Some(Audience::Many(vec!["a".into(), "gateway".into()]));
        let listed = sign(&key, &header("EdDSA", "k1"), &claims);
        assert!(strict.verify(&listed, 1_000_000).is_ok());
    }

    #[test]
    fn every_reason_has_its_code_listed() {
        let reasons = [
            Reason::Missing,
            Reason::Malformed(String::new()),
            Reason::Algorithm(String::new()),
            Reason::UnknownKey(String::new()),
            Reason::BadSignature,
            Reason::Claims(String::new()),
            Reason::Expired { exp: 0 },
            Reason::NotYetValid { iat: 0 },
            Reason::Audience { expected: None },
            Reason::Revoked { jti: String::new() },
            Reason::RecordRemoved {
                agent: String::new(),
                environment: String::new(),
            },
            Reason::StaleGeneration {
                agent: String::new(),
                environment: String::new(),
                current: String::new(),
            },
        ];
        let codes: Vec<&str> = reasons.iter().map(Reason::code).collect();
        assert_eq!(codes, Reason::CODES);
    }

    /// RFC 8037, appendix A: the Ed25519 key, and the signature of the example JWS payload.
    #[test]
    fn rfc8037_appendix_a() {
        let d = B64
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let x = B64
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let pair = Ed25519KeyPair::from_seed_and_public_key(&d, &x).unwrap();
        let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = pair.sign(input.as_bytes());
        assert_eq!(
            B64.encode(sig.as_ref()),
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
        signature::UnparsedPublicKey::new(&signature::ED25519, &x)
            .verify(input.as_bytes(), sig.as_ref())
            .unwrap();
    }

    #[test]
    fn keys_round_trip_through_pem() {
        let (key, der) = SigningKey::generate().unwrap();
        let back = SigningKey::from_bytes(pem(&der).as_bytes()).unwrap();
        assert_eq!(back.public(), key.public());
        assert!(SigningKey::from_bytes(b"not a key").is_err());
    }

    /// A ledger entry's status: what verifying its token would say of its identity.
    #[test]
    fn statuses_follow_the_repository_state() {
        let config = crate::model::config::parse(
            "ledgit.yaml",
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: production\nkeys:\n  - id: k1\n    algorithm: Ed25519\n    public_key: 11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\n",
        )
        .unwrap();
        let row = Deployment {
            agent: "support-bot".into(),
            environment: "production".into(),
            version: "1".into(),
            path: String::new(),
            generation: GEN.into(),
            updated_at: String::new(),
            updated_commit: String::new(),
            updated_time: 0,
            generation_time: 0,
        };
        let mut revoked = BTreeSet::new();
        let rows = [row.clone()];
        let at = |rows: &[Deployment], revoked: &BTreeSet<String>| {
            Verifier::new(&config, rows, revoked.clone())
        };
        let verifier = at(&rows, &revoked);
        let e = Entry {
            jti: "a1".into(),
            agent: "support-bot".into(),
            environment: "production".into(),
            generation: GEN.into(),
            kid: "k1".into(),
            issued_at: 1_780_000_000,
            expires_at: Some(1_782_592_000),
            name: None,
            issued_by: "Jane Doe <jane@example.com>".into(),
            line: 0,
        };
        assert_eq!(status(&e, &verifier, 1_780_000_001), Status::Active);
        assert_eq!(status(&e, &verifier, 1_782_592_000), Status::Expired);
        let other = Entry {
            kid: "k2".into(),
            ..e.clone()
        };
        assert_eq!(status(&other, &verifier, 0), Status::KeyRemoved);
        let regenerated = [Deployment {
            generation: "f".repeat(40),
            ..row
        }];
        assert_eq!(status(&e, &at(&regenerated, &revoked), 0), Status::Stale);
        assert_eq!(status(&e, &at(&[], &revoked), 0), Status::Stale);
        revoked.insert("a1".into());
        assert_eq!(status(&e, &at(&rows, &revoked), 0), Status::Revoked);
    }
}
