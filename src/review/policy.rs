//! Review and promotion policy: what a change of records means in terms of deployments (the
//! diff of two repository states by (agent, environment) pair), the context a reviewer needs
//! from history (since when a version has run upstream, when a rolled-back version last ran),
//! and the gates of `ledgit.yaml` applied to each change: `promote_from`, `soak`, downgrades.
//! Overrides are annotations on the record, so they are part of the reviewed diff.

use std::collections::{BTreeMap, HashMap};

use crate::finding::{Code, Finding};
use crate::git::history::{Action, Event, History};
use crate::model::config::Config;
use crate::model::record::Record;

/// Annotation that waives the soak time of a promotion; its value says why.
pub const SKIP_SOAK: &str = "ledgit.dev/skip-soak";
/// Annotation that waives `promote_from` (and the soak); its value says why.
pub const SKIP_PROMOTION: &str = "ledgit.dev/skip-promotion";
/// Annotation that allows a downgrade that is not a rollback; its value says why.
pub const ALLOW_DOWNGRADE: &str = "ledgit.dev/allow-downgrade";

/// One deployment change between two repository states.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub agent: String,
    pub environment: String,
    /// `deployed`, `updated` or `removed`, as in the history.
    pub action: Action,
    pub version: Option<String>,
    pub previous_version: Option<String>,
    /// Both versions are semantic versions and the new one is lower.
    pub downgrade: bool,
    /// The record's path (in the new state; in the old one for `removed`).
    pub path: String,
    /// Where the new version is written (1-based), for findings.
    #[serde(skip)]
    pub line: u32,
    #[serde(skip)]
    pub column: u32,
    #[serde(skip)]
    pub annotations: BTreeMap<String, String>,
    /// What history says about this change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub promotion: Option<Promotion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
}

impl Change {
    /// One line of context for a change, or an empty string: how long the version ran upstream
    /// and whether the soak is met, or when a rolled-back version last ran here (`check` and the
    /// page's preview say the same).
    pub fn context(&self) -> String {
        let c = self;
        let mut parts = Vec::new();
        if let Some(p) = &c.promotion {
            let text = match (&p.since, p.ran_for) {
                (Some(since), Some(ran)) => {
                    let soak = match p.soak {
                        Some(s) if p.soak_met => {
                            format!(", soak {} met", crate::support::when::format_duration(s))
                        }
                        Some(s) => format!(
                            ", soak {} not met",
                            crate::support::when::format_duration(s)
                        ),
                        None => String::new(),
                    };
                    format!(
                        "in {} since {since} (ran {}{soak})",
                        p.from,
                        crate::support::when::format_duration_short(ran)
                    )
                }
                _ if p.upstream_in_this_change => {
                    format!("also deployed to {} in this change", p.from)
                }
                _ => format!("never ran in {}", p.from),
            };
            parts.push(text);
        }
        if let Some(r) = &c.rollback {
            parts.push(format!("rollback: last ran here until {}", r.last_ran));
        }
        parts.join("; ")
    }
}

/// Context of a version entering an environment that promotes from another.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Promotion {
    /// The upstream environment.
    pub from: String,
    /// When the version last entered upstream (RFC 3339), if it ever ran there.
    pub since: Option<String>,
    /// How long it ran there in its longest stay, in seconds (to `now` for a stay that goes on).
    pub ran_for: Option<i64>,
    /// The soak the target environment requires, in seconds.
    pub soak: Option<i64>,
    pub soak_met: bool,
    /// The version is not upstream in history but this same change puts it there.
    pub upstream_in_this_change: bool,
}

impl Promotion {
    /// What the history says of `version` of `agent` entering an environment that promotes
    /// from `from` with the given soak; `in_change`: the same change puts it in `from`.
    pub fn measure(
        stays: &Stays,
        agent: &str,
        from: &str,
        version: &str,
        soak: Option<i64>,
        now: i64,
        in_change: bool,
    ) -> Promotion {
        let ran = stays.ran(agent, from, version, now);
        Promotion {
            from: from.to_string(),
            since: ran.map(|(start, _)| crate::support::when::rfc3339(start)),
            ran_for: ran.map(|(_, longest)| longest),
            soak,
            soak_met: soak.is_none_or(|s| ran.is_some_and(|(_, longest)| longest >= s)),
            upstream_in_this_change: ran.is_none() && in_change,
        }
    }
}

/// Context of a downgrade to a version that ran in the environment before.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rollback {
    /// When that version last stopped running there (RFC 3339).
    pub last_ran: String,
}

/// Committer times made monotonic along the first-parent chain: the time of position `p` is
/// the latest committer time of positions `0..=p`. Asked in chain order, it reads each time
/// once.
struct MonotonicClock<'h> {
    times: &'h [i64],
    /// The next position to fold in, and the latest time so far.
    next: usize,
    latest: i64,
}

impl<'h> MonotonicClock<'h> {
    fn new(history: &'h History) -> Self {
        MonotonicClock {
            times: history.times(),
            next: 0,
            latest: i64::MIN,
        }
    }

    /// The gate time at chain position `pos`; positions must not decrease between calls.
    fn at(&mut self, pos: u32) -> i64 {
        let end = (pos as usize + 1).min(self.times.len());
        if let Some(new) = self.times.get(self.next..end) {
            self.latest = new.iter().fold(self.latest, |a, &t| a.max(t));
            self.next = end;
        }
        self.latest
    }
}

/// The gate times of a whole chain, computed once: position `p`'s is the latest committer time
/// of positions `0..=p` (what [`MonotonicClock`] computes as it goes).
pub struct GateClock {
    times: Vec<i64>,
}

impl GateClock {
    pub fn new(history: &History) -> Self {
        let mut latest = i64::MIN;
        GateClock {
            times: history
                .times()
                .iter()
                .map(|&t| {
                    latest = latest.max(t);
                    latest
                })
                .collect(),
        }
    }

    /// The gate time at chain position `pos` (the last one's past the end).
    pub fn at(&self, pos: u32) -> i64 {
        self.times
            .get(pos as usize)
            .or(self.times.last())
            .copied()
            .unwrap_or(i64::MIN)
    }
}

/// A stay of one version in one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stay<'h> {
    version: &'h str,
    start: i64,
    /// `None` while it goes on.
    end: Option<i64>,
}

/// Every stay of every pair, from the history, in chain order.
pub struct Stays<'h> {
    /// agent -> environment -> stays.
    by_pair: HashMap<&'h str, HashMap<&'h str, Vec<Stay<'h>>>>,
}

impl<'h> Stays<'h> {
    pub fn new(history: &'h History) -> Self {
        Self::of_agents(history, |_| true)
    }

    /// The stays of the agents `wanted` says yes to (a pull request's changes concern a few
    /// agents out of hundreds).
    pub fn of_agents(history: &'h History, wanted: impl Fn(&str) -> bool) -> Self {
        let mut stays = Stays {
            by_pair: HashMap::new(),
        };
        // Gate times never go back along the chain: a commit dated before its parent counts
        // from its parent's time, so a backdated commit cannot make a version seem to have
        // soaked.
        let mut clock = MonotonicClock::new(history);
        for e in history.deployment_events() {
            if wanted(history.str(e.agent)) {
                stays.add(history, e, clock.at(history.commit_of(e).pos));
            }
        }
        stays
    }

    /// The stays of `events` alone (one agent's, in chain order), timed by `clock`: for a
    /// server that indexed each agent's events once and answers for one agent at a time.
    pub fn of_events(
        history: &'h History,
        events: impl Iterator<Item = &'h Event>,
        clock: &GateClock,
    ) -> Self {
        let mut stays = Stays {
            by_pair: HashMap::new(),
        };
        for e in events.filter(|e| e.action != Action::Moved) {
            stays.add(history, e, clock.at(history.commit_of(e).pos));
        }
        stays
    }

    /// Ends the pair's running stay at `t` and starts the event's version's.
    fn add(&mut self, history: &'h History, e: &'h Event, t: i64) {
        let list = self
            .by_pair
            .entry(history.str(e.agent))
            .or_default()
            .entry(history.str(e.environment))
            .or_default();
        if let Some(last) = list.last_mut()
            && last.end.is_none()
        {
            last.end = Some(t);
        }
        if let Some(v) = history.opt(e.version)
            && e.action != Action::Removed
        {
            list.push(Stay {
                version: v,
                start: t,
                end: None,
            });
        }
    }

    fn of(&self, agent: &str, env: &str) -> &[Stay<'h>] {
        self.by_pair
            .get(agent)
            .and_then(|envs| envs.get(env))
            .map_or(&[], Vec::as_slice)
    }

    /// (start of the latest stay, longest stay up to `now`) of `version` in `env`.
    pub fn ran(&self, agent: &str, env: &str, version: &str, now: i64) -> Option<(i64, i64)> {
        let stays: Vec<&Stay> = self
            .of(agent, env)
            .iter()
            .filter(|s| s.version == version)
            .collect();
        let latest = stays.last()?.start;
        let longest = stays
            .iter()
            .map(|s| s.end.unwrap_or(now).max(s.start) - s.start)
            .max()
            .unwrap_or(0);
        Some((latest, longest))
    }

    /// When `version` last stopped running in `env` (it is not running there now).
    pub fn last_ended(&self, agent: &str, env: &str, version: &str) -> Option<i64> {
        self.of(agent, env)
            .iter()
            .filter(|s| s.version == version)
            .filter_map(|s| s.end)
            .max()
    }
}

/// Compares two versions as semantic versions (a leading `v` allowed); `None` when either
/// is not one.
pub fn compare_versions(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let parse = |s: &str| semver::Version::parse(s.strip_prefix('v').unwrap_or(s)).ok();
    Some(parse(a)?.cmp_precedence(&parse(b)?))
}

/// The deployment changes from `old` to `new` records, by pair, sorted by agent then
/// environment.
pub fn changes(old: &[Record], new: &[Record]) -> Vec<Change> {
    fn index(records: &[Record]) -> BTreeMap<(&str, &str), &Record> {
        let mut map = BTreeMap::new();
        for r in records {
            // With duplicate pairs (a finding of their own) the first path wins.
            map.entry((r.agent.as_str(), r.environment.as_str()))
                .or_insert(r);
        }
        map
    }
    let (a, b) = (index(old), index(new));
    let mut keys: Vec<&(&str, &str)> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let (before, after) = (a.get(key), b.get(key));
        let (action, rec) = match (before, after) {
            (None, Some(r)) => (Action::Deployed, r),
            (Some(o), Some(n)) if o.version != n.version => (Action::Updated, n),
            (Some(o), None) => (Action::Removed, o),
            _ => continue,
        };
        let version = after.map(|r| r.version.clone());
        let previous_version = before.map(|r| r.version.clone());
        let downgrade = match (&previous_version, &version) {
            (Some(p), Some(v)) => compare_versions(v, p) == Some(std::cmp::Ordering::Less),
            _ => false,
        };
        out.push(Change {
            agent: key.0.to_string(),
            environment: key.1.to_string(),
            action,
            version,
            previous_version,
            downgrade,
            path: rec.path.clone(),
            line: if after.is_some() { rec.version_line } else { 1 },
            column: if after.is_some() {
                rec.version_column
            } else {
                1
            },
            annotations: after.map(|r| r.annotations.clone()).unwrap_or_default(),
            promotion: None,
            rollback: None,
        });
    }
    out
}

/// Adds history's context to each change: promotions (since when upstream, soak) and
/// rollbacks. `upstream` is the new state, for versions promoted within the same change.
pub fn explain(changes: &mut [Change], config: &Config, stays: &Stays, new: &[Record], now: i64) {
    for c in changes.iter_mut() {
        let Some(v) = c.version.clone() else {
            continue;
        };
        if let Some(env) = config.environment(&c.environment)
            && let Some(from) = &env.promote_from
        {
            let in_change = new
                .iter()
                .any(|r| r.agent == c.agent && &r.environment == from && r.version == v);
            c.promotion = Some(Promotion::measure(
                stays, &c.agent, from, &v, env.soak, now, in_change,
            ));
        }
        if c.downgrade
            && let Some(end) = stays.last_ended(&c.agent, &c.environment, &v)
        {
            c.rollback = Some(Rollback {
                last_ran: crate::support::when::rfc3339(end),
            });
        }
    }
}

/// The policy findings of explained changes.
pub fn evaluate(changes: &[Change]) -> Vec<Finding> {
    let mut out = Vec::new();
    for c in changes {
        let Some(v) = c.version.as_deref() else {
            continue;
        };
        let at = |code, message: String| Finding::new(code, &c.path, c.line, c.column, message);
        let waived = |key: &str| c.annotations.get(key).filter(|r| !r.trim().is_empty());
        // The soak is waived by skip-soak, or by skip-promotion, which waives both gates.
        let soak_waiver = || {
            waived(SKIP_SOAK)
                .map(|r| (SKIP_SOAK, r))
                .or(waived(SKIP_PROMOTION).map(|r| (SKIP_PROMOTION, r)))
        };
        // A rollback to a version that ran in this environment before is not a promotion.
        if let Some(p) = c.promotion.as_ref().filter(|_| c.rollback.is_none()) {
            let promoted = p.since.is_some() || (p.upstream_in_this_change && p.soak.is_none());
            if !promoted && p.upstream_in_this_change {
                let soak = crate::support::when::format_duration(p.soak.unwrap_or(0));
                let message = format!(
                    "{} {v} enters {} in this same change; {} requires it to run there for {soak} first",
                    c.agent, p.from, c.environment
                );
                let waiver = soak_waiver();
                out.push(match waiver {
                    Some((key, reason)) => override_finding(&c.path, c.line, c.column, &message, key, reason),
                    None => at(Code::SoakNotMet, message).hint(format!(
                        "land the {} change first and promote after {soak}, or annotate the record with {SKIP_SOAK}: \"<reason>\"",
                        p.from
                    )),
                });
            } else if !promoted {
                let message = format!(
                    "{} {v} has not run in {} (promote_from), so it may not enter {}",
                    c.agent, p.from, c.environment
                );
                out.push(match waived(SKIP_PROMOTION) {
                    Some(reason) => override_finding(&c.path, c.line, c.column, &message, SKIP_PROMOTION, reason),
                    None => at(Code::PromotionMissing, message).hint(format!(
                        "deploy {v} to {} first, or annotate the record with {SKIP_PROMOTION}: \"<reason>\"",
                        p.from
                    )),
                });
            } else if !p.soak_met
                && let Some(soak) = p.soak
            {
                let ran = p.ran_for.map_or(
                    "not yet".to_string(),
                    crate::support::when::format_duration_short,
                );
                let message = format!(
                    "{} {v} ran in {} for {ran}; {} requires a soak of {}",
                    c.agent,
                    p.from,
                    c.environment,
                    crate::support::when::format_duration(soak)
                );
                let waiver = soak_waiver();
                out.push(match waiver {
                    Some((key, reason)) => override_finding(&c.path, c.line, c.column, &message, key, reason),
                    None => at(Code::SoakNotMet, message).hint(format!(
                        "wait until it has run in {} for {}, or annotate the record with {SKIP_SOAK}: \"<reason>\"",
                        p.from,
                        crate::support::when::format_duration(soak)
                    )),
                });
            }
        }
        if c.downgrade && c.rollback.is_none() {
            let message = format!(
                "{} in {} goes down from {} to {v}, which never ran there",
                c.agent,
                c.environment,
                c.previous_version.as_deref().unwrap_or("")
            );
            out.push(match waived(ALLOW_DOWNGRADE) {
                Some(reason) => override_finding(&c.path, c.line, c.column, &message, ALLOW_DOWNGRADE, reason),
                None => at(Code::Downgrade, message).hint(format!(
                    "roll back only to a version that ran in {} before, deploy a newer version, or annotate the record with {ALLOW_DOWNGRADE}: \"<reason>\"",
                    c.environment
                )),
            });
        }
    }
    out
}

fn override_finding(
    path: &str,
    line: u32,
    column: u32,
    message: &str,
    key: &str,
    reason: &str,
) -> Finding {
    Finding::new(
        Code::PolicyOverride,
        path,
        line,
        column,
        format!("{message}; waived by {key}: {reason}"),
    )
    .hint("an override is reviewed like any other change; remove the annotation once it is no longer needed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(agent: &str, env: &str, version: &str) -> Record {
        Record {
            agent: agent.into(),
            environment: env.into(),
            version: version.into(),
            annotations: BTreeMap::new(),
            path: format!("deployments/{agent}/{env}.yaml"),
            version_line: 5,
            version_column: 10,
        }
    }

    #[test]
    fn changes_by_pair() {
        let old = [
            rec("a", "prod", "1.0.0"),
            rec("b", "prod", "1"),
            rec("c", "prod", "2.0.0"),
        ];
        let new = [
            rec("a", "prod", "1.1.0"),
            rec("c", "prod", "1.9.0"),
            rec("d", "prod", "1"),
        ];
        let got: Vec<(String, Action, bool)> = changes(&old, &new)
            .into_iter()
            .map(|c| (c.agent, c.action, c.downgrade))
            .collect();
        assert_eq!(
            got,
            [
                ("a".into(), Action::Updated, false),
                ("b".into(), Action::Removed, false),
                ("c".into(), Action::Updated, true),
                ("d".into(), Action::Deployed, false)
            ]
        );
    }

    #[test]
    fn semantic_version_order() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("1.10.0", "1.9.0"), Some(Greater));
        assert_eq!(compare_versions("v2.0.0-rc.1", "2.0.0"), Some(Less));
        assert_eq!(compare_versions("1.4", "1.3"), None);
        assert_eq!(compare_versions("sha-abc", "1.0.0"), None);
    }
}
