//! The properties of the fuzz targets (`fuzz/`), as property tests with a fixed seed, so that
//! every `cargo test` checks them on a few thousand generated inputs: the record and config
//! checks never panic and point inside the file; the fast identity reader answers as the YAML
//! parser or not at all; a version edit changes only the version; tokens verify only when the
//! key signed them; the index decoder never panics and what it decodes round-trips; time
//! arguments never panic.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use proptest::prelude::*;
use proptest::test_runner::RngSeed;

fn config() -> ledgit::model::config::Config {
    ledgit::model::config::parse(
        "ledgit.yaml",
        "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: staging\n  - name: production\n",
    )
    .unwrap()
}

/// Text shaped like a record, with the characters that trouble readers mixed in.
fn record_like() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("apiVersion: ledgit/v1".to_string()),
        Just("kind: AgentDeployment".to_string()),
        "agent: [a-z0-9'\" #-]{0,12}",
        "environment: [a-z0-9'\" #:]{0,12}",
        "version: [0-9a-z.+'\" #\\\\-]{0,14}",
        Just("annotations:".to_string()),
        "  [a-z./-]{1,12}: [ -~]{0,16}",
        "[ -~\u{1}\u{7f}\u{85}\u{9f}é\t\r]{0,20}",
        Just("---".to_string()),
        Just("agent: &a x\nenvironment: *a".to_string()),
    ];
    prop::collection::vec(line, 0..10).prop_map(|lines| lines.join("\n"))
}

fn settings() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        rng_seed: RngSeed::Fixed(20_261_202),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(settings())]

    #[test]
    fn the_record_check_points_inside_the_file(text in record_like()) {
        let parsed = ledgit::model::record::parse("deployments/support-bot/production.yaml", &text, &config());
        // YAML breaks lines at CR LF, CR and LF.
        let lines = text.replace("\r\n", "\n").replace('\r', "\n").split('\n').count();
        for f in &parsed.findings {
            prop_assert!(f.line >= 1 && f.column >= 1);
            prop_assert!((f.line as usize) <= lines + 1, "{:?}", f);
        }
    }

    #[test]
    fn the_config_check_never_panics(text in "[ -~\n]{0,200}") {
        if let Err(findings) = ledgit::model::config::parse("ledgit.yaml", &text) {
            for f in &findings {
                prop_assert!(f.line >= 1 && f.column >= 1);
            }
        }
    }

    #[test]
    fn the_fast_reader_answers_as_the_parser(text in record_like()) {
        if let Some(quick) = ledgit::model::record::quick_identity(&text) {
            prop_assert_eq!(quick, ledgit::model::record::parsed_identity(&text));
        }
    }

    #[test]
    fn a_version_edit_changes_only_the_version(text in record_like(), version in "[!-~]{1,16}") {
        if let Ok(out) = ledgit::model::edit::set_version("p.yaml", &text, &version) {
            let root = ledgit::support::yaml::parse(ledgit::support::yaml::strip_bom(&out)).unwrap();
            prop_assert_eq!(root.get("version").and_then(|n| n.as_str()), Some(version.as_str()));
            let old = ledgit::support::yaml::parse(ledgit::support::yaml::strip_bom(&text)).unwrap();
            let (start, len) = old.get("version").and_then(|n| n.bytes).unwrap();
            prop_assert!(out.starts_with(&text[..start]));
            prop_assert!(out.ends_with(&text[start + len..]));
        }
    }

    #[test]
    fn time_arguments_never_panic(text in "[0-9a-z :TZ.+-]{0,30}") {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let _ = ledgit::support::when::parse_time(&text, now);
        let _ = ledgit::support::when::parse_duration(&text);
    }

    #[test]
    fn a_signature_verifies_exactly_when_it_is_the_hmac(body in prop::collection::vec(any::<u8>(), 0..64), header in "[ -~]{0,72}") {
        let right = ledgit::support::hmac::signature(b"secret", &body);
        prop_assert!(ledgit::support::hmac::signature_ok(b"secret", &body, &right));
        prop_assert_eq!(ledgit::support::hmac::signature_ok(b"secret", &body, &header), header.trim() == right);
    }
}

/// The index decoder on random bytes, and on a real index's payload with random bytes written
/// over it behind a correct header (length and CRC), as the fuzz target does: random bytes alone
/// never pass the magic number and the checksum, so they would never reach the round trip.
#[test]
fn the_index_decoder_never_panics_and_round_trips() {
    let real = ledgit::git::index::encode(&ledgit::git::history::History::empty("deployments"));
    let payload = real[20..].to_vec();
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3);
    // A quarter of the inputs are cut short or padded, the rest keep their length.
    let length = prop_oneof![
        3 => Just(payload.len()),
        1 => 0..payload.len() + 8,
    ];
    let strategy = (prop::collection::vec(any::<u8>(), 0..200), edits, length);
    let mut runner = proptest::test_runner::TestRunner::new(settings());
    let decoded = std::cell::Cell::new(0usize);
    runner
        .run(&strategy, |(random, edits, keep)| {
            let mut body = payload.clone();
            for (at, byte) in edits {
                let i = at.index(body.len());
                body[i] = byte;
            }
            body.resize(keep, 0);
            for bytes in [
                random.clone(),
                with_valid_header(&random),
                with_valid_header(&body),
            ] {
                if let Some(h) = ledgit::git::index::decode(&bytes) {
                    decoded.set(decoded.get() + 1);
                    let again = ledgit::git::index::decode(&ledgit::git::index::encode(&h))
                        .expect("an encoded history decodes");
                    prop_assert_eq!(again.chain(), h.chain());
                    prop_assert_eq!(again.events().len(), h.events().len());
                    prop_assert_eq!(again.commits().len(), h.commits().len());
                    prop_assert_eq!(again.folder(), h.folder());
                }
            }
            Ok(())
        })
        .unwrap();
    // The round trip was reached, not only the refusals.
    assert!(
        decoded.get() >= 100,
        "only {} inputs decoded",
        decoded.get()
    );
}

/// `payload` as the base segment of an index file, with a correct length and CRC.
fn with_valid_header(payload: &[u8]) -> Vec<u8> {
    let real = ledgit::git::index::encode(&ledgit::git::history::History::default());
    let mut out = real[..8].to_vec();
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The one record the token properties use.
fn record() -> ledgit::model::Deployment {
    ledgit::model::Deployment {
        agent: "a".into(),
        environment: "production".into(),
        version: "1".into(),
        path: "deployments/a/production.yaml".into(),
        generation: "g".into(),
        updated_at: String::new(),
        updated_commit: "g".into(),
        updated_time: 0,
        generation_time: 0,
    }
}

/// A verifier with one key, and the key that signs for it.
fn token_fixture() -> (ledgit::token::SigningKey, ledgit::token::Verifier) {
    let (key, _) = ledgit::token::SigningKey::generate().unwrap();
    let config = ledgit::model::config::parse(
        "ledgit.yaml",
        &format!(
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: production\nkeys:\n  - id: k1\n    algorithm: Ed25519\n    public_key: {}\n",
            key.public_encoded()
        ),
    )
    .unwrap();
    let verifier = ledgit::token::Verifier::new(&config, &[record()], BTreeSet::new());
    (key, verifier)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..settings() })]

    /// A valid token changed anywhere (a byte replaced, a segment swapped for random base64url)
    /// never verifies.
    #[test]
    fn only_what_the_key_signed_verifies(position in any::<prop::sample::Index>(), byte in b'-'..=b'z', junk in "[A-Za-z0-9_-]{1,90}") {
        let (key, verifier) = token_fixture();
        let (token, _) = ledgit::token::issue(
            &key,
            "k1",
            &record(),
            1_000,
            &ledgit::token::IssueOptions::default(),
        )
        .unwrap();
        prop_assert!(verifier.verify(&token, 1_000).is_ok());
        let mut bytes = token.clone().into_bytes();
        let at = position.index(bytes.len());
        if bytes[at] != byte {
            bytes[at] = byte;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(verifier.verify(&changed, 1_000).is_err(), "{}", changed);
        }
        let parts: Vec<&str> = token.split('.').collect();
        for i in 0..3 {
            let mut swapped = parts.clone();
            if swapped[i] == junk {
                continue;
            }
            swapped[i] = &junk;
            prop_assert!(verifier.verify(&swapped.join("."), 1_000).is_err());
        }
        // Claims re-encoded under the same signature do not verify either.
        let claims = B64.decode(parts[1]).unwrap();
        let reencoded = format!("{}.{}.{}", parts[0], B64.encode([&claims[..], b" "].concat()), parts[2]);
        prop_assert!(verifier.verify(&reencoded, 1_000).is_err());
    }
}

/// Inputs the fuzzers found (`fixtures/fuzz/<target>-<what>.*`), kept as regression tests.
#[test]
fn what_the_fuzzers_found_stays_fixed() {
    let dir = common_root().join("fixtures/fuzz");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        if name.starts_with("quick_identity-") {
            let text = std::str::from_utf8(&bytes).unwrap();
            // A key over 1024 characters: the parser refuses the file, so the fast reader must
            // leave it to the parser.
            if let Some(quick) = ledgit::model::record::quick_identity(text) {
                assert_eq!(
                    quick,
                    ledgit::model::record::parsed_identity(text),
                    "{name}"
                );
            }
            seen += 1;
        }
    }
    assert!(seen >= 1);
}

fn common_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
