//! The SQLite backend of the state store: one file for one machine, under the repository's git
//! directory by default. One reconciler at a time holds the file's lock; a store made for
//! another repository is refused. The schema is versioned in `PRAGMA user_version`; a file
//! written by a newer ledgit is refused rather than misread.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::reconcile::actuator::ActionInfo;
use crate::reconcile::state::model::{
    Applied, Dump, Entry, Failure, Finished, JournalResult, Unwritten, View, backoff,
};

/// An open, locked state store.
pub struct Store {
    db: Connection,
    _lock: File,
    pub path: PathBuf,
    /// How the journal names this process.
    replica: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS applied (
  agent TEXT NOT NULL, environment TEXT NOT NULL, version TEXT NOT NULL,
  generation TEXT NOT NULL, commit_id TEXT NOT NULL, applied_at INTEGER NOT NULL,
  PRIMARY KEY (agent, environment));
CREATE TABLE IF NOT EXISTS failures (
  agent TEXT NOT NULL, environment TEXT NOT NULL, error TEXT NOT NULL,
  attempts INTEGER NOT NULL, next_attempt INTEGER NOT NULL,
  PRIMARY KEY (agent, environment));
CREATE TABLE IF NOT EXISTS journal (
  id INTEGER PRIMARY KEY AUTOINCREMENT, started_at INTEGER NOT NULL, finished_at INTEGER,
  action TEXT NOT NULL, agent TEXT NOT NULL, environment TEXT NOT NULL,
  version TEXT, previous_version TEXT, commit_id TEXT NOT NULL, generation TEXT NOT NULL,
  idempotency_key TEXT NOT NULL, result TEXT NOT NULL, duration_ms INTEGER,
  output TEXT NOT NULL DEFAULT '', pid INTEGER NOT NULL);
";

/// The schema version this binary writes. 1: the tables above; 2: the journal names the
/// replica (`host (pid N)`) and the lease epoch of each attempt; 3: the journal keeps each
/// success's signed receipt until it is in the notes (`receipt`, `receipt_written`).
pub const SCHEMA_VERSION: i64 = 3;

/// Whether `table` has `column` (a store made by an older ledgit may lack it).
fn has_column(db: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    db.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists([table, column])
}

/// Brings a store's tables to [`SCHEMA_VERSION`], refusing a newer one.
fn migrate(db: &Connection, path: &Path) -> Result<()> {
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err(path))?;
    if version > SCHEMA_VERSION {
        return Err(Error::StoreRefused {
            location: path.display().to_string(),
            message: format!(
                "its schema is version {version}, newer than this ledgit knows ({SCHEMA_VERSION})"
            ),
            hint: "upgrade ledgit, or pass another --state".into(),
        });
    }
    // Creating is idempotent: a store made by an older ledgit may lack a table.
    db.execute_batch(SCHEMA).map_err(db_err(path))?;
    if version < 2 && !has_column(db, "journal", "replica").map_err(db_err(path))? {
        db.execute_batch(
            "ALTER TABLE journal ADD COLUMN replica TEXT NOT NULL DEFAULT '';
                 ALTER TABLE journal ADD COLUMN epoch INTEGER;
                 ALTER TABLE applied ADD COLUMN replica TEXT NOT NULL DEFAULT '';",
        )
        .map_err(db_err(path))?;
    }
    if version < 3 && !has_column(db, "journal", "receipt").map_err(db_err(path))? {
        db.execute_batch(
            "ALTER TABLE journal ADD COLUMN receipt TEXT;
                 ALTER TABLE journal ADD COLUMN receipt_written INTEGER NOT NULL DEFAULT 0;
                 CREATE INDEX IF NOT EXISTS journal_receipts_unwritten ON journal (id)
                   WHERE receipt IS NOT NULL AND receipt_written = 0;",
        )
        .map_err(db_err(path))?;
    }
    db.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .map_err(db_err(path))
}

/// Whether the store names `repository` (its root commit) as its own: `false` when it names
/// none yet, an error when it names another.
fn owned_by(db: &Connection, path: &Path, repository: &str) -> Result<bool> {
    let known: Option<String> = db
        .query_row("SELECT value FROM meta WHERE key = 'repository'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db_err(path))?;
    match known {
        Some(k) if k != repository => Err(Error::invalid(
            format!(
                "the state store {} belongs to another repository (root commit {k})",
                path.display()
            ),
            "pass --state with a store of this repository, or a new path",
        )),
        known => Ok(known.is_some()),
    }
}

/// Records `repository` as the store's owner.
fn claim(db: &Connection, path: &Path, repository: &str) -> Result<()> {
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('repository', ?1)",
        [repository],
    )
    .map_err(db_err(path))?;
    Ok(())
}

/// How long a connection waits for another one's write lock before giving up.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Creates a new store: the schema and the repository's identity are written to a temporary
/// file beside `path`, which is then renamed into place, so that a reader (`status`,
/// `journal`) never sees a store without its tables.
/// Whether `db` is a ledgit store: it has ledgit's `meta` and `journal` tables. SQLite takes
/// an empty file for an empty database, so the file's size says nothing.
fn is_store(db: &Connection, path: &Path) -> Result<bool> {
    let tables: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('meta', 'journal')",
            [],
            |r| r.get(0),
        )
        .map_err(db_err(path))?;
    Ok(tables == 2)
}

/// Holds the lock of an existing store at `path` (as a reconciler does) until dropped: a copy
/// made meanwhile cannot miss what a reconciler writes.
pub fn lock_existing(path: &Path) -> Result<File> {
    if !path.exists() {
        return Err(Error::invalid(
            format!("there is no state store at {}", path.display()),
            "pass the path of an existing SQLite store with --from",
        ));
    }
    lock(path)
}

fn create(path: &Path, repository: &str) -> Result<()> {
    let tmp = crate::support::fsutil::temp_beside(path)?;
    {
        let db = Connection::open(tmp.path()).map_err(db_err(tmp.path()))?;
        migrate(&db, tmp.path())?;
        claim(&db, tmp.path(), repository)?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Store {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Opens (creating if needed) and locks the store. `repository` identifies the repository
    /// (its root commit); a store that names another one is refused.
    pub fn open(path: &Path, repository: &str) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let lock = lock(path)?;
        // A store is created only where no file exists: an empty file, or another program's,
        // is refused, never taken for a new store (that would run every action again and
        // lose the journal it should have held).
        let existed = path.exists();
        if !existed {
            create(path, repository)?;
        }
        let db = Connection::open(path).map_err(db_err(path))?;
        db.busy_timeout(BUSY_TIMEOUT).map_err(db_err(path))?;
        if existed && !is_store(&db, path)? {
            return Err(Error::StoreRefused {
                location: path.display().to_string(),
                message: "the file is not a ledgit state store (it is empty, or another program's)".into(),
                hint: "nothing was run: restore the store from a backup, move the file aside to start a new store (every pair is applied again), or pass another --state".into(),
            });
        }
        db.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")
            .map_err(db_err(path))?;
        migrate(&db, path)?;
        if !owned_by(&db, path, repository)? {
            claim(&db, path, repository)?;
        }
        let store = Store {
            db,
            _lock: lock,
            path: path.to_path_buf(),
            replica: crate::reconcile::state::model::Replica::this_process().label(),
        };
        store.mark_interrupted()?;
        Ok(store)
    }

    /// Opens a store for reading only (status, journal), without taking the lock.
    pub fn open_read_only(path: &Path) -> Result<Option<Connection>> {
        if !path.exists() {
            return Ok(None);
        }
        let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(db_err(path))?;
        db.busy_timeout(BUSY_TIMEOUT).map_err(db_err(path))?;
        Ok(Some(db))
    }

    /// Attempts left `running` by a reconciler that died are `interrupted`.
    fn mark_interrupted(&self) -> Result<()> {
        self.db
            .execute(
                "UPDATE journal SET result = 'interrupted' WHERE result = 'running'",
                [],
            )
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    /// How the journal names this process.
    pub fn replica_label(&self) -> &str {
        &self.replica
    }

    pub fn applied(&self) -> Result<Vec<Applied>> {
        read_applied(&self.db).map_err(db_err(&self.path))
    }

    pub fn failures(&self) -> Result<Vec<Failure>> {
        read_failures(&self.db).map_err(db_err(&self.path))
    }

    /// Journals the start of an attempt; returns its id.
    pub fn begin(&self, a: &ActionInfo, now: i64) -> Result<i64> {
        self.db
            .execute(
                "INSERT INTO journal (started_at, action, agent, environment, version, previous_version, commit_id, generation, idempotency_key, result, pid, replica)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'running', ?10, ?11)",
                params![
                    now,
                    a.action,
                    a.agent,
                    a.environment,
                    a.version,
                    a.previous_version,
                    a.commit,
                    a.generation,
                    a.idempotency_key,
                    std::process::id(),
                    self.replica,
                ],
            )
            .map_err(db_err(&self.path))?;
        Ok(self.db.last_insert_rowid())
    }

    /// Records a success: the journal entry and the applied state, in one transaction.
    pub fn succeed(
        &mut self,
        f: &Finished,
        applied: Option<&Applied>,
        remove: Option<(&str, &str)>,
    ) -> Result<()> {
        let (id, output, now, duration_ms) = (f.id, f.output, f.at, f.duration_ms);
        let path = self.path.clone();
        let tx = self.db.transaction().map_err(db_err(&path))?;
        tx.execute(
            "UPDATE journal SET result = 'applied', finished_at = ?2, duration_ms = ?3, output = ?4, receipt = ?5 WHERE id = ?1",
            params![id, now, duration_ms, output, f.receipt],
        )
        .map_err(db_err(&path))?;
        if let Some(a) = applied {
            tx.execute(
                "INSERT INTO applied (agent, environment, version, generation, commit_id, applied_at, replica) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (agent, environment) DO UPDATE SET version = ?3, generation = ?4, commit_id = ?5, applied_at = ?6, replica = ?7",
                params![a.agent, a.environment, a.version, a.generation, a.commit, a.applied_at, self.replica],
            )
            .map_err(db_err(&path))?;
            tx.execute(
                "DELETE FROM failures WHERE agent = ?1 AND environment = ?2",
                params![a.agent, a.environment],
            )
            .map_err(db_err(&path))?;
        }
        if let Some((agent, env)) = remove {
            tx.execute(
                "DELETE FROM applied WHERE agent = ?1 AND environment = ?2",
                params![agent, env],
            )
            .map_err(db_err(&path))?;
            tx.execute(
                "DELETE FROM failures WHERE agent = ?1 AND environment = ?2",
                params![agent, env],
            )
            .map_err(db_err(&path))?;
        }
        tx.commit().map_err(db_err(&path))
    }

    /// The signed receipts of successes not yet known to be in the notes, oldest first.
    pub fn unwritten_receipts(&self) -> Result<Vec<Unwritten>> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT id, commit_id, environment, receipt FROM journal
                 WHERE receipt IS NOT NULL AND receipt_written = 0 ORDER BY id",
            )
            .map_err(db_err(&self.path))?;
        let rows = stmt
            .query_map([], unwritten_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(db_err(&self.path))?;
        Ok(rows)
    }

    /// Notes that these entries' receipts are in the notes (and pushed, when they are pushed).
    pub fn receipts_written(&mut self, ids: &[i64]) -> Result<()> {
        let path = self.path.clone();
        let tx = self.db.transaction().map_err(db_err(&path))?;
        {
            let mut stmt = tx
                .prepare("UPDATE journal SET receipt_written = 1 WHERE id = ?1")
                .map_err(db_err(&path))?;
            for id in ids {
                stmt.execute([id]).map_err(db_err(&path))?;
            }
        }
        tx.commit().map_err(db_err(&path))
    }

    /// Records a failure and when to try again (exponential backoff, capped).
    pub fn fail(
        &mut self,
        f: &Finished,
        agent: &str,
        environment: &str,
        error: &str,
    ) -> Result<Failure> {
        let (id, output, now, duration_ms) = (f.id, f.output, f.at, f.duration_ms);
        let path = self.path.clone();
        let tx = self.db.transaction().map_err(db_err(&path))?;
        tx.execute(
            "UPDATE journal SET result = 'failed', finished_at = ?2, duration_ms = ?3, output = ?4 WHERE id = ?1",
            params![id, now, duration_ms, output],
        )
        .map_err(db_err(&path))?;
        let attempts: u32 = tx
            .query_row(
                "SELECT attempts FROM failures WHERE agent = ?1 AND environment = ?2",
                params![agent, environment],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err(&path))?
            .unwrap_or(0)
            + 1;
        let next_attempt = now + backoff(attempts);
        tx.execute(
            "INSERT INTO failures (agent, environment, error, attempts, next_attempt) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (agent, environment) DO UPDATE SET error = ?3, attempts = ?4, next_attempt = ?5",
            params![agent, environment, error, attempts, next_attempt],
        )
        .map_err(db_err(&path))?;
        tx.commit().map_err(db_err(&path))?;
        Ok(Failure {
            agent: agent.into(),
            environment: environment.into(),
            error: error.into(),
            attempts,
            next_attempt,
        })
    }
}

/// A row of `SELECT id, commit_id, environment, receipt FROM journal`.
fn unwritten_row(r: &rusqlite::Row) -> rusqlite::Result<Unwritten> {
    Ok(Unwritten {
        id: r.get(0)?,
        commit: r.get(1)?,
        environment: r.get(2)?,
        receipt: r.get(3)?,
    })
}

fn read_applied(db: &Connection) -> rusqlite::Result<Vec<Applied>> {
    let mut stmt = db.prepare(
        "SELECT agent, environment, version, generation, commit_id, applied_at, replica FROM applied ORDER BY agent, environment",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Applied {
            agent: r.get(0)?,
            environment: r.get(1)?,
            version: r.get(2)?,
            generation: r.get(3)?,
            commit: r.get(4)?,
            applied_at: r.get(5)?,
            replica: r.get(6)?,
        })
    })?;
    rows.collect()
}

fn read_failures(db: &Connection) -> rusqlite::Result<Vec<Failure>> {
    let mut stmt =
        db.prepare("SELECT agent, environment, error, attempts, next_attempt FROM failures")?;
    let rows = stmt.query_map([], |r| {
        Ok(Failure {
            agent: r.get(0)?,
            environment: r.get(1)?,
            error: r.get(2)?,
            attempts: r.get(3)?,
            next_attempt: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// Reads a store without locking it; `None` when there is none. A store of another
/// repository than `repository` (its root commit) is refused.
pub fn view(path: &Path, repository: &str) -> Result<Option<View>> {
    let Some(db) = Store::open_read_only(path)? else {
        return Ok(None);
    };
    owned_by(&db, path, repository)?;
    let read = || -> rusqlite::Result<View> {
        let mut stmt =
            db.prepare("SELECT agent, environment FROM journal WHERE result = 'running'")?;
        let running = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(View {
            applied: read_applied(&db)?,
            failures: read_failures(&db)?,
            running,
            leases: Vec::new(),
        })
    };
    read().map(Some).map_err(db_err(path))
}

/// The newest journal entries, newest last.
pub fn journal(path: &Path, limit: usize) -> Result<Vec<Entry>> {
    let Some(db) = Store::open_read_only(path)? else {
        return Ok(Vec::new());
    };
    let read = || -> rusqlite::Result<Vec<Entry>> {
        let mut stmt = db.prepare(
            "SELECT id, started_at, action, agent, environment, version, previous_version, commit_id, generation,
                    idempotency_key, result, duration_ms, output, replica, epoch, pid
             FROM journal ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], entry)?;
        let mut v = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        v.reverse();
        Ok(v)
    };
    read().map_err(db_err(path))
}

/// A journal row (the columns of [`journal`]'s query, in order) as an entry.
fn entry(r: &rusqlite::Row) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: r.get(0)?,
        started_at: crate::support::when::rfc3339(r.get(1)?),
        action: ActionInfo {
            action: r.get(2)?,
            agent: r.get(3)?,
            environment: r.get(4)?,
            version: r.get(5)?,
            previous_version: r.get(6)?,
            commit: r.get(7)?,
            generation: r.get(8)?,
            idempotency_key: r.get(9)?,
        },
        result: {
            let text: String = r.get(10)?;
            JournalResult::from_db(&text).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    10,
                    rusqlite::types::Type::Text,
                    format!("unknown journal result `{text}`").into(),
                )
            })?
        },
        duration_ms: r.get(11)?,
        output: r.get(12)?,
        replica: {
            let replica: String = r.get(13)?;
            if replica.is_empty() {
                // Written before the journal named replicas: the process id is known.
                format!("pid {}", r.get::<_, i64>(15)?)
            } else {
                replica
            }
        },
        epoch: r.get(14)?,
    })
}

/// Everything the store at `path` holds, oldest journal entry first, with each entry's finish
/// time: what `ledgit state migrate` copies.
pub fn dump(path: &Path) -> Result<Dump> {
    let Some(db) = Store::open_read_only(path)? else {
        return Err(Error::invalid(
            format!("there is no state store at {}", path.display()),
            "pass the path of an existing SQLite store with --from",
        ));
    };
    let read = || -> rusqlite::Result<Dump> {
        let repository: Option<String> = db
            .query_row("SELECT value FROM meta WHERE key = 'repository'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let mut stmt = db.prepare(
            "SELECT id, started_at, action, agent, environment, version, previous_version, commit_id, generation,
                    idempotency_key, result, duration_ms, output, replica, epoch, pid, finished_at
             FROM journal ORDER BY id",
        )?;
        let journal = stmt
            .query_map([], |r| Ok((entry(r)?, r.get(1)?, r.get(16)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // A store older than schema 3 has no receipts.
        let query = if has_column(&db, "journal", "receipt")? {
            "SELECT id, commit_id, environment, receipt FROM journal
             WHERE receipt IS NOT NULL AND receipt_written = 0 ORDER BY id"
        } else {
            "SELECT id, commit_id, environment, '' FROM journal WHERE 0"
        };
        let mut stmt = db.prepare(query)?;
        let unwritten = stmt
            .query_map([], unwritten_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Dump {
            repository,
            applied: read_applied(&db)?,
            failures: read_failures(&db)?,
            journal,
            unwritten,
        })
    };
    read().map_err(db_err(path))
}

/// Takes the store's lock file, writing our process id into it; a second reconciler is told
/// which process holds it.
fn lock(path: &Path) -> Result<File> {
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(Error::invalid(
                format!(
                    "another reconciler (process {}) holds the state store {}",
                    if holder.is_empty() { "unknown" } else { holder },
                    path.display()
                ),
                "wait for it to finish, or stop it; two reconcilers must not share a store, and a copy must not miss what one writes",
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
    }
    file.set_len(0).map_err(|e| Error::io(&lock_path, e))?;
    file.rewind().map_err(|e| Error::io(&lock_path, e))?;
    writeln!(file, "{}", std::process::id()).map_err(|e| Error::io(&lock_path, e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_another_repository_and_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = Store::open(&path, "aaa").unwrap();
        let second = Store::open(&path, "aaa").err().unwrap().to_string();
        assert!(
            second.contains(&format!("process {}", std::process::id())),
            "{second}"
        );
        drop(store);
        let other = Store::open(&path, "bbb").err().unwrap().to_string();
        assert!(other.contains("another repository"), "{other}");
    }

    #[test]
    fn a_reader_never_sees_a_store_being_created() {
        // A reader polls while the reconciler creates the store: every read finds either no
        // store or a complete one, never a file without its tables.
        for _ in 0..40 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.sqlite");
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let reader = {
                let (path, done) = (path.clone(), done.clone());
                std::thread::spawn(move || {
                    while !done.load(std::sync::atomic::Ordering::Acquire) {
                        journal(&path, 1).unwrap();
                        view(&path, "r").unwrap();
                    }
                })
            };
            let store = Store::open(&path, "r").unwrap();
            done.store(true, std::sync::atomic::Ordering::Release);
            reader.join().unwrap();
            drop(store);
            assert!(
                dir.path()
                    .read_dir()
                    .unwrap()
                    .all(|e| { !e.unwrap().file_name().to_string_lossy().ends_with(".tmp") })
            );
        }
    }

    #[test]
    fn a_running_attempt_left_behind_becomes_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = Store::open(&path, "r").unwrap();
        store.begin(&ActionInfo::sample(), 5).unwrap();
        drop(store);
        assert_eq!(view(&path, "r").unwrap().unwrap().running.len(), 1);
        assert!(view(&path, "other").is_err());
        let _store = Store::open(&path, "r").unwrap();
        let j = journal(&path, 10).unwrap();
        assert_eq!(j[0].result, JournalResult::Interrupted);
    }
}
