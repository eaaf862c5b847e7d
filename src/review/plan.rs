//! Planning a change of versions: from the records of one repository state and the pairs to
//! change, the files to write (each edited in place by [`crate::model::edit`], or created), the
//! deployment changes they make and the policy's findings on them (the gates of
//! [`crate::review::policy`], with the history's context). `ledgit promote` and `ledgit set` write the
//! plan to the work tree; the server's proposals commit it on a new branch. Both plan here, so
//! a change proposed from the web page is exactly the one the command would make.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::finding::{self, Finding};
use crate::git::history::History;
use crate::model::config::Config;
use crate::model::record::Record;
use crate::model::validate::Report;
use crate::review::policy::{self, Change, Stays};

/// One intended edit: the pair, the new version, the record to copy annotations from when the
/// pair has no record yet.
#[derive(Debug, Clone)]
pub struct Target {
    pub agent: String,
    pub environment: String,
    pub version: String,
    pub template: Option<Record>,
}

/// What a plan comes to.
#[derive(Debug)]
pub enum Planned {
    /// A target's file exists but does not parse: its findings; nothing can be written.
    Unreadable(Vec<Finding>),
    /// The versions are already set.
    Unchanged,
    /// The files to write and the changes they make, for the policy to judge: only a judged
    /// [`Plan`] can be written, so no caller can ask whether a plan is refused before the
    /// policy has seen it.
    Ready(Draft),
}

/// Files to write and what they change, before the policy has judged them.
#[derive(Debug)]
pub struct Draft {
    writes: Vec<(String, String)>,
    changes: Vec<Change>,
    /// Every record after the change.
    new: Vec<Record>,
}

impl Draft {
    /// Adds the history's context to the changes (since when upstream, rollbacks) and the
    /// policy's findings on them. `history` is the branch's; `now` the gates' clock.
    pub fn judge(self, config: &Config, history: &History, now: i64) -> Plan {
        let Draft {
            writes,
            mut changes,
            new,
        } = self;
        let wanted: std::collections::HashSet<String> =
            changes.iter().map(|c| c.agent.clone()).collect();
        let stays = Stays::of_agents(history, |a| wanted.contains(a));
        policy::explain(&mut changes, config, &stays, &new, now);
        let findings = policy::evaluate(&changes);
        Plan {
            writes,
            changes,
            findings,
        }
    }
}

/// Files to write, what they change, and the policy's findings on them (errors refuse the
/// plan unless overridden).
#[derive(Debug)]
pub struct Plan {
    /// (path from the repository root, new text), in target order.
    pub writes: Vec<(String, String)>,
    pub changes: Vec<Change>,
    /// The policy's findings.
    pub findings: Vec<Finding>,
}

impl Plan {
    /// Whether the policy refuses the plan.
    pub fn refused(&self) -> bool {
        finding::has_errors(&self.findings)
    }
}

/// The targets of promoting `agents` (every agent of `from` when `None`) from `from` to `to`.
/// An agent without a record in `from` is an error naming the agents that have one.
pub fn promote_targets(
    report: &Report,
    from: &str,
    to: &str,
    agents: Option<&[String]>,
) -> Result<Vec<Target>> {
    let sources: Vec<&Record> = report
        .parsed
        .iter()
        .filter(|r| r.environment == from)
        .collect();
    // The first record of each agent in `from` (duplicates are a finding of their own).
    let mut by_agent: HashMap<&str, &Record> = HashMap::new();
    for r in &sources {
        by_agent.entry(r.agent.as_str()).or_insert(r);
    }
    let wanted: Vec<String> = match agents {
        Some(a) => a.to_vec(),
        None => sources.iter().map(|r| r.agent.clone()).collect(),
    };
    wanted
        .into_iter()
        .map(|agent| {
            let Some(src) = by_agent.get(agent.as_str()) else {
                let known: Vec<&str> = sources.iter().map(|r| r.agent.as_str()).collect();
                return Err(Error::invalid(
                    format!("agent `{agent}` has no record in {from}"),
                    crate::model::shape::known(&agent, &known, &format!("agents in {from}")),
                ));
            };
            Ok(Target {
                agent,
                environment: to.to_string(),
                version: src.version.clone(),
                template: Some((*src).clone()),
            })
        })
        .collect()
}

/// The target of setting `agent`'s version in `environment`: the environment must be declared,
/// the version well-formed, and the agent a DNS label with a record somewhere, unless `create`
/// (a new agent).
pub fn set_target(
    config: &Config,
    report: &Report,
    agent: &str,
    environment: &str,
    version: &str,
    create: bool,
) -> Result<Target> {
    if config.environment(environment).is_none() {
        return Err(config.unknown_environment(environment));
    }
    if let Some(message) = crate::model::record::version_problem(version) {
        return Err(Error::invalid(
            message,
            "use a non-empty version of at most 128 characters without white space or control characters",
        ));
    }
    if !create && !report.parsed.iter().any(|r| r.agent == agent) {
        let agents: Vec<&str> = report.parsed.iter().map(|r| r.agent.as_str()).collect();
        return Err(Error::invalid(
            format!("agent `{agent}` has no record in any environment"),
            format!(
                "pass --create to deploy a new agent; {}",
                crate::model::shape::known(agent, &agents, "agents")
            ),
        ));
    }
    if !crate::model::shape::is_dns_label(agent) {
        return Err(Error::invalid(
            format!("`{agent}` is not a valid agent name"),
            "use a DNS label: lower-case letters, digits and '-'",
        ));
    }
    Ok(Target {
        agent: agent.to_string(),
        environment: environment.to_string(),
        version: version.to_string(),
        template: None,
    })
}

/// Plans `targets` against the state `report` describes: `read` gives a record file's text by
/// its path. The plan is not judged yet ([`Draft::judge`] needs the history).
pub fn plan(
    config: &Config,
    report: &Report,
    targets: &[Target],
    read: &dyn Fn(&str) -> Result<String>,
) -> Result<Planned> {
    // Where each pair's record is (the first, as with duplicate pairs everywhere), so that
    // promoting hundreds of agents does not search the records once per agent.
    let mut at: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, r) in report.parsed.iter().enumerate() {
        at.entry((r.agent.as_str(), r.environment.as_str()))
            .or_insert(i);
    }
    let mut unreadable: Vec<Finding> = Vec::new();
    for t in targets {
        let path = config.record_path(&t.agent, &t.environment);
        if !at.contains_key(&(t.agent.as_str(), t.environment.as_str())) {
            unreadable.extend(report.findings.iter().filter(|f| f.path == path).cloned());
        }
    }
    if !unreadable.is_empty() {
        return Ok(Planned::Unreadable(unreadable));
    }
    let mut new = report.parsed.clone();
    let mut writes: Vec<(String, String)> = Vec::new();
    for t in targets {
        let key = (t.agent.as_str(), t.environment.as_str());
        match at.get(&key).map(|&i| &mut new[i]) {
            Some(r) if r.version == t.version => {}
            Some(r) => {
                let text = read(&r.path)?;
                writes.push((
                    r.path.clone(),
                    crate::model::edit::set_version(&r.path, &text, &t.version)?,
                ));
                r.version = t.version.clone();
            }
            None => {
                let path = config.record_path(&t.agent, &t.environment);
                let annotations = t
                    .template
                    .as_ref()
                    .map(|r| r.annotations.clone())
                    .unwrap_or_default();
                writes.push((
                    path.clone(),
                    crate::model::edit::new_record(
                        &t.agent,
                        &t.environment,
                        &t.version,
                        &annotations,
                    ),
                ));
                at.insert(key, new.len());
                new.push(Record {
                    agent: t.agent.clone(),
                    environment: t.environment.clone(),
                    version: t.version.clone(),
                    annotations,
                    path,
                    version_line: 5,
                    version_column: 10,
                });
            }
        }
    }
    let changes = policy::changes(&report.parsed, &new);
    if changes.is_empty() {
        return Ok(Planned::Unchanged);
    }
    Ok(Planned::Ready(Draft {
        writes,
        changes,
        new,
    }))
}

/// The commit message of a plan's changes.
pub fn commit_message(changes: &[Change]) -> String {
    let line = |c: &Change| {
        format!(
            "{} {} to {}",
            c.agent,
            c.version.as_deref().unwrap_or(""),
            c.environment
        )
    };
    match changes {
        [one] => format!("Deploy {}", line(one)),
        many => {
            let mut m = format!("Deploy {} changes\n\n", many.len());
            for c in many {
                m.push_str(&format!("- {}\n", line(c)));
            }
            m
        }
    }
}
