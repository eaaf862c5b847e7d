//! Signing keys: Ed25519 key pairs loaded from PKCS#8 files (the private half stays in the
//! file the operator chose), their PEM form, and the JSON Web Key Set of the public keys that
//! `ledgit.yaml` lists, which a gateway fetches to verify tokens offline.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::error::{Error, Result};
use crate::model::config::{Config, PublicKey};

/// A signing key loaded from a PKCS#8 file.
pub struct SigningKey {
    pub(super) pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A new random key pair; returns it and its PKCS#8 document (DER) in RFC 8410's form
    /// (version 1, the 32-byte seed only), the one OpenSSL writes and every tool reads. ring's
    /// own generator writes version 2 with the public key attached, which OpenSSL 3 and
    /// Python's `cryptography` refuse; such files already written are still read.
    pub fn generate() -> Result<(SigningKey, Vec<u8>)> {
        use ring::rand::SecureRandom;
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| Error::Randomness { what: "a key" })?;
        let doc = pkcs8_v1(&seed);
        let key = SigningKey::from_der(&doc)?;
        Ok((key, doc))
    }

    /// Reads a PKCS#8 key, PEM (`-----BEGIN PRIVATE KEY-----`) or DER.
    pub fn from_bytes(bytes: &[u8]) -> Result<SigningKey> {
        match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN PRIVATE KEY-----") => {
                let body: String = text
                    .lines()
                    .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
                    .skip(1)
                    .take_while(|l| !l.starts_with("-----END"))
                    .collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(body.trim())
                    .map_err(|_| bad_key())?;
                SigningKey::from_der(&der)
            }
            _ => SigningKey::from_der(bytes),
        }
    }

    fn from_der(der: &[u8]) -> Result<SigningKey> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| bad_key())?;
        Ok(SigningKey { pair })
    }

    /// The 32-byte public key.
    pub fn public(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// The Ed25519 signature of `message` (64 bytes).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }

    /// The public key as written in `ledgit.yaml`.
    pub fn public_encoded(&self) -> String {
        B64.encode(self.public())
    }

    /// The id under which `config` lists this key's public half.
    pub fn key_id<'c>(&self, config: &'c Config) -> Option<&'c PublicKey> {
        let public = self.public();
        config.keys.iter().find(|k| k.bytes == public)
    }
}

/// RFC 8410's `OneAsymmetricKey` v1 for an Ed25519 seed: the fixed DER prefix
/// (SEQUENCE, version 0, AlgorithmIdentifier id-Ed25519, OCTET STRING of the
/// CurvePrivateKey OCTET STRING) and the 32 bytes.
fn pkcs8_v1(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut doc = PREFIX.to_vec();
    doc.extend_from_slice(seed);
    doc
}

fn bad_key() -> Error {
    Error::invalid(
        "the signing key is not an Ed25519 PKCS#8 key",
        "use a key written by `ledgit keys generate`",
    )
}

/// PEM text of a PKCS#8 document.
pub fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

/// The JSON Web Key Set of a config's keys (RFC 7517, with RFC 8037's OKP keys).
pub fn jwks(config: &Config) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = config
        .keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": B64.encode(k.bytes),
                "kid": k.id,
                "alg": "EdDSA",
                "use": "sig",
            })
        })
        .collect();
    serde_json::json!({ "keys": keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_rfc_8410_version_1_with_the_seed_only() {
        let (key, der) = SigningKey::generate().unwrap();
        assert_eq!(der.len(), 48);
        assert_eq!(&der[..16], &pkcs8_v1(&[0; 32])[..16]);
        // Version 0 (v1), no public key attached.
        assert_eq!(der[4], 0);
        let again = SigningKey::from_bytes(pem(&der).as_bytes()).unwrap();
        assert_eq!(again.public(), key.public());
    }

    #[test]
    fn version_2_files_written_before_are_still_read() {
        let rng = ring::rand::SystemRandom::new();
        let v2 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        assert_eq!(v2.as_ref()[4], 1, "ring writes version 2");
        let key = SigningKey::from_bytes(pem(v2.as_ref()).as_bytes()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(v2.as_ref()).unwrap();
        assert_eq!(key.public().as_slice(), pair.public_key().as_ref());
    }

    #[test]
    fn the_seed_of_rfc_8032s_first_vector_gives_its_public_key() {
        // RFC 8032, 7.1, TEST 1.
        let hex = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let key = SigningKey::from_der(&pkcs8_v1(&seed)).unwrap();
        assert_eq!(
            crate::support::hex::encode(&key.public()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }
}
