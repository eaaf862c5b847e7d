//! Reading one commit of the tracked branch as the front ends need it: its config, its history
//! through the index, its deployments (from the index's snapshot when there is one), and the
//! token state (keys, records and revocations, all of the same commit). The command line and
//! the server both load through here, so that they read the same things the same way; the
//! caller resolves the revision once and passes the commit.

use std::collections::BTreeSet;

use git2::Oid;

use crate::error::{Error, Result};
use crate::git::history::{self, Focus, History, Progress};
use crate::git::repo::{Repo, short};
use crate::model::Deployment;
use crate::model::config::Config;
use crate::model::revocations;
use crate::token::Verifier;

/// A history with the config of the commit it was loaded for.
pub struct Loaded {
    /// The commit, `None` on an unborn branch (then the config is the work tree's).
    pub tip: Option<Oid>,
    pub config: Config,
    pub history: History,
}

/// Loads the history of `tip` through the index (extending and saving it). An unborn branch
/// (`tip` `None`) has an empty history.
pub fn history(
    repo: &Repo,
    tip: Option<Oid>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Loaded> {
    focused(repo, tip, None, progress)
}

/// [`history`]; with `focus`, a repository without an index gets a walk that follows only
/// those agents and leaves the index alone (see [`history::build_focused`]), while one with an
/// index uses it.
pub fn focused(
    repo: &Repo,
    tip: Option<Oid>,
    focus: Option<&Focus>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Loaded> {
    let Some(commit) = tip else {
        return Ok(Loaded {
            tip,
            config: repo.config()?,
            history: History::default(),
        });
    };
    let config = repo.config_at(commit)?;
    let folder = &config.deployments;
    let history = match focus {
        None => crate::git::index::history(&repo.git, commit, folder, progress)?.0,
        Some(agents) => match crate::git::index::indexed(&repo.git, commit, folder, progress)? {
            Some((history, _)) => history,
            None => history::build_focused(&repo.git, commit, folder, agents, progress)?,
        },
    };
    Ok(Loaded {
        tip,
        config,
        history,
    })
}

/// The deployments at one commit, with its config and the root of its chain.
#[derive(Debug, Clone)]
pub struct Current {
    pub config: Config,
    pub rows: Vec<Deployment>,
    /// The commit the rows are at, `None` without commits.
    pub tip: Option<Oid>,
    /// The chain's first commit, `None` without commits.
    pub root: Option<Oid>,
}

/// The deployments at `tip`: from the index's snapshot when it is up to date (no history to
/// decode), else through the history.
pub fn current(
    repo: &Repo,
    tip: Option<Oid>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Current> {
    let Some(commit) = tip else {
        return Ok(Current {
            config: repo.config()?,
            rows: Vec::new(),
            tip: None,
            root: None,
        });
    };
    let config = repo.config_at(commit)?;
    if let Some(snap) = crate::git::index::tip_snapshot(&repo.git, commit, &config.deployments) {
        return Ok(Current {
            config,
            rows: snap.rows,
            tip,
            root: Some(snap.root),
        });
    }
    let loaded = history(repo, tip, progress)?;
    Ok(Current {
        rows: loaded.history.current(),
        root: loaded.history.chain.first().copied(),
        tip,
        config: loaded.config,
    })
}

/// The revoked token ids listed in `revocations.yaml` at `commit` (none without the file).
pub fn revocations(repo: &Repo, commit: Oid) -> Result<BTreeSet<String>> {
    Ok(revocation_list(repo, commit)?
        .into_iter()
        .map(|r| r.jti)
        .collect())
}

/// The revocation list's entries at `commit` (none without the file); a list that does not
/// read whole is an error, never half a list.
pub fn revocation_list(repo: &Repo, commit: Oid) -> Result<Vec<revocations::Revocation>> {
    let tree = repo.tree_at(commit)?;
    let Some(entry) = tree.get_name(revocations::FILE_NAME) else {
        return Ok(Vec::new());
    };
    let blob = repo
        .git
        .find_blob(entry.id())
        .map_err(|e| Error::git(format!("reading {}", revocations::FILE_NAME), e))?;
    let text = std::str::from_utf8(blob.content()).map_err(|_| Error::NotText {
        what: format!("{} at {}", revocations::FILE_NAME, short(commit)),
    })?;
    revocations::parse(text).map_err(|e| {
        Error::invalid(
            format!("{} at {}: {e}", revocations::FILE_NAME, short(commit)),
            "fix the revocation list: apiVersion: ledgit/v1, kind: Revocations, revoked: [- jti: ...]",
        )
    })
}

/// The token ledger at `commit` (an empty one without the file). Its problems are findings
/// of `validate`; here only the whole entries count.
pub fn ledger(repo: &Repo, commit: Oid) -> Result<crate::model::ledger::Ledger> {
    let tree = repo.tree_at(commit)?;
    let Some(entry) = tree.get_name(crate::model::ledger::FILE_NAME) else {
        return Ok(crate::model::ledger::Ledger::default());
    };
    let blob = repo
        .git
        .find_blob(entry.id())
        .map_err(|e| Error::git(format!("reading {}", crate::model::ledger::FILE_NAME), e))?;
    let text = String::from_utf8_lossy(blob.content());
    Ok(crate::model::ledger::read(
        crate::model::ledger::FILE_NAME,
        &text,
    ))
}

/// Everything a token verification reads, from one commit: the keys of its config, its
/// records and its revocation list.
pub fn verifier(
    repo: &Repo,
    tip: Option<Oid>,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Current, Verifier)> {
    let current = current(repo, tip, progress)?;
    let revoked = match tip {
        Some(commit) => revocations(repo, commit)?,
        None => BTreeSet::new(),
    };
    let verifier = Verifier::new(&current.config, &current.rows, revoked);
    Ok((current, verifier))
}
