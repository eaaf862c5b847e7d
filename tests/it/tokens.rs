//! Deployment tokens end to end: keys, issue, verify, revoke, and verification by an
//! independent JOSE implementation with the key set `ledgit keys jwks` prints.

use std::os::unix::fs::PermissionsExt;

use crate::common::{DAY, T0, TestRepo};

struct Setup {
    repo: TestRepo,
    keys: tempfile::TempDir,
}

impl Setup {
    fn key(&self) -> String {
        self.keys
            .path()
            .join("signing.pem")
            .to_str()
            .unwrap()
            .to_string()
    }

    fn issue(&self, agent: &str, env: &str, extra: &[&str]) -> crate::common::Run {
        let key = self.key();
        let mut args = vec!["token", "issue", agent, env, "--key", key.as_str()];
        args.extend_from_slice(extra);
        self.repo.ledgit(&args)
    }

    /// A token for support-bot in production, issued successfully.
    fn token(&self, extra: &[&str]) -> String {
        let run = self.issue("support-bot", "production", extra);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout.trim().to_string()
    }

    fn verify(&self, token: &str) -> serde_json::Value {
        let run = self
            .repo
            .ledgit(&["token", "verify", token, "--format", "json"]);
        assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
        let v = run.json();
        assert_eq!(v["valid"].as_bool().unwrap(), run.code == 0);
        v
    }
}

fn setup() -> Setup {
    let repo = TestRepo::new();
    repo.set("support-bot", "production", "1.0.0");
    repo.commit("Initial", T0);
    let keys = tempfile::tempdir().unwrap();
    let s = Setup { repo, keys };
    let key = s.key();
    let run = s
        .repo
        .ledgit(&["keys", "generate", "--out", &key, "--id", "k1", "--add"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    s.repo.commit("Add key k1", T0 + 60);
    s
}

#[test]
fn key_files_are_private_and_never_overwritten_or_put_in_the_repository() {
    let s = setup();
    let mode = std::fs::metadata(s.key()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = s.repo.ledgit(&["keys", "generate", "--out", &s.key()]);
    assert_eq!(again.code, 2);
    assert!(
        again.stderr.contains("never overwrites"),
        "{}",
        again.stderr
    );
    let inside = s
        .repo
        .ledgit(&["keys", "generate", "--out", "secrets/k.pem"]);
    assert_eq!(inside.code, 2);
    assert!(
        inside.stderr.contains("inside the repository"),
        "{}",
        inside.stderr
    );
    assert!(!s.repo.path().join("secrets").exists());
    // The private key is never printed.
    let pem = std::fs::read_to_string(s.key()).unwrap();
    let body = pem.lines().nth(1).unwrap();
    let list = s.repo.ledgit(&["keys", "list", "--format", "json"]);
    assert!(!list.stdout.contains(body));
    assert_eq!(list.json()[0]["id"], "k1");
}

#[test]
fn issue_then_verify_and_identity_rules() {
    let s = setup();
    let run = s.issue("support-bot", "production", &["--ttl", "30d"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let token = run.stdout.trim().to_string();
    assert_eq!(token.matches('.').count(), 2);
    assert!(
        !run.stderr.contains(&token),
        "the token is logged only by its id"
    );
    let v = s.verify(&token);
    assert_eq!(v["valid"], true);
    assert_eq!(v["version"], "1.0.0");
    assert_eq!(v["agent"], "support-bot");
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));

    // Updating the version keeps the token valid.
    s.repo.set("support-bot", "production", "1.1.0");
    s.repo.commit("Update", T0 + DAY);
    assert_eq!(s.verify(&token)["version"], "1.1.0");

    // Deleting the record invalidates it; re-creating it does not bring it back.
    s.repo.remove("deployments/support-bot/production.yaml");
    s.repo.commit("Remove", T0 + 2 * DAY);
    assert!(
        s.verify(&token)["reason"]
            .as_str()
            .unwrap()
            .contains("no longer exists")
    );
    s.repo.set("support-bot", "production", "1.1.0");
    s.repo.commit("Re-create", T0 + 3 * DAY);
    let v = s.verify(&token);
    assert!(v["reason"].as_str().unwrap().contains("re-created"), "{v}");
    // A token issued now is tied to the new generation.
    let fresh = s.token(&[]);
    assert_eq!(s.verify(&fresh)["valid"], true);
}

#[test]
fn revocation_is_honoured_once_merged() {
    let s = setup();
    let token = s.token(&[]);
    let claims = s.repo.ledgit(&["token", "inspect", &token]).json();
    assert_eq!(claims["verified"], false);
    let jti = claims["claims"]["jti"].as_str().unwrap().to_string();
    let run = s
        .repo
        .ledgit(&["token", "revoke", &jti, "--reason", "leaked"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(s.verify(&token)["valid"], true, "not merged yet");
    s.repo.commit("Revoke", T0 + DAY);
    let v = s.verify(&token);
    assert!(v["reason"].as_str().unwrap().contains("revoked"), "{v}");
    assert_eq!(v["jti"], jti.as_str());
}

#[test]
fn removing_the_key_invalidates_its_tokens() {
    let s = setup();
    let token = s.token(&[]);
    s.repo.write("ledgit.yaml", crate::common::CONFIG);
    s.repo.commit("Rotate out k1", T0 + DAY);
    let v = s.verify(&token);
    assert!(v["reason"].as_str().unwrap().contains("not listed"), "{v}");
    let refused = s.issue("support-bot", "production", &[]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("not listed in ledgit.yaml"),
        "{}",
        refused.stderr
    );
}

#[test]
fn issue_refuses_a_missing_record_and_takes_the_key_from_the_environment() {
    let s = setup();
    let run = s.issue("support-bot", "staging", &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("no record for support-bot in staging"),
        "{}",
        run.stderr
    );
    let out = crate::common::ledgit_command()
        .current_dir(s.repo.path())
        .env("LEDGIT_SIGNING_KEY", s.key())
        .args(["token", "issue", "support-bot", "production"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn malformed_tokens_are_invalid_with_a_reason_and_huge_input_is_bounded() {
    let s = setup();
    for (token, reason) in [
        ("a.b", "3 segments"),
        ("a.b.c.d", "3 segments"),
        ("e30=.e30.e30", "base64url"),
        ("eyJhbGciOiJub25lIn0.e30.e30", "header"),
    ] {
        let v = s.verify(token);
        assert!(
            v["reason"].as_str().unwrap().contains(reason),
            "{token}: {v}"
        );
    }
    let mut child = crate::common::ledgit_command()
        .current_dir(s.repo.path())
        .args(["token", "verify", "-", "--format", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&vec![b'a'; 1 << 20]);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("longer than"));
}

/// An independent implementation (jsonwebtoken on ed25519-dalek) verifies our token with the
/// JWK Set that `ledgit keys jwks` prints: the signature and the standard claims.
#[test]
fn an_independent_jose_library_verifies_ledgit_tokens() {
    let s = setup();
    let token = s.token(&["--ttl", "1h"]);
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&s.repo.ledgit(&["keys", "jwks"]).stdout).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&["ledgit"]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap();
    assert_eq!(data.claims["sub"], "support-bot/production");
    // And it refuses a token whose claims were altered.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1] = parts[1].replacen('e', "f", 1);
    assert!(
        jsonwebtoken::decode::<serde_json::Value>(&parts.join("."), &key, &validation).is_err()
    );
}

/// The ledger: `issue --name` records each token's metadata (never the token), `token list`
/// shows each one's status as the repository changes, and `validate` checks the file.
#[test]
fn the_ledger_records_every_token_and_lists_its_status() {
    let s = setup();
    s.repo.git(&["config", "user.name", "Ledger Tester"]);
    s.repo.git(&["config", "user.email", "tester@example.com"]);
    s.repo.set("support-bot", "staging", "1.0.0");
    s.repo.commit("Add staging", T0 + 120);
    let production = s.token(&["--name", "gateway", "--ttl", "30d"]);
    let staging_run = s.issue("support-bot", "staging", &[]);
    assert_eq!(staging_run.code, 0, "{}", staging_run.stderr);
    assert!(staging_run.stderr.contains("recorded in tokens.yaml"));
    let ledger = s.repo.read("tokens.yaml");
    assert!(!ledger.contains(&production), "the ledger holds no token");
    let signature = production.rsplit('.').next().unwrap();
    assert!(!ledger.contains(signature));
    assert!(ledger.contains("name: \"gateway\""), "{ledger}");
    let list = |extra: &[&str]| {
        let mut args = vec!["token", "list", "--format", "json"];
        args.extend_from_slice(extra);
        let run = s.repo.ledgit(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.json()
    };
    let v = list(&[]);
    let statuses: Vec<(&str, &str)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["environment"].as_str().unwrap(),
                t["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(statuses, [("production", "active"), ("staging", "active")]);
    assert_eq!(v[0]["issued_by"], "Ledger Tester <tester@example.com>");
    assert!(v[0]["expires_at"].is_string() && v[1]["expires_at"].is_null());
    s.repo.commit("Record the tokens", T0 + 180);
    // Revoke production's; delete staging's record: revoked and stale.
    let jti = v[0]["jti"].as_str().unwrap().to_string();
    assert_eq!(s.repo.ledgit(&["token", "revoke", &jti]).code, 0);
    s.repo.remove("deployments/support-bot/staging.yaml");
    s.repo.commit("Revoke, and retire staging", T0 + 240);
    let v = list(&["support-bot"]);
    let statuses: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["revoked", "stale"]);
    assert_eq!(
        list(&["support-bot", "staging"]).as_array().unwrap().len(),
        1
    );
    let text = s.repo.ledgit(&["token", "list"]);
    assert!(
        text.stdout.contains("gateway") && text.stdout.contains("stale"),
        "{}",
        text.stdout
    );
    // A damaged ledger is a finding of validate, with its line.
    s.repo
        .write("tokens.yaml", ledger.replacen("    kid:", "    kidd:", 1));
    let run = s.repo.ledgit(&["validate", "--format", "json"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let findings = run.json()["findings"].clone();
    let found: Vec<(&str, &str, u64)> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap(),
                f["path"].as_str().unwrap(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("missing-field", "tokens.yaml", 5),
            ("unknown-field", "tokens.yaml", 9)
        ]
    );
    // A commit's tree says the same, read from git, and again from the check's cache.
    s.repo.commit("Damage the ledger", T0 + 300);
    for _ in 0..2 {
        let run = s
            .repo
            .ledgit(&["validate", "--rev", "HEAD", "--format", "json"]);
        assert_eq!(run.code, 1, "{}", run.stdout);
        assert_eq!(run.json()["findings"], findings);
    }
    // ...and refuses to be appended to, issuing nothing into it.
    let refused = s.issue("support-bot", "production", &[]);
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("not in the ledger"),
        "{}",
        refused.stderr
    );
}

/// The public key (base64url, as `ledgit.yaml` lists it) that `openssl pkey` and Python's
/// `cryptography` each derive from a key file, or why they could not read it.
fn public_keys_by_other_tools(key: &std::path::Path) -> (String, String) {
    use base64::Engine;
    let openssl = crate::common::needs(
        crate::common::program("openssl", &["/usr/bin/openssl"]),
        "openssl",
    );
    let der = std::process::Command::new(openssl)
        .args([
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ])
        .output()
        .unwrap();
    assert!(
        der.status.success(),
        "openssl pkey refuses the key: {}",
        String::from_utf8_lossy(&der.stderr)
    );
    // SubjectPublicKeyInfo of Ed25519: a 12-byte prefix, then the 32 bytes.
    let by_openssl = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(&der.stdout[der.stdout.len() - 32..]);
    let python = crate::common::needs(
        crate::common::venv_python(),
        "Python's cryptography in bench/.venv",
    );
    let script = "import sys, base64\n\
from cryptography.hazmat.primitives import serialization as s\n\
k = s.load_pem_private_key(open(sys.argv[1], 'rb').read(), password=None)\n\
raw = k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)\n\
print(base64.urlsafe_b64encode(raw).decode().rstrip('='))\n";
    let py = std::process::Command::new(python)
        .args(["-c", script, key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "cryptography refuses the key: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    (
        by_openssl,
        String::from_utf8_lossy(&py.stdout).trim().to_string(),
    )
}

#[test]
#[ignore = "needs openssl and Python's cryptography (bench/.venv); run with --include-ignored"]
fn generated_keys_are_read_by_openssl_and_pythons_cryptography() {
    let repo = TestRepo::new();
    let keys = tempfile::tempdir().unwrap();
    let token_key = keys.path().join("k.pem");
    let reconciler_key = keys.path().join("r1.pem");
    let run = repo.ledgit(&[
        "keys",
        "generate",
        "--out",
        token_key.to_str().unwrap(),
        "--add",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = repo.ledgit(&[
        "keys",
        "generate",
        "--out",
        reconciler_key.to_str().unwrap(),
        "--reconciler",
        "r1",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let config = repo.read("ledgit.yaml");
    for key in [&token_key, &reconciler_key] {
        let (openssl, python) = public_keys_by_other_tools(key);
        assert_eq!(openssl, python);
        assert!(
            config.contains(&format!("public_key: {openssl}")),
            "{} derives {openssl}, not in:\n{config}",
            key.display()
        );
    }
}
