//! What the state store holds, whichever backend keeps it: applied versions, failures waiting
//! for a retry, journal entries, leases, the replica that writes, and the sync state of a record
//! derived from them.

use crate::reconcile::actuator::ActionInfo;

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
        let nonce = crate::support::random::id::<6>();
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
    /// The replica that applied it (`host (pid N)`); the store fills it in when it records.
    pub replica: String,
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

impl Failure {
    /// When the last attempt failed: the store keeps the next attempt's time, which is that
    /// time plus the backoff after `attempts` failures.
    pub fn failed_at(&self) -> i64 {
        self.next_attempt - backoff(self.attempts)
    }
}

/// How an attempt ended, for the journal.
pub struct Finished<'a> {
    /// The journal entry of the attempt (from [`Store::begin`]).
    pub id: i64,
    pub output: &'a str,
    pub at: i64,
    pub duration_ms: i64,
    /// A success's signed receipt (one line of a note), kept with it until it is in the notes.
    pub receipt: Option<&'a str>,
}

/// A success whose receipt is not yet known to be in the notes: the journal entry, the commit
/// it applied, its environment, and the receipt's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwritten {
    pub id: i64,
    pub commit: String,
    pub environment: String,
    pub receipt: String,
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

/// The sync state of one record: what runs beside what is declared.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sync {
    /// The version the reconciler applied, if any.
    #[serde(rename = "applied_version")]
    pub applied: Option<String>,
    #[serde(rename = "sync")]
    pub state: SyncState,
    /// The last failure's message while the record is not synced.
    #[serde(rename = "last_error")]
    pub error: Option<String>,
    /// Which replica applied the version (`host (pid N)`), and when (RFC 3339).
    pub applied_by: Option<String>,
    pub applied_at: Option<String>,
    /// While it is not synced and an attempt failed: when the last one failed (RFC 3339), how
    /// many failed in a row, and when the next is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
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
                let failure = failure.filter(|_| !synced);
                Sync {
                    applied: applied.map(|a| a.version.clone()),
                    state,
                    error: failure.map(|f| f.error.clone()),
                    error_at: failure.map(|f| crate::support::when::rfc3339(f.failed_at())),
                    attempts: failure.map(|f| f.attempts),
                    next_attempt: failure.map(|f| crate::support::when::rfc3339(f.next_attempt)),
                    applied_by: applied.map(|a| a.replica.clone()).filter(|r| !r.is_empty()),
                    applied_at: applied.map(|a| crate::support::when::rfc3339(a.applied_at)),
                }
            })
            .collect()
    }
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
    /// Signed receipts not yet in the notes, by journal entry id: they move with the journal.
    pub unwritten: Vec<Unwritten>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_are_distinct_per_process_start() {
        let (a, b) = (Replica::this_process(), Replica::this_process());
        assert_ne!(a.id, b.id);
        assert_eq!(a.pid, std::process::id());
        assert!(a.label().contains(&format!("pid {}", a.pid)));
    }
}
