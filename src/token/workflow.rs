//! Issuing and revoking tokens in a work tree, once for every front end: find the record at the
//! tip and the key's entry, sign the token, append it to the ledger (the inventory of tokens
//! in git) and write the file whole; revoke by appending to the revocation list, refusing a
//! list that does not read rather than replacing it.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::Deployment;
use crate::model::config::Config;
use crate::model::edit::EditError;
use crate::model::{ledger, revocations};
use crate::token::{Claims, IssueOptions, SigningKey, issue};

/// A token just signed, with what the ledger records of it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub claims: Claims,
    /// The id `ledgit.yaml` lists the key under.
    pub kid: String,
}

/// What a token is asked for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub agent: &'a str,
    pub environment: &'a str,
    /// Seconds until it expires (more than zero); `None` for no expiry.
    pub ttl: Option<i64>,
    /// The `aud` claim.
    pub audience: Option<String>,
}

/// Signs a token with `key` for the request's deployment, whose record must be in `rows` (the
/// tip's) and whose key `config` must list.
pub fn issue_for(
    key: &SigningKey,
    config: &Config,
    rows: &[Deployment],
    request: Request,
    now: i64,
) -> Result<Issued> {
    let Request {
        agent,
        environment,
        ttl,
        audience,
    } = request;
    if ttl.is_some_and(|t| t <= 0) {
        return Err(Error::invalid(
            "a token's lifetime must be more than zero",
            "give a lifetime such as 30d, 12h or 90m",
        ));
    }
    let Some(kid) = key.key_id(config) else {
        return Err(Error::invalid(
            "the signing key's public half is not listed in ledgit.yaml at the tip",
            "add it with `ledgit keys generate --add` (or by hand), merge, then issue",
        ));
    };
    let Some(record) = rows
        .iter()
        .find(|d| d.agent == agent && d.environment == environment)
    else {
        return Err(Error::invalid(
            format!("there is no record for {agent} in {environment} at the tip of the branch"),
            "tokens are tied to a committed record: commit and merge it first (`ledgit status` lists records)",
        ));
    };
    let options = IssueOptions {
        ttl,
        audience,
        issuer: config.issuer.clone(),
    };
    let (token, claims) = issue(key, &kid.id, record, now, &options)?;
    Ok(Issued {
        token,
        claims,
        kid: kid.id.clone(),
    })
}

/// Appends `issued` to the ledger of the work tree at `root` (created when missing), written
/// whole; `name` labels it, `issued_by` says who issued it.
pub fn record(root: &Path, issued: &Issued, name: Option<String>, issued_by: String) -> Result<()> {
    let c = &issued.claims;
    let entry = ledger::Entry {
        jti: c.jti.clone(),
        agent: c.agent.clone(),
        environment: c.environment.clone(),
        generation: c.generation.clone(),
        kid: issued.kid.clone(),
        issued_at: c.iat,
        expires_at: c.exp,
        name,
        issued_by,
        line: 0,
    };
    let path = root.join(ledger::FILE_NAME);
    let existing = crate::support::fsutil::read_optional(&path).map_err(|e| Error::io(&path, e))?;
    let text = ledger::append(existing.as_deref(), &entry).map_err(|e| {
        Error::invalid(
            format!("{}: {e}", path.display()),
            "fix the ledger (`ledgit validate` shows where); nothing was written",
        )
    })?;
    crate::support::fsutil::write_atomic(&path, text.as_bytes())
}

/// Who issues a token, for the ledger: the repository's git identity, else the login name.
pub fn issued_by(git: &git2::Repository) -> String {
    match git.signature() {
        Ok(sig) => format!(
            "{} <{}>",
            sig.name().unwrap_or("?"),
            sig.email().unwrap_or("?")
        ),
        Err(_) => std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
    }
}

/// What a revocation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The list now names the token.
    Revoked,
    /// The list named it already; nothing was written.
    Already,
}

/// Revokes token `jti` in the work tree at `root` at `now`, with an optional one-line reason.
pub fn revoke(root: &Path, jti: &str, reason: Option<String>, now: i64) -> Result<Revocation> {
    if !ledger::is_token_id(jti) {
        return Err(Error::invalid(
            format!("`{}` is not a token id", jti.escape_debug()),
            "pass the jti claim (`ledgit token inspect` shows it)",
        ));
    }
    let path = root.join(revocations::FILE_NAME);
    let existing = crate::support::fsutil::read_optional(&path).map_err(|e| Error::io(&path, e))?;
    let text = match revocations::revoke(existing.as_deref(), jti, reason, now) {
        Ok(revocations::Revoked::Text(text)) => text,
        Ok(revocations::Revoked::Already) => return Ok(Revocation::Already),
        Err(e) => return Err(revocation_refused(&path.display().to_string(), e)),
    };
    crate::support::fsutil::write_atomic(&path, text.as_bytes())?;
    Ok(Revocation::Revoked)
}

/// Why the revocation list at `path` was not edited, as an error with what to do: the one
/// wording of the command line and the page's proposals.
pub fn revocation_refused(path: &str, e: EditError) -> Error {
    match e {
        EditError::BadText(problem) => Error::invalid(
            format!("the reason: {problem}"),
            "give a reason of one line; nothing was written",
        ),
        e @ EditError::Unreadable { .. } => Error::invalid(
            format!("{path}: {e}"),
            "fix the revocation list first; nothing was written",
        ),
        e => Error::invalid(
            format!("{path}: {e}"),
            "edit revocations.yaml by hand; nothing was written",
        ),
    }
}
