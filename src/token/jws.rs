//! The token itself: a compact JWS (a JWT) of exactly `{"alg":"EdDSA","typ":"JWT","kid":...}`
//! and the claims of SPEC "Deployment tokens", signed over `header.claims`, each segment
//! base64url without padding. Issuing binds the claims to one record's identity (agent,
//! environment, generation); inspecting decodes a token without trusting it. A token that is
//! refused, here or by the verifier, is refused for one [`Reason`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Deployment;

use super::keys::SigningKey;

/// The longest token accepted; anything longer is refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The issuer of every ledgit token.
pub const ISSUER: &str = "ledgit";

/// The header of every token, in this key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    pub kid: String,
}

/// The claims of a deployment token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub agent: String,
    pub environment: String,
    pub path: String,
    /// The record's generation commit (claim `gen`).
    #[serde(rename = "gen")]
    pub generation: String,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub jti: String,
    /// The audience, where the token was issued for one (`token issue --audience`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// The `aud` claim: one audience (what ledgit issues) or a list (RFC 7519 allows both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, aud: &str) -> bool {
        match self {
            Audience::One(a) => a == aud,
            Audience::Many(list) => list.iter().any(|a| a == aud),
        }
    }
}

/// What a token is asked for at issue.
#[derive(Debug, Clone, Default)]
pub struct IssueOptions {
    /// Seconds until it expires; `None` for no expiry.
    pub ttl: Option<i64>,
    /// The `aud` claim.
    pub audience: Option<String>,
    /// The `iss` claim: `issuer` of ledgit.yaml where it names one, else `ledgit`.
    pub issuer: Option<String>,
}

/// Signs a token for a record, issued at `now`.
pub fn issue(
    key: &SigningKey,
    kid: &str,
    record: &Deployment,
    now: i64,
    options: &IssueOptions,
) -> Result<(String, Claims)> {
    let exp = match options.ttl {
        Some(ttl) => Some(now.checked_add(ttl).filter(|_| ttl > 0).ok_or_else(|| {
            Error::invalid(
                format!("a lifetime of {ttl} seconds is out of range"),
                "ask for a lifetime such as 30d, 12h or 90m",
            )
        })?),
        None => None,
    };
    let mut id = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| Error::Randomness { what: "a token id" })?;
    let claims = Claims {
        iss: options.issuer.clone().unwrap_or_else(|| ISSUER.into()),
        sub: format!("{}/{}", record.agent, record.environment),
        agent: record.agent.clone(),
        environment: record.environment.clone(),
        path: record.path.clone(),
        generation: record.generation.clone(),
        iat: now,
        exp,
        jti: crate::support::hex::encode(&id),
        aud: options.audience.clone().map(Audience::One),
    };
    let header = Header {
        alg: "EdDSA".into(),
        typ: Some("JWT".into()),
        kid: kid.into(),
    };
    Ok((sign(key, &header, &claims), claims))
}

/// The compact JWS of a header and claims.
pub fn sign(key: &SigningKey, header: &Header, claims: &Claims) -> String {
    let h = B64.encode(serde_json::to_vec(header).unwrap_or_default());
    let c = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let input = format!("{h}.{c}");
    let sig = key.pair.sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig.as_ref()))
}

/// The parts of a token, decoded but not trusted.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub header: serde_json::Value,
    pub claims: serde_json::Value,
}

/// Splits a token into its three base64url segments, refusing anything malformed.
pub(super) fn segments(token: &str) -> std::result::Result<[&str; 3], Invalid> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed(format!(
            "the token is longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts[..] else {
        return Err(malformed(format!(
            "a token has 3 segments, this one has {}",
            parts.len()
        )));
    };
    for seg in [h, c, s] {
        if seg.is_empty()
            || !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(malformed("a segment is not base64url without padding"));
        }
    }
    Ok([h, c, s])
}

pub(super) fn decode_segment(seg: &str, what: &str) -> std::result::Result<Vec<u8>, Invalid> {
    B64.decode(seg)
        .map_err(|_| malformed(format!("the {what} is not valid base64url")))
}

/// Decodes a token without verifying anything but its shape.
pub fn inspect(token: &str) -> std::result::Result<Decoded, Invalid> {
    let [h, c, _] = segments(token.trim())?;
    let parse = |seg: &str, what: &str| -> std::result::Result<serde_json::Value, Invalid> {
        serde_json::from_slice(&decode_segment(seg, what)?)
            .map_err(|_| malformed(format!("the {what} is not JSON")))
    };
    Ok(Decoded {
        header: parse(h, "header")?,
        claims: parse(c, "claims")?,
    })
}

/// Why a token is not valid: one value per reason, each with a stable code that every front
/// end shows the same way (`token verify`, the server's routes and its metrics). A message
/// never contains the token; text that came from an unverified token is escaped and cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No token where one was needed.
    Missing,
    /// Not a compact JWS of three base64url segments with JSON inside, or too long.
    Malformed(String),
    /// A header `alg` other than EdDSA (or its RFC 9864 name Ed25519).
    Algorithm(String),
    /// A `kid` that `ledgit.yaml` does not list (never issued, or the key was removed).
    UnknownKey(String),
    /// The signature does not verify with the key named by `kid`.
    BadSignature,
    /// Signed by a listed key, but the claims are not those of a ledgit token.
    Claims(String),
    /// `exp` is in the past (beyond the leeway).
    Expired { exp: i64 },
    /// `iat` is in the future (beyond the leeway).
    NotYetValid { iat: i64 },
    /// The token was issued for another audience, for none where one is required, or for
    /// one where the verifier identifies with none (RFC 7519, 4.1.3).
    Audience { expected: Option<String> },
    /// The `jti` is in the revocation list.
    Revoked { jti: String },
    /// The record no longer exists at the tip.
    RecordRemoved { agent: String, environment: String },
    /// The record was deleted and re-created: the token's generation is not the record's.
    StaleGeneration {
        agent: String,
        environment: String,
        current: String,
    },
}

impl Reason {
    /// The stable code of the reason, for scripts, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed(_) => "malformed",
            Reason::Algorithm(_) => "wrong_algorithm",
            Reason::UnknownKey(_) => "unknown_key",
            Reason::BadSignature => "bad_signature",
            Reason::Claims(_) => "invalid_claims",
            Reason::Expired { .. } => "expired",
            Reason::NotYetValid { .. } => "not_yet_valid",
            Reason::Audience { .. } => "wrong_audience",
            Reason::Revoked { .. } => "revoked",
            Reason::RecordRemoved { .. } => "record_removed",
            Reason::StaleGeneration { .. } => "stale_generation",
        }
    }

    /// Every code, in the order of the variants (for metrics that list each one).
    pub const CODES: [&'static str; 12] = [
        "missing",
        "malformed",
        "wrong_algorithm",
        "unknown_key",
        "bad_signature",
        "invalid_claims",
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "revoked",
        "record_removed",
        "stale_generation",
    ];
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Missing => write!(f, "no token was presented"),
            Reason::Malformed(what) => write!(f, "{what}"),
            Reason::Algorithm(alg) => write!(
                f,
                "alg {} is not accepted; ledgit tokens use EdDSA",
                shown(alg)
            ),
            Reason::UnknownKey(kid) => {
                write!(f, "key {} is not listed in ledgit.yaml", shown(kid))
            }
            Reason::BadSignature => write!(f, "the signature does not verify"),
            Reason::Claims(what) => write!(f, "{what}"),
            Reason::Expired { exp } => {
                write!(
                    f,
                    "the token expired at {}",
                    crate::support::when::rfc3339(*exp)
                )
            }
            Reason::NotYetValid { iat } => write!(
                f,
                "the token is issued in the future ({})",
                crate::support::when::rfc3339(*iat)
            ),
            Reason::Audience {
                expected: Some(expected),
            } => {
                write!(
                    f,
                    "the token is not issued for audience {}",
                    shown(expected)
                )
            }
            Reason::Audience { expected: None } => write!(
                f,
                "the token is issued for an audience, and this verifier identifies with none (give it --audience)"
            ),
            Reason::Revoked { jti } => write!(f, "token {} is revoked", shown(jti)),
            Reason::RecordRemoved { agent, environment } => write!(
                f,
                "the record {agent}/{environment} no longer exists at the tip"
            ),
            Reason::StaleGeneration {
                agent,
                environment,
                current,
            } => write!(
                f,
                "the record {agent}/{environment} was deleted and re-created (generation {} is not the token's)",
                &current[..12.min(current.len())]
            ),
        }
    }
}

/// Text from an unverified token as a message may show it: quoted, escaped, at most 40
/// characters.
pub(super) fn shown(raw: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = raw.chars().take(MAX).flat_map(char::escape_debug).collect();
    if raw.chars().count() > MAX {
        out.push('…');
    }
    format!("`{out}`")
}

/// Why a token is not valid, and what could be read of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: Reason,
    /// What could be read of the claims before the failure (after the signature checked out).
    pub claims: Option<Box<Claims>>,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.reason.fmt(f)
    }
}

pub(super) fn invalid(reason: Reason) -> Invalid {
    Invalid {
        reason,
        claims: None,
    }
}

pub(super) fn malformed(what: impl Into<String>) -> Invalid {
    invalid(Reason::Malformed(what.into()))
}
