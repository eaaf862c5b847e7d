//! The reconciler's state store: what has been applied to the platform, the failures waiting
//! for a retry, and a journal of every attempt. Two backends keep the same tables: an SQLite
//! file for one machine (the default, under the repository's git directory; one reconciler at a
//! time holds its lock) and PostgreSQL for several replicas (`--state postgres://...`), where
//! each environment has one leader at a time by a lease whose epoch fences every write.
//!
//! An action is recorded as applied only after its actuator succeeded, in one transaction with
//! its journal entry; an attempt is journaled as `running` before the actuator starts, so a
//! crash in between leaves a trace (`interrupted`) and the action is planned again (at-least-once
//! delivery, hence the idempotency key). A store names the repository it belongs to by the root
//! commit of the tracked chain: an SQLite file belongs to one, a PostgreSQL database keys every
//! row by it, so one database serves many repositories.

pub mod model;
pub mod pgconfig;
pub mod postgres;
pub mod sqlite;

pub use model::{
    Applied, Dump, Entry, Failure, Finished, JournalResult, Lease, Migrated, Replica, Sync,
    SyncState, Unwritten, View, backoff,
};

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::reconcile::actuator::ActionInfo;

/// Where the state is kept: `--state`, `LEDGIT_STATE`, or the default file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its `postgres://` URL (completed from libpq's `PG*` variables
    /// and `~/.pgpass` when it leaves something out).
    Postgres(String),
}

impl Location {
    /// Reads a `--state` value: a `postgres://` or `postgresql://` URL, else a path relative to
    /// `base`.
    pub fn parse(text: &str, base: &Path) -> Location {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.to_string())
        } else {
            Location::Sqlite(base.join(text))
        }
    }

    /// What to call the store in messages: the path, or the URL without its password.
    pub fn display(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(url) => pgconfig::redacted(url),
        }
    }

    /// Whether replicas share this store (leases and epochs apply).
    pub fn is_shared(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }
}

/// The default location of the SQLite store for a repository.
pub fn default_path(git_common_dir: &Path) -> PathBuf {
    git_common_dir.join("ledgit").join("reconcile.sqlite")
}

/// An open state store. The SQLite one is locked by this process; the PostgreSQL one is
/// shared, and its writes are fenced by the lease epoch they are made under.
pub enum Store {
    Sqlite(sqlite::Store),
    Postgres(Box<postgres::Store>),
}

impl Store {
    /// Opens the store at `location` for `repository` (its root commit), creating or migrating
    /// its tables. An SQLite store of another repository is refused, as is a schema newer than
    /// this binary.
    pub fn open(location: &Location, repository: &str, replica: &Replica) -> Result<Store> {
        Ok(match location {
            Location::Sqlite(path) => Store::Sqlite(sqlite::Store::open(path, repository)?),
            Location::Postgres(url) => Store::Postgres(Box::new(postgres::Store::open(
                url,
                repository,
                replica.clone(),
            )?)),
        })
    }

    /// The store's location, for messages.
    pub fn location(&self) -> String {
        match self {
            Store::Sqlite(s) => s.path.display().to_string(),
            Store::Postgres(s) => s.location(),
        }
    }

    /// How the journal names the replica writing: `host (pid N)`.
    pub fn replica_label(&self) -> String {
        match self {
            Store::Sqlite(s) => s.replica_label().to_string(),
            Store::Postgres(s) => s.replica_label(),
        }
    }

    /// The clock retries are written and read by: the database's for a shared store (every
    /// replica reads the same time, whatever its own clock says), this machine's for SQLite.
    pub fn now(&mut self) -> Result<i64> {
        match self {
            Store::Sqlite(_) => Ok(chrono::Utc::now().timestamp()),
            Store::Postgres(s) => s.now(),
        }
    }

    pub fn applied(&mut self) -> Result<Vec<Applied>> {
        match self {
            Store::Sqlite(s) => s.applied(),
            Store::Postgres(s) => s.applied(),
        }
    }

    pub fn failures(&mut self) -> Result<Vec<Failure>> {
        match self {
            Store::Sqlite(s) => s.failures(),
            Store::Postgres(s) => s.failures(),
        }
    }

    /// Marks this replica's own attempts still journaled as running in `environment` as
    /// interrupted: at the start of a pass none of them runs (a pass runs one action at a time),
    /// so they are what a lost connection left behind.
    pub fn settle(&mut self, environment: &str, epoch: Option<i64>) -> Result<()> {
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::Postgres(s) => s.settle(environment, epoch.unwrap_or(0)),
        }
    }

    /// Journals the start of an attempt under `epoch` (shared stores); returns its id.
    pub fn begin(&mut self, a: &ActionInfo, epoch: Option<i64>, now: i64) -> Result<i64> {
        match self {
            Store::Sqlite(s) => s.begin(a, now),
            Store::Postgres(s) => s.begin(a, epoch.unwrap_or(0), now),
        }
    }

    /// Records a success: the journal entry and the applied state, in one transaction.
    pub fn succeed(
        &mut self,
        f: &Finished,
        environment: &str,
        epoch: Option<i64>,
        applied: Option<&Applied>,
        remove: Option<(&str, &str)>,
    ) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.succeed(f, applied, remove),
            Store::Postgres(s) => s.succeed(f, environment, epoch.unwrap_or(0), applied, remove),
        }
    }

    /// The signed receipts of successes not yet known to be in the notes, oldest first.
    pub fn unwritten_receipts(&mut self) -> Result<Vec<Unwritten>> {
        match self {
            Store::Sqlite(s) => s.unwritten_receipts(),
            Store::Postgres(s) => s.unwritten_receipts(),
        }
    }

    /// Notes that these journal entries' receipts are in the notes.
    pub fn receipts_written(&mut self, ids: &[i64]) -> Result<()> {
        match self {
            Store::Sqlite(s) => s.receipts_written(ids),
            Store::Postgres(s) => s.receipts_written(ids),
        }
    }

    /// Records a failure and when to try again (exponential backoff, capped).
    pub fn fail(
        &mut self,
        f: &Finished,
        epoch: Option<i64>,
        agent: &str,
        environment: &str,
        error: &str,
    ) -> Result<Failure> {
        match self {
            Store::Sqlite(s) => s.fail(f, agent, environment, error),
            Store::Postgres(s) => s.fail(f, epoch.unwrap_or(0), agent, environment, error),
        }
    }
}

/// Reads a store without locking it; `None` when there is none. A store of another
/// repository than `repository` (its root commit) is refused.
pub fn view(location: &Location, repository: &str) -> Result<Option<View>> {
    match location {
        Location::Sqlite(path) => sqlite::view(path, repository),
        Location::Postgres(url) => postgres::view(url, repository).map(Some),
    }
}

/// The newest journal entries of `repository`, newest last.
pub fn journal(location: &Location, repository: &str, limit: usize) -> Result<Vec<Entry>> {
    match location {
        Location::Sqlite(path) => sqlite::journal(path, limit),
        Location::Postgres(url) => postgres::journal(url, repository, limit),
    }
}

/// The leases of `repository`'s environments (none in an SQLite store: one process holds it).
pub fn leases(location: &Location, repository: &str) -> Result<Vec<Lease>> {
    match location {
        Location::Sqlite(_) => Ok(Vec::new()),
        Location::Postgres(url) => postgres::leases(url, repository),
    }
}

/// Copies an SQLite store (applied state, failures and the whole journal) into a PostgreSQL
/// one, in one transaction: a copy is complete or absent. Refuses a store a reconciler holds,
/// and a target that already holds state for the repository. Returns how many journal entries were copied.
pub fn migrate(from: &Path, to: &str, repository: Option<&str>) -> Result<Migrated> {
    // Held until the copy is in: a reconciler running on the store now would write what the
    // copy misses (and run its actions again under the new store).
    let _lock = sqlite::lock_existing(from)?;
    let dump = sqlite::dump(from)?;
    let repository = match (repository, dump.repository.as_deref()) {
        (Some(r), _) | (None, Some(r)) => r.to_string(),
        (None, None) => {
            return Err(crate::Error::invalid(
                format!("{} names no repository", from.display()),
                "run the reconciler on it once, or pass the repository (its root commit)",
            ));
        }
    };
    postgres::load(to, &repository, &dump)?;
    Ok(Migrated {
        repository,
        applied: dump.applied.len(),
        failures: dump.failures.len(),
        journal: dump.journal.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!((1..=4).map(backoff).collect::<Vec<_>>(), [1, 2, 4, 8]);
        assert_eq!(backoff(30), 300);
    }

    #[test]
    fn a_state_value_is_a_url_or_a_path() {
        let base = Path::new("/repo");
        assert_eq!(
            Location::parse("postgres://u@db/ledgit", base),
            Location::Postgres("postgres://u@db/ledgit".into())
        );
        assert_eq!(
            Location::parse("postgresql://db", base),
            Location::Postgres("postgresql://db".into())
        );
        assert_eq!(
            Location::parse("state.sqlite", base),
            Location::Sqlite("/repo/state.sqlite".into())
        );
        assert!(!Location::parse("x", base).is_shared());
    }
}
