//! The DSSE envelope a receipt travels in: the statement's JSON as `payload` (standard base64),
//! `payloadType` `application/vnd.in-toto+json`, and Ed25519 signatures over the envelope's
//! pre-authentication encoding (PAE), each naming its key by `keyid` (the reconciler's id). The
//! same bytes verify with any DSSE implementation; nothing here is ledgit's own but the keyid.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::receipt::statement::{PREDICATE_TYPE, STATEMENT_TYPE, Statement};
use crate::token::SigningKey;

/// The payload type of an in-toto statement in DSSE.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<Signature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub keyid: String,
    pub sig: String,
}

/// Why a note's line is not a receipt ledgit can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not a DSSE envelope ({0})")]
    Envelope(String),
    #[error("payload type `{0}` is not {PAYLOAD_TYPE}")]
    PayloadType(String),
    #[error("the payload is not base64")]
    Base64,
    #[error("the payload is not an in-toto Statement v1 with an apply predicate ({0})")]
    Statement(String),
    #[error("statement type `{0}` is not {STATEMENT_TYPE}")]
    StatementType(String),
    #[error("predicate type `{0}` is not {PREDICATE_TYPE}")]
    PredicateType(String),
}

/// DSSE's pre-authentication encoding: `DSSEv1 <len> <type> <len> <body>`, lengths in ASCII
/// decimal bytes.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

impl Envelope {
    /// Signs `statement` with `key`, naming it `keyid`.
    pub fn sign(statement: &Statement, key: &SigningKey, keyid: &str) -> Envelope {
        // A statement of strings and numbers always serializes.
        let body = serde_json::to_vec(statement).unwrap_or_default();
        let sig = key.sign(&pae(PAYLOAD_TYPE, &body));
        Envelope {
            payload: B64.encode(&body),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![Signature {
                keyid: keyid.to_string(),
                sig: B64.encode(sig),
            }],
        }
    }

    /// The envelope as one line of JSON, as notes hold it.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads one line of a note.
    pub fn parse(line: &str) -> Result<Envelope, Malformed> {
        let e: Envelope =
            serde_json::from_str(line).map_err(|e| Malformed::Envelope(e.to_string()))?;
        if e.payload_type != PAYLOAD_TYPE {
            return Err(Malformed::PayloadType(e.payload_type));
        }
        Ok(e)
    }

    /// The payload's bytes.
    pub fn body(&self) -> Result<Vec<u8>, Malformed> {
        B64.decode(&self.payload).map_err(|_| Malformed::Base64)
    }

    /// The statement the envelope carries (whether or not its signature verifies).
    pub fn statement(&self) -> Result<Statement, Malformed> {
        let body = self.body()?;
        let s: Statement =
            serde_json::from_slice(&body).map_err(|e| Malformed::Statement(e.to_string()))?;
        if s.statement_type != STATEMENT_TYPE {
            return Err(Malformed::StatementType(s.statement_type));
        }
        if s.predicate_type != PREDICATE_TYPE {
            return Err(Malformed::PredicateType(s.predicate_type));
        }
        if s.subject.is_empty() {
            return Err(Malformed::Statement("no subject".into()));
        }
        Ok(s)
    }

    /// The key ids its signatures name.
    pub fn keyids(&self) -> impl Iterator<Item = &str> {
        self.signatures.iter().map(|s| s.keyid.as_str())
    }

    /// Whether a signature naming `keyid` verifies over the payload with `public`.
    pub fn verified_by(&self, keyid: &str, public: &[u8; 32]) -> bool {
        let Ok(body) = self.body() else {
            return false;
        };
        let message = pae(&self.payload_type, &body);
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public);
        self.signatures.iter().any(|s| {
            s.keyid == keyid
                && B64
                    .decode(&s.sig)
                    .is_ok_and(|sig| key.verify(&message, &sig).is_ok())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::statement::tests::apply;

    #[test]
    fn pae_is_dssev1() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn a_signed_envelope_verifies_only_unaltered_and_with_its_key() {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let s = Statement::new(apply(), "p", None);
        let e = Envelope::sign(&s, &key, "r1");
        let line = e.to_line();
        assert!(!line.contains('\n'));
        let back = Envelope::parse(&line).unwrap();
        assert_eq!(back.statement().unwrap(), s);
        assert_eq!(back.keyids().collect::<Vec<_>>(), ["r1"]);
        assert!(back.verified_by("r1", &key.public()));
        assert!(!back.verified_by("r2", &key.public()));
        assert!(!back.verified_by("r1", &other.public()));
        let mut changed = s.clone();
        changed.predicate.version = Some("6.6.6".into());
        let mut forged = back.clone();
        forged.payload = B64.encode(serde_json::to_vec(&changed).unwrap());
        assert!(!forged.verified_by("r1", &key.public()));
        let mut retyped = back;
        retyped.payload_type = "application/json".into();
        assert!(!retyped.verified_by("r1", &key.public()));
        assert!(matches!(
            Envelope::parse(&retyped.to_line()),
            Err(Malformed::PayloadType(_))
        ));
        assert!(Envelope::parse("{").is_err());
    }
}
