//! What the web page shows, as data: the deployment snapshot (agents by environments, drift,
//! sync states), an agent's page (per environment the current record, who and what made it so,
//! the gate's verdict in words, a timeline of the versions each environment ran, its history a
//! page at a time) and its deployments tab (each deployment's tokens from the ledger with their
//! status). The server renders these values as HTML and serves them as the pages' JSON twins;
//! both come from here, so the page and the API never disagree.

pub mod json;

use std::collections::HashMap;

use serde::Serialize;

use crate::git::history::{Action, Event, History};
use crate::model::Deployment;
use crate::model::config::Config;
use crate::model::ledger::Entry;
use crate::reconcile::state::Sync;
use crate::review::policy::{GateClock, Promotion, Stays};
use crate::support::when;
use crate::token::Status;
use crate::token::Verifier;

/// Tokens expiring sooner than this are flagged (14 days).
pub const EXPIRY_WARNING: i64 = 14 * 86_400;
/// Events per page of an agent's history.
pub const HISTORY_PAGE: usize = 25;
/// Agents per page of the snapshot.
pub const OVERVIEW_PAGE: usize = 100;
/// An environment offers at most this many earlier versions to roll back to.
pub const EARLIER_VERSIONS: usize = 20;
/// The timeline shows at most this many of the newest stays of each environment.
pub const TIMELINE_SPANS: usize = 40;

/// One cell of the snapshot: a deployment of an agent in an environment (borrowed from the
/// rows and sync states: a page of the snapshot allocates no string per cell).
#[derive(Debug, Clone, Serialize)]
pub struct Cell<'a> {
    pub version: &'a str,
    /// When the version last changed (RFC 3339).
    pub since: &'a str,
    #[serde(skip)]
    pub since_time: i64,
    pub commit: &'a str,
    pub path: &'a str,
    /// The reconciler's state, where its store is present.
    pub sync: Option<crate::reconcile::state::SyncState>,
    /// What runs: the version the reconciler applied, which replica applied it, and the last
    /// error while it is not in sync (where the store is present).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<&'a str>,
    /// When the last attempt failed and how many failed in a row (with `last_error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The upstream environment runs another version (this one has yet to be promoted, or
    /// deliberately differs).
    pub differs_from_upstream: bool,
}

/// One agent's row of the snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Row<'a> {
    pub agent: &'a str,
    /// Per environment of [`Overview::environments`], in promotion order.
    pub cells: Vec<Option<Cell<'a>>>,
    /// Its environments do not all run the same version.
    pub drift: bool,
    /// When its newest change landed (the latest of its cells' `since`).
    #[serde(skip)]
    pub last_change: i64,
    /// An open proposal changes one of its records.
    pub pending: bool,
}

/// Which agents the snapshot keeps by their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateFilter {
    /// Its environments run different versions.
    Drift,
    /// An environment differs from the one it promotes from.
    Upstream,
    /// The last attempt to apply one of its records failed.
    Failed,
    /// One of its records is not applied (failed, pending, or not yet tried).
    OutOfSync,
    /// An open proposal changes it.
    Proposals,
}

impl StateFilter {
    pub const ALL: [StateFilter; 5] = [
        StateFilter::Drift,
        StateFilter::Upstream,
        StateFilter::Failed,
        StateFilter::OutOfSync,
        StateFilter::Proposals,
    ];

    /// As the query string writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            StateFilter::Drift => "drift",
            StateFilter::Upstream => "upstream",
            StateFilter::Failed => "failed",
            StateFilter::OutOfSync => "out-of-sync",
            StateFilter::Proposals => "proposals",
        }
    }

    /// As the page's menu says it.
    pub fn label(self) -> &'static str {
        match self {
            StateFilter::Drift => "drift",
            StateFilter::Upstream => "≠ upstream",
            StateFilter::Failed => "failed",
            StateFilter::OutOfSync => "out of sync",
            StateFilter::Proposals => "pending proposals",
        }
    }
}

/// How the snapshot's agents are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sort {
    /// By name.
    #[default]
    Agent,
    /// Newest change first.
    Changed,
}

/// Which agents the snapshot shows, in which order, which page.
#[derive(Debug, Clone, Default)]
pub struct Selection<'a> {
    /// Agents whose name contains this, in any case.
    pub name: Option<&'a str>,
    pub state: Option<StateFilter>,
    pub sort: Sort,
    /// Agents named after this one (sorted by name), for the `next_after` links.
    pub after: Option<&'a str>,
    /// The page (from 1), [`OVERVIEW_PAGE`] agents each.
    pub page: usize,
    /// The agents an open proposal changes.
    pub pending: Option<&'a std::collections::HashSet<String>>,
    /// Every agent the filter keeps on one page (`ledgit status`), not [`OVERVIEW_PAGE`].
    pub all: bool,
}

/// The deployment snapshot: agents by environments in promotion order, a page at a time.
#[derive(Debug, Clone, Serialize)]
pub struct Overview<'a> {
    pub environments: &'a [String],
    pub agents: Vec<Row<'a>>,
    /// How many agents there are before the filter.
    pub total_agents: usize,
    /// How many agents the filter keeps (on all pages).
    pub matching_agents: usize,
    /// The position (from 1) of this page's first agent among those the filter keeps.
    pub first: usize,
    /// This page and how many there are (from 1).
    pub page: usize,
    pub pages: usize,
    /// The last agent of this page when more follow (sorted by name): the next page starts
    /// after it.
    pub next_after: Option<&'a str>,
}

/// What the snapshot's filters and columns need of `rows` and their sync states, computed once
/// per commit and read of the reconciler's store, not per request: the columns, each row's
/// column, and each agent's range of rows with its states.
#[derive(Debug, Clone)]
pub struct Digest {
    /// The declared environments in promotion order, then any a record names that ledgit.yaml
    /// does not declare (a finding of `validate`, but in the history all the same): shown, as
    /// `ledgit status` shows them, never dropped.
    pub environments: Vec<String>,
    /// The upstream column of each declared environment's column.
    upstream: Vec<Option<usize>>,
    /// Each row's column.
    columns: Vec<Option<usize>>,
    agents: Vec<Summary>,
}

/// What the snapshot's filters need to know of an agent, from its rows `start..end`.
#[derive(Debug, Clone)]
struct Summary {
    start: usize,
    end: usize,
    drift: bool,
    upstream: bool,
    failed: bool,
    out_of_sync: bool,
    last_change: i64,
}

impl Digest {
    /// The digest of `rows` (sorted by agent) and their sync states (in the same order).
    pub fn new(config: &Config, rows: &[Deployment], sync: Option<&[Sync]>) -> Digest {
        let mut environments: Vec<String> =
            config.environments.iter().map(|e| e.name.clone()).collect();
        let mut undeclared: Vec<&str> = rows
            .iter()
            .map(|d| d.environment.as_str())
            .filter(|e| config.environment(e).is_none())
            .collect();
        undeclared.sort_unstable();
        undeclared.dedup();
        environments.extend(undeclared.into_iter().map(str::to_string));
        let upstream: Vec<Option<usize>> = config
            .environments
            .iter()
            .map(|e| {
                e.promote_from
                    .as_deref()
                    .and_then(|u| config.environment_index(u))
            })
            .collect();
        let columns: Vec<Option<usize>> = rows
            .iter()
            .map(|d| environments.iter().position(|e| *e == d.environment))
            .collect();
        let mut agents: Vec<Summary> = Vec::new();
        let mut versions: Vec<Option<&str>> = vec![None; environments.len()];
        let mut start = 0;
        while start < rows.len() {
            let agent = rows[start].agent.as_str();
            let end = start
                + rows[start..]
                    .iter()
                    .take_while(|d| d.agent == agent)
                    .count();
            versions.iter_mut().for_each(|v| *v = None);
            let mut summary = Summary {
                start,
                end,
                drift: false,
                upstream: false,
                failed: false,
                out_of_sync: false,
                last_change: 0,
            };
            for (i, d) in rows.iter().enumerate().take(end).skip(start) {
                if let Some(c) = columns[i] {
                    versions[c] = Some(d.version.as_str());
                }
                summary.last_change = summary.last_change.max(d.updated_time);
                if let Some(state) = sync.and_then(|s| s.get(i)).map(|s| s.state) {
                    use crate::reconcile::state::SyncState;
                    summary.failed |= state == SyncState::Failed;
                    summary.out_of_sync |= state != SyncState::Synced;
                }
            }
            let mut present = versions.iter().flatten();
            let first = present.next();
            summary.drift = present.any(|v| Some(v) != first);
            summary.upstream = upstream.iter().enumerate().any(|(i, u)| {
                matches!((versions[i], u.and_then(|u| versions[u])), (Some(a), Some(b)) if a != b)
            });
            agents.push(summary);
            start = end;
        }
        Digest {
            environments,
            upstream,
            columns,
            agents,
        }
    }
}

/// The snapshot of `rows` with their sync states (in the order of `rows`) where known, and
/// their [`Digest`]: the agents `selection` keeps, in its order, a page of [`OVERVIEW_PAGE`].
pub fn overview<'a>(
    rows: &'a [Deployment],
    sync: Option<&'a [Sync]>,
    digest: &'a Digest,
    selection: &Selection,
) -> Overview<'a> {
    let name = selection.name.map(str::to_lowercase);
    let pending = |agent: &str| selection.pending.is_some_and(|p| p.contains(agent));
    let mut kept: Vec<&Summary> = digest
        .agents
        .iter()
        .filter(|s| {
            let agent = rows[s.start].agent.as_str();
            name.as_deref()
                .is_none_or(|f| agent.to_lowercase().contains(f))
                && match selection.state {
                    None => true,
                    Some(StateFilter::Drift) => s.drift,
                    Some(StateFilter::Upstream) => s.upstream,
                    Some(StateFilter::Failed) => s.failed,
                    Some(StateFilter::OutOfSync) => s.out_of_sync,
                    Some(StateFilter::Proposals) => pending(agent),
                }
        })
        .collect();
    if selection.sort == Sort::Changed {
        // Newest first; the name settles ties (the sort is stable, the rows are by name).
        kept.sort_by_key(|s| std::cmp::Reverse(s.last_change));
    }
    let matching = kept.len();
    let size = if selection.all {
        matching.max(1)
    } else {
        OVERVIEW_PAGE
    };
    let skip = match (selection.after, selection.sort) {
        (Some(a), Sort::Agent) => kept.partition_point(|s| rows[s.start].agent.as_str() <= a),
        _ => selection.page.saturating_sub(1).saturating_mul(size),
    }
    .min(matching);
    let more = matching > skip + size;
    let agents: Vec<Row> = kept[skip..matching.min(skip + size)]
        .iter()
        .map(|s| {
            let mut cells: Vec<Option<Cell>> = vec![None; digest.environments.len()];
            for (i, d) in rows.iter().enumerate().take(s.end).skip(s.start) {
                let Some(at) = digest.columns[i] else {
                    continue;
                };
                let observed = sync.and_then(|o| o.get(i));
                cells[at] = Some(Cell {
                    version: &d.version,
                    since: &d.updated_at,
                    since_time: d.updated_time,
                    commit: &d.updated_commit,
                    path: &d.path,
                    sync: observed.map(|o| o.state),
                    applied_version: observed.and_then(|o| o.applied.as_deref()),
                    applied_by: observed.and_then(|o| o.applied_by.as_deref()),
                    last_error: observed.and_then(|o| o.error.as_deref()),
                    error_at: observed.and_then(|o| o.error_at.as_deref()),
                    attempts: observed.and_then(|o| o.attempts),
                    differs_from_upstream: false,
                });
            }
            for (i, u) in digest.upstream.iter().enumerate() {
                let up = u.and_then(|u| cells[u].as_ref().map(|c| c.version));
                if let (Some(up), Some(cell)) = (up, cells[i].as_mut()) {
                    cell.differs_from_upstream = cell.version != up;
                }
            }
            let agent = rows[s.start].agent.as_str();
            Row {
                pending: pending(agent),
                agent,
                cells,
                drift: s.drift,
                last_change: s.last_change,
            }
        })
        .collect();
    let next_after = more
        .then(|| agents.last().map(|r| r.agent))
        .flatten()
        .filter(|_| selection.sort == Sort::Agent);
    Overview {
        environments: &digest.environments,
        total_agents: digest.agents.len(),
        matching_agents: matching,
        first: skip + 1,
        page: skip / size + 1,
        pages: matching.div_ceil(size).max(1),
        next_after,
        agents,
    }
}

/// The gate's verdict on promoting the upstream environment's version into an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Gate {
    /// The environment runs what upstream runs.
    InStep { from: String, version: String },
    /// The upstream version may be promoted now.
    Eligible {
        from: String,
        version: String,
        ran_for: i64,
        soak: Option<i64>,
    },
    /// It may be promoted once it has soaked upstream for `remaining` more seconds.
    Waiting {
        from: String,
        version: String,
        remaining: i64,
        soak: i64,
    },
    /// It may not be promoted.
    Blocked { from: String, reason: String },
}

/// A soak as people write it in `ledgit.yaml`: whole hours up to two days in hours (`24h`),
/// longer ones in days and hours (`3d`, `2d12h`).
fn soak_words(secs: i64) -> String {
    if secs % 3_600 == 0 && secs <= 2 * 86_400 {
        format!("{}h", secs / 3_600)
    } else {
        when::format_duration_short(secs)
    }
}

impl Gate {
    /// The verdict in words, for `environment`.
    pub fn words(&self, environment: &str) -> String {
        self.phrase(environment, "eligible")
    }

    /// The verdict in words when the upstream version is declared but not applied: an
    /// eligible gate counted what is declared there, so "2.1.1 runs in development" would be
    /// untrue.
    pub fn words_by_records(&self, environment: &str) -> String {
        match self {
            Gate::Eligible { soak: None, .. } => "eligible by the records".to_string(),
            _ => self.phrase(environment, "eligible by the records"),
        }
    }

    fn phrase(&self, environment: &str, eligible: &str) -> String {
        match self {
            Gate::InStep { from, version } => format!("in step with {from} ({version})"),
            Gate::Eligible {
                from,
                version,
                ran_for,
                soak,
            } => match soak {
                Some(s) => format!(
                    "{eligible}: {version} ran {} in {from} ({} soak met)",
                    when::format_duration_short(*ran_for),
                    soak_words(*s)
                ),
                None => format!("{eligible}: {version} runs in {from}"),
            },
            Gate::Waiting {
                from,
                version,
                remaining,
                soak,
            } => format!(
                "{version} eligible for {environment} in {}: {} soak in {from}",
                when::format_duration_short(*remaining),
                soak_words(*soak)
            ),
            Gate::Blocked { reason, .. } => format!("blocked: {reason}"),
        }
    }

    /// Whether promoting now passes the gate.
    pub fn promotable(&self) -> bool {
        matches!(self, Gate::Eligible { .. })
    }
}

/// The gate of `environment` for `agent` at `now` (`None` where it promotes from nowhere).
pub fn gate(
    config: &Config,
    stays: &Stays,
    current: &HashMap<&str, &Deployment>,
    agent: &str,
    environment: &str,
    now: i64,
) -> Option<Gate> {
    let env = config.environment(environment)?;
    let from = env.promote_from.clone()?;
    let Some(up) = current.get(from.as_str()) else {
        return Some(Gate::Blocked {
            reason: format!("{agent} has no record in {from}"),
            from,
        });
    };
    if current
        .get(environment)
        .is_some_and(|d| d.version == up.version)
    {
        return Some(Gate::InStep {
            from,
            version: up.version.clone(),
        });
    }
    let p = Promotion::measure(stays, agent, &from, &up.version, env.soak, now, false);
    let version = up.version.clone();
    Some(match (p.ran_for, env.soak) {
        (None, _) => Gate::Blocked {
            reason: format!("{version} never ran in {from}"),
            from,
        },
        (Some(ran_for), soak) if p.soak_met => Gate::Eligible {
            from,
            version,
            ran_for,
            soak,
        },
        (Some(ran_for), Some(soak)) => Gate::Waiting {
            from,
            version,
            remaining: soak - ran_for,
            soak,
        },
        (Some(ran_for), None) => Gate::Eligible {
            from,
            version,
            ran_for,
            soak: None,
        },
    })
}

/// Each agent's events and the chain's gate times, indexed once per history so that an agent's
/// page reads its own events, not the whole history.
pub struct AgentIndex {
    events: HashMap<String, Vec<u32>>,
    clock: GateClock,
}

impl AgentIndex {
    pub fn new(history: &History) -> Self {
        let mut events: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, e) in history.events().iter().enumerate() {
            if e.action != Action::Moved {
                events
                    .entry(history.str(e.agent).to_string())
                    .or_default()
                    .push(i as u32);
            }
        }
        AgentIndex {
            events,
            clock: GateClock::new(history),
        }
    }

    /// Whether the history has events of `agent`.
    pub fn contains(&self, agent: &str) -> bool {
        self.events.contains_key(agent)
    }
}

/// A commit as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CommitView {
    pub id: String,
    pub time: String,
    pub author: String,
    pub subject: String,
    /// The pull request it merged, read from its subject (`Merge pull request #12`, `(#12)`).
    pub pull_request: Option<u32>,
    /// Where that pull request is, when the server knows the host (the front end fills it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request_url: Option<String>,
    /// Who merged it, when that is someone else than its author: a merge commit's author
    /// (whose second parent's author made the change), or the committer (the front end fills
    /// it from the repository).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_by: Option<String>,
}

impl CommitView {
    /// Fills who made the change and who merged it from the commit in `repo`: for a merge, the
    /// change's author is the merged branch's tip's, and the merge's author merged it; for
    /// another commit, a committer who is not the author merged (or applied) it.
    pub fn people(&mut self, repo: &git2::Repository) {
        let Some(commit) = git2::Oid::from_str(&self.id)
            .ok()
            .and_then(|id| repo.find_commit(id).ok())
        else {
            return;
        };
        // Names only, as a card shows them; the merger only when someone else.
        let name = |s: &git2::Signature| s.name().unwrap_or("").to_string();
        let tip = commit.parent(1).ok();
        let (author, merger) = match &tip {
            Some(tip) => (tip.author(), commit.author()),
            None => (commit.author(), commit.committer()),
        };
        self.author = name(&author);
        self.merged_by = (author.email() != merger.email()).then(|| name(&merger));
    }
}

/// One environment of an agent's page.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentView {
    pub environment: String,
    pub record: Option<Deployment>,
    /// The commit that made the current version so.
    pub changed_by: Option<CommitView>,
    pub gate: Option<Gate>,
    /// The gate in words.
    pub verdict: Option<String>,
    /// The upstream environment, where there is one.
    pub promote_from: Option<String>,
    /// Versions that ran here before (newest first): candidates for a rollback.
    pub earlier_versions: Vec<String>,
    /// Versions to suggest for "set version": those the upstream environment runs and ran
    /// (newest first), then those that ran here before.
    pub suggested_versions: Vec<String>,
    /// What runs here according to the reconciler's store (applied version, sync state, last
    /// error, which replica applied it), where the store is present; the front end fills it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<Sync>,
    /// The upstream environment's declared version is not what runs there (by the reconciler's
    /// store): the gate counts what is declared, and this says what runs (`None` when it runs,
    /// or nothing is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_not_applied: Option<String>,
    /// What the signed receipts say of the declared version: when and by which reconciler it
    /// was applied, or that it is not yet (the front end fills it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptView>,
}

/// The receipt of an environment's declared version.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptView {
    /// When a valid receipt shows it applied, how long after the merge, by whom; none yet.
    pub applied: Option<crate::receipt::audit::Applied>,
    /// Whether a reconciler listed in ledgit.yaml may apply (and so signs for) this environment.
    pub expected: bool,
}

impl ReceiptView {
    /// The lag in words (`3s`, `2m10s`).
    pub fn lag(&self) -> String {
        self.applied
            .as_ref()
            .map(|a| crate::support::when::format_duration_short(a.lag_seconds.max(0)))
            .unwrap_or_default()
    }
}

impl AgentPage {
    /// Puts what the reconciler's store says runs (`observed(environment)`) beside each
    /// environment's record, and says on each gate whose upstream version is declared but not
    /// applied what runs there instead: the policy counts declarations, people need both.
    pub fn observe(&mut self, observed: impl Fn(&str) -> Option<Sync>) {
        for env in &mut self.environments {
            env.observed = observed(&env.environment);
        }
        let lagging: HashMap<String, String> = self
            .environments
            .iter()
            .filter_map(|e| {
                let (record, o) = (e.record.as_ref()?, e.observed.as_ref()?);
                if o.applied.as_deref() == Some(record.version.as_str()) {
                    return None;
                }
                let runs = match &o.applied {
                    Some(a) => format!("{a} still runs"),
                    None => "nothing runs yet".to_string(),
                };
                let why = match (&o.error, o.attempts) {
                    (Some(_), Some(n)) => {
                        format!(
                            ", the last of {n} attempt{} failed",
                            if n == 1 { "" } else { "s" }
                        )
                    }
                    _ => format!(" ({})", o.state),
                };
                Some((
                    e.environment.clone(),
                    format!(
                        "{} is declared in {} but not applied: {runs}{why}",
                        record.version, e.environment
                    ),
                ))
            })
            .collect();
        for env in &mut self.environments {
            let upstream = env.promote_from.as_deref().and_then(|u| lagging.get(u));
            let gated = matches!(env.gate, Some(Gate::Eligible { .. } | Gate::Waiting { .. }));
            if let (Some(words), true) = (upstream, gated) {
                env.upstream_not_applied = Some(words.clone());
                if let (Some(v), Some(g)) = (&mut env.verdict, &env.gate) {
                    *v = format!("{}; {words}", g.words_by_records(&env.environment));
                }
            }
        }
    }
}

/// A stretch of time one version ran in one environment.
#[derive(Debug, Clone, Serialize)]
pub struct Span {
    pub version: String,
    pub start: i64,
    /// `None` while it runs.
    pub end: Option<i64>,
}

/// The versions one environment ran over time.
#[derive(Debug, Clone, Serialize)]
pub struct Lane {
    pub environment: String,
    pub spans: Vec<Span>,
}

/// An event of an agent's history.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub environment: String,
    pub action: Action,
    pub version: Option<String>,
    pub previous_version: Option<String>,
    /// The change in words: `deployed 1.4.0`, `1.4.0 → 1.4.1`, `removed (was 1.4.1)`.
    pub summary: String,
    pub commit: CommitView,
}

/// An agent's page.
#[derive(Debug, Clone, Serialize)]
pub struct AgentPage {
    pub agent: String,
    /// The time the page is at, when it shows the past (`?at=`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub environments: Vec<EnvironmentView>,
    pub timeline: Vec<Lane>,
    /// Older stays were left out of the timeline (it shows the newest of each environment).
    pub timeline_truncated: bool,
    /// The first and last time the timeline covers.
    pub timeline_start: i64,
    pub timeline_end: i64,
    /// A page of the agent's history, newest first.
    pub history: Vec<EventView>,
    /// Where the next (older) page starts, if there is one.
    pub next_cursor: Option<usize>,
    /// How many events the agent has.
    pub events: usize,
}

fn commit_view(h: &History, e: &Event) -> CommitView {
    let c = h.commit_of(e);
    let subject = h.str(c.subject).to_string();
    CommitView {
        id: c.id.to_string(),
        time: when::rfc3339(c.time),
        author: h.str(c.author).to_string(),
        pull_request: crate::view::json::pull_request(&subject),
        pull_request_url: None,
        merged_by: None,
        subject,
    }
}

/// When an agent's page is: now, or (`?at=`) as the branch was at a time.
#[derive(Debug, Clone, Copy)]
pub struct AsOf {
    /// The time: the gates and the timeline end there.
    pub time: i64,
    /// The chain position of the newest commit at that time (`None` before the first): the page
    /// knows only the events up to it. `Now` is the tip.
    pub position: Option<u32>,
    pub past: bool,
}

impl AsOf {
    pub fn now(now: i64) -> AsOf {
        AsOf {
            time: now,
            position: Some(u32::MAX),
            past: false,
        }
    }
}

/// The agent's page as of `as_of`: `rows` is the snapshot then, `index` the history's
/// [`AgentIndex`]; `before` is the history cursor (an event position, from
/// [`AgentPage::next_cursor`]). `None` when the agent has neither a record nor a past.
pub fn agent_page(
    config: &Config,
    history: &History,
    index: &AgentIndex,
    rows: &[Deployment],
    agent: &str,
    before: Option<usize>,
    as_of: AsOf,
) -> Option<AgentPage> {
    let now = as_of.time;
    let mine: Vec<(usize, &Event)> = index
        .events
        .get(agent)
        .into_iter()
        .flatten()
        .filter_map(|&i| Some((i as usize, history.events().get(i as usize)?)))
        .filter(|(_, e)| {
            as_of
                .position
                .is_some_and(|p| history.commit_of(e).pos <= p)
        })
        .collect();
    let current: HashMap<&str, &Deployment> = rows
        .iter()
        .filter(|d| d.agent == agent)
        .map(|d| (d.environment.as_str(), d))
        .collect();
    if mine.is_empty() && current.is_empty() {
        return None;
    }
    let stays = Stays::of_events(history, mine.iter().map(|(_, e)| *e), &index.clock);
    // Lanes: each environment's stays, from the events (commit times, as people read them).
    let mut lanes: Vec<Lane> = config
        .environments
        .iter()
        .map(|e| Lane {
            environment: e.name.clone(),
            spans: Vec::new(),
        })
        .collect();
    let mut last_event: HashMap<&str, &Event> = HashMap::new();
    for (_, e) in &mine {
        let env = history.str(e.environment);
        let t = history.commit_of(e).time;
        last_event.insert(env, e);
        let Some(lane) = lanes.iter_mut().find(|l| l.environment == env) else {
            continue;
        };
        if let Some(open) = lane.spans.last_mut().filter(|s| s.end.is_none()) {
            open.end = Some(t.max(open.start));
        }
        if let (Some(v), false) = (history.opt(e.version), e.action == Action::Removed) {
            lane.spans.push(Span {
                version: v.to_string(),
                start: t,
                end: None,
            });
        }
    }
    // Rollback candidates: the versions each environment ran before, newest first, without the
    // current one; then every lane keeps its newest stays (past the cap, the timeline starts
    // later).
    // (Lanes are in the config's order of environments, and so is this.)
    let mut earlier_by_env: Vec<Vec<String>> = Vec::with_capacity(lanes.len());
    let mut timeline_truncated = false;
    for lane in &mut lanes {
        let running = current
            .get(lane.environment.as_str())
            .map(|d| d.version.as_str());
        let mut earlier: Vec<String> = Vec::new();
        for s in lane.spans.iter().rev() {
            if earlier.len() == EARLIER_VERSIONS {
                break;
            }
            if Some(s.version.as_str()) != running && !earlier.contains(&s.version) {
                earlier.push(s.version.clone());
            }
        }
        earlier_by_env.push(earlier);
        if lane.spans.len() > TIMELINE_SPANS {
            lane.spans.drain(..lane.spans.len() - TIMELINE_SPANS);
            timeline_truncated = true;
        }
    }
    let timeline_start = lanes
        .iter()
        .flat_map(|l| l.spans.first())
        .map(|s| s.start)
        .min()
        .unwrap_or(now);
    // What "set version" suggests: the upstream lane's versions, newest first, then this
    // environment's earlier ones.
    let suggestions: Vec<Vec<String>> = config
        .environments
        .iter()
        .zip(&earlier_by_env)
        .map(|(env, earlier)| {
            let running = current.get(env.name.as_str()).map(|d| d.version.as_str());
            let upstream = env
                .promote_from
                .as_deref()
                .and_then(|u| lanes.iter().find(|l| l.environment == u));
            let mut out: Vec<String> = Vec::new();
            for v in upstream
                .into_iter()
                .flat_map(|l| l.spans.iter().rev().map(|s| &s.version))
                .chain(earlier)
            {
                if out.len() == EARLIER_VERSIONS {
                    break;
                }
                if Some(v.as_str()) != running && !out.contains(v) {
                    out.push(v.clone());
                }
            }
            out
        })
        .collect();
    let environments = config
        .environments
        .iter()
        .zip(earlier_by_env)
        .zip(suggestions)
        .map(|((env, earlier), suggested_versions)| {
            let record = current.get(env.name.as_str()).map(|d| (*d).clone());
            let changed_by = record.as_ref().and_then(|_| {
                last_event
                    .get(env.name.as_str())
                    .map(|e| commit_view(history, e))
            });
            let gate = gate(config, &stays, &current, agent, &env.name, now);
            EnvironmentView {
                environment: env.name.clone(),
                verdict: gate.as_ref().map(|g| g.words(&env.name)),
                gate,
                record,
                changed_by,
                promote_from: env.promote_from.clone(),
                earlier_versions: earlier,
                suggested_versions,
                observed: None,
                upstream_not_applied: None,
                receipt: None,
            }
        })
        .collect();
    let events = mine.len();
    let end = before.map_or(mine.len(), |b| mine.partition_point(|(i, _)| *i < b));
    let start = end.saturating_sub(HISTORY_PAGE);
    let history_page = mine[start..end]
        .iter()
        .rev()
        .map(|(_, e)| {
            let version = history.opt(e.version).map(str::to_string);
            let previous_version = history.opt(e.previous_version).map(str::to_string);
            let summary = match (e.action, &version, &previous_version) {
                (Action::Updated, Some(v), Some(p)) => format!("{p} → {v}"),
                (Action::Removed, _, Some(p)) => format!("removed (was {p})"),
                (action, v, _) => format!("{} {}", action.as_str(), v.as_deref().unwrap_or("")),
            };
            EventView {
                environment: history.str(e.environment).to_string(),
                action: e.action,
                version,
                previous_version,
                summary,
                commit: commit_view(history, e),
            }
        })
        .collect();
    Some(AgentPage {
        agent: agent.to_string(),
        at: as_of.past.then(|| when::rfc3339(now)),
        environments,
        timeline: lanes,
        timeline_truncated,
        timeline_start,
        timeline_end: now.max(timeline_start + 1),
        history: history_page,
        next_cursor: (start > 0).then(|| mine[start].0),
        events,
    })
}

/// A token of the deployments tab.
#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    #[serde(flatten)]
    pub entry: Entry,
    pub status: Status,
    /// Seconds until it expires (negative once expired).
    pub expires_in: Option<i64>,
    /// Active and expiring within [`EXPIRY_WARNING`].
    pub expiry_warning: bool,
    /// When this server last saw it verify (best effort, since the server started).
    pub last_seen: Option<String>,
    /// Its entry in the revocation list, when revoked (the reason and time, where written).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<crate::model::revocations::Revocation>,
}

/// One deployment of the deployments tab, with its tokens.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentTokens {
    pub environment: String,
    pub record: Option<Deployment>,
    pub tokens: Vec<TokenView>,
}

/// The deployments tab of an agent: per environment, its tokens from the ledger (newest first).
#[allow(clippy::too_many_arguments)]
pub fn deployment_tokens(
    config: &Config,
    verifier: &Verifier,
    rows: &[Deployment],
    entries: &[Entry],
    revocations: &[crate::model::revocations::Revocation],
    agent: &str,
    last_seen: &dyn Fn(&str) -> Option<i64>,
    now: i64,
) -> Vec<DeploymentTokens> {
    config
        .environments
        .iter()
        .map(|env| {
            let mut tokens: Vec<TokenView> = entries
                .iter()
                .filter(|e| e.agent == agent && e.environment == env.name)
                .map(|e| {
                    let status = crate::token::status(e, verifier, now);
                    let expires_in = e.expires_at.map(|x| x - now);
                    TokenView {
                        entry: e.clone(),
                        status,
                        expires_in,
                        expiry_warning: status == Status::Active
                            && expires_in.is_some_and(|s| s < EXPIRY_WARNING),
                        last_seen: last_seen(&e.jti).map(when::rfc3339),
                        revocation: revocations.iter().find(|r| r.jti == e.jti).cloned(),
                    }
                })
                .collect();
            tokens.sort_by_key(|t| std::cmp::Reverse(t.entry.issued_at));
            DeploymentTokens {
                environment: env.name.clone(),
                record: rows
                    .iter()
                    .find(|d| d.agent == agent && d.environment == env.name)
                    .cloned(),
                tokens,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_comes_a_page_at_a_time_and_keeps_the_filter() {
        let config = crate::model::config::parse(
            "ledgit.yaml",
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: dev\n  - name: prod\n    promote_from: dev\n",
        )
        .unwrap();
        let row = |agent: String, environment: &str, version: &str| Deployment {
            agent,
            environment: environment.into(),
            version: version.into(),
            path: String::new(),
            generation: String::new(),
            updated_at: String::new(),
            updated_commit: String::new(),
            updated_time: 0,
            generation_time: 0,
        };
        let mut rows = Vec::new();
        for i in 0..250 {
            rows.push(row(format!("agent-{i:03}"), "dev", "2"));
            rows.push(row(
                format!("agent-{i:03}"),
                "prod",
                if i % 2 == 0 { "2" } else { "1" },
            ));
        }
        let digest = Digest::new(&config, &rows, None);
        let first = overview(&rows, None, &digest, &Selection::default());
        assert_eq!(
            (first.agents.len(), first.total_agents),
            (OVERVIEW_PAGE, 250)
        );
        assert_eq!(first.next_after, Some("agent-099"));
        assert!(!first.agents[0].drift && first.agents[1].drift);
        assert!(
            first.agents[1].cells[1]
                .as_ref()
                .unwrap()
                .differs_from_upstream
        );
        // A record in an environment ledgit.yaml does not declare is shown in a column of its
        // own after the declared ones, as `ledgit status` lists it.
        let mut odd = rows.clone();
        odd.insert(0, row("agent-000".into(), "canary", "3"));
        let odd_digest = Digest::new(&config, &odd, None);
        let shown = overview(&odd, None, &odd_digest, &Selection::default());
        assert_eq!(shown.environments, ["dev", "prod", "canary"]);
        assert_eq!(shown.agents[0].cells[2].as_ref().unwrap().version, "3");
        let third = overview(
            &rows,
            None,
            &digest,
            &Selection {
                after: Some("agent-199"),
                ..Default::default()
            },
        );
        assert_eq!(third.agents.len(), 50);
        assert_eq!(third.agents[0].agent, "agent-200");
        assert_eq!(third.next_after, None);
        let some = overview(
            &rows,
            None,
            &digest,
            &Selection {
                name: Some("-24"),
                ..Default::default()
            },
        );
        let names: Vec<&str> = some.agents.iter().map(|r| r.agent).collect();
        assert_eq!(
            names,
            [
                "agent-240",
                "agent-241",
                "agent-242",
                "agent-243",
                "agent-244",
                "agent-245",
                "agent-246",
                "agent-247",
                "agent-248",
                "agent-249"
            ]
        );
        assert_eq!(
            (some.matching_agents, some.total_agents, some.next_after),
            (10, 250, None)
        );
    }

    #[test]
    fn the_snapshot_filters_by_state_any_case_sorts_by_change_and_pages_by_number() {
        let config = crate::model::config::parse(
            "ledgit.yaml",
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: dev\n  - name: prod\n    promote_from: dev\n",
        )
        .unwrap();
        let row = |agent: String, environment: &str, version: &str, t: i64| Deployment {
            agent,
            environment: environment.into(),
            version: version.into(),
            path: String::new(),
            generation: "g".into(),
            updated_at: String::new(),
            updated_commit: String::new(),
            updated_time: t,
            generation_time: 0,
        };
        let mut rows = Vec::new();
        for i in 0..250i64 {
            let name = format!("Agent-{i:03}");
            rows.push(row(name.clone(), "dev", "2", i));
            rows.push(row(name, "prod", if i % 5 == 0 { "1" } else { "2" }, i));
        }
        let sync: Vec<Sync> = rows
            .iter()
            .enumerate()
            .map(|(i, d)| Sync {
                applied: Some(d.version.clone()),
                state: if i == 7 {
                    crate::reconcile::state::SyncState::Failed
                } else {
                    crate::reconcile::state::SyncState::Synced
                },
                error: None,
                applied_by: None,
                applied_at: None,
                error_at: None,
                attempts: None,
                next_attempt: None,
            })
            .collect();
        let pending: std::collections::HashSet<String> = ["Agent-010".to_string()].into();
        let digest = Digest::new(&config, &rows, Some(&sync));
        let pick = |state, sort, page, name| {
            overview(
                &rows,
                Some(&sync),
                &digest,
                &Selection {
                    name,
                    state,
                    sort,
                    after: None,
                    page,
                    pending: Some(&pending),
                    all: false,
                },
            )
        };
        let drift = pick(Some(StateFilter::Drift), Sort::Agent, 1, None);
        assert_eq!(
            (drift.matching_agents, drift.agents[1].agent),
            (50, "Agent-005")
        );
        assert!(
            drift
                .agents
                .iter()
                .all(|r| { r.cells.iter().flatten().any(|c| c.differs_from_upstream) })
        );
        let failed = pick(Some(StateFilter::Failed), Sort::Agent, 1, None);
        assert_eq!(failed.agents.len(), 1);
        assert_eq!(failed.agents[0].agent, "Agent-003");
        let pending_rows = pick(Some(StateFilter::Proposals), Sort::Agent, 1, None);
        assert_eq!(pending_rows.agents[0].agent, "Agent-010");
        // Any case; newest change first; page 3 of 3 with its range.
        assert_eq!(
            pick(None, Sort::Agent, 1, Some("agent-24")).matching_agents,
            10
        );
        let changed = pick(None, Sort::Changed, 1, None);
        assert_eq!(changed.agents[0].agent, "Agent-249");
        let last = pick(None, Sort::Changed, 3, None);
        assert_eq!(
            (last.first, last.page, last.pages, last.agents.len()),
            (201, 3, 3, 50)
        );
        assert_eq!(last.agents[49].agent, "Agent-000");
        assert_eq!(last.next_after, None);
        let beyond = pick(None, Sort::Agent, 9, None);
        assert!(beyond.agents.is_empty());
        let far = pick(None, Sort::Changed, usize::MAX, None);
        assert!(far.agents.is_empty() && far.first == 251);
    }

    /// The stays the agent page builds from its own events agree with those built from the
    /// whole history, version by version (the gates' answers depend on them).
    #[test]
    fn an_agents_own_events_give_the_same_stays_as_the_whole_history() {
        let dir = tempfile::tempdir().unwrap();
        crate::git::init::init(dir.path(), true, 1_800_000_000).unwrap();
        let repo = crate::git::repo::Repo::open(dir.path()).unwrap();
        let history = crate::git::load::history(&repo, repo.head().unwrap(), &mut |_| {})
            .unwrap()
            .history;
        let index = AgentIndex::new(&history);
        let everyone = Stays::new(&history);
        let now = 1_800_000_000;
        let mut compared = 0;
        for (agent, events) in &index.events {
            let own = Stays::of_events(
                &history,
                events.iter().map(|&i| &history.events()[i as usize]),
                &index.clock,
            );
            for e in events.iter().map(|&i| &history.events()[i as usize]) {
                let (env, v) = (history.str(e.environment), history.opt(e.version));
                if let Some(v) = v {
                    assert_eq!(
                        own.ran(agent, env, v, now),
                        everyone.ran(agent, env, v, now)
                    );
                    assert_eq!(
                        own.last_ended(agent, env, v),
                        everyone.last_ended(agent, env, v)
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared >= 12, "{compared}");
    }

    #[test]
    fn verdicts_read_as_sentences() {
        let waiting = Gate::Waiting {
            from: "staging".into(),
            version: "1.5.0".into(),
            remaining: 3 * 3600 + 12 * 60,
            soak: 86_400,
        };
        assert_eq!(
            waiting.words("production"),
            "1.5.0 eligible for production in 3h12m: 24h soak in staging"
        );
        let blocked = Gate::Blocked {
            from: "staging".into(),
            reason: "1.5.0 never ran in staging".into(),
        };
        assert_eq!(
            blocked.words("production"),
            "blocked: 1.5.0 never ran in staging"
        );
        assert!(!waiting.promotable());
        assert_eq!(soak_words(30 * 60), "30m");
        assert_eq!(soak_words(48 * 3_600), "48h");
        assert_eq!(soak_words(7 * 86_400), "7d");
    }
}
