//! Planning a pass: what the tip declares (validated records with their generations) against
//! what the store says was applied gives `deploy`, `update` and `remove` actions, each with an
//! idempotency key that is the same for every attempt of the same desired change. Removals run
//! only when pruning is asked for (otherwise they are reported out of sync, as Argo CD does). A
//! record that does not validate at the tip is left alone and reported.

use std::collections::{BTreeMap, BTreeSet};

use git2::{Oid, Repository};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::finding::{Finding, Severity};
use crate::model::Deployment;
use crate::model::config::Config;
use crate::reconcile::actuator::ActionInfo;
use crate::reconcile::state::model::Applied;

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Deploy,
    Update,
    Remove,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deploy => "deploy",
            Kind::Update => "update",
            Kind::Remove => "remove",
        }
    }
}

/// One planned action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Action {
    pub action: Kind,
    pub agent: String,
    pub environment: String,
    pub version: Option<String>,
    pub previous_version: Option<String>,
    pub generation: String,
    pub commit: String,
    pub idempotency_key: String,
    /// The record's file at the commit (for a removal, where it was): a receipt's subject.
    #[serde(skip)]
    pub path: String,
}

impl Action {
    pub fn info(&self) -> ActionInfo {
        ActionInfo {
            action: self.action.as_str().into(),
            agent: self.agent.clone(),
            environment: self.environment.clone(),
            version: self.version.clone(),
            previous_version: self.previous_version.clone(),
            commit: self.commit.clone(),
            generation: self.generation.clone(),
            idempotency_key: self.idempotency_key.clone(),
        }
    }
}

/// A desired deployment at the tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub agent: String,
    pub environment: String,
    pub version: String,
    pub generation: String,
    /// The record's file.
    pub path: String,
}

/// What a pass will do.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// The commit the plan was made from.
    pub commit: String,
    pub actions: Vec<Action>,
    /// Removals not run because pruning was not asked for: out of sync.
    pub out_of_sync: Vec<Action>,
    /// Findings of records at the tip that do not validate; their pairs are left alone.
    pub findings: Vec<Finding>,
    /// Environments left alone because the tip does not contain the commit last applied there.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Held>,
}

/// An environment held: the store says `applied_commit` was applied there last (`agent` at
/// `version`, the newest apply), and the tip planned from does not contain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    pub environment: String,
    pub applied_commit: String,
    pub agent: String,
    pub version: String,
}

/// The idempotency key of an action: the same for every attempt of the same desired change.
pub fn idempotency_key(
    kind: Kind,
    agent: &str,
    env: &str,
    version: Option<&str>,
    generation: &str,
) -> String {
    let text = format!(
        "{}\0{agent}\0{env}\0{}\0{generation}",
        kind.as_str(),
        version.unwrap_or("")
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    crate::support::hex::encode(&digest.as_ref()[..16])
}

/// What the tip of the tracked branch declares.
#[derive(Debug, Default)]
pub struct Tip {
    pub desired: Vec<Desired>,
    /// Pairs to leave alone: their record does not validate at the tip.
    pub skip: BTreeSet<(String, String)>,
    /// The findings of those records.
    pub findings: Vec<Finding>,
}

/// The desired deployments at `tip`, and the pairs to leave alone because their record does
/// not validate there (with the findings).
pub fn desired(
    repo: &Repository,
    tip: Oid,
    config: &Config,
    current: &[Deployment],
) -> Result<Tip> {
    let tree = repo
        .find_commit(tip)
        .and_then(|c| c.tree())
        .map_err(|e| Error::git("reading the tip", e))?;
    let report = crate::model::validate::tree(repo, &tree, config)?;
    let bad_paths: BTreeSet<&str> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.path.as_str())
        .collect();
    let mut skip = BTreeSet::new();
    for r in &report.parsed {
        if bad_paths.contains(r.path.as_str()) {
            skip.insert((r.agent.clone(), r.environment.clone()));
        }
    }
    // A file that does not parse at all keeps the pair of its last parsable content.
    for d in current {
        if bad_paths.contains(d.path.as_str()) {
            skip.insert((d.agent.clone(), d.environment.clone()));
        }
    }
    let generations: BTreeMap<(&str, &str), &str> = current
        .iter()
        .map(|d| {
            (
                (d.agent.as_str(), d.environment.as_str()),
                d.generation.as_str(),
            )
        })
        .collect();
    let mut out = Vec::new();
    for r in &report.parsed {
        let key = (r.agent.clone(), r.environment.clone());
        if skip.contains(&key) {
            continue;
        }
        let generation = generations
            .get(&(r.agent.as_str(), r.environment.as_str()))
            .copied()
            .unwrap_or_default();
        out.push(Desired {
            agent: r.agent.clone(),
            environment: r.environment.clone(),
            version: r.version.clone(),
            generation: generation.to_string(),
            path: r.path.clone(),
        });
    }
    let findings = report
        .findings
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    Ok(Tip {
        desired: out,
        skip,
        findings,
    })
}

/// Plans a pass. `environments` limits it (empty: all).
pub fn plan(
    commit: Oid,
    desired: &[Desired],
    applied: &[Applied],
    skip: &BTreeSet<(String, String)>,
    environments: &[String],
    prune: bool,
) -> Plan {
    let wanted = |env: &str| environments.is_empty() || environments.iter().any(|e| e == env);
    let commit = commit.to_string();
    let applied_by: BTreeMap<(&str, &str), &Applied> = applied
        .iter()
        .map(|a| ((a.agent.as_str(), a.environment.as_str()), a))
        .collect();
    let mut plan = Plan {
        commit: commit.clone(),
        ..Plan::default()
    };
    let action = |kind,
                  agent: &str,
                  env: &str,
                  version: Option<&str>,
                  previous: Option<&str>,
                  generation: &str,
                  path: &str| Action {
        action: kind,
        agent: agent.into(),
        environment: env.into(),
        version: version.map(str::to_string),
        previous_version: previous.map(str::to_string),
        generation: generation.into(),
        commit: commit.clone(),
        idempotency_key: idempotency_key(kind, agent, env, version, generation),
        path: path.into(),
    };
    let mut desired_keys = BTreeSet::new();
    for d in desired.iter().filter(|d| wanted(&d.environment)) {
        desired_keys.insert((d.agent.as_str(), d.environment.as_str()));
        match applied_by.get(&(d.agent.as_str(), d.environment.as_str())) {
            None => plan.actions.push(action(
                Kind::Deploy,
                &d.agent,
                &d.environment,
                Some(&d.version),
                None,
                &d.generation,
                &d.path,
            )),
            Some(a) if a.version != d.version || a.generation != d.generation => {
                plan.actions.push(action(
                    Kind::Update,
                    &d.agent,
                    &d.environment,
                    Some(&d.version),
                    Some(&a.version),
                    &d.generation,
                    &d.path,
                ))
            }
            Some(_) => {}
        }
    }
    for a in applied.iter().filter(|a| wanted(&a.environment)) {
        let key = (a.agent.as_str(), a.environment.as_str());
        if desired_keys.contains(&key) || skip.contains(&(a.agent.clone(), a.environment.clone())) {
            continue;
        }
        let removal = action(
            Kind::Remove,
            &a.agent,
            &a.environment,
            None,
            Some(&a.version),
            &a.generation,
            "",
        );
        if prune {
            plan.actions.push(removal);
        } else {
            plan.out_of_sync.push(removal);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(agent: &str, env: &str, version: &str, generation: &str) -> Desired {
        Desired {
            agent: agent.into(),
            environment: env.into(),
            version: version.into(),
            generation: generation.into(),
            path: format!("deployments/{agent}/{env}.yaml"),
        }
    }

    fn a(agent: &str, env: &str, version: &str, generation: &str) -> Applied {
        Applied {
            agent: agent.into(),
            environment: env.into(),
            version: version.into(),
            generation: generation.into(),
            commit: "c".into(),
            applied_at: 0,
            replica: String::new(),
        }
    }

    #[test]
    fn plans_deploys_updates_and_removals() {
        let desired = [
            d("a", "prod", "2", "g1"),
            d("b", "prod", "1", "g2"),
            d("c", "prod", "1", "g9"),
        ];
        let applied = [
            a("a", "prod", "1", "g1"),
            a("c", "prod", "1", "g3"),
            a("z", "prod", "1", "g4"),
        ];
        let p = plan(
            Oid::ZERO_SHA1,
            &desired,
            &applied,
            &BTreeSet::new(),
            &[],
            false,
        );
        let kinds: Vec<(Kind, &str)> = p
            .actions
            .iter()
            .map(|x| (x.action, x.agent.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (Kind::Update, "a"),
                (Kind::Deploy, "b"),
                (Kind::Update, "c")
            ]
        );
        assert_eq!(p.out_of_sync.len(), 1);
        let pruned = plan(
            Oid::ZERO_SHA1,
            &desired,
            &applied,
            &BTreeSet::new(),
            &[],
            true,
        );
        assert_eq!(pruned.actions.last().unwrap().action, Kind::Remove);
        let staging_only = plan(
            Oid::ZERO_SHA1,
            &desired,
            &applied,
            &BTreeSet::new(),
            &["staging".into()],
            true,
        );
        assert!(staging_only.actions.is_empty());
        let skip: BTreeSet<(String, String)> = [("z".to_string(), "prod".to_string())]
            .into_iter()
            .collect();
        assert_eq!(
            plan(Oid::ZERO_SHA1, &desired, &applied, &skip, &[], true)
                .actions
                .len(),
            3
        );
    }

    #[test]
    fn idempotency_keys_are_stable_per_desired_change() {
        let k = |v| idempotency_key(Kind::Update, "a", "prod", Some(v), "g");
        assert_eq!(k("1"), k("1"));
        assert_ne!(k("1"), k("2"));
        assert_eq!(k("1").len(), 32);
    }
}
