//! Bytes from the operating system's random source for values whose secrecy matters (a
//! session's nonce, an OpenID Connect sign-in's state, nonce and PKCE verifier). When the
//! source fails there is no stand-in: the caller refuses rather than hand out a guessable value.

use ring::rand::SecureRandom;

/// The operating system's random source did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system's random source failed")]
pub struct RandomUnavailable;

/// Fills `buf` from the system's random source.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomUnavailable> {
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| RandomUnavailable)
}

/// `N` random bytes in lower-case hex.
pub fn secret_hex<const N: usize>() -> Result<String, RandomUnavailable> {
    let mut bytes = [0u8; N];
    fill(&mut bytes)?;
    Ok(super::hex::encode(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_have_the_asked_length() {
        let a = secret_hex::<16>().unwrap();
        let b = secret_hex::<16>().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        let mut buf = [0u8; 32];
        fill(&mut buf).unwrap();
        assert_ne!(buf, [0u8; 32]);
    }
}
