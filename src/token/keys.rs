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
    /// A new random key pair; returns it and its PKCS#8 document (DER).
    pub fn generate() -> Result<(SigningKey, Vec<u8>)> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::Randomness { what: "a key" })?;
        let key = SigningKey::from_der(doc.as_ref())?;
        Ok((key, doc.as_ref().to_vec()))
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
