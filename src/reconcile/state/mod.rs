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

pub mod pgconfig;
pub mod postgres;
pub mod sqlite;

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

/// Who writes: this process on this host. `id` is unique to the process's lifetime (a
/// restarted replica with the same process id is another holder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub host: String,
    pub pid: u32,
    pub id: String,
}

impl Replica {
    /// This process.
    pub fn this_process() -> Replica {
        let host = hostname();
        let pid = std::process::id();
        let mut nonce = [0u8; 6];
        // A replica without randomness still has a distinct start time.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).is_err() {
            nonce.copy_from_slice(&chrono::Utc::now().timestamp_micros().to_le_bytes()[..6]);
        }
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        Replica {
            id: format!("{host}/{pid}/{nonce}"),
            host,
            pid,
        }
    }

    /// How the journal and the lease table name it: `host (pid N)`.
    pub fn label(&self) -> String {
        format!("{} (pid {})", self.host, self.pid)
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length, which is what gethostname is told.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if rc == 0 && !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

/// What the platform runs for a pair, according to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub agent: String,
    pub environment: String,
    pub version: String,
    pub generation: String,
    pub commit: String,
    pub applied_at: i64,
}

/// The last outcome for a pair that is not (yet) applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub agent: String,
    pub environment: String,
    pub error: String,
    pub attempts: u32,
    pub next_attempt: i64,
}

/// How an attempt ended, for the journal.
pub struct Finished<'a> {
    /// The journal entry of the attempt (from [`Store::begin`]).
    pub id: i64,
    pub output: &'a str,
    pub at: i64,
    pub duration_ms: i64,
}

/// One journal entry: one attempt of one action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub id: i64,
    pub started_at: String,
    /// The action as the actuator got it.
    #[serde(flatten)]
    pub action: ActionInfo,
    pub result: JournalResult,
    pub duration_ms: Option<i64>,
    pub output: String,
    /// The replica that ran it: `host (pid N)`.
    pub replica: String,
    /// The lease epoch it ran under (shared stores only).
    pub epoch: Option<i64>,
}

/// A lease on one environment of one repository (shared stores only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    pub environment: String,
    /// The holder: `host (pid N)`.
    pub holder: String,
    /// Incremented at every change of holder: the fencing token.
    pub epoch: i64,
    pub acquired_at: String,
    pub expires_at: String,
    /// Whether the lease is still live (not expired by the database's clock).
    pub live: bool,
}

/// Seconds to wait before attempt `n + 1` after `n` failures: 1, 2, 4, ... capped at 5 minutes.
pub fn backoff(failures: u32) -> i64 {
    1i64.checked_shl(failures.saturating_sub(1).min(20))
        .unwrap_or(i64::MAX)
        .min(300)
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

/// How a journaled attempt ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalResult {
    /// Started and not finished (a reconciler is applying it now).
    Running,
    Applied,
    Failed,
    /// The reconciler died while it ran (found at the next start).
    Interrupted,
}

impl JournalResult {
    pub fn as_str(self) -> &'static str {
        match self {
            JournalResult::Running => "running",
            JournalResult::Applied => "applied",
            JournalResult::Failed => "failed",
            JournalResult::Interrupted => "interrupted",
        }
    }

    pub(crate) fn from_db(text: &str) -> Option<JournalResult> {
        [
            JournalResult::Running,
            JournalResult::Applied,
            JournalResult::Failed,
            JournalResult::Interrupted,
        ]
        .into_iter()
        .find(|r| r.as_str() == text)
    }
}

impl std::fmt::Display for JournalResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the platform runs what a record declares, as far as the reconciler's store knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum SyncState {
    /// The record's version and generation were applied.
    Synced,
    /// Not applied (yet), and no attempt failed or runs.
    OutOfSync,
    /// The last attempt failed.
    Failed,
    /// An attempt is running.
    Pending,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "Synced",
            SyncState::OutOfSync => "OutOfSync",
            SyncState::Failed => "Failed",
            SyncState::Pending => "Pending",
        }
    }
}

impl std::fmt::Display for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sync state of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sync {
    /// The version the reconciler applied, if any.
    pub applied: Option<String>,
    pub state: SyncState,
    /// The last failure's message while the record is not synced.
    pub error: Option<String>,
}

/// What `status` and the pages show from a store: applied versions, failures, attempts in
/// flight, and (shared stores) the leases.
#[derive(Debug, Default)]
pub struct View {
    pub applied: Vec<Applied>,
    pub failures: Vec<Failure>,
    /// Pairs with an attempt journaled as running.
    pub running: Vec<(String, String)>,
    pub leases: Vec<Lease>,
}

impl View {
    /// The sync state of each of `rows`, in order.
    pub fn sync_states(&self, rows: &[crate::model::Deployment]) -> Vec<Sync> {
        use std::collections::{HashMap, HashSet};
        let applied: HashMap<(&str, &str), &Applied> = self
            .applied
            .iter()
            .map(|a| ((a.agent.as_str(), a.environment.as_str()), a))
            .collect();
        let failures: HashMap<(&str, &str), &Failure> = self
            .failures
            .iter()
            .map(|f| ((f.agent.as_str(), f.environment.as_str()), f))
            .collect();
        let running: HashSet<(&str, &str)> = self
            .running
            .iter()
            .map(|(a, e)| (a.as_str(), e.as_str()))
            .collect();
        rows.iter()
            .map(|d| {
                let key = (d.agent.as_str(), d.environment.as_str());
                let applied = applied.get(&key);
                let failure = failures.get(&key);
                let synced =
                    applied.is_some_and(|a| a.version == d.version && a.generation == d.generation);
                let state = if synced {
                    SyncState::Synced
                } else if running.contains(&key) {
                    SyncState::Pending
                } else if failure.is_some() {
                    SyncState::Failed
                } else {
                    SyncState::OutOfSync
                };
                Sync {
                    applied: applied.map(|a| a.version.clone()),
                    state,
                    error: failure.filter(|_| !synced).map(|f| f.error.clone()),
                }
            })
            .collect()
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
/// one, in one transaction: a copy is complete or absent. Refuses a target that already holds
/// state for the repository. Returns how many journal entries were copied.
pub fn migrate(from: &Path, to: &str, repository: Option<&str>) -> Result<Migrated> {
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

/// What [`migrate`] copied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Migrated {
    pub repository: String,
    pub applied: usize,
    pub failures: usize,
    pub journal: usize,
}

/// Everything an SQLite store holds, for [`migrate`].
pub struct Dump {
    pub repository: Option<String>,
    pub applied: Vec<Applied>,
    pub failures: Vec<Failure>,
    /// Oldest first, each with its start and finish times in seconds.
    pub journal: Vec<(Entry, i64, Option<i64>)>,
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

    #[test]
    fn replicas_are_distinct_per_process_start() {
        let (a, b) = (Replica::this_process(), Replica::this_process());
        assert_ne!(a.id, b.id);
        assert_eq!(a.pid, std::process::id());
        assert!(a.label().contains(&format!("pid {}", a.pid)));
    }
}
