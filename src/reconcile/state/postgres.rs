//! The PostgreSQL backend of the state store, shared by replicas on several machines. The
//! SQLite tables, keyed by the repository (its root commit) so one database serves many, plus
//! the leases: one row per (repository, environment) naming its holder, its expiry by the
//! database's clock, and its **epoch**, incremented at every change of holder.
//!
//! Every write of the reconciler (journal, applied state, failures) runs in a transaction that
//! first reads its environment's lease row `FOR SHARE` and goes on only if the lease still names
//! this replica at the epoch the write was made under: a takeover (which updates that row) waits
//! for the write to commit, and a write after a takeover is refused ([`Error::Fenced`]). So no
//! epoch ever has two writers. Writes are idempotent (a journal entry carries its own random
//! key), so a write whose connection broke is retried on a new one until it commits or a
//! deadline passes: a database restart loses and duplicates nothing.
//!
//! Migrations are numbered, applied at start under an advisory lock (replicas starting together
//! migrate once), and a database migrated by a newer ledgit is refused.

use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::{Client, GenericClient};

use crate::error::{Error, Result};
use crate::reconcile::actuator::ActionInfo;
use crate::reconcile::state::model::{
    Applied, Dump, Entry, Failure, Finished, JournalResult, Lease, Replica, Unwritten, View,
    backoff,
};
use crate::reconcile::state::pgconfig::{self, Connector};

/// The schema's migrations, in order; the schema's version is how many have run.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE ledgit_applied (
  repository TEXT NOT NULL, agent TEXT NOT NULL, environment TEXT NOT NULL,
  version TEXT NOT NULL, generation TEXT NOT NULL, commit_id TEXT NOT NULL,
  applied_at BIGINT NOT NULL, replica TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (repository, agent, environment));
CREATE TABLE ledgit_failures (
  repository TEXT NOT NULL, agent TEXT NOT NULL, environment TEXT NOT NULL,
  error TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt BIGINT NOT NULL,
  PRIMARY KEY (repository, agent, environment));
CREATE TABLE ledgit_journal (
  id BIGSERIAL PRIMARY KEY, attempt TEXT NOT NULL UNIQUE, repository TEXT NOT NULL,
  started_at BIGINT NOT NULL, finished_at BIGINT,
  action TEXT NOT NULL, agent TEXT NOT NULL, environment TEXT NOT NULL,
  version TEXT, previous_version TEXT, commit_id TEXT NOT NULL, generation TEXT NOT NULL,
  idempotency_key TEXT NOT NULL, result TEXT NOT NULL, duration_ms BIGINT,
  output TEXT NOT NULL DEFAULT '', replica TEXT NOT NULL, holder TEXT NOT NULL, epoch BIGINT);
CREATE INDEX ledgit_journal_by_repository ON ledgit_journal (repository, id);
CREATE INDEX ledgit_journal_running ON ledgit_journal (repository, environment)
  WHERE result = 'running';
CREATE TABLE ledgit_leases (
  repository TEXT NOT NULL, environment TEXT NOT NULL,
  holder TEXT NOT NULL, holder_label TEXT NOT NULL, epoch BIGINT NOT NULL,
  acquired_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (repository, environment));
CREATE TABLE ledgit_token_seen (
  repository TEXT NOT NULL, jti TEXT NOT NULL, last_seen BIGINT NOT NULL,
  PRIMARY KEY (repository, jti));
CREATE TABLE ledgit_ended_sessions (session TEXT PRIMARY KEY, expires BIGINT NOT NULL);
",
    "
ALTER TABLE ledgit_journal ADD COLUMN receipt TEXT;
ALTER TABLE ledgit_journal ADD COLUMN receipt_written BOOLEAN NOT NULL DEFAULT false;
CREATE INDEX ledgit_journal_receipts_unwritten ON ledgit_journal (repository, id)
  WHERE receipt IS NOT NULL AND NOT receipt_written;
",
];

/// The lease of environment `$2` of repository `$1` as long as it names holder `$3` at epoch
/// `$4`, locked `FOR SHARE` until the statement's transaction ends: a takeover waits for it.
macro_rules! fenced {
    ($($rest:tt)*) => {
        concat!("WITH lease AS (", lease_held!(), "), ", $($rest)*)
    };
}

/// The one rule every write of a reconciler obeys: the lease of environment `$2` of repository
/// `$1` names holder `$3` at epoch `$4`. Read `FOR SHARE`, so a takeover waits for the write.
macro_rules! lease_held {
    () => {
        "SELECT 1 FROM ledgit_leases
           WHERE repository = $1::text AND environment = $2::text AND holder = $3::text
             AND epoch = $4::bigint
           FOR SHARE"
    };
}

/// Journals attempt `$5` as running, if the lease still holds (parameters in the order of
/// [`Store::begin`]).
const BEGIN: &str = concat!(
    "WITH lease AS (",
    lease_held!(),
    ") ",
    "INSERT INTO ledgit_journal (attempt, repository, started_at, action, agent, environment,
       version, previous_version, commit_id, generation, idempotency_key, result, replica,
       holder, epoch)
     SELECT $5::text, $1, $6::bigint, $7::text, $8::text, $2, $9::text, $10::text,
       $11::text, $12::text, $13::text, 'running', $14::text, $3, $4 FROM lease
     ON CONFLICT (attempt) DO NOTHING
     RETURNING id"
);

/// The journal's part of a success: `$5` is the entry, `$6..$8` its finish, `$9` its signed
/// receipt (null without a signing key).
macro_rules! finish_journal {
    () => {
        "journal AS (UPDATE ledgit_journal
           SET result = 'applied', finished_at = $6::bigint, duration_ms = $7::bigint,
               output = $8::text, receipt = $9::text
           WHERE id = $5::bigint AND result = 'running' AND EXISTS (SELECT 1 FROM lease)
           RETURNING 1), "
    };
}

/// The end of a success for agent `$10`: its failures are forgotten, and the statement answers
/// whether the lease held (false: nothing was written).
macro_rules! clear_failures {
    () => {
        "failures AS (DELETE FROM ledgit_failures
           WHERE repository = $1 AND agent = $10::text AND environment = $2
             AND EXISTS (SELECT 1 FROM lease)
           RETURNING 1)
         SELECT EXISTS (SELECT 1 FROM lease)"
    };
}

/// A success that applied version `$11` (generation `$12`, commit `$13`, at `$14`) of agent `$10`,
/// by replica `$15`.
const SUCCEED_APPLIED: &str = fenced!(
    finish_journal!(),
    "applied AS (INSERT INTO ledgit_applied
       (repository, agent, environment, version, generation, commit_id, applied_at, replica)
       SELECT $1::text, $10::text, $2::text, $11::text, $12::text, $13::text, $14::bigint,
         $15::text FROM lease
       ON CONFLICT (repository, agent, environment) DO UPDATE SET
         version = EXCLUDED.version, generation = EXCLUDED.generation,
         commit_id = EXCLUDED.commit_id, applied_at = EXCLUDED.applied_at,
         replica = EXCLUDED.replica
       RETURNING 1), ",
    clear_failures!()
);

/// A success that removed agent `$10`.
const SUCCEED_REMOVED: &str = fenced!(
    finish_journal!(),
    "applied AS (DELETE FROM ledgit_applied
       WHERE repository = $1 AND agent = $10::text AND environment = $2
         AND EXISTS (SELECT 1 FROM lease)
       RETURNING 1), ",
    clear_failures!()
);

/// A success that changes nothing but the journal.
const SUCCEED_JOURNAL: &str = fenced!(
    finish_journal!(),
    "finished AS (SELECT 1) SELECT EXISTS (SELECT 1 FROM lease)"
);

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a write is retried over broken connections before the pass gives up on it.
const WRITE_DEADLINE: Duration = Duration::from_secs(30);

/// A connection that reconnects: `None` until first used and after it broke.
struct Conn {
    connector: Connector,
    client: Option<Live>,
}

/// An open connection and the statements prepared on it (the hot path's statements are
/// prepared once per connection: one round trip each time they run, not two).
struct Live {
    client: Client,
    prepared: std::collections::HashMap<&'static str, postgres::Statement>,
}

impl Live {
    fn prepared(
        &mut self,
        sql: &'static str,
    ) -> std::result::Result<postgres::Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.prepared.insert(sql, s.clone());
        Ok(s)
    }
}

impl std::ops::Deref for Live {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for Live {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// What a step inside a transaction can end with besides success.
enum Op {
    Db(postgres::Error),
    Fenced {
        environment: String,
        epoch: i64,
    },
    /// Refused, with why and what to do about it.
    Refused(String, &'static str),
}

impl From<postgres::Error> for Op {
    fn from(e: postgres::Error) -> Op {
        Op::Db(e)
    }
}

/// Whether an error is the connection's (or the server's going away), not the statement's: such
/// a statement is worth retrying on a new connection.
fn transient(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        None => true,
        Some(code) => {
            code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                ]
                .contains(code)
        }
    }
}

impl Conn {
    fn new(url: &str) -> Result<Conn> {
        Ok(Conn {
            connector: pgconfig::connector(url, &pgconfig::ProcessEnv)?,
            client: None,
        })
    }

    fn error(&self, source: postgres::Error) -> Error {
        Error::Database {
            url: self.connector.shown.clone(),
            source,
        }
    }

    /// Runs `f` on a connection, reconnecting and retrying it while the failure is the
    /// connection's and `deadline` has not passed. `f` must be idempotent.
    fn run<T>(
        &mut self,
        deadline: Duration,
        mut f: impl FnMut(&mut Live) -> std::result::Result<T, Op>,
    ) -> Result<T> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let outcome = match self.client.as_mut().filter(|c| !c.is_closed()) {
                Some(client) => f(client),
                None => match self.connector.config.connect(self.connector.tls.clone()) {
                    Ok(client) => f(self.client.insert(Live {
                        client,
                        prepared: Default::default(),
                    })),
                    Err(e) => Err(Op::Db(e)),
                },
            };
            match outcome {
                Ok(v) => return Ok(v),
                Err(Op::Fenced { environment, epoch }) => {
                    return Err(Error::Fenced { environment, epoch });
                }
                Err(Op::Refused(message, hint)) => {
                    return Err(Error::StoreRefused {
                        location: self.connector.shown.clone(),
                        message,
                        hint: hint.into(),
                    });
                }
                Err(Op::Db(e)) if transient(&e) && started.elapsed() + pause < deadline => {
                    self.client = None;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(Op::Db(e)) => {
                    if transient(&e) {
                        self.client = None;
                    }
                    return Err(self.error(e));
                }
            }
        }
    }
}

/// Brings the database's schema to [`SCHEMA_VERSION`] (once, whoever starts first).
fn migrate(client: &mut Client) -> std::result::Result<(), Op> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock(7405361846517463)", &[])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS ledgit_schema (version BIGINT NOT NULL)")?;
    let version: i64 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM ledgit_schema", &[])?
        .get(0);
    if version > SCHEMA_VERSION {
        return Err(Op::Refused(
            format!(
                "its schema is version {version}, newer than this ledgit knows ({SCHEMA_VERSION})"
            ),
            "upgrade ledgit, or point --state at another database",
        ));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(step)?;
        tx.execute(
            "INSERT INTO ledgit_schema (version) VALUES ($1)",
            &[&(i as i64 + 1)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Opens a connection for reading and makes sure the schema is there (a [`Reader`] at once).
fn reader(url: &str) -> Result<Conn> {
    let mut reader = Reader::new(url)?;
    reader.ready()?;
    Ok(reader.conn)
}

/// Refuses the write unless `environment`'s lease names `holder` at `epoch`, holding the lease
/// row (`FOR SHARE`) until the transaction ends so no takeover can interleave.
fn fence(
    tx: &mut postgres::Transaction,
    repository: &str,
    environment: &str,
    holder: &str,
    epoch: i64,
) -> std::result::Result<(), Op> {
    let held = tx.query_opt(lease_held!(), &[&repository, &environment, &holder, &epoch])?;
    match held {
        Some(_) => Ok(()),
        None => Err(Op::Fenced {
            environment: environment.to_string(),
            epoch,
        }),
    }
}

/// The outcome of asking for a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// This replica holds it at this epoch; `fresh` when it just took it over (a new epoch).
    Held { epoch: i64, fresh: bool },
    /// Another replica holds it for this much longer.
    Other { expires_in: Duration },
}

/// An open PostgreSQL store for one repository, as one replica.
pub struct Store {
    conn: Conn,
    repository: String,
    replica: Replica,
}

impl Store {
    /// Connects, migrates, and returns the store of `repository` as `replica`.
    pub fn open(url: &str, repository: &str, replica: Replica) -> Result<Store> {
        let mut conn = Conn::new(url)?;
        conn.run(Duration::from_secs(10), |c| migrate(c))?;
        Ok(Store {
            conn,
            repository: repository.to_string(),
            replica,
        })
    }

    /// The URL without its password.
    pub fn location(&self) -> String {
        self.conn.connector.shown.clone()
    }

    /// How the journal names this replica.
    pub fn replica_label(&self) -> String {
        self.replica.label()
    }

    pub fn applied(&mut self) -> Result<Vec<Applied>> {
        let repo = self.repository.clone();
        self.conn
            .run(WRITE_DEADLINE, |c| Ok(read_applied(&mut c.client, &repo)?))
    }

    pub fn failures(&mut self) -> Result<Vec<Failure>> {
        let repo = self.repository.clone();
        self.conn
            .run(WRITE_DEADLINE, |c| Ok(read_failures(&mut c.client, &repo)?))
    }

    /// Takes or renews the lease on `environment` for `ttl`. A takeover (a new epoch) marks the
    /// attempts left running under older epochs as interrupted, in the same transaction.
    pub fn acquire(&mut self, environment: &str, ttl: Duration) -> Result<Acquired> {
        let (repo, holder, label) = (
            self.repository.clone(),
            self.replica.id.clone(),
            self.replica.label(),
        );
        let ttl_ms = ttl.as_millis() as f64;
        self.conn.run(Duration::ZERO, |c| {
            let mut tx = c.transaction()?;
            let row = tx.query_opt(
                "INSERT INTO ledgit_leases AS l
                   (repository, environment, holder, holder_label, epoch, acquired_at, expires_at)
                 VALUES ($1, $2, $3, $4, 1, now(), now() + make_interval(secs => $5::float8 / 1000.0))
                 ON CONFLICT (repository, environment) DO UPDATE SET
                   epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()
                                THEN l.epoch ELSE l.epoch + 1 END,
                   acquired_at = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > now()
                                THEN l.acquired_at ELSE now() END,
                   holder = EXCLUDED.holder, holder_label = EXCLUDED.holder_label,
                   expires_at = EXCLUDED.expires_at
                 WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now()
                 RETURNING epoch, acquired_at = now()",
                &[&repo, &environment, &holder, &label, &ttl_ms],
            )?;
            let outcome = match row {
                Some(r) => {
                    let (epoch, fresh): (i64, bool) = (r.get(0), r.get(1));
                    if fresh {
                        tx.execute(
                            "UPDATE ledgit_journal SET result = 'interrupted'
                             WHERE repository = $1 AND environment = $2 AND result = 'running'
                               AND coalesce(epoch, 0) < $3",
                            &[&repo, &environment, &epoch],
                        )?;
                    }
                    Acquired::Held { epoch, fresh }
                }
                None => {
                    let left: f64 = tx
                        .query_one(
                            "SELECT greatest(extract(epoch FROM expires_at - now()), 0)::float8
                             FROM ledgit_leases WHERE repository = $1 AND environment = $2",
                            &[&repo, &environment],
                        )?
                        .get(0);
                    Acquired::Other {
                        expires_in: Duration::from_secs_f64(left),
                    }
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    /// Gives up this replica's leases (a clean stop): followers take over at once instead of
    /// waiting for them to expire.
    pub fn release(&mut self) -> Result<()> {
        let (repo, holder) = (self.repository.clone(), self.replica.id.clone());
        self.conn.run(Duration::ZERO, |c| {
            c.execute(
                "UPDATE ledgit_leases SET expires_at = now() WHERE repository = $1 AND holder = $2",
                &[&repo, &holder],
            )?;
            Ok(())
        })
    }

    /// Marks this replica's own attempts left running in `environment` as interrupted.
    pub fn settle(&mut self, environment: &str, epoch: i64) -> Result<()> {
        let (repo, holder) = (self.repository.clone(), self.replica.id.clone());
        self.conn.run(WRITE_DEADLINE, |c| {
            let mut tx = c.transaction()?;
            fence(&mut tx, &repo, environment, &holder, epoch)?;
            tx.execute(
                "UPDATE ledgit_journal SET result = 'interrupted'
                 WHERE repository = $1 AND environment = $2 AND result = 'running' AND holder = $3",
                &[&repo, &environment, &holder],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    /// The database's clock, in seconds: the time replicas share (when to retry a pair).
    pub fn now(&mut self) -> Result<i64> {
        self.conn.run(WRITE_DEADLINE, |c| {
            Ok(
                c.query_one("SELECT extract(epoch FROM now())::bigint", &[])?
                    .get(0),
            )
        })
    }

    /// Journals the start of an attempt under `epoch`; returns its id. One statement (one
    /// round trip): the lease is read `FOR SHARE` in it.
    pub fn begin(&mut self, a: &ActionInfo, epoch: i64, now: i64) -> Result<i64> {
        // A new random key for the entry: its insert is idempotent by it.
        let key = crate::support::random::id::<16>();
        let (repo, holder, label) = (
            self.repository.clone(),
            self.replica.id.clone(),
            self.replica.label(),
        );
        let fenced = || Op::Fenced {
            environment: a.environment.clone(),
            epoch,
        };
        self.conn.run(WRITE_DEADLINE, |c| {
            let insert = c.prepared(BEGIN)?;
            let row = c.query_opt(
                &insert,
                &[
                    &repo,
                    &a.environment,
                    &holder,
                    &epoch,
                    &key,
                    &now,
                    &a.action,
                    &a.agent,
                    &a.version,
                    &a.previous_version,
                    &a.commit,
                    &a.generation,
                    &a.idempotency_key,
                    &label,
                ],
            )?;
            if let Some(r) = row {
                return Ok(r.get(0));
            }
            // Nothing inserted: a retry whose first try committed, or a lease moved on.
            c.query_opt("SELECT id FROM ledgit_journal WHERE attempt = $1", &[&key])?
                .map(|r| r.get(0))
                .ok_or_else(fenced)
        })
    }

    /// Records a success under `epoch`: the journal entry and the applied state (or the
    /// removal), in one statement and so one transaction and one round trip.
    pub fn succeed(
        &mut self,
        f: &Finished,
        environment: &str,
        epoch: i64,
        applied: Option<&Applied>,
        remove: Option<(&str, &str)>,
    ) -> Result<()> {
        let (repo, holder, label) = (
            self.repository.clone(),
            self.replica.id.clone(),
            self.replica.label(),
        );
        self.conn.run(WRITE_DEADLINE, |c| {
            // Every success names the lease, the journal entry, its finish and its receipt
            // ($1..$9); an applied version or a removal adds its own.
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![
                &repo,
                &environment,
                &holder,
                &epoch,
                &f.id,
                &f.at,
                &f.duration_ms,
                &f.output,
                &f.receipt,
            ];
            let sql = match (applied, &remove) {
                (Some(a), _) => {
                    params.extend_from_slice(&[
                        &a.agent,
                        &a.version,
                        &a.generation,
                        &a.commit,
                        &a.applied_at,
                        &label,
                    ]);
                    SUCCEED_APPLIED
                }
                (None, Some((agent, _))) => {
                    params.push(agent);
                    SUCCEED_REMOVED
                }
                (None, None) => SUCCEED_JOURNAL,
            };
            let statement = c.prepared(sql)?;
            let current = c.query_one(&statement, &params)?;
            if current.get::<_, bool>(0) {
                Ok(())
            } else {
                Err(Op::Fenced {
                    environment: environment.to_string(),
                    epoch,
                })
            }
        })
    }

    /// The signed receipts of successes (any replica's) not yet known to be in the notes,
    /// oldest first.
    pub fn unwritten_receipts(&mut self) -> Result<Vec<Unwritten>> {
        let repo = self.repository.clone();
        self.conn.run(WRITE_DEADLINE, |c| {
            let rows = c.query(
                "SELECT id, commit_id, environment, receipt FROM ledgit_journal
                 WHERE repository = $1 AND receipt IS NOT NULL AND NOT receipt_written
                 ORDER BY id",
                &[&repo],
            )?;
            Ok(rows
                .iter()
                .map(|r| Unwritten {
                    id: r.get(0),
                    commit: r.get(1),
                    environment: r.get(2),
                    receipt: r.get(3),
                })
                .collect())
        })
    }

    /// Notes that these entries' receipts are in the notes (and pushed, when they are pushed).
    /// Not fenced: any replica may finish writing any receipt, and writing one twice adds
    /// nothing to a note.
    pub fn receipts_written(&mut self, ids: &[i64]) -> Result<()> {
        let repo = self.repository.clone();
        self.conn.run(WRITE_DEADLINE, |c| {
            c.execute(
                "UPDATE ledgit_journal SET receipt_written = true
                 WHERE repository = $1 AND id = ANY($2)",
                &[&repo, &ids],
            )?;
            Ok(())
        })
    }

    /// Records a failure under `epoch` and when to try again (exponential backoff, capped).
    pub fn fail(
        &mut self,
        f: &Finished,
        epoch: i64,
        agent: &str,
        environment: &str,
        error: &str,
    ) -> Result<Failure> {
        let (repo, holder) = (self.repository.clone(), self.replica.id.clone());
        self.conn.run(WRITE_DEADLINE, |c| {
            let mut tx = c.transaction()?;
            fence(&mut tx, &repo, environment, &holder, epoch)?;
            let finished = tx.execute(
                "UPDATE ledgit_journal SET result = 'failed', finished_at = $2, duration_ms = $3, output = $4
                 WHERE id = $1 AND result = 'running'",
                &[&f.id, &f.at, &f.duration_ms, &f.output],
            )?;
            let known: Option<(i32, i64)> = tx
                .query_opt(
                    "SELECT attempts, next_attempt FROM ledgit_failures
                     WHERE repository = $1 AND agent = $2 AND environment = $3",
                    &[&repo, &agent, &environment],
                )?
                .map(|r| (r.get(0), r.get(1)));
            // A retried write whose first try committed counts the failure once.
            let (attempts, next_attempt) = match (finished, known) {
                (0, Some(k)) => k,
                (_, k) => {
                    let attempts = k.map_or(0, |k| k.0) + 1;
                    // When to try again is a time every replica reads: the database's clock
                    // sets it, never this replica's (a clock two hours fast would hold the
                    // pair for two hours on every healthy replica).
                    let db_now: i64 = tx
                        .query_one("SELECT extract(epoch FROM now())::bigint", &[])?
                        .get(0);
                    let next = db_now + backoff(attempts as u32);
                    tx.execute(
                        "INSERT INTO ledgit_failures (repository, agent, environment, error, attempts, next_attempt)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (repository, agent, environment) DO UPDATE SET
                           error = $4, attempts = $5, next_attempt = $6",
                        &[&repo, &agent, &environment, &error, &attempts, &next],
                    )?;
                    (attempts, next)
                }
            };
            tx.commit()?;
            Ok(Failure {
                agent: agent.into(),
                environment: environment.into(),
                error: error.into(),
                attempts: attempts as u32,
                next_attempt,
            })
        })
    }
}

fn read_applied(
    c: &mut impl GenericClient,
    repo: &str,
) -> std::result::Result<Vec<Applied>, postgres::Error> {
    Ok(c.query(
        "SELECT agent, environment, version, generation, commit_id, applied_at, replica
         FROM ledgit_applied WHERE repository = $1 ORDER BY agent, environment",
        &[&repo],
    )?
    .iter()
    .map(|r| Applied {
        agent: r.get(0),
        environment: r.get(1),
        version: r.get(2),
        generation: r.get(3),
        commit: r.get(4),
        applied_at: r.get(5),
        replica: r.get(6),
    })
    .collect())
}

fn read_failures(
    c: &mut impl GenericClient,
    repo: &str,
) -> std::result::Result<Vec<Failure>, postgres::Error> {
    Ok(c.query(
        "SELECT agent, environment, error, attempts, next_attempt FROM ledgit_failures
         WHERE repository = $1",
        &[&repo],
    )?
    .iter()
    .map(|r| Failure {
        agent: r.get(0),
        environment: r.get(1),
        error: r.get(2),
        attempts: r.get::<_, i32>(3) as u32,
        next_attempt: r.get(4),
    })
    .collect())
}

fn read_leases(
    c: &mut impl GenericClient,
    repo: &str,
) -> std::result::Result<Vec<Lease>, postgres::Error> {
    Ok(c.query(
        "SELECT environment, holder_label, epoch,
                extract(epoch FROM acquired_at)::bigint, extract(epoch FROM expires_at)::bigint,
                expires_at > now()
         FROM ledgit_leases WHERE repository = $1 ORDER BY environment",
        &[&repo],
    )?
    .iter()
    .map(|r| Lease {
        environment: r.get(0),
        holder: r.get(1),
        epoch: r.get(2),
        acquired_at: crate::support::when::rfc3339(r.get(3)),
        expires_at: crate::support::when::rfc3339(r.get(4)),
        live: r.get(5),
    })
    .collect())
}

/// What `status` and the pages show: one transaction, so the parts agree.
pub fn view(url: &str, repository: &str) -> Result<View> {
    Reader::new(url)?.view(repository)
}

/// The newest `limit` journal entries of `repository`, newest last.
pub fn journal(url: &str, repository: &str, limit: usize) -> Result<Vec<Entry>> {
    let mut conn = reader(url)?;
    conn.run(Duration::ZERO, |c| {
        let rows = c.query(
            "SELECT id, started_at, action, agent, environment, version, previous_version, commit_id,
                    generation, idempotency_key, result, duration_ms, output, replica, epoch
             FROM ledgit_journal WHERE repository = $1 ORDER BY id DESC LIMIT $2",
            &[&repository, &(limit as i64)],
        )?;
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows.iter().rev() {
            let result: &str = r.get(10);
            entries.push(Entry {
                id: r.get(0),
                started_at: crate::support::when::rfc3339(r.get(1)),
                action: ActionInfo {
                    action: r.get(2),
                    agent: r.get(3),
                    environment: r.get(4),
                    version: r.get(5),
                    previous_version: r.get(6),
                    commit: r.get(7),
                    generation: r.get(8),
                    idempotency_key: r.get(9),
                },
                result: JournalResult::from_db(result)
                    .ok_or_else(|| {
                        Op::Refused(
                            format!("unknown journal result `{result}`"),
                            "a newer ledgit wrote it: upgrade ledgit",
                        )
                    })?,
                duration_ms: r.get(11),
                output: r.get(12),
                replica: r.get(13),
                epoch: r.get(14),
            });
        }
        Ok(entries)
    })
}

/// The leases of `repository`'s environments.
pub fn leases(url: &str, repository: &str) -> Result<Vec<Lease>> {
    let mut conn = reader(url)?;
    conn.run(Duration::ZERO, |c| {
        Ok(read_leases(&mut c.client, repository)?)
    })
}

/// Writes an SQLite store's content for `repository`, in one transaction; refuses a database
/// that already holds state for it.
pub fn load(url: &str, repository: &str, dump: &Dump) -> Result<()> {
    let mut conn = reader(url)?;
    conn.run(Duration::ZERO, |c| {
        let mut tx = c.transaction()?;
        let known: i64 = tx
            .query_one(
                "SELECT (SELECT count(*) FROM ledgit_applied WHERE repository = $1)
                      + (SELECT count(*) FROM ledgit_journal WHERE repository = $1)",
                &[&repository],
            )?
            .get(0);
        if known > 0 {
            return Err(Op::Refused(
                format!(
                    "it already holds state for the repository {repository} ({known} rows): a copy would mix two histories"
                ),
                "the copy is for a database with no state of this repository: point --to at another database, or remove this repository's rows (ledgit_applied, ledgit_failures, ledgit_journal) if they are a copy left behind",
            ));
        }
        for a in &dump.applied {
            tx.execute(
                "INSERT INTO ledgit_applied (repository, agent, environment, version, generation, commit_id, applied_at, replica)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[&repository, &a.agent, &a.environment, &a.version, &a.generation, &a.commit, &a.applied_at, &a.replica],
            )?;
        }
        for f in &dump.failures {
            tx.execute(
                "INSERT INTO ledgit_failures (repository, agent, environment, error, attempts, next_attempt)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&repository, &f.agent, &f.environment, &f.error, &(f.attempts as i32), &f.next_attempt],
            )?;
        }
        for (e, started, finished) in &dump.journal {
            let a = &e.action;
            // An attempt still running in a store nobody holds any more was interrupted.
            let result = match e.result {
                JournalResult::Running => JournalResult::Interrupted,
                r => r,
            };
            tx.execute(
                "INSERT INTO ledgit_journal (attempt, repository, started_at, finished_at, action, agent,
                   environment, version, previous_version, commit_id, generation, idempotency_key,
                   result, duration_ms, output, replica, holder, epoch)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
                &[
                    &format!("sqlite-{repository}-{}", e.id),
                    &repository,
                    started,
                    finished,
                    &a.action,
                    &a.agent,
                    &a.environment,
                    &a.version,
                    &a.previous_version,
                    &a.commit,
                    &a.generation,
                    &a.idempotency_key,
                    &result.as_str(),
                    &e.duration_ms,
                    &e.output,
                    &e.replica,
                    &e.replica,
                    &e.epoch,
                ],
            )?;
        }
        // Receipts signed and journaled but not yet in the notes: the next pass writes them.
        for u in &dump.unwritten {
            tx.execute(
                "UPDATE ledgit_journal SET receipt = $2 WHERE attempt = $1",
                &[&format!("sqlite-{repository}-{}", u.id), &u.receipt],
            )?;
        }
        tx.commit()?;
        Ok(())
    })
}

/// A long-lived reader for `serve`: one connection (re-made when it breaks) for the views it
/// refreshes every second, and the state replicas of `serve` share: when tokens were last
/// seen and which sessions were ended.
pub struct Reader {
    conn: Conn,
    migrated: bool,
}

impl Reader {
    /// Prepares the connection; nothing is sent until the first read.
    pub fn new(url: &str) -> Result<Reader> {
        Ok(Reader {
            conn: Conn::new(url)?,
            migrated: false,
        })
    }

    /// Closes the connection now (it is opened again by the next read). The synchronous
    /// client closes by blocking on its own runtime, so a program on an async runtime closes
    /// it on a blocking thread before the reader is dropped where blocking is refused.
    pub fn close(&mut self) {
        self.conn.client = None;
    }

    fn ready(&mut self) -> Result<()> {
        if !self.migrated {
            self.conn.run(Duration::ZERO, |c| migrate(c))?;
            self.migrated = true;
        }
        Ok(())
    }

    /// What `status` and the pages show, in one read-only transaction.
    pub fn view(&mut self, repository: &str) -> Result<View> {
        self.ready()?;
        self.conn.run(Duration::ZERO, |c| {
            Ok(read_view(&mut c.client, repository)?)
        })
    }

    /// Records when tokens were seen (the newest time wins) and returns the times other
    /// replicas recorded after `since`, in one round trip each way.
    pub fn share_seen(
        &mut self,
        repository: &str,
        seen: &[(String, i64)],
        since: i64,
    ) -> Result<Vec<(String, i64)>> {
        self.ready()?;
        let (jtis, times): (Vec<&str>, Vec<i64>) =
            seen.iter().map(|(j, t)| (j.as_str(), *t)).unzip();
        self.conn.run(Duration::ZERO, |c| {
            if !jtis.is_empty() {
                c.execute(
                    "INSERT INTO ledgit_token_seen (repository, jti, last_seen)
                     SELECT $1, j, least(t, extract(epoch FROM now())::bigint)
                     FROM unnest($2::text[], $3::bigint[]) AS u(j, t)
                     ON CONFLICT (repository, jti) DO UPDATE
                       SET last_seen = greatest(ledgit_token_seen.last_seen,
                         least(EXCLUDED.last_seen, extract(epoch FROM now())::bigint))",
                    &[&repository, &jtis, &times],
                )?;
            }
            Ok(c.query(
                "SELECT jti, last_seen FROM ledgit_token_seen WHERE repository = $1 AND last_seen >= $2",
                &[&repository, &since],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    /// Records ended sessions (by the hash of their nonce, with when they would have expired),
    /// forgets the expired ones, and returns every ended session still live.
    pub fn share_ended(&mut self, ended: &[(String, i64)], now: i64) -> Result<Vec<(String, i64)>> {
        self.ready()?;
        let (ids, expires): (Vec<&str>, Vec<i64>) =
            ended.iter().map(|(s, e)| (s.as_str(), *e)).unzip();
        self.conn.run(Duration::ZERO, |c| {
            if !ids.is_empty() {
                c.execute(
                    "INSERT INTO ledgit_ended_sessions (session, expires)
                     SELECT s, e FROM unnest($1::text[], $2::bigint[]) AS u(s, e)
                     ON CONFLICT (session) DO NOTHING",
                    &[&ids, &expires],
                )?;
            }
            c.execute(
                "DELETE FROM ledgit_ended_sessions WHERE expires <= $1",
                &[&now],
            )?;
            Ok(
                c.query("SELECT session, expires FROM ledgit_ended_sessions", &[])?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect(),
            )
        })
    }
}

fn read_view(c: &mut Client, repository: &str) -> std::result::Result<View, postgres::Error> {
    let mut tx = c
        .build_transaction()
        .read_only(true)
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()?;
    let applied = read_applied(&mut tx, repository)?;
    let failures = read_failures(&mut tx, repository)?;
    let running = tx
        .query(
            "SELECT agent, environment FROM ledgit_journal
             WHERE repository = $1 AND result = 'running'",
            &[&repository],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let leases = read_leases(&mut tx, repository)?;
    tx.commit()?;
    Ok(View {
        applied,
        failures,
        running,
        leases,
    })
}
