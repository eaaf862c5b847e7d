//! One reconciler pass: read what the tip declares, plan against what the store says was
//! applied, and run the plan's actions through the actuator, journaling each attempt. With a
//! shared store the pass covers only the environments this replica leads, and each action runs
//! under its environment's lease epoch: it starts only while the lease is valid, the actuator
//! gets the epoch as its fencing token, and a write refused by a newer epoch ends the pass's
//! work in that environment (another replica leads it now). With a receipt [`Writer`], each
//! success is signed, journaled with its receipt, and written to the applied commit's note;
//! receipts a crash left in the journal are written first.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::git::load::Current;
use crate::git::repo::Repo;
use crate::receipt::{Apply, Writer};
use crate::reconcile::actuator::Actuator;
use crate::reconcile::lease::Leases;
use crate::reconcile::plan::{Action, Kind, Plan};
use crate::reconcile::state::model::{Applied, Failure};
use crate::reconcile::state::{self, Location, Store};

/// What a pass may do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only these environments (empty: all).
    pub environments: Vec<String>,
    /// Run removals too.
    pub prune: bool,
    /// How long one action may take.
    pub timeout: Duration,
    /// Leave out pairs whose last failure's backoff has not ended (`watch`).
    pub respect_backoff: bool,
    /// Plan an environment even when the tip does not contain the commit last applied there
    /// (a branch rewritten on purpose); otherwise it is held ([`Plan::held`]).
    pub allow_rewind: bool,
}

/// The result of one attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    #[serde(flatten)]
    pub action: Action,
    /// `Applied` or `Failed`.
    pub result: state::model::JournalResult,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The lease epoch it ran under (shared stores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
}

/// One pass's outcome.
#[derive(Debug, Default, Serialize)]
pub struct Pass {
    #[serde(flatten)]
    pub plan: Plan,
    pub attempts: Vec<Attempt>,
    /// Environments whose lease moved to another replica during the pass: the rest of their
    /// actions were left to it (an action whose result could not be recorded runs again there,
    /// with the same idempotency key).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deposed: Vec<String>,
    /// Receipts added to the notes by this pass (with a signing key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipts: Option<usize>,
    /// Why receipts could not be written or pushed: they stay in the journal and are written
    /// at the next pass.
    #[serde(skip)]
    pub receipt_error: Option<Error>,
}

impl Pass {
    /// Whether something failed or does not validate.
    pub fn failed(&self) -> bool {
        !self.plan.findings.is_empty()
            || !self.plan.held.is_empty()
            || self.attempts.iter().any(|a| a.error.is_some())
    }
}

/// What identifies the repository to its state store: the first commit of the chain.
pub fn repository_id(current: &Current) -> String {
    current
        .root
        .or(current.tip)
        .map(|c| c.to_string())
        .unwrap_or_default()
}

/// Plans the pass at the tip `current` was read at: against `store` when one is open, else
/// against what `location` holds (a dry run reads without taking the store). With `leases`, only
/// the environments this replica leads are planned.
pub fn plan(
    repo: &Repo,
    current: &Current,
    location: &Location,
    options: &Options,
    store: Option<&mut Store>,
    leases: Option<&Leases>,
) -> Result<Plan> {
    let Some(tip) = current.tip else {
        return Err(Error::invalid(
            "the branch has no commits",
            "commit the records first",
        ));
    };
    for env in &options.environments {
        if current.config.environment(env).is_none() {
            return Err(current.config.unknown_environment(env));
        }
    }
    let mut environments = options.environments.clone();
    if let Some(leases) = leases {
        let led: Vec<String> = leases.led().into_iter().map(|(e, _)| e).collect();
        environments = if environments.is_empty() {
            led
        } else {
            environments.retain(|e| led.contains(e));
            environments
        };
        if environments.is_empty() {
            // Followers plan nothing.
            return Ok(Plan {
                commit: tip.to_string(),
                ..Plan::default()
            });
        }
    }
    let at_tip = crate::reconcile::plan::desired(&repo.git, tip, &current.config, &current.rows)?;
    // Retries are due by the store's clock (the database's, for replicas), not this one's.
    let (applied, failures, now): (Vec<Applied>, Vec<Failure>, i64) = match store {
        Some(s) => (s.applied()?, s.failures()?, s.now()?),
        None => match state::view(location, &repository_id(current))? {
            Some(v) => (v.applied, v.failures, now()),
            None => (Vec::new(), Vec::new(), now()),
        },
    };
    // An environment whose last applied commit the tip does not contain is held: planning
    // from an older commit (a replica whose last fetch is older than the leader's before it)
    // would roll the platform back.
    let held = if options.allow_rewind {
        Vec::new()
    } else {
        behind(
            repo,
            tip,
            &applied,
            &named_or_all(&environments, &current.config),
        )
    };
    if !held.is_empty() {
        environments = named_or_all(&environments, &current.config)
            .into_iter()
            .filter(|e| !held.iter().any(|h| &h.environment == e))
            .collect();
    }
    let mut plan = if !held.is_empty() && environments.is_empty() {
        Plan {
            commit: tip.to_string(),
            ..Plan::default()
        }
    } else {
        crate::reconcile::plan::plan(
            tip,
            &at_tip.desired,
            &applied,
            &at_tip.skip,
            &environments,
            options.prune,
        )
    };
    plan.held = held;
    for a in plan.actions.iter_mut().chain(plan.out_of_sync.iter_mut()) {
        if a.path.is_empty() {
            a.path = current.config.record_path(&a.agent, &a.environment);
        }
    }
    plan.findings = at_tip.findings;
    if options.respect_backoff {
        plan.actions.retain(|a| {
            !failures.iter().any(|f| {
                f.agent == a.agent && f.environment == a.environment && f.next_attempt > now
            })
        });
    }
    Ok(plan)
}

/// `environments`, or every environment of `config` when none is named: what a pass, or a
/// replica asking for leases, covers.
pub fn named_or_all(environments: &[String], config: &crate::model::config::Config) -> Vec<String> {
    if environments.is_empty() {
        config.environments.iter().map(|e| e.name.clone()).collect()
    } else {
        environments.to_vec()
    }
}

/// The environments of `scope` whose newest applied commit is neither the tip nor one of its
/// ancestors: a commit this replica has not fetched, or a rewritten branch.
fn behind(
    repo: &Repo,
    tip: git2::Oid,
    applied: &[Applied],
    scope: &[String],
) -> Vec<crate::reconcile::plan::Held> {
    let mut newest: std::collections::BTreeMap<&str, &Applied> = Default::default();
    for a in applied.iter().filter(|a| scope.contains(&a.environment)) {
        let slot = newest.entry(a.environment.as_str()).or_insert(a);
        if a.applied_at > slot.applied_at {
            *slot = a;
        }
    }
    newest
        .into_values()
        .filter(|a| {
            let Ok(commit) = git2::Oid::from_str(&a.commit) else {
                return false;
            };
            commit != tip && !repo.git.graph_descendant_of(tip, commit).unwrap_or(false)
        })
        .map(|a| crate::reconcile::plan::Held {
            environment: a.environment.clone(),
            applied_commit: a.commit.clone(),
            version: a.version.clone(),
            agent: a.agent.clone(),
        })
        .collect()
}

/// Runs the plan's actions in order, journaling each, and reports each attempt as it ends.
/// Stops before the next action once `stop` is set (the action in flight always finishes).
/// With `leases`, each action runs under its environment's epoch; an environment whose lease
/// lapsed or moved is left alone for the rest of the pass. With `receipts`, every success is
/// signed and its receipt written to the notes (first, those a crash left unwritten).
#[allow(clippy::too_many_arguments)]
pub fn apply(
    store: &mut Store,
    actuator: &Actuator,
    plan: Plan,
    timeout: Duration,
    leases: Option<&Leases>,
    stop: &AtomicBool,
    mut receipts: Option<&mut Writer>,
    mut report: impl FnMut(&Attempt),
) -> Result<Pass> {
    let mut pass = Pass {
        plan,
        ..Pass::default()
    };
    if let Some(w) = receipts.as_deref_mut() {
        let unwritten = store
            .unwritten_receipts()?
            .into_iter()
            .map(|u| (u.id, u.commit, u.receipt))
            .collect();
        w.recover(unwritten);
    }
    let host = store.replica_label();
    let mut settled: BTreeSet<String> = BTreeSet::new();
    let mut gone: BTreeSet<String> = BTreeSet::new();
    let actions = pass.plan.actions.clone();
    for a in &actions {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if gone.contains(&a.environment) {
            continue;
        }
        let epoch = match leases {
            None => None,
            Some(l) => match l.epoch(&a.environment) {
                Some(e) => Some(e),
                None => {
                    gone.insert(a.environment.clone());
                    continue;
                }
            },
        };
        let fenced = |e: &Error| matches!(e, Error::Fenced { .. });
        let mut step = || -> Result<(Attempt, Option<Error>)> {
            if settled.insert(a.environment.clone()) {
                store.settle(&a.environment, epoch)?;
            }
            run_one(
                store,
                actuator,
                a,
                epoch,
                timeout,
                receipts.as_deref_mut(),
                &host,
            )
        };
        match step() {
            Ok((attempt, unsigned)) => {
                report(&attempt);
                pass.attempts.push(attempt);
                if unsigned.is_some() {
                    pass.receipt_error = unsigned;
                }
            }
            Err(e) if fenced(&e) => {
                if let Some(l) = leases {
                    l.lost(&a.environment);
                }
                gone.insert(a.environment.clone());
                pass.deposed.push(a.environment.clone());
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(w) = receipts {
        match w.finish() {
            Ok(done) => {
                store.receipts_written(&done.ids)?;
                pass.receipts = Some(done.added);
            }
            Err(e) => {
                pass.receipts = Some(0);
                pass.receipt_error.get_or_insert(e);
            }
        }
    }
    Ok(pass)
}

/// Journals, runs and records one action (and signs and writes its receipt).
fn run_one(
    store: &mut Store,
    actuator: &Actuator,
    a: &Action,
    epoch: Option<i64>,
    timeout: Duration,
    receipts: Option<&mut Writer>,
    host: &str,
) -> Result<(Attempt, Option<Error>)> {
    let started = Instant::now();
    let info = a.info();
    let id = store.begin(&info, epoch, now())?;
    let outcome = actuator.run(&info, epoch, timeout);
    let duration_ms = started.elapsed().as_millis() as i64;
    let at = now();
    let mut unsigned = None;
    let receipt = match (&receipts, &outcome.error) {
        (Some(w), None) => match w.sign(
            Apply {
                agent: a.agent.clone(),
                environment: a.environment.clone(),
                action: a.action.as_str().into(),
                version: a.version.clone(),
                previous_version: a.previous_version.clone(),
                generation: a.generation.clone(),
                commit: a.commit.clone(),
                // Milliseconds: two applies of one pair within a second stay in order.
                applied_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                duration_ms,
                actuator: actuator.describe(),
                reconciler: String::new(),
                host: host.to_string(),
                idempotency_key: a.idempotency_key.clone(),
                epoch,
            },
            &a.path,
        ) {
            Ok(line) => Some(line),
            // The action ran: record it, and say why it has no receipt.
            Err(e) => {
                unsigned = Some(e);
                None
            }
        },
        _ => None,
    };
    let finished = state::model::Finished {
        id,
        output: &outcome.output,
        at,
        duration_ms,
        receipt: receipt.as_deref(),
    };
    match &outcome.error {
        None => {
            let applied = (a.action != Kind::Remove).then(|| Applied {
                agent: a.agent.clone(),
                environment: a.environment.clone(),
                version: a.version.clone().unwrap_or_default(),
                generation: a.generation.clone(),
                commit: a.commit.clone(),
                applied_at: at,
                replica: String::new(),
            });
            let removed =
                (a.action == Kind::Remove).then_some((a.agent.as_str(), a.environment.as_str()));
            store.succeed(&finished, &a.environment, epoch, applied.as_ref(), removed)?;
            if let (Some(w), Some(line)) = (receipts, receipt) {
                w.stage(id, &a.commit, line);
                // A failed write stays staged and in the journal: the pass's end tries again.
                let _ = w.flush_due();
            }
            Ok((
                Attempt {
                    action: a.clone(),
                    result: state::model::JournalResult::Applied,
                    error: None,
                    duration_ms,
                    epoch,
                },
                unsigned,
            ))
        }
        Some(error) => {
            store.fail(&finished, epoch, &a.agent, &a.environment, error)?;
            Ok((
                Attempt {
                    action: a.clone(),
                    result: state::model::JournalResult::Failed,
                    error: Some(error.clone()),
                    duration_ms,
                    epoch,
                },
                None,
            ))
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
