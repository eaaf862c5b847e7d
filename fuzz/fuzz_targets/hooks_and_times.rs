//! Webhook signature checks and payload reading, and time and duration arguments: no panic;
//! a signature verifies exactly when it is the body's HMAC.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, body) = data.split_at(data.len().min(80));
    let header = String::from_utf8_lossy(head);
    let ok = ledgit::support::hmac::signature_ok(b"secret", body, &header);
    assert_eq!(
        ok,
        header.trim() == ledgit::support::hmac::signature(b"secret", body)
    );
    assert!(ledgit::support::hmac::signature_ok(
        b"secret",
        body,
        &ledgit::support::hmac::signature(b"secret", body)
    ));
    let _ = serde_json_ref(body);
    let text = String::from_utf8_lossy(data);
    let _ = ledgit::support::when::parse_duration(&text);
    let _ = ledgit::support::when::parse_time(&text, chrono_now());
});

/// Reads a payload as the receivers do (the `ref` of a JSON object).
fn serde_json_ref(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("ref")?.as_str().map(str::to_string)
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a fixed time")
}
