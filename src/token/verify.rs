//! Verification, strict and cheapest checks first: size, segment count and alphabet, then the
//! header (only `EdDSA`, a known `kid`), then the signature, and only then the claims and the
//! record's identity (it exists at the tip with the same generation) and the revocation list.
//! The [`Verifier`] holds one commit's keys, records and revocations; it also gives a ledger
//! entry's status, what verifying its token would say without the token.

use std::collections::{BTreeSet, HashMap};

use ring::signature::{self};

use crate::model::Deployment;
use crate::model::config::Config;

use super::jws::ISSUER;
use super::jws::{Claims, Header, decode_segment, segments};
use super::jws::{Invalid, Reason, invalid, malformed, shown};
use crate::model::ledger::Entry;

/// Clock skew tolerated on `exp` and `iat`, in seconds.
pub const LEEWAY: i64 = 60;

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

/// A token's status (SPEC): where several apply, the first of revoked, key-removed, stale,
/// expired is shown, the one that an operator acts on first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Active,
    Expired,
    Revoked,
    /// Its record was deleted or re-created (another generation).
    Stale,
    KeyRemoved,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Expired => "expired",
            Status::Revoked => "revoked",
            Status::Stale => "stale",
            Status::KeyRemoved => "key-removed",
        }
    }
}

/// The status of a ledger entry at `now`, against the repository state a token verification
/// reads (the verifier's keys, records and revocation list): what verifying the token itself
/// would say of its identity, without the token.
pub fn status(e: &Entry, verifier: &Verifier, now: i64) -> Status {
    if verifier.is_revoked(&e.jti) {
        Status::Revoked
    } else if !verifier.has_key(&e.kid) {
        Status::KeyRemoved
    } else if verifier.generation(&e.agent, &e.environment) != Some(e.generation.as_str()) {
        Status::Stale
    } else if e.expires_at.is_some_and(|x| x <= now) {
        Status::Expired
    } else {
        Status::Active
    }
}
