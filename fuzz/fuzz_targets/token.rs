//! Token parsing and verification: no panic, and nothing verifies that was not signed by the
//! configured key for that exact header and payload (Ed25519 signatures are deterministic, so
//! a token that verifies must carry the signature the key makes of its first two segments).
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair};

struct Fixture {
    pair: Ed25519KeyPair,
    verifier: ledgit::token::Verifier,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).expect("a key from a seed");
        let public = B64.encode(pair.public_key().as_ref());
        let config = ledgit::model::config::parse(
            "ledgit.yaml",
            &format!(
                "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: production\nkeys:\n  - id: k1\n    algorithm: Ed25519\n    public_key: {public}\n"
            ),
        )
        .expect("the fixed config parses");
        let record = ledgit::model::Deployment {
            agent: "a".into(),
            environment: "production".into(),
            version: "1".into(),
            path: "deployments/a/production.yaml".into(),
            generation: "g".into(),
            updated_at: String::new(),
            updated_commit: "g".into(),
            updated_time: 0,
            generation_time: 0,
        };
        let verifier = ledgit::token::Verifier::new(&config, &[record], BTreeSet::new());
        Fixture { pair, verifier }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // The input as a token, and as claims signed under a fixed header (to reach the checks
    // after the signature).
    let text = String::from_utf8_lossy(data);
    let mut candidates = vec![text.to_string()];
    let signed_input = format!(
        "{}.{}",
        B64.encode(br#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#),
        B64.encode(data)
    );
    let sig = f.pair.sign(signed_input.as_bytes());
    candidates.push(format!("{signed_input}.{}", B64.encode(sig.as_ref())));
    for token in candidates {
        let _ = ledgit::token::inspect(&token);
        let result = f.verifier.verify(&token, 1_000);
        if let Err(e) = &result {
            let _ = e.to_string();
            let _ = e.reason.code();
        }
        if result.is_ok() || f.verifier.verify_signature(&token).is_ok() {
            let token = token.trim();
            let (head, signature) = token.rsplit_once('.').expect("three segments");
            let expected = f.pair.sign(head.as_bytes());
            assert_eq!(
                signature,
                B64.encode(expected.as_ref()),
                "a token verified that the key did not sign"
            );
        }
    }
});
