//! Promotion and `set` in the work tree as one workflow: plan the edit of each target record,
//! judge it by the policy against the history, write the files whole, and commit them on the
//! branch asked for. The command line renders what [`Edited`] says; any other front end (a bot
//! that opens pull requests) calls the same function.

use std::path::Path;

use crate::error::{Error, Result};
use crate::finding::{self, Finding};
use crate::git::history::History;
use crate::git::repo::Repo;
use crate::model::config::Config;
use crate::model::validate;
use crate::review::plan::{self, Plan, Planned, Target};
use crate::review::policy::Change;

/// How to carry the edit out.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Write even what the policy refuses (promote_from, soak, downgrade).
    pub force: bool,
    /// First create and switch to this branch.
    pub branch: Option<String>,
    /// Commit the written files.
    pub commit: bool,
    /// The commit's message (default: one listing what changed).
    pub message: Option<String>,
}

/// What the edit did.
#[derive(Debug)]
pub enum Edited {
    /// A target record does not read: nothing was written.
    Unreadable(Vec<Finding>),
    /// Every version is already what was asked: nothing to write.
    Unchanged,
    /// The policy refuses the change (and `force` was not given): nothing was written.
    Refused {
        changes: Vec<Change>,
        findings: Vec<Finding>,
    },
    /// The files were written (and committed when asked).
    Written {
        /// The branch created and switched to first.
        branch: Option<String>,
        /// The commit made, with its message.
        commit: Option<(git2::Oid, String)>,
        changes: Vec<Change>,
        /// The warnings, and with `force` the errors it overrode.
        findings: Vec<Finding>,
    },
}

/// The work tree an edit writes to: its repository, its folder, its config and its records as
/// `validate` reads them.
pub struct WorkTree<'a> {
    pub repo: &'a Repo,
    pub root: &'a Path,
    pub config: &'a Config,
    pub report: &'a validate::Report,
}

/// Edits the records of the work tree for `targets` at time `now`. `history` is read only when
/// there is something to change (the policy needs it).
pub fn edit(
    tree: &WorkTree,
    targets: &[Target],
    history: &mut dyn FnMut() -> Result<History>,
    options: &Options,
    now: i64,
) -> Result<Edited> {
    let WorkTree {
        repo,
        root,
        config,
        report,
    } = *tree;
    let read = |path: &str| -> Result<String> {
        std::fs::read_to_string(root.join(path)).map_err(|e| Error::io(root.join(path), e))
    };
    let draft = match plan::plan(config, report, targets, &read)? {
        Planned::Unreadable(findings) => return Ok(Edited::Unreadable(findings)),
        Planned::Unchanged => return Ok(Edited::Unchanged),
        Planned::Ready(draft) => draft,
    };
    let Plan {
        writes,
        changes,
        findings,
    } = draft.judge(config, &history()?, now);
    if finding::has_errors(&findings) && !options.force {
        return Ok(Edited::Refused { changes, findings });
    }
    if let Some(branch) = &options.branch {
        repo.switch_to_new_branch(branch)?;
    }
    let files: Vec<(std::path::PathBuf, &[u8])> = writes
        .iter()
        .map(|(path, text)| (root.join(path), text.as_bytes()))
        .collect();
    crate::support::fsutil::write_many_nosync(&files)?;
    let findings = findings
        .into_iter()
        .filter(|f| f.severity == finding::Severity::Warning || options.force)
        .collect();
    let commit = if options.commit {
        let message = options
            .message
            .clone()
            .unwrap_or_else(|| plan::commit_message(&changes));
        let id = repo.commit_paths(writes.iter().map(|(p, _)| p.as_str()), &message)?;
        Some((id, message))
    } else {
        None
    };
    Ok(Edited::Written {
        branch: options.branch.clone(),
        commit,
        changes,
        findings,
    })
}
