//! Lower-case hex, as git writes object ids and as ledgit writes token ids, digests, signatures
//! and idempotency keys; and identifiers drawn at random in that form.

use std::fmt::Write;

/// `bytes` as lower-case hex, two digits each.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `N` random bytes in hex, for identifiers that must not repeat (an attempt, a process's
/// start). Should the system's random source fail, the time in nanoseconds and the process id
/// stand in: still distinct, though guessable.
pub fn random_id<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
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
    encode(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(encode(&[0, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(encode(&[]), "");
        let (a, b) = (random_id::<16>(), random_id::<16>());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
