//! Recognises private key material in file contents, so that a key committed by mistake is a
//! finding: PEM blocks of any private key type and the DER form of an Ed25519 PKCS#8 document
//! (what `ledgit keys generate` writes).

/// The 1-based line of the first private key in `bytes`, if there is one.
pub fn private_key_line(bytes: &[u8]) -> Option<u32> {
    if let Some(pos) = find_pem(bytes) {
        let line = bytes[..pos].iter().filter(|&&b| b == b'\n').count() + 1;
        return Some(line as u32);
    }
    is_der_ed25519_pkcs8(bytes).then_some(1)
}

fn find_pem(bytes: &[u8]) -> Option<usize> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let mut from = 0;
    while let Some(i) = find(&bytes[from..], BEGIN) {
        let start = from + i;
        let rest = &bytes[start + BEGIN.len()..];
        let label_end = rest.iter().take(64).position(|&b| b == b'-')?;
        if rest[..label_end].ends_with(b"PRIVATE KEY") {
            return Some(start);
        }
        from = start + BEGIN.len();
    }
    None
}

/// A DER SEQUENCE holding version 0 or 1 and the Ed25519 algorithm identifier (1.3.101.112).
fn is_der_ed25519_pkcs8(bytes: &[u8]) -> bool {
    const ALG: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
    bytes.len() >= 16
        && bytes.len() < 256
        && bytes[0] == 0x30
        && bytes[2..4] == [0x02, 0x01]
        && bytes[5..5 + ALG.len()] == *ALG
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pem_private_keys_of_any_type() {
        assert_eq!(
            private_key_line(b"a\nb\n-----BEGIN PRIVATE KEY-----\nMC4C\n"),
            Some(3)
        );
        assert_eq!(
            private_key_line(b"-----BEGIN OPENSSH PRIVATE KEY-----\n"),
            Some(1)
        );
        assert_eq!(
            private_key_line(b"x: |\n  -----BEGIN EC PRIVATE KEY-----\n"),
            Some(2)
        );
        assert_eq!(private_key_line(b"-----BEGIN PUBLIC KEY-----\n"), None);
        assert_eq!(
            private_key_line(b"-----BEGIN CERTIFICATE-----\n-----BEGIN "),
            None
        );
    }

    #[test]
    fn finds_der_ed25519_pkcs8() {
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        assert_eq!(private_key_line(doc.as_ref()), Some(1));
        assert_eq!(private_key_line(b"apiVersion: ledgit/v1\n"), None);
    }
}
