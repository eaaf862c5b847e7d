//! Deployment tokens: Ed25519 key pairs, and compact JWS tokens (JWTs) scoped to one record.
//!
//! The JWS framing is written here by hand because it is small and every byte of it matters:
//! a header of exactly `{"alg":"EdDSA","typ":"JWT","kid":...}`, the claims of SPEC "Deployment
//! tokens", and a 64-byte signature over `header.claims`, each segment base64url without
//! padding. Verification is strict and cheap checks come first: size, segment count and
//! alphabet, then the header (only `EdDSA`, a known `kid`), then the signature, and only then
//! the claims and the record's identity (it exists at the tip with the same generation) and
//! the revocation list.

use std::collections::{BTreeSet, HashMap};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SecureRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::config::{Config, PublicKey};
use crate::error::{Error, Result};
use crate::history::Deployment;

/// The longest token accepted; anything longer is refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `iat`, in seconds.
pub const LEEWAY: i64 = 60;
/// The issuer of every ledgit token.
pub const ISSUER: &str = "ledgit";

/// A signing key loaded from a PKCS#8 file.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A new random key pair; returns it and its PKCS#8 document (DER).
    pub fn generate() -> Result<(SigningKey, Vec<u8>)> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| {
            Error::invalid(
                "could not generate a key",
                "the system's random source failed",
            )
        })?;
        let key = SigningKey::from_der(doc.as_ref())?;
        Ok((key, doc.as_ref().to_vec()))
    }

    /// Reads a PKCS#8 key, PEM (`-----BEGIN PRIVATE KEY-----`) or DER.
    pub fn from_bytes(bytes: &[u8]) -> Result<SigningKey> {
        match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN PRIVATE KEY-----") => {
                let body: String = text
                    .lines()
                    .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
                    .skip(1)
                    .take_while(|l| !l.starts_with("-----END"))
                    .collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(body.trim())
                    .map_err(|_| bad_key())?;
                SigningKey::from_der(&der)
            }
            _ => SigningKey::from_der(bytes),
        }
    }

    fn from_der(der: &[u8]) -> Result<SigningKey> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| bad_key())?;
        Ok(SigningKey { pair })
    }

    /// The 32-byte public key.
    pub fn public(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// The public key as written in `ledgit.yaml`.
    pub fn public_encoded(&self) -> String {
        B64.encode(self.public())
    }

    /// The id under which `config` lists this key's public half.
    pub fn key_id<'c>(&self, config: &'c Config) -> Option<&'c PublicKey> {
        let public = self.public();
        config.keys.iter().find(|k| k.bytes == public)
    }
}

fn bad_key() -> Error {
    Error::invalid(
        "the signing key is not an Ed25519 PKCS#8 key",
        "use a key written by `ledgit keys generate`",
    )
}

/// PEM text of a PKCS#8 document.
pub fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// The header of every token, in this key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    pub kid: String,
}

/// The claims of a deployment token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub agent: String,
    pub environment: String,
    pub path: String,
    /// The record's generation commit (claim `gen`).
    #[serde(rename = "gen")]
    pub generation: String,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub jti: String,
}

/// Signs a token for a record.
pub fn issue(
    key: &SigningKey,
    kid: &str,
    record: &Deployment,
    now: i64,
    ttl: Option<i64>,
) -> Result<(String, Claims)> {
    let mut id = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut id).map_err(|_| {
        Error::invalid(
            "could not draw a token id",
            "the system's random source failed",
        )
    })?;
    let claims = Claims {
        iss: ISSUER.into(),
        sub: format!("{}/{}", record.agent, record.environment),
        agent: record.agent.clone(),
        environment: record.environment.clone(),
        path: record.path.clone(),
        generation: record.generation.clone(),
        iat: now,
        exp: ttl.map(|t| now + t),
        jti: id.iter().map(|b| format!("{b:02x}")).collect(),
    };
    let header = Header {
        alg: "EdDSA".into(),
        typ: Some("JWT".into()),
        kid: kid.into(),
    };
    Ok((sign(key, &header, &claims), claims))
}

/// The compact JWS of a header and claims.
pub fn sign(key: &SigningKey, header: &Header, claims: &Claims) -> String {
    let h = B64.encode(serde_json::to_vec(header).unwrap_or_default());
    let c = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let input = format!("{h}.{c}");
    let sig = key.pair.sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig.as_ref()))
}

/// Why a token is not valid. The message never contains the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: String,
    /// What could be read of the claims before the failure (after the signature checked out).
    pub claims: Option<Box<Claims>>,
}

fn invalid(reason: impl Into<String>) -> Invalid {
    Invalid {
        reason: reason.into(),
        claims: None,
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub claims: Claims,
    /// The record's version at the tip now.
    pub version: String,
}

/// The parts of a token, decoded but not trusted.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub header: serde_json::Value,
    pub claims: serde_json::Value,
}

/// Splits a token into its three base64url segments, refusing anything malformed.
fn segments(token: &str) -> std::result::Result<[&str; 3], Invalid> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid(format!(
            "the token is longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts[..] else {
        return Err(invalid(format!(
            "a token has 3 segments, this one has {}",
            parts.len()
        )));
    };
    for seg in [h, c, s] {
        if seg.is_empty()
            || !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(invalid("a segment is not base64url without padding"));
        }
    }
    Ok([h, c, s])
}

fn decode_segment(seg: &str, what: &str) -> std::result::Result<Vec<u8>, Invalid> {
    B64.decode(seg)
        .map_err(|_| invalid(format!("the {what} is not valid base64url")))
}

/// Decodes a token without verifying anything but its shape.
pub fn inspect(token: &str) -> std::result::Result<Decoded, Invalid> {
    let [h, c, _] = segments(token.trim())?;
    let parse = |seg: &str, what: &str| -> std::result::Result<serde_json::Value, Invalid> {
        serde_json::from_slice(&decode_segment(seg, what)?)
            .map_err(|_| invalid(format!("the {what} is not JSON")))
    };
    Ok(Decoded {
        header: parse(h, "header")?,
        claims: parse(c, "claims")?,
    })
}

/// Verifies tokens against one state of the repository: its keys, its records at the tip, and
/// its revocation list. Build it once and verify many tokens.
pub struct Verifier {
    keys: HashMap<String, signature::UnparsedPublicKey<[u8; 32]>>,
    records: HashMap<(String, String), (String, String)>,
    revoked: BTreeSet<String>,
}

impl Verifier {
    /// `records`: the deployments at the tip; `revoked`: revoked token ids.
    pub fn new(config: &Config, records: &[Deployment], revoked: BTreeSet<String>) -> Self {
        Verifier {
            keys: config
                .keys
                .iter()
                .map(|k| {
                    (
                        k.id.clone(),
                        signature::UnparsedPublicKey::new(&signature::ED25519, k.bytes),
                    )
                })
                .collect(),
            records: records
                .iter()
                .map(|d| {
                    (
                        (d.agent.clone(), d.environment.clone()),
                        (d.generation.clone(), d.version.clone()),
                    )
                })
                .collect(),
            revoked,
        }
    }

    /// Checks a token at time `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: i64) -> std::result::Result<Verified, Invalid> {
        let [h, c, s] = segments(token.trim())?;
        let header: Header = serde_json::from_slice(&decode_segment(h, "header")?)
            .map_err(|_| invalid("the header is not a ledgit token header (alg, typ, kid)"))?;
        if header.alg != "EdDSA" {
            return Err(invalid(format!(
                "alg `{}` is not accepted; ledgit tokens use EdDSA",
                header.alg
            )));
        }
        if header.typ.as_deref().is_some_and(|t| t != "JWT") {
            return Err(invalid("typ is not JWT"));
        }
        let key = self
            .keys
            .get(&header.kid)
            .ok_or_else(|| invalid(format!("key `{}` is not listed in ledgit.yaml", header.kid)))?;
        let sig = decode_segment(s, "signature")?;
        if sig.len() != 64 {
            return Err(invalid(format!(
                "the signature is {} bytes, not 64",
                sig.len()
            )));
        }
        let signed = &token.trim().as_bytes()[..h.len() + 1 + c.len()];
        key.verify(signed, &sig)
            .map_err(|_| invalid("the signature does not verify"))?;
        let claims: Claims = serde_json::from_slice(&decode_segment(c, "claims")?)
            .map_err(|_| invalid("the claims do not have the types of a ledgit token"))?;
        let fail = |reason: String| Invalid {
            reason,
            claims: Some(Box::new(claims.clone())),
        };
        if claims.iss != ISSUER {
            return Err(fail(format!("issuer `{}` is not {ISSUER}", claims.iss)));
        }
        if claims.sub != format!("{}/{}", claims.agent, claims.environment) {
            return Err(fail("sub does not match agent and environment".into()));
        }
        if let Some(exp) = claims.exp
            && now > exp + LEEWAY
        {
            return Err(fail(format!(
                "the token expired at {}",
                crate::when::rfc3339(exp)
            )));
        }
        if claims.iat > now + LEEWAY {
            return Err(fail(format!(
                "the token is issued in the future ({})",
                crate::when::rfc3339(claims.iat)
            )));
        }
        if self.revoked.contains(&claims.jti) {
            return Err(fail(format!("token {} is revoked", claims.jti)));
        }
        let Some((generation, version)) = self
            .records
            .get(&(claims.agent.clone(), claims.environment.clone()))
        else {
            return Err(fail(format!(
                "the record {}/{} no longer exists at the tip",
                claims.agent, claims.environment
            )));
        };
        if *generation != claims.generation {
            return Err(fail(format!(
                "the record {}/{} was deleted and re-created (generation {} is not the token's)",
                claims.agent,
                claims.environment,
                &generation[..12.min(generation.len())]
            )));
        }
        Ok(Verified {
            version: version.clone(),
            claims,
        })
    }
}

/// The revocation list: `revocations.yaml` at the repository root.
pub const REVOCATIONS_FILE: &str = "revocations.yaml";

/// One revoked token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RevocationFile {
    api_version: String,
    kind: String,
    #[serde(default)]
    revoked: Vec<Revocation>,
}

/// Parses the revocation list.
pub fn parse_revocations(text: &str) -> std::result::Result<Vec<Revocation>, String> {
    let text = crate::yaml::strip_bom(text);
    let file: RevocationFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if file.api_version != crate::config::API_VERSION || file.kind != "Revocations" {
        return Err("expected apiVersion: ledgit/v1 and kind: Revocations".into());
    }
    Ok(file.revoked)
}

/// The text of a revocation list with one more entry appended (the file is created when
/// missing; existing text is kept as it is).
pub fn append_revocation(existing: Option<&str>, r: &Revocation) -> String {
    let mut entry = format!("  - jti: {}\n", r.jti);
    if let Some(reason) = &r.reason {
        entry.push_str(&format!(
            "    reason: {}\n",
            serde_json::to_string(reason).unwrap_or_default()
        ));
    }
    if let Some(at) = &r.revoked_at {
        entry.push_str(&format!("    revoked_at: \"{at}\"\n"));
    }
    match existing {
        None => format!(
            "# Revoked deployment tokens, by id (jti). `ledgit token verify` refuses them.\napiVersion: ledgit/v1\nkind: Revocations\nrevoked:\n{entry}"
        ),
        Some(text) => {
            let mut text = text.to_string();
            if text.contains("revoked: []") {
                return text.replacen(
                    "revoked: []",
                    &format!("revoked:\n{}", entry.trim_end_matches('\n')),
                    1,
                ) + "\n";
            }
            if !text.ends_with('\n') {
                text.push('\n');
            }
            if !text.lines().any(|l| l.trim_end() == "revoked:") {
                text.push_str("revoked:\n");
            }
            text.push_str(&entry);
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(key: &SigningKey) -> Config {
        crate::config::parse(
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

    fn setup() -> (SigningKey, Config, String) {
        let (key, _) = SigningKey::generate().unwrap();
        let config = config_with(&key);
        let (token, _) = issue(&key, "k1", &deployment(GEN), 1_000_000, Some(3600)).unwrap();
        (key, config, token)
    }

    fn verifier(config: &Config) -> Verifier {
        Verifier::new(config, &[deployment(GEN)], BTreeSet::new())
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
        let reason = |t: &str| v.verify(t, 1_000_100).unwrap_err().reason;
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
        assert!(err.reason.contains("types"), "{}", err.reason);
    }

    #[test]
    fn time_revocation_and_identity() {
        let (key, config, token) = setup();
        let v = verifier(&config);
        assert!(
            v.verify(&token, 1_000_000 + 3600 + LEEWAY + 1)
                .unwrap_err()
                .reason
                .contains("expired")
        );
        let (future, _) = issue(&key, "k1", &deployment(GEN), 2_000_000, None).unwrap();
        assert!(
            v.verify(&future, 1_000_000)
                .unwrap_err()
                .reason
                .contains("future")
        );
        let jti = v.verify(&token, 1_000_001).unwrap().claims.jti;
        let revoked = Verifier::new(&config, &[deployment(GEN)], [jti].into_iter().collect());
        assert!(
            revoked
                .verify(&token, 1_000_001)
                .unwrap_err()
                .reason
                .contains("revoked")
        );
        let recreated = Verifier::new(&config, &[deployment(&"f".repeat(40))], BTreeSet::new());
        assert!(
            recreated
                .verify(&token, 1_000_001)
                .unwrap_err()
                .reason
                .contains("re-created")
        );
        let deleted = Verifier::new(&config, &[], BTreeSet::new());
        assert!(
            deleted
                .verify(&token, 1_000_001)
                .unwrap_err()
                .reason
                .contains("no longer exists")
        );
        let no_key = crate::config::parse(
            "ledgit.yaml",
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: production\n",
        )
        .unwrap();
        assert!(
            verifier(&no_key)
                .verify(&token, 1_000_001)
                .unwrap_err()
                .reason
                .contains("not listed")
        );
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

    #[test]
    fn revocation_lists() {
        let r = Revocation {
            jti: "abc".into(),
            reason: Some("leaked: in a log".into()),
            revoked_at: Some("2026-01-01T00:00:00Z".into()),
        };
        let text = append_revocation(None, &r);
        assert_eq!(parse_revocations(&text).unwrap(), vec![r.clone()]);
        let two = append_revocation(
            Some(&text),
            &Revocation {
                jti: "def".into(),
                reason: None,
                revoked_at: None,
            },
        );
        assert_eq!(parse_revocations(&two).unwrap().len(), 2);
        let empty = "apiVersion: ledgit/v1\nkind: Revocations\nrevoked: []\n";
        assert_eq!(
            parse_revocations(&append_revocation(Some(empty), &r)).unwrap(),
            vec![r]
        );
        assert!(parse_revocations("apiVersion: ledgit/v1\nkind: Config\n").is_err());
    }
}
