//! Deployment tokens: Ed25519 key pairs, and compact JWS tokens (JWTs) scoped to one record.
//!
//! The JWS framing is written here by hand because it is small and every byte of it matters:
//! a header of exactly `{"alg":"EdDSA","typ":"JWT","kid":...}`, the claims of SPEC "Deployment
//! tokens", and a 64-byte signature over `header.claims`, each segment base64url without
//! padding. Verification is strict and cheap checks come first: size, segment count and
//! alphabet, then the header (only `EdDSA`, a known `kid`), then the signature, and only then
//! the claims and the record's identity (it exists at the tip with the same generation) and
//! the revocation list.

use std::collections::{BTreeSet, HashMap};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SecureRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::config::{Config, PublicKey};
use crate::error::{Error, Result};
use crate::history::Deployment;

/// The longest token accepted; anything longer is refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `iat`, in seconds.
pub const LEEWAY: i64 = 60;
/// The issuer of every ledgit token.
pub const ISSUER: &str = "ledgit";

/// A signing key loaded from a PKCS#8 file.
pub struct SigningKey {
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// A new random key pair; returns it and its PKCS#8 document (DER).
    pub fn generate() -> Result<(SigningKey, Vec<u8>)> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| {
            Error::invalid(
                "could not generate a key",
                "the system's random source failed",
            )
        })?;
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
    ring::rand::SystemRandom::new().fill(&mut id).map_err(|_| {
        Error::invalid(
            "could not draw a token id",
            "the system's random source failed",
        )
    })?;
    let claims = Claims {
        iss: options.issuer.clone().unwrap_or_else(|| ISSUER.into()),
        sub: format!("{}/{}", record.agent, record.environment),
        agent: record.agent.clone(),
        environment: record.environment.clone(),
        path: record.path.clone(),
        generation: record.generation.clone(),
        iat: now,
        exp,
        jti: id.iter().map(|b| format!("{b:02x}")).collect(),
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
                write!(f, "the token expired at {}", crate::when::rfc3339(*exp))
            }
            Reason::NotYetValid { iat } => write!(
                f,
                "the token is issued in the future ({})",
                crate::when::rfc3339(*iat)
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
fn shown(raw: &str) -> String {
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

fn invalid(reason: Reason) -> Invalid {
    Invalid {
        reason,
        claims: None,
    }
}

fn malformed(what: impl Into<String>) -> Invalid {
    invalid(Reason::Malformed(what.into()))
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub claims: Claims,
    /// The id of the key that signed it.
    pub kid: String,
    /// The record's version at the tip now.
    pub version: String,
}

/// A token whose signature checked out with a listed key; its claims are not checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub claims: Claims,
    pub kid: String,
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

/// The parts of a token, decoded but not trusted.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub header: serde_json::Value,
    pub claims: serde_json::Value,
}

/// Splits a token into its three base64url segments, refusing anything malformed.
fn segments(token: &str) -> std::result::Result<[&str; 3], Invalid> {
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

fn decode_segment(seg: &str, what: &str) -> std::result::Result<Vec<u8>, Invalid> {
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

/// Verifies tokens against one state of the repository: its keys, its records at the tip, and
/// its revocation list. Build it once and verify many tokens.
pub struct Verifier {
    keys: HashMap<String, signature::UnparsedPublicKey<[u8; 32]>>,
    records: HashMap<(String, String), (String, String)>,
    revoked: BTreeSet<String>,
    audience: Option<String>,
    /// The issuer ledgit.yaml names, accepted beside `ledgit`.
    issuer: Option<String>,
}

impl Verifier {
    /// `records`: the deployments at the tip; `revoked`: revoked token ids.
    pub fn new(config: &Config, records: &[Deployment], revoked: BTreeSet<String>) -> Self {
        Verifier {
            keys: config
                .keys
                .iter()
                .map(|k| {
                    (
                        k.id.clone(),
                        signature::UnparsedPublicKey::new(&signature::ED25519, k.bytes),
                    )
                })
                .collect(),
            records: records
                .iter()
                .map(|d| {
                    (
                        (d.agent.clone(), d.environment.clone()),
                        (d.generation.clone(), d.version.clone()),
                    )
                })
                .collect(),
            revoked,
            audience: None,
            issuer: config.issuer.clone(),
        }
    }

    /// Whether this state's revocation list names `jti`.
    pub fn is_revoked(&self, jti: &str) -> bool {
        self.revoked.contains(jti)
    }

    /// Whether this state lists a key with id `kid`.
    pub fn has_key(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The generation of the pair's record in this state, if it has one.
    pub fn generation(&self, agent: &str, environment: &str) -> Option<&str> {
        self.records
            .get(&(agent.to_string(), environment.to_string()))
            .map(|(generation, _)| generation.as_str())
    }

    /// Requires tokens to carry this audience in `aud`.
    pub fn require_audience(mut self, audience: Option<String>) -> Self {
        self.audience = audience;
        self
    }

    /// Checks the header and the signature only: what a token's bytes alone decide. The claims
    /// it returns are signed by a listed key but not yet checked.
    pub fn verify_signature(&self, token: &str) -> std::result::Result<Signed, Invalid> {
        let token = token.trim();
        let [h, c, s] = segments(token)?;
        let header: Header = serde_json::from_slice(&decode_segment(h, "header")?)
            .map_err(|_| malformed("the header is not a ledgit token header (alg, typ, kid)"))?;
        // RFC 8037 names the algorithm EdDSA; RFC 9864 names this curve's Ed25519.
        if header.alg != "EdDSA" && header.alg != "Ed25519" {
            return Err(invalid(Reason::Algorithm(header.alg)));
        }
        if header.typ.as_deref().is_some_and(|t| t != "JWT") {
            return Err(malformed("typ is not JWT"));
        }
        let key = self
            .keys
            .get(&header.kid)
            .ok_or_else(|| invalid(Reason::UnknownKey(header.kid.clone())))?;
        let sig = decode_segment(s, "signature")?;
        if sig.len() != 64 {
            return Err(malformed(format!(
                "the signature is {} bytes, not 64",
                sig.len()
            )));
        }
        let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
        key.verify(signed, &sig)
            .map_err(|_| invalid(Reason::BadSignature))?;
        let claims = serde_json::from_slice(&decode_segment(c, "claims")?).map_err(|_| {
            invalid(Reason::Claims(
                "the claims do not have the types of a ledgit token".into(),
            ))
        })?;
        Ok(Signed {
            claims,
            kid: header.kid,
        })
    }

    /// Checks a token at time `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: i64) -> std::result::Result<Verified, Invalid> {
        let signed = self.verify_signature(token)?;
        self.check_claims(signed, now)
    }

    /// The checks after the signature: claims, time, audience, revocation and the record's
    /// identity at the tip. These depend on the repository's state and the clock, so they run
    /// on every request even where a signature was verified before.
    pub fn check_claims(&self, signed: Signed, now: i64) -> std::result::Result<Verified, Invalid> {
        let Signed { claims, kid } = signed;
        let reason = match self.claims_reason(&claims, now) {
            Ok(version) => {
                return Ok(Verified {
                    version: version.to_string(),
                    claims,
                    kid,
                });
            }
            Err(reason) => reason,
        };
        Err(Invalid {
            reason,
            claims: Some(Box::new(claims)),
        })
    }

    fn claims_reason(&self, claims: &Claims, now: i64) -> std::result::Result<&str, Reason> {
        // `ledgit`, or the issuer ledgit.yaml names (tokens issued before it was set keep
        // `ledgit`; what a token may do is decided by the keys, not by this claim).
        if claims.iss != ISSUER && self.issuer.as_deref() != Some(claims.iss.as_str()) {
            return Err(Reason::Claims(format!(
                "issuer {} is not {}",
                shown(&claims.iss),
                self.issuer.as_deref().unwrap_or(ISSUER)
            )));
        }
        if claims.sub != format!("{}/{}", claims.agent, claims.environment) {
            return Err(Reason::Claims(
                "sub does not match agent and environment".into(),
            ));
        }
        if let Some(exp) = claims.exp
            && now > exp.saturating_add(LEEWAY)
        {
            return Err(Reason::Expired { exp });
        }
        if claims.iat > now.saturating_add(LEEWAY) {
            return Err(Reason::NotYetValid { iat: claims.iat });
        }
        // A recipient that does not identify with the token's audience rejects it (RFC 7519,
        // 4.1.3): one without an audience rejects every token that carries one.
        let admitted = match (&self.audience, &claims.aud) {
            (Some(expected), aud) => aud.as_ref().is_some_and(|a| a.contains(expected)),
            (None, aud) => aud.is_none(),
        };
        if !admitted {
            return Err(Reason::Audience {
                expected: self.audience.clone(),
            });
        }
        if self.revoked.contains(&claims.jti) {
            return Err(Reason::Revoked {
                jti: claims.jti.clone(),
            });
        }
        let Some((generation, version)) = self
            .records
            .get(&(claims.agent.clone(), claims.environment.clone()))
        else {
            return Err(Reason::RecordRemoved {
                agent: claims.agent.clone(),
                environment: claims.environment.clone(),
            });
        };
        if *generation != claims.generation {
            return Err(Reason::StaleGeneration {
                agent: claims.agent.clone(),
                environment: claims.environment.clone(),
                current: generation.clone(),
            });
        }
        Ok(version)
    }
}

/// The revocation list: `revocations.yaml` at the repository root.
pub const REVOCATIONS_FILE: &str = crate::revocations::FILE_NAME;

/// One revoked token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// Parses the revocation list; an error names the first problem (file, line, what is wrong).
pub fn parse_revocations(text: &str) -> std::result::Result<Vec<Revocation>, String> {
    let list = crate::revocations::read(REVOCATIONS_FILE, text);
    match list.findings.first() {
        Some(f) => Err(format!("line {}: {}", f.line, f.message)),
        None => Ok(list.entries),
    }
}

/// The text of a revocation list with one more entry appended: the file is created when
/// missing; otherwise only the `revoked` list itself is edited (the entry goes after its last
/// item, or replaces an empty `[]` on the key's own line), so comments and the rest of the file
/// stay as they are. The result is read back and must list exactly the old entries and the new
/// one, or nothing is returned.
pub fn append_revocation(
    existing: Option<&str>,
    r: &Revocation,
) -> std::result::Result<String, String> {
    let item = |indent: &str| {
        let mut entry = format!("{indent}- jti: {}\n", r.jti);
        if let Some(reason) = &r.reason {
            entry.push_str(&format!(
                "{indent}  reason: {}\n",
                serde_json::to_string(reason).unwrap_or_default()
            ));
        }
        if let Some(at) = &r.revoked_at {
            entry.push_str(&format!("{indent}  revoked_at: \"{at}\"\n"));
        }
        entry
    };
    let Some(text) = existing else {
        return Ok(format!(
            "# Revoked deployment tokens, by id (jti). `ledgit token verify` refuses them.\napiVersion: ledgit/v1\nkind: Revocations\nrevoked:\n{}",
            item("  ")
        ));
    };
    let before = parse_revocations(text)?;
    let edited = crate::edit::append_list_item(text, "revoked", &item)?;
    let after = parse_revocations(&edited)?;
    let mut expected = before;
    expected.push(r.clone());
    if after != expected {
        return Err(
            "the edited list would not read back as the old entries and the new one".into(),
        );
    }
    Ok(edited)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(key: &SigningKey) -> Config {
        crate::config::parse(
            "ledgit.yaml",
            &format!(
                "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: production\nkeys:\n  - id: k1\n    algorithm: Ed25519\n    public_key: {}\n",
                key.public_encoded()
            ),
        )
        .unwrap()
    }

    fn deployment(generation: &str) -> Deployment {
        Deployment {
            agent: "support-bot".into(),
            environment: "production".into(),
            version: "1.4.2".into(),
            path: "deployments/support-bot/production.yaml".into(),
            generation: generation.into(),
            updated_at: String::new(),
            updated_commit: generation.into(),
            updated_time: 0,
            generation_time: 0,
        }
    }

    const GEN: &str = "0123456789abcdef0123456789abcdef01234567";

    fn ttl(seconds: i64) -> IssueOptions {
        IssueOptions {
            ttl: Some(seconds),
            audience: None,
            issuer: None,
        }
    }

    fn setup() -> (SigningKey, Config, String) {
        let (key, _) = SigningKey::generate().unwrap();
        let config = config_with(&key);
        let (token, _) = issue(&key, "k1", &deployment(GEN), 1_000_000, &ttl(3600)).unwrap();
        (key, config, token)
    }

    fn verifier(config: &Config) -> Verifier {
        Verifier::new(config, &[deployment(GEN)], BTreeSet::new())
    }

    #[test]
    fn a_fresh_token_verifies() {
        let (_, config, token) = setup();
        let v = verifier(&config).verify(&token, 1_000_100).unwrap();
        assert_eq!(v.claims.sub, "support-bot/production");
        assert_eq!(v.version, "1.4.2");
        assert_eq!(v.claims.jti.len(), 32);
        let header =
            String::from_utf8(B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header, r#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#);
    }

    #[test]
    fn every_single_byte_change_is_rejected() {
        let (_, config, token) = setup();
        let v = verifier(&config);
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            for replacement in [b'A', b'z', b'-', b'.'] {
                if bytes[i] == replacement {
                    continue;
                }
                let mut altered = bytes.to_vec();
                altered[i] = replacement;
                let altered = String::from_utf8(altered).unwrap();
                assert!(
                    v.verify(&altered, 1_000_100).is_err(),
                    "byte {i} -> {}",
                    replacement as char
                );
            }
        }
    }

    #[test]
    fn refuses_other_algorithms_kids_and_shapes() {
        let (key, config, token) = setup();
        let v = verifier(&config);
        let claims: Claims =
            serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
        let reason = |t: &str| v.verify(t, 1_000_100).unwrap_err().reason.to_string();
        for alg in ["none", "HS256", "ES256", "eddsa"] {
            let h = Header {
                alg: alg.into(),
                typ: Some("JWT".into()),
                kid: "k1".into(),
            };
            assert!(
                reason(&sign(&key, &h, &claims)).contains("not accepted"),
                "{alg}"
            );
        }
        let unknown = Header {
            alg: "EdDSA".into(),
            typ: None,
            kid: "k9".into(),
        };
        assert!(reason(&sign(&key, &unknown, &claims)).contains("not listed"));
        let no_kid = format!(
            "{}.{}",
            B64.encode(r#"{"alg":"EdDSA"}"#),
            token.split_once('.').unwrap().1
        );
        assert!(reason(&no_kid).contains("header"));
        // Another key under the same kid.
        let (other, _) = SigningKey::generate().unwrap();
        let forged = sign(
            &other,
            &Header {
                alg: "EdDSA".into(),
                typ: Some("JWT".into()),
                kid: "k1".into(),
            },
            &claims,
        );
        assert_eq!(reason(&forged), "the signature does not verify");
        // Signature of the wrong length, padding, segments.
        let (hc, _) = token.rsplit_once('.').unwrap();
        assert!(reason(&format!("{hc}.{}", B64.encode([0u8; 63]))).contains("not 64"));
        assert!(reason(&format!("{token}=")).contains("base64url"));
        assert!(reason(&format!("{token}.x")).contains("3 segments"));
        assert!(reason(hc).contains("3 segments"));
        assert!(reason(&"a".repeat(1 << 20)).contains("longer than"));
    }

    #[test]
    fn claims_of_the_wrong_types_are_refused() {
        let (key, config, _) = setup();
        let h = B64.encode(r#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#);
        let c = B64.encode(r#"{"iss":"ledgit","sub":"a/b","agent":"a","environment":"b","path":"p","gen":"g","iat":"yesterday","jti":"x"}"#);
        let input = format!("{h}.{c}");
        let sig = B64.encode(key.pair.sign(input.as_bytes()).as_ref());
        let err = verifier(&config)
            .verify(&format!("{input}.{sig}"), 0)
            .unwrap_err();
        assert_eq!(err.reason.code(), "invalid_claims");
        assert!(err.to_string().contains("types"), "{err}");
    }

    #[test]
    fn time_revocation_and_identity() {
        let (key, config, token) = setup();
        let v = verifier(&config);
        assert!(
            v.verify(&token, 1_000_000 + 3600 + LEEWAY + 1)
                .unwrap_err()
                .reason
                .to_string()
                .contains("expired")
        );
        let (future, _) = issue(
            &key,
            "k1",
            &deployment(GEN),
            2_000_000,
            &IssueOptions::default(),
        )
        .unwrap();
        assert!(
            v.verify(&future, 1_000_000)
                .unwrap_err()
                .reason
                .to_string()
                .contains("future")
        );
        let jti = v.verify(&token, 1_000_001).unwrap().claims.jti;
        let revoked = Verifier::new(&config, &[deployment(GEN)], [jti].into_iter().collect());
        assert!(
            revoked
                .verify(&token, 1_000_001)
                .unwrap_err()
                .reason
                .to_string()
                .contains("revoked")
        );
        let recreated = Verifier::new(&config, &[deployment(&"f".repeat(40))], BTreeSet::new());
        assert!(
            recreated
                .verify(&token, 1_000_001)
                .unwrap_err()
                .reason
                .to_string()
                .contains("re-created")
        );
        let deleted = Verifier::new(&config, &[], BTreeSet::new());
        assert!(
            deleted
                .verify(&token, 1_000_001)
                .unwrap_err()
                .reason
                .to_string()
                .contains("no longer exists")
        );
        let no_key = crate::config::parse(
            "ledgit.yaml",
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: production\n",
        )
        .unwrap();
        assert!(
            verifier(&no_key)
                .verify(&token, 1_000_001)
                .unwrap_err()
                .reason
                .to_string()
                .contains("not listed")
        );
    }

    /// The exact seconds at which a token stops and starts being valid (mutants of the
    /// comparisons or of the leeway's sign must fail here).
    #[test]
    fn expiry_and_issue_time_boundaries() {
        let (_, config, token) = setup();
        let v = verifier(&config);
        let exp = 1_000_000 + 3600;
        assert!(v.verify(&token, exp + LEEWAY).is_ok());
        let late = v.verify(&token, exp + LEEWAY + 1).unwrap_err();
        assert_eq!(late.reason, Reason::Expired { exp });
        assert!(v.verify(&token, exp).is_ok());
        assert!(v.verify(&token, exp - LEEWAY).is_ok());
        // Issued at 1_000_000: valid from LEEWAY seconds before that.
        assert!(v.verify(&token, 1_000_000 - LEEWAY).is_ok());
        let early = v.verify(&token, 1_000_000 - LEEWAY - 1).unwrap_err();
        assert_eq!(early.reason, Reason::NotYetValid { iat: 1_000_000 });
        assert_eq!(early.reason.code(), "not_yet_valid");
    }

    #[test]
    fn times_at_the_ends_of_the_range_do_not_overflow() {
        let (key, config, _) = setup();
        assert!(issue(&key, "k1", &deployment(GEN), i64::MAX - 10, &ttl(3600)).is_err());
        assert!(issue(&key, "k1", &deployment(GEN), 0, &ttl(0)).is_err());
        let v = verifier(&config);
        let mut claims = v
            .verify(&setup_token(&key, &ttl(3600)), 1_000_000)
            .unwrap()
            .claims;
        claims.exp = Some(i64::MAX);
        claims.iat = i64::MIN;
        let token = sign(&key, &header("EdDSA", "k1"), &claims);
        assert!(v.verify(&token, i64::MAX).is_ok());
        claims.exp = Some(i64::MIN);
        claims.iat = 0;
        let token = sign(&key, &header("EdDSA", "k1"), &claims);
        assert_eq!(v.verify(&token, 0).unwrap_err().reason.code(), "expired");
        claims.exp = None;
        claims.iat = i64::MAX;
        let token = sign(&key, &header("EdDSA", "k1"), &claims);
        assert_eq!(
            v.verify(&token, i64::MAX - 100).unwrap_err().reason.code(),
            "not_yet_valid"
        );
    }

    fn header(alg: &str, kid: &str) -> Header {
        Header {
            alg: alg.into(),
            typ: Some("JWT".into()),
            kid: kid.into(),
        }
    }

    fn setup_token(key: &SigningKey, options: &IssueOptions) -> String {
        issue(key, "k1", &deployment(GEN), 1_000_000, options)
            .unwrap()
            .0
    }

    #[test]
    fn both_names_of_the_algorithm_verify() {
        let (key, config, token) = setup();
        let claims = verifier(&config).verify(&token, 1_000_000).unwrap().claims;
        let ed25519 = sign(&key, &header("Ed25519", "k1"), &claims);
        assert!(verifier(&config).verify(&ed25519, 1_000_000).is_ok());
    }

    #[test]
    fn header_text_in_reasons_is_escaped_and_cut_short() {
        let (key, config, token) = setup();
        let claims = verifier(&config).verify(&token, 1_000_000).unwrap().claims;
        let nasty = format!("\u{1b}[31mred\n{}", "x".repeat(500));
        for t in [
            sign(&key, &header(&nasty, "k1"), &claims),
            sign(&key, &header("EdDSA", &nasty), &claims),
        ] {
            let shown = verifier(&config)
                .verify(&t, 1_000_000)
                .unwrap_err()
                .to_string();
            assert!(
                !shown.contains('\u{1b}') && !shown.contains('\n'),
                "{shown:?}"
            );
            assert!(shown.contains("\\u{1b}[31mred\\n"), "{shown}");
            assert!(shown.len() < 150, "{}", shown.len());
        }
    }

    #[test]
    fn an_audience_is_issued_and_required() {
        let (key, config, plain) = setup();
        let options = IssueOptions {
            ttl: None,
            audience: Some("gateway".into()),
            issuer: None,
        };
        let aimed = setup_token(&key, &options);
        let open = verifier(&config);
        // A verifier with no audience refuses a token meant for one (RFC 7519, 4.1.3).
        let e = open.verify(&aimed, 1_000_000).unwrap_err();
        assert_eq!(e.reason, Reason::Audience { expected: None });
        assert!(open.verify(&plain, 1_000_000).is_ok());
        let strict = verifier(&config).require_audience(Some("gateway".into()));
        assert!(strict.verify(&aimed, 1_000_000).is_ok());
        for other in [
            plain,
            setup_token(
                &key,
                &IssueOptions {
                    ttl: None,
                    audience: Some("elsewhere".into()),
                    issuer: None,
                },
            ),
        ] {
            let e = strict.verify(&other, 1_000_000).unwrap_err();
            assert_eq!(e.reason.code(), "wrong_audience");
            assert!(e.claims.is_some());
        }
        // A list that contains it.
        let mut claims = strict.verify(&aimed, 1_000_000).unwrap().claims;
        claims.aud = Some(Audience::Many(vec!["a".into(), "gateway".into()]));
        let listed = sign(&key, &header("EdDSA", "k1"), &claims);
        assert!(strict.verify(&listed, 1_000_000).is_ok());
    }

    #[test]
    fn every_reason_has_its_code_listed() {
        let reasons = [
            Reason::Missing,
            Reason::Malformed(String::new()),
            Reason::Algorithm(String::new()),
            Reason::UnknownKey(String::new()),
            Reason::BadSignature,
            Reason::Claims(String::new()),
            Reason::Expired { exp: 0 },
            Reason::NotYetValid { iat: 0 },
            Reason::Audience { expected: None },
            Reason::Revoked { jti: String::new() },
            Reason::RecordRemoved {
                agent: String::new(),
                environment: String::new(),
            },
            Reason::StaleGeneration {
                agent: String::new(),
                environment: String::new(),
                current: String::new(),
            },
        ];
        let codes: Vec<&str> = reasons.iter().map(Reason::code).collect();
        assert_eq!(codes, Reason::CODES);
    }

    /// RFC 8037, appendix A: the Ed25519 key, and the signature of the example JWS payload.
    #[test]
    fn rfc8037_appendix_a() {
        let d = B64
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let x = B64
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let pair = Ed25519KeyPair::from_seed_and_public_key(&d, &x).unwrap();
        let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = pair.sign(input.as_bytes());
        assert_eq!(
            B64.encode(sig.as_ref()),
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
        signature::UnparsedPublicKey::new(&signature::ED25519, &x)
            .verify(input.as_bytes(), sig.as_ref())
            .unwrap();
    }

    #[test]
    fn keys_round_trip_through_pem() {
        let (key, der) = SigningKey::generate().unwrap();
        let back = SigningKey::from_bytes(pem(&der).as_bytes()).unwrap();
        assert_eq!(back.public(), key.public());
        assert!(SigningKey::from_bytes(b"not a key").is_err());
    }

    /// Found in review: a comment that mentions `revoked: []` was edited instead of the list.
    #[test]
    fn only_the_list_itself_is_edited() {
        let r = Revocation {
            jti: "new1".into(),
            reason: None,
            revoked_at: None,
        };
        let cases = [
            "# start with revoked: [] and add entries\napiVersion: ledgit/v1\nkind: Revocations\nrevoked: []   # none yet\n",
            "apiVersion: ledgit/v1\nkind: Revocations\nrevoked:\n    - jti: old1   # leaked\n    # the next one too\n    - jti: old2\n\n# trailing comment: revoked: []\n",
            "apiVersion: ledgit/v1\nrevoked:\n- jti: old1\nkind: Revocations\n",
            "apiVersion: ledgit/v1\nkind: Revocations\n",
            "apiVersion: ledgit/v1\nkind: Revocations\nrevoked: []",
        ];
        for text in cases {
            let out = append_revocation(Some(text), &r).unwrap_or_else(|e| panic!("{text}: {e}"));
            let list = parse_revocations(&out).unwrap();
            assert_eq!(list.last().unwrap().jti, "new1", "{out}");
            // Every comment of the original is still there.
            for comment in text.lines().filter_map(|l| l.split_once('#').map(|c| c.1)) {
                assert!(out.contains(comment), "{comment:?} lost:\n{out}");
            }
        }
        let inline = "apiVersion: ledgit/v1\nkind: Revocations\nrevoked: [{jti: a}]\n";
        assert!(
            append_revocation(Some(inline), &r)
                .unwrap_err()
                .contains("block list")
        );
    }

    #[test]
    fn revocation_lists() {
        let r = Revocation {
            jti: "abc".into(),
            reason: Some("leaked: in a log".into()),
            revoked_at: Some("2026-01-01T00:00:00Z".into()),
        };
        let text = append_revocation(None, &r).unwrap();
        assert_eq!(parse_revocations(&text).unwrap(), vec![r.clone()]);
        let two = append_revocation(
            Some(&text),
            &Revocation {
                jti: "def".into(),
                reason: None,
                revoked_at: None,
            },
        )
        .unwrap();
        assert_eq!(parse_revocations(&two).unwrap().len(), 2);
        let empty = "apiVersion: ledgit/v1\nkind: Revocations\nrevoked: []\n";
        assert_eq!(
            parse_revocations(&append_revocation(Some(empty), &r).unwrap()).unwrap(),
            vec![r]
        );
        assert!(parse_revocations("apiVersion: ledgit/v1\nkind: Config\n").is_err());
    }
}
