//! The history index decoder on arbitrary bytes (and on bytes made to pass the checksum): an
//! error or a history that round-trips, never a panic or a runaway allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for bytes in [data.to_vec(), with_valid_header(data)] {
        if let Some(h) = ledgit::git::index::decode(&bytes) {
            let again = ledgit::git::index::decode(&ledgit::git::index::encode(&h))
                .expect("an encoded history decodes");
            assert_eq!(again.chain(), h.chain());
            assert_eq!(again.events().len(), h.events().len());
            assert_eq!(again.commits().len(), h.commits().len());
        }
    }
});

/// The input as the payload of a base segment with a correct length and CRC, so that the
/// decoder's structure checks (not only the checksum) see it.
fn with_valid_header(payload: &[u8]) -> Vec<u8> {
    let mut out = b"LEDGITH7".to_vec();
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
