//! Bytes from the operating system's random source. For values whose secrecy matters (a
//! session's nonce, an OpenID Connect sign-in's state, nonce and PKCE verifier) there is no
//! stand-in when the source fails: the caller refuses rather than hand out a guessable value.
//! Identifiers that need only be distinct ([`id`]) fall back to the time and the process id.

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

/// `N` random bytes in hex, for identifiers that must not repeat (an attempt, a process's
/// start). Should the system's random source fail, the time in nanoseconds and the process id
/// stand in: still distinct, though guessable.
pub fn id<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    if fill(&mut bytes).is_err() {
        let stand_in = [
            chrono::Utc::now()
                .timestamp_nanos_opt()
                .unwrap_or(0)
                .to_le_bytes(),
            u64::from(std::process::id()).to_le_bytes(),
        ]
        .concat();
        for (b, s) in bytes.iter_mut().zip(stand_in) {
            *b = s;
        }
    }
    super::hex::encode(&bytes)
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
        let (a, b) = (id::<16>(), id::<16>());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        let mut buf = [0u8; 32];
        fill(&mut buf).unwrap();
        assert_ne!(buf, [0u8; 32]);
    }
}
