//! A change of the tracked branch in review terms, for `diff` and `check` (and any other front
//! end): the deployment changes from base to head explained by base's history, what the change
//! does to the settings files, head's validation, and the private keys any of its commits adds.
//! Only the agents whose record files differ are followed, so a focused history (no index)
//! reads those agents alone.

use std::collections::HashSet;

use git2::Oid;

use crate::error::{Error, Result};
use crate::finding::{self, Code, Finding};
use crate::git::history::{self, Focus, History, Progress};
use crate::git::repo::{Repo, short};
use crate::model::Deployment;
use crate::model::config::Config;
use crate::model::record::{self, Identity, Record};
use crate::model::validate::{self, Threads};
use crate::review::policy::{self, Change, Stays};
use crate::review::settings::SettingChange;
use crate::support::secret;

/// The records of deployment rows, as the policy compares them.
pub fn records_of(rows: &[Deployment]) -> Vec<Record> {
    rows.iter()
        .map(|d| Record {
            agent: d.agent.clone(),
            environment: d.environment.clone(),
            version: d.version.clone(),
            annotations: Default::default(),
            path: d.path.clone(),
            version_line: 1,
            version_column: 1,
        })
        .collect()
}

/// The agents whose record files differ between the trees of base and head, by those files'
/// content on either side; `None` when a record of base does not parse (its pair is then in
/// older content, which only the whole history knows).
fn touched_agents(
    repo: &Repo,
    base_tree: Oid,
    head_tree: Oid,
    config: &Config,
) -> Result<Option<Focus>> {
    let changed = history::changed_files(&repo.git, Some(base_tree), Some(head_tree))?;
    let read = |blob| -> Result<Option<Identity>> {
        let blob = repo
            .git
            .find_blob(blob)
            .map_err(|e| Error::git("reading a record", e))?;
        Ok(record::identity(blob.content()))
    };
    let mut agents = HashSet::new();
    for (path, before, after) in changed {
        if !config.in_deployments(&path) || !record::is_record_file(&path) {
            continue;
        }
        if let Some(blob) = before {
            match read(blob)? {
                Some(id) => agents.insert(id.agent),
                None => return Ok(None),
            };
        }
        if let Some(id) = after.map(read).transpose()?.flatten() {
            agents.insert(id.agent);
        }
    }
    Ok(Some(Focus::new(agents)))
}

/// The changes from base to head, explained by base's history, and head's validation.
pub struct Review {
    pub changes: Vec<Change>,
    /// What the change does to ledgit.yaml, tokens.yaml and revocations.yaml.
    pub settings: Vec<SettingChange>,
    pub head_report: validate::Report,
    pub base: Oid,
    pub head: Oid,
    /// Whether base is an ancestor of head (otherwise the two states are compared as they are).
    pub base_is_ancestor: bool,
    /// Base's history, when the change touches records (its caveats are worth saying).
    pub base_history: Option<History>,
}

/// Reviews the change from `base` to `head`, with the gates' clock at `now`; `progress` hears
/// about a long history walk.
pub fn review(
    repo: &Repo,
    base: Oid,
    head: Oid,
    now: i64,
    progress: &mut dyn FnMut(Progress),
) -> Result<Review> {
    let base_is_ancestor =
        base == head || repo.git.graph_descendant_of(head, base).unwrap_or(false);
    let config = repo.config_at(head)?;
    let head_tree = repo.tree_at(head)?;
    let focus = touched_agents(repo, repo.tree_at(base)?.id(), head_tree.id(), &config)?;
    // Head's files are read first; checking them is CPU work alone, done on a second thread
    // while this one reads base's history (two readers of the same pack slow each other down).
    let files = validate::read_tree(&repo.git, &head_tree, &config)?;
    let (loaded, head_report) = std::thread::scope(|s| {
        let checking = s.spawn(|| files.check(&config, Threads::One));
        let loaded = match &focus {
            // No record changes: nothing to explain, no history to read.
            Some(focus) if focus.is_empty() => None,
            _ => Some(crate::git::load::focused(
                repo,
                Some(base),
                focus.as_ref(),
                progress,
            )),
        };
        let report = checking.join().map_err(|_| Error::Internal {
            what: "validating head failed".into(),
        });
        (loaded.transpose(), report)
    });
    let (loaded, head_report) = (loaded?, head_report?);
    let settings = crate::review::settings::changes(repo, base, head);
    let Some(loaded) = loaded else {
        return Ok(Review {
            changes: Vec::new(),
            settings,
            head_report,
            base,
            head,
            base_is_ancestor,
            base_history: None,
        });
    };
    let base_records = records_of(&loaded.history.current());
    let mut changes = policy::changes(&base_records, &head_report.parsed);
    if let Some(focus) = &focus {
        // Pairs whose files the change leaves alone are not its changes (a focused history
        // knows only the touched agents anyway).
        changes.retain(|c| focus.contains(&c.agent));
    }
    let agents: HashSet<&str> = changes.iter().map(|c| c.agent.as_str()).collect();
    let stays = Stays::of_agents(&loaded.history, |a| agents.contains(a));
    policy::explain(&mut changes, &config, &stays, &head_report.parsed, now);
    Ok(Review {
        changes,
        settings,
        head_report,
        base,
        head,
        base_is_ancestor,
        base_history: Some(loaded.history),
    })
}

/// What `check` reports on a review: head's validation, the policy's verdict on each change and
/// the private keys the change's commits add, sorted, each once.
pub fn check(repo: &Repo, review: &Review) -> Result<Vec<Finding>> {
    let mut findings = review.head_report.findings.clone();
    findings.extend(policy::evaluate(&review.changes));
    findings.extend(keys_in_change(repo, review.base, review.head)?);
    finding::sort(&mut findings);
    findings.dedup_by(|a, b| a.code == b.code && a.path == b.path && a.line == b.line);
    Ok(findings)
}

/// Private keys added by any commit between base and head (a key added and removed again in
/// the same pull request is still in its history).
pub fn keys_in_change(repo: &Repo, base: Oid, head: Oid) -> Result<Vec<Finding>> {
    let git = |e: git2::Error| Error::git("walking the change", e);
    let mut walk = repo.git.revwalk().map_err(git)?;
    walk.push(head).map_err(git)?;
    walk.hide(base).map_err(git)?;
    let mut out = Vec::new();
    for id in walk {
        let commit = repo.git.find_commit(id.map_err(git)?).map_err(git)?;
        let parent = commit
            .parent_ids()
            .next()
            .map(|p| repo.git.find_commit(p).map(|c| c.tree_id()));
        let parent = parent.transpose().map_err(git)?;
        for (path, _, after) in history::changed_files(&repo.git, parent, Some(commit.tree_id()))? {
            let Some(blob) = after else {
                continue;
            };
            let Ok((size, _)) = repo.git.odb().and_then(|o| o.read_header(blob)) else {
                continue;
            };
            // The same bound as `validate`: a larger file is a finding, never a silent pass.
            if size as u64 > validate::MAX_SCAN_SIZE {
                out.push(
                    Finding::new(
                        Code::Unscanned,
                        &path,
                        1,
                        1,
                        format!(
                            "commit {} adds {path} ({size} bytes), too large to scan for private keys",
                            short(commit.id())
                        ),
                    )
                    .hint("keep large files out of the deployments repository"),
                );
                continue;
            }
            let Ok(blob) = repo.git.find_blob(blob) else {
                continue;
            };
            if let Some(line) = secret::private_key_line(blob.content()) {
                out.push(
                    Finding::new(
                        Code::PrivateKey,
                        &path,
                        line,
                        1,
                        format!("commit {} adds private key material to {path}", short(commit.id())),
                    )
                    .hint("remove the commit from the branch (rewrite it), rotate the key (it is compromised) and keep keys outside the repository"),
                );
            }
        }
    }
    Ok(out)
}

/// Where environment `dst` differs from `src` in `history`'s current records: the changes
/// `promote --all --from SRC --to DST` would make, each with how long its SRC version has run
/// in SRC (whatever DST's `promote_from` says) and the policy's context.
pub fn between_environments(
    config: &Config,
    history: &History,
    src: &str,
    dst: &str,
    now: i64,
) -> Result<Vec<Change>> {
    for env in [src, dst] {
        if config.environment(env).is_none() {
            return Err(config.unknown_environment(env));
        }
    }
    let current = records_of(&history.current());
    let mut target = current.clone();
    for r in current.iter().filter(|r| r.environment == src) {
        let path = config.record_path(&r.agent, dst);
        match target
            .iter_mut()
            .find(|t| t.agent == r.agent && t.environment == dst)
        {
            Some(t) => t.version = r.version.clone(),
            None => target.push(Record {
                environment: dst.to_string(),
                path,
                ..r.clone()
            }),
        }
    }
    let mut changes = policy::changes(&current, &target);
    let stays = Stays::new(history);
    policy::explain(&mut changes, config, &stays, &current, now);
    // Promotion context is always about SRC here, whatever DST's promote_from says.
    for c in &mut changes {
        if c.promotion.as_ref().is_none_or(|p| p.from != src)
            && let Some(v) = &c.version
        {
            let soak = config.environment(dst).and_then(|e| e.soak);
            c.promotion = Some(policy::Promotion::measure(
                &stays, &c.agent, src, v, soak, now, false,
            ));
        }
    }
    Ok(changes)
}
