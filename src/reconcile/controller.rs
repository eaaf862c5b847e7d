//! The reconciler as a value: its store, actuator, leases and receipt writer, with one pass
//! ([`Reconciler::pass`]) and the controller loop ([`Reconciler::watch`]) that reconciles as
//! soon as the tracked branch moves, resyncs every interval, fetches, retries failed pairs when
//! their backoff ends, and waits out a store it cannot reach. It says what happens through
//! [`Event`]s, which a front end renders (the command line prints them); it never prints. A
//! third front end (a controller in a cluster, a test) drives the very same loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::git::load::Current;
use crate::git::repo::{FetchError, Repo};
use crate::receipt::Writer;
use crate::reconcile::actuator::Actuator;
use crate::reconcile::lease::{self, Leases};
use crate::reconcile::pass::{self, Attempt, Pass, repository_id};
use crate::reconcile::state::{Location, Replica, Store};
use crate::reconcile::{Plan, RefWatcher};

/// The first wait after the store or the lease table could not be reached.
pub const STORE_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between two tries to reach them.
pub const STORE_RETRY_MAX: Duration = Duration::from_secs(60);
/// The wait after a pass that failed as a whole (the tip does not load, say).
pub const PASS_RETRY: Duration = Duration::from_secs(5);
/// The shortest lease a replica may ask for (renewals run every third of it).
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(3);

/// What a reconciler is asked to do.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where applied versions, failures and the journal are kept.
    pub location: Location,
    /// What one pass may do.
    pub pass: pass::Options,
    /// With a shared store: how long a lease lives without renewal.
    pub lease_ttl: Duration,
    /// Plan only: open no store, take no lease, run nothing.
    pub dry_run: bool,
}

/// What `watch` follows.
#[derive(Debug, Clone)]
pub struct Follow {
    /// The ref whose commits are applied (`refs/heads/main`, `refs/remotes/origin/main`).
    pub tracked: String,
    /// Fetch this remote every interval (and before a new leader's first pass).
    pub fetch: Option<String>,
    /// Resync (and fetch) at least this often.
    pub interval: Duration,
}

/// What happens, for a front end to say.
#[derive(Debug)]
pub enum Event<'a> {
    /// `watch` starts following `tracked`.
    Watching {
        tracked: &'a str,
        interval: Duration,
    },
    /// Leadership changed (leading, following, trouble renewing).
    Leases(&'a [lease::Event]),
    /// The plan of a pass, when it is news (a follower's empty plans are not).
    Planned(&'a Plan),
    /// The receipt key is not listed under `reconcilers:` at the tip: its receipts will not
    /// verify.
    UnlistedKey { public_key: String },
    /// One action ended.
    Attempted(&'a Attempt),
    /// Receipts could not be written or pushed: they stay in the journal for the next pass.
    ReceiptsWaiting(&'a Error),
    /// Another replica leads this environment now; the rest of its actions were left to it.
    Deposed(&'a str),
    /// A pass ended (in `watch`, after each pass).
    Passed(&'a Pass),
    /// `git fetch` failed; what is here is used.
    FetchFailed(&'a FetchError),
    /// The shared store or its lease table cannot be reached; nothing is tried for `retry_in`.
    StoreUnavailable {
        error: &'a Error,
        retry_in: Duration,
    },
    /// A pass failed as a whole; it is tried again in [`PASS_RETRY`].
    PassFailed(&'a Error),
}

/// The reconciler: its settings, actuator and receipt writer, and, once opened, its store and
/// leases.
pub struct Reconciler {
    settings: Settings,
    actuator: Option<Actuator>,
    writer: Option<Writer>,
    replica: Replica,
    store: Option<Store>,
    leases: Option<Leases>,
}

impl Reconciler {
    /// A reconciler that has opened nothing yet. `actuator` may be `None` only for a dry run.
    pub fn new(settings: Settings, actuator: Option<Actuator>, writer: Option<Writer>) -> Self {
        Reconciler {
            settings,
            actuator,
            writer,
            replica: Replica::this_process(),
            store: None,
            leases: None,
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Opens the store and, when it is shared, takes the leases it can (unless a dry run);
    /// returns the changes of leadership this made.
    pub fn open(&mut self, current: &Current) -> Result<Vec<lease::Event>> {
        if self.settings.dry_run {
            return Ok(Vec::new());
        }
        let started = self.open_missing(current)?;
        Ok(match (&self.leases, started) {
            (Some(l), true) => l.events(),
            _ => Vec::new(),
        })
    }

    /// Starts the lease keeper when the store is shared.
    fn start_leases(&mut self, current: &Current) -> Result<()> {
        let Location::Postgres(url) = &self.settings.location else {
            return Ok(());
        };
        if self.settings.lease_ttl < MIN_LEASE_TTL {
            return Err(Error::invalid(
                format!(
                    "a lease of {}s is too short",
                    self.settings.lease_ttl.as_secs_f64()
                ),
                "give leases at least 3s (renewals run every third of it)",
            ));
        }
        self.leases = Some(Leases::start(
            url,
            &repository_id(current),
            &self.replica,
            self.settings.lease_ttl,
            self.wanted(current),
        )?);
        Ok(())
    }

    /// The environments this replica asks to lead: those of the settings, else every one of
    /// the config.
    pub fn wanted(&self, current: &Current) -> Vec<String> {
        pass::named_or_all(&self.settings.pass.environments, &current.config)
    }

    /// The wanted environments another replica leads now.
    pub fn led_elsewhere(&self, current: &Current) -> Vec<String> {
        let Some(leases) = &self.leases else {
            return Vec::new();
        };
        let led: Vec<String> = leases.led().into_iter().map(|(e, _)| e).collect();
        self.wanted(current)
            .into_iter()
            .filter(|e| !led.contains(e))
            .collect()
    }

    /// Gives the leases up (the action in flight has finished): followers may take over at
    /// once.
    pub fn stop(&mut self) {
        if let Some(l) = self.leases.take() {
            l.stop();
        }
    }

    /// Plans one pass at the tip `current` was read at and, unless a dry run, applies it;
    /// `respect_backoff` leaves out pairs whose retry is not due (`watch`).
    pub fn pass(
        &mut self,
        repo: &Repo,
        current: &Current,
        stop: &AtomicBool,
        respect_backoff: bool,
        report: &mut dyn FnMut(Event),
    ) -> Result<Pass> {
        let mut options = self.settings.pass.clone();
        options.respect_backoff = respect_backoff;
        let leases = self.leases.as_ref();
        let plan = pass::plan(
            repo,
            current,
            &self.settings.location,
            &options,
            self.store.as_mut(),
            leases,
        )?;
        // A follower's empty passes are not news.
        if leases.is_none()
            || !plan.actions.is_empty()
            || !plan.findings.is_empty()
            || !plan.held.is_empty()
        {
            report(Event::Planned(&plan));
        }
        let (Some(store), Some(actuator), false) = (
            self.store.as_mut(),
            self.actuator.as_ref(),
            self.settings.dry_run,
        ) else {
            return Ok(Pass {
                plan,
                ..Pass::default()
            });
        };
        if let Some(w) = self.writer.as_mut()
            && w.identify(&current.config).is_none()
            && !plan.actions.is_empty()
        {
            report(Event::UnlistedKey {
                public_key: w.public_key(),
            });
        }
        let p = pass::apply(
            store,
            actuator,
            plan,
            options.timeout,
            leases,
            stop,
            self.writer.as_mut(),
            |a| report(Event::Attempted(a)),
        )?;
        if let Some(e) = &p.receipt_error {
            report(Event::ReceiptsWaiting(e));
        }
        for env in &p.deposed {
            report(Event::Deposed(env));
        }
        Ok(p)
    }

    /// When the earliest failed pair may be retried, by the store's clock.
    fn next_retry(&mut self) -> Option<Instant> {
        let store = self.store.as_mut()?;
        let failures = store.failures().ok()?;
        let next = failures.iter().map(|f| f.next_attempt).min()?;
        let now = store.now().ok()?;
        let wait = (next - now).max(0) as u64;
        Some(Instant::now() + Duration::from_secs(wait))
    }

    /// Reconciles `follow.tracked` of `repo` until `stop` is set: at once when the ref moves
    /// (a commit, a merge, a fetch), every interval, when a failed pair's retry is due, and
    /// right after taking over an environment (fetching first). A shared store that cannot
    /// be reached is tried again after 5 s, 10 s, ... a minute; one machine's store that cannot
    /// be opened ends the loop with its error. The action in flight always finishes; the
    /// leases are given up at the end.
    pub fn watch(
        &mut self,
        repo: &Repo,
        follow: &Follow,
        stop: &AtomicBool,
        report: &mut dyn FnMut(Event),
    ) -> Result<()> {
        let watcher = RefWatcher::new(repo.git.commondir())?;
        let interval = follow.interval;
        // When `git fetch` last ran: every interval, whatever else happened in between (a ref
        // that moved locally, a pass that failed), the remote is asked again.
        let mut last_fetch: Option<Instant> = None;
        let mut last_tip: Option<git2::Oid> = None;
        let mut last_sync = Instant::now();
        let mut retry_at: Option<Instant> = None;
        // An unreachable store or lease table: nothing is tried before `held_until`, and each
        // failure in a row doubles the wait, as the event says.
        let mut held_until: Option<Instant> = None;
        let mut store_wait = STORE_RETRY;
        report(Event::Watching {
            tracked: &follow.tracked,
            interval,
        });
        while !stop.load(Ordering::SeqCst) {
            // A lease just taken is work to do now: the leader before may have left some.
            let events = self.leases.as_ref().map(|l| l.events()).unwrap_or_default();
            let took_over = events
                .iter()
                .any(|e| matches!(e, lease::Event::Leading { .. }));
            if !events.is_empty() {
                report(Event::Leases(&events));
            }
            // A new leader fetches before its first pass: the leader before may have applied
            // commits this replica has not seen.
            if let Some(remote) = &follow.fetch
                && (took_over || last_fetch.is_none_or(|t| t.elapsed() >= interval))
            {
                if let Err(e) = repo.fetch(remote) {
                    report(Event::FetchFailed(&e));
                }
                last_fetch = Some(Instant::now());
            }
            let tip = repo.resolve_tracked(&follow.tracked);
            let due = took_over
                || last_sync.elapsed() >= interval
                || retry_at.is_some_and(|t| Instant::now() >= t);
            let held = held_until.is_some_and(|t| Instant::now() < t);
            if let Some(tip) = tip
                && (Some(tip) != last_tip || due)
                && !held
            {
                let current = crate::git::load::current(repo, Some(tip), &mut |_| {});
                let opened = match &current {
                    Ok(current) if !self.settings.dry_run => self.open(current),
                    _ => Ok(Vec::new()),
                };
                if !opened.as_ref().is_ok_and(Vec::is_empty)
                    && let Ok(events) = &opened
                {
                    report(Event::Leases(events));
                }
                if let Err(e) = opened {
                    // One machine's store is this process's or another's: that is final. A
                    // shared one may be restarting: try again.
                    if !self.settings.location.is_shared() {
                        return Err(e);
                    }
                    report(Event::StoreUnavailable {
                        error: &e,
                        retry_in: store_wait,
                    });
                    held_until = Some(Instant::now() + store_wait);
                    store_wait = (store_wait * 2).min(STORE_RETRY_MAX);
                    continue;
                }
                store_wait = STORE_RETRY;
                if let (Ok(current), Some(l)) = (&current, &self.leases) {
                    l.want(self.wanted(current));
                }
                let passed =
                    current.and_then(|current| self.pass(repo, &current, stop, true, report));
                last_tip = Some(tip);
                match passed {
                    Ok(p) => {
                        report(Event::Passed(&p));
                        last_sync = Instant::now();
                        retry_at = self.next_retry();
                        // Held behind what the store says ran: fetch again and plan again soon.
                        if !p.plan.held.is_empty() {
                            last_fetch = None;
                            let soon = Instant::now() + STORE_RETRY;
                            retry_at = Some(retry_at.map_or(soon, |t| t.min(soon)));
                        }
                    }
                    Err(e) => {
                        report(Event::PassFailed(&e));
                        retry_at = Some(Instant::now() + PASS_RETRY);
                    }
                }
            }
            // Sleep until the ref moves, a retry or a resync is due, checking for a stop often.
            let mut wait = interval.saturating_sub(last_sync.elapsed());
            if let Some(t) = retry_at {
                wait = wait.min(t.saturating_duration_since(Instant::now()));
            }
            if let Some(t) = last_fetch {
                wait = wait.min(interval.saturating_sub(t.elapsed()));
            }
            if let Some(t) = held_until {
                wait = wait.max(t.saturating_duration_since(Instant::now()));
            }
            watcher.wait(wait.min(Duration::from_millis(250)));
        }
        self.stop();
        Ok(())
    }

    /// Opens the store, then the leases, each only while missing; whether leases were taken
    /// up now.
    fn open_missing(&mut self, current: &Current) -> Result<bool> {
        if self.store.is_none() {
            self.store = Some(Store::open(
                &self.settings.location,
                &repository_id(current),
                &self.replica,
            )?);
        }
        if self.leases.is_none() {
            self.start_leases(current)?;
            return Ok(self.leases.is_some());
        }
        Ok(false)
    }
}
