//! The reconciler: makes the platform converge to what the tracked branch declares. A pass
//! compares the records at the tip (desired: validated, with their generations from the
//! history) with what the state store says was applied, plans `deploy`, `update` and `remove`
//! actions, and runs them through an actuator, journaling every attempt. Removals run only
//! when pruning is asked for (otherwise they are reported out of sync, as Argo CD does). A
//! record that does not validate at the tip is left alone and reported; the others still apply.
//! [`pass`] runs one pass (under leases when replicas share a PostgreSQL store, see [`lease`]);
//! `RefWatcher` tells `watch` as soon as the tracked ref moves.

pub mod actuator;
pub mod lease;
pub mod pass;
pub mod state;

pub use pass::{Attempt, Pass};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use git2::{Oid, Repository};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::finding::{Finding, Severity};
use crate::model::Deployment;
use crate::model::config::Config;
use crate::reconcile::actuator::ActionInfo;
use crate::reconcile::state::Applied;

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
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
                  generation: &str| Action {
        action: kind,
        agent: agent.into(),
        environment: env.into(),
        version: version.map(str::to_string),
        previous_version: previous.map(str::to_string),
        generation: generation.into(),
        commit: commit.clone(),
        idempotency_key: idempotency_key(kind, agent, env, version, generation),
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
            )),
            Some(a) if a.version != d.version || a.generation != d.generation => {
                plan.actions.push(action(
                    Kind::Update,
                    &d.agent,
                    &d.environment,
                    Some(&d.version),
                    Some(&a.version),
                    &d.generation,
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
        );
        if prune {
            plan.actions.push(removal);
        } else {
            plan.out_of_sync.push(removal);
        }
    }
    plan
}

/// Tells when refs of a repository may have moved. Watches the git directory (for `HEAD` and
/// `packed-refs`, which `git pack-refs` rewrites) and `refs/` recursively; ignores lock files
/// (a ref moves by a lock file renamed into place) and debounces bursts.
pub struct RefWatcher {
    _watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<()>,
}

impl RefWatcher {
    pub fn new(git_dir: &Path) -> Result<RefWatcher> {
        use notify::Watcher;
        let (tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res {
                // Reading a ref opens its file, and inotify reports opens: only changes count,
                // or every look at the branch would announce that it moved.
                let change = !matches!(event.kind, notify::EventKind::Access(_));
                let relevant = change
                    && event.paths.iter().any(|p| {
                        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        !name.ends_with(".lock")
                            && !p
                                .components()
                                .any(|c| c.as_os_str() == "objects" || c.as_os_str() == "ledgit")
                    });
                if relevant {
                    let _ = tx.send(());
                }
            }
        })
        .map_err(|source| Error::Watch {
            path: git_dir.to_path_buf(),
            source,
        })?;
        let watch = |w: &mut notify::RecommendedWatcher, p: PathBuf, mode| {
            w.watch(&p, mode)
                .map_err(|source| Error::Watch { path: p, source })
        };
        watch(
            &mut watcher,
            git_dir.to_path_buf(),
            notify::RecursiveMode::NonRecursive,
        )?;
        watch(
            &mut watcher,
            git_dir.join("refs"),
            notify::RecursiveMode::Recursive,
        )?;
        Ok(RefWatcher {
            _watcher: watcher,
            events,
        })
    }

    /// Waits up to `timeout` for a change; returns whether one came. After the first event,
    /// waits a little for the rest of the burst.
    pub fn wait(&self, timeout: Duration) -> bool {
        match self.events.recv_timeout(timeout) {
            Ok(()) => {
                while self.events.recv_timeout(Duration::from_millis(15)).is_ok() {}
                true
            }
            Err(_) => false,
        }
    }
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

    /// Reading refs must not look like a move (inotify reports opens): a watcher that woke on
    /// its own reads never slept, and `watch --fetch` never reached its fetch.
    #[test]
    fn the_ref_watcher_wakes_on_changes_not_on_reads() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().join(".git");
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(git.join("refs/heads/main"), "0".repeat(40)).unwrap();
        let watcher = RefWatcher::new(&git).unwrap();
        for _ in 0..20 {
            std::fs::read(git.join("HEAD")).unwrap();
            std::fs::read(git.join("refs/heads/main")).unwrap();
        }
        assert!(!watcher.wait(Duration::from_millis(300)), "woke on reads");
        std::fs::write(git.join("refs/heads/main.lock"), "1".repeat(40)).unwrap();
        std::fs::rename(
            git.join("refs/heads/main.lock"),
            git.join("refs/heads/main"),
        )
        .unwrap();
        assert!(watcher.wait(Duration::from_secs(5)), "missed a ref update");
    }

    #[test]
    fn idempotency_keys_are_stable_per_desired_change() {
        let k = |v| idempotency_key(Kind::Update, "a", "prod", Some(v), "g");
        assert_eq!(k("1"), k("1"));
        assert_ne!(k("1"), k("2"));
        assert_eq!(k("1").len(), 32);
    }
}
