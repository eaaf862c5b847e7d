//! HMAC-SHA256 signatures of webhook bodies in GitHub's scheme (`sha256=<hex>`): signing, for
//! the webhook actuator, and checking, for the server's receivers; and shared secrets compared
//! in constant time. Every comparison goes through ring's constant-time verification.

/// `sha256=<hex>` of the body with the secret (the `X-Ledgit-Signature` and
/// `X-Hub-Signature-256` form).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    format!("sha256={}", super::hex::encode(tag.as_ref()))
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`.
pub fn signature_ok(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, body, &tag).is_ok()
}

/// The 32 bytes of a MAC in its canonical form: 64 lower-case hexadecimal digits, nothing else
/// (no upper case, no sign), so that one MAC has exactly one accepted spelling.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether `given` is `secret`, compared in constant time (an HMAC of each under a key drawn at
/// random, checked with ring's constant-time verification).
pub fn same_secret(secret: &[u8], given: &[u8]) -> bool {
    use ring::rand::SecureRandom;
    let mut k = [0u8; 32];
    if ring::rand::SystemRandom::new().fill(&mut k).is_err() {
        return false;
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k);
    let tag = ring::hmac::sign(&key, secret);
    ring::hmac::verify(&key, given, tag.as_ref()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HMAC-SHA256("It's a Secret to Everybody", "Hello, World!") from GitHub's documentation.
    const GITHUB: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn only_the_canonical_lower_case_hex_is_accepted() {
        let secret = b"It's a Secret to Everybody";
        assert!(signature_ok(secret, b"Hello, World!", GITHUB));
        let upper = format!("sha256={}", GITHUB[7..].to_uppercase());
        assert!(!signature_ok(secret, b"Hello, World!", &upper));
        let mixed = GITHUB.replacen('e', "E", 1);
        assert!(!signature_ok(secret, b"Hello, World!", &mixed));
        // A MAC whose first byte is below 0x10: `0b` written `+b` parses as the same number,
        // but is not the MAC's spelling.
        let (body, right) = (0u32..10_000)
            .map(|i| i.to_string())
            .map(|b| {
                let sig = signature(secret, b.as_bytes());
                (b, sig)
            })
            .find(|(_, sig)| sig.starts_with("sha256=0"))
            .expect("one in 16 MACs starts with 0; none in 10,000 means signature() is broken");
        assert!(signature_ok(secret, body.as_bytes(), &right));
        let signed = right.replacen("sha256=0", "sha256=+", 1);
        assert!(!signature_ok(secret, body.as_bytes(), &signed));
    }

    #[test]
    fn the_github_scheme_both_ways() {
        assert_eq!(
            signature(b"It's a Secret to Everybody", b"Hello, World!"),
            GITHUB
        );
        assert!(signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            GITHUB
        ));
        assert!(!signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            GITHUB
        ));
        assert!(!signature_ok(b"another secret", b"Hello, World!", GITHUB));
        let upper = GITHUB.to_uppercase();
        let multibyte = format!("sha256={}", "é".repeat(32));
        for bad in [
            "",
            "sha256=",
            "sha1=757107ea",
            "sha256=zz",
            &upper,
            &multibyte,
        ] {
            assert!(
                !signature_ok(b"It's a Secret to Everybody", b"Hello, World!", bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
        assert!(!same_secret(b"s3cret", b"s3cret!"));
        assert!(!same_secret(b"s3cret", b""));
    }
}
