//! Token throughput, in process, against a repository state already loaded: issue and verify
//! rates of ledgit beside ring's raw Ed25519 verify rate (the floor every check sits on).
//! Run with `cargo bench --bench tokens`.

use std::collections::BTreeSet;
use std::time::Instant;

use ledgit::model::Deployment;
use ledgit::token::{self, SigningKey, Verifier};
use ring::signature::{self, KeyPair};

fn rate(label: &str, n: u32, mut f: impl FnMut(u32)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    let per_sec = f64::from(n) / start.elapsed().as_secs_f64();
    println!("{label:<44} {per_sec:>12.0} /s");
    per_sec
}

fn main() {
    let (key, der) = SigningKey::generate().unwrap();
    let config = ledgit::model::config::parse(
        "ledgit.yaml",
        &format!(
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: production\nkeys:\n  - id: k1\n    algorithm: Ed25519\n    public_key: {}\n",
            key.public_encoded()
        ),
    )
    .unwrap();
    // A snapshot of 2,000 records, as in the history benchmark's repository.
    let records: Vec<Deployment> = (0..2000)
        .map(|i| Deployment {
            agent: format!("agent-{i:04}"),
            environment: "production".into(),
            version: "1.0.0".into(),
            path: format!("deployments/agent-{i:04}/production.yaml"),
            generation: format!("{i:040x}"),
            updated_at: String::new(),
            updated_commit: String::new(),
            updated_time: 0,
            generation_time: 0,
        })
        .collect();
    let verifier = Verifier::new(&config, &records, BTreeSet::new());
    let now = 1_800_000_000;
    let tokens: Vec<String> = records
        .iter()
        .map(|r| {
            token::issue(
                &key,
                "k1",
                r,
                now,
                &token::IssueOptions {
                    ttl: Some(3600),
                    audience: None,
                    issuer: None,
                },
            )
            .unwrap()
            .0
        })
        .collect();

    let n = 20_000;
    rate("ledgit issue", n, |i| {
        std::hint::black_box(
            token::issue(
                &key,
                "k1",
                &records[i as usize % 2000],
                now,
                &token::IssueOptions::default(),
            )
            .unwrap(),
        );
    });
    let ours = rate("ledgit verify (all checks)", n, |i| {
        let v = verifier.verify(&tokens[i as usize % 2000], now + 1);
        assert!(v.is_ok());
    });
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).unwrap();
    let public =
        signature::UnparsedPublicKey::new(&signature::ED25519, pair.public_key().as_ref().to_vec());
    let message = tokens[0].rsplit_once('.').unwrap().0.as_bytes().to_vec();
    let sig = pair.sign(&message);
    let raw = rate("ring Ed25519 verify (signature only)", n, |_| {
        public.verify(&message, sig.as_ref()).unwrap();
    });
    println!(
        "ledgit verify / ring verify: {:.2} (goal: at least 0.50, i.e. within 2x)",
        ours / raw
    );
}
