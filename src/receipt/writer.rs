//! The reconciler's side of receipts: signing one per applied action and getting it into the
//! notes. The signed line is stored with the success in the journal (one transaction), then
//! added to the applied commit's note; lines are gathered and written at most about once a
//! second while a pass runs, and all at its end (then pushed, with `--push-receipts`). Only
//! then is the journal told they are written. A crash anywhere in between leaves the line in
//! the journal, and the next start writes it: adding a line a note already holds adds nothing,
//! so no action is without its receipt and none has two.

use std::path::Path;
use std::time::{Duration, Instant};

use git2::{Oid, Repository};

use crate::error::{Error, Result};
use crate::git::repo::Repo;
use crate::model::config::Config;
use crate::receipt::envelope::Envelope;
use crate::receipt::notes;
use crate::receipt::statement::{Apply, Statement};
use crate::token::SigningKey;

/// How long lines may wait before they are written while a pass runs.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Signs receipts with a reconciler's key and writes them to a repository's notes.
pub struct Writer {
    key: SigningKey,
    repo: Repo,
    /// The reconciler's id: the entry of `reconcilers:` that lists this key at the tip.
    reconciler: Option<String>,
    /// `--push-receipts REMOTE`.
    push: Option<String>,
    /// Lines signed and journaled, not yet in the notes: (journal entry, commit, line).
    staged: Vec<(i64, Oid, String)>,
    /// Journal entries whose lines are in the notes, not yet pushed or marked written.
    written: Vec<i64>,
    last_flush: Instant,
}

/// How a [`Writer::finish`] ended: how many lines went into the notes, and the journal
/// entries now known to be written.
#[derive(Debug, Default)]
pub struct Finished {
    pub added: usize,
    pub ids: Vec<i64>,
}

impl Writer {
    /// A writer for the repository at `git_dir`, signing with `key`, pushing to `push`.
    pub fn new(git_dir: &Path, key: SigningKey, push: Option<String>) -> Result<Writer> {
        Ok(Writer {
            key,
            repo: Repo::open(git_dir)?,
            reconciler: None,
            push,
            staged: Vec::new(),
            written: Vec::new(),
            last_flush: Instant::now(),
        })
    }

    /// Finds which reconciler of `config` (the tip's) this key is, and remembers it for the
    /// receipts to come; none when `reconcilers:` does not list it (its receipts will not
    /// verify, and `audit` will say so).
    pub fn identify(&mut self, config: &Config) -> Option<&str> {
        let public = self.key.public();
        self.reconciler = config
            .reconcilers
            .iter()
            .find(|r| r.key.bytes == public)
            .map(|r| r.id().to_string());
        self.reconciler.as_deref()
    }

    /// The reconciler's id, as [`Writer::identify`] found it.
    pub fn reconciler(&self) -> Option<&str> {
        self.reconciler.as_deref()
    }

    /// The public key, base64url, as `reconcilers:` lists it.
    pub fn public_key(&self) -> String {
        self.key.public_encoded()
    }

    /// Signs the receipt of `apply` (whose `reconciler` this fills in) on the record at `path`:
    /// the record's content at the applied commit, or for a removal, none. Returns the note's
    /// line.
    pub fn sign(&self, mut apply: Apply, path: &str) -> Result<String> {
        let id = self.reconciler.clone().unwrap_or_default();
        apply.reconciler = id.clone();
        let commit = Oid::from_str(&apply.commit)
            .map_err(|e| Error::git("reading the applied commit", e))?;
        let statement = if apply.action == "remove" {
            Statement::new(apply, path, None)
        } else {
            let git = &self.repo.git;
            let entry = self
                .repo
                .tree_at(commit)?
                .get_path(Path::new(path))
                .map_err(|e| Error::git(format!("finding {path} at the applied commit"), e))?;
            let blob = git
                .find_blob(entry.id())
                .map_err(|e| Error::git(format!("reading {path}"), e))?;
            Statement::new(apply, path, Some((blob.content(), entry.id())))
        };
        Ok(Envelope::sign(&statement, &self.key, &id).to_line())
    }

    /// Takes a journaled line to write.
    pub fn stage(&mut self, journal_id: i64, commit: &str, line: String) {
        if let Ok(commit) = Oid::from_str(commit) {
            self.staged.push((journal_id, commit, line));
        }
    }

    /// Writes what is staged if the last write is a second old.
    pub fn flush_due(&mut self) -> Result<usize> {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush()
        } else {
            Ok(0)
        }
    }

    /// Writes what is staged into the notes, one note update per commit. Returns how many lines
    /// were new to the notes.
    pub fn flush(&mut self) -> Result<usize> {
        self.last_flush = Instant::now();
        let mut staged = std::mem::take(&mut self.staged);
        staged.sort_by_key(|(id, commit, _)| (*commit, *id));
        let mut added = 0;
        let mut start = 0;
        while start < staged.len() {
            let commit = staged[start].1;
            let end = start + staged[start..].partition_point(|s| s.1 == commit);
            let lines: Vec<String> = staged[start..end].iter().map(|s| s.2.clone()).collect();
            match notes::add(&self.repo.git, commit, &lines) {
                Ok(n) => {
                    added += n;
                    self.written.extend(staged[start..end].iter().map(|s| s.0));
                }
                Err(e) => {
                    // Keep what was not written for the next attempt.
                    self.staged.extend(staged.drain(start..));
                    return Err(e);
                }
            }
            start = end;
        }
        Ok(added)
    }

    /// Writes everything staged, pushes the notes when asked to, and returns the journal
    /// entries now written (for [`crate::reconcile`]'s store to mark).
    pub fn finish(&mut self) -> Result<Finished> {
        let added = self.flush()?;
        if let Some(remote) = &self.push
            && !self.written.is_empty()
        {
            notes::push(&self.repo, remote)?;
        }
        Ok(Finished {
            added,
            ids: std::mem::take(&mut self.written),
        })
    }

    /// Stages journaled receipts left unwritten (a crash, a failed push) whose commit this
    /// repository has; returns how many.
    pub fn recover(&mut self, unwritten: Vec<(i64, String, String)>) -> usize {
        let mut n = 0;
        for (id, commit, line) in unwritten {
            let git: &Repository = &self.repo.git;
            let known = Oid::from_str(&commit).is_ok_and(|c| git.find_commit(c).is_ok());
            if known {
                self.stage(id, &commit, line);
                n += 1;
            }
        }
        n
    }
}
