//! The history engine: what ran where, and since when, derived from the commit log alone.
//!
//! It walks the first-parent chain of the tracked branch once, oldest first. A commit whose
//! records folder has the same tree id as its parent's is skipped without opening deeper trees;
//! otherwise only the subtrees that changed are diffed, and each changed blob is parsed once
//! (cached by blob id). Identity is the (agent, environment) pair in a record's content, not its
//! path. The result, a [`History`], holds the chain, the deployment events and the warnings; it
//! answers snapshots at any commit or time, and is kept on disk by `index` so that the next query
//! only walks new commits.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use git2::{Oid, Repository};

use crate::error::{Error, Result};
use crate::record::{self, Identity};
use crate::validate::is_record_file;

/// What happened to a (agent, environment) pair in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The pair appeared (a new generation).
    Deployed,
    /// Its version changed.
    Updated,
    /// The pair disappeared.
    Removed,
    /// Internal: the record moved to another path with the same version (no deployment event).
    Moved,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deployed => "deployed",
            Action::Updated => "updated",
            Action::Removed => "removed",
            Action::Moved => "moved",
        }
    }
}

/// A commit on the chain that carries events or warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub id: Oid,
    /// Position on the chain (0 = oldest).
    pub pos: u32,
    /// Committer time, seconds since the epoch (UTC).
    pub time: i64,
    /// `Name <email>`.
    pub author: String,
    pub author_time: i64,
    /// The first line of the message.
    pub subject: String,
}

/// One event. `commit` indexes [`History::commits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub commit: u32,
    pub agent: String,
    pub environment: String,
    pub action: Action,
    /// `None` for `removed`.
    pub version: Option<String>,
    /// `None` for `deployed`.
    pub previous_version: Option<String>,
    /// The record's path after the commit (before it, for `removed`).
    pub path: String,
}

/// A record file that did not parse at some commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub commit: u32,
    pub path: String,
}

/// Per-path state of the walk: the blob and the last parsable identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathState {
    pub blob: Oid,
    pub identity: Option<Identity>,
}

/// The history of one branch's records folder up to its tip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// The records folder the history is about.
    pub folder: String,
    /// First-parent chain, oldest first: commit ids and committer times.
    pub chain: Vec<Oid>,
    pub times: Vec<i64>,
    /// The records folder's tree at each commit of the chain.
    pub folder_trees: Vec<Option<Oid>>,
    /// Commits that carry events or warnings, in chain order.
    pub commits: Vec<CommitInfo>,
    /// Events in chain order; within a commit by agent, then environment.
    pub events: Vec<Event>,
    pub warnings: Vec<Warning>,
    /// Record files at the tip, for continuing the walk.
    pub paths: BTreeMap<String, PathState>,
    /// The oldest commit is a shallow-clone boundary: the history before it is missing.
    pub shallow: bool,
}

/// One row of a snapshot: a pair and its current record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deployment {
    pub agent: String,
    pub environment: String,
    pub version: String,
    pub path: String,
    /// The commit at which the pair last came into existence.
    pub generation: String,
    /// When the version last changed (committer time, RFC 3339).
    pub updated_at: String,
    pub updated_commit: String,
    #[serde(skip)]
    pub updated_time: i64,
    #[serde(skip)]
    pub generation_time: i64,
}

/// Progress of a long walk, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// Reading the chain: commits read so far.
    Chain(u64),
    /// Diffing: done of total.
    Diff(u64, u64),
    Done,
}

impl History {
    /// The tip commit, if the branch has commits.
    pub fn tip(&self) -> Option<Oid> {
        self.chain.last().copied()
    }

    /// The position of a commit on the chain.
    pub fn position(&self, id: Oid) -> Option<u32> {
        self.chain.iter().rposition(|c| *c == id).map(|p| p as u32)
    }

    /// The commit an event belongs to.
    pub fn commit_of(&self, e: &Event) -> &CommitInfo {
        &self.commits[e.commit as usize]
    }

    /// The history as it was at chain position `pos` (inclusive): a prefix view.
    pub fn truncated(&self, pos: u32) -> History {
        let n = pos as usize + 1;
        let commits_n = self.commits.partition_point(|c| c.pos <= pos);
        let events_n = self
            .events
            .partition_point(|e| (e.commit as usize) < commits_n);
        let warnings_n = self
            .warnings
            .partition_point(|w| (w.commit as usize) < commits_n);
        History {
            folder: self.folder.clone(),
            chain: self.chain[..n].to_vec(),
            times: self.times[..n].to_vec(),
            folder_trees: self.folder_trees[..n].to_vec(),
            commits: self.commits[..commits_n].to_vec(),
            events: self.events[..events_n].to_vec(),
            warnings: self.warnings[..warnings_n].to_vec(),
            paths: BTreeMap::new(),
            shallow: self.shallow,
        }
    }

    /// The newest chain position whose committer time is at or before `t` (chain order decides,
    /// so a clock that went backwards cannot reorder history).
    pub fn position_at(&self, t: i64) -> Option<u32> {
        self.times.iter().rposition(|&ct| ct <= t).map(|p| p as u32)
    }

    /// The deployments after chain position `pos` (inclusive), sorted by agent and environment.
    pub fn snapshot(&self, pos: Option<u32>) -> Vec<Deployment> {
        let Some(pos) = pos else {
            return Vec::new();
        };
        let mut state: BTreeMap<(&str, &str), Deployment> = BTreeMap::new();
        for e in &self.events {
            let c = &self.commits[e.commit as usize];
            if c.pos > pos {
                break;
            }
            let key = (e.agent.as_str(), e.environment.as_str());
            match e.action {
                Action::Deployed => {
                    state.insert(
                        key,
                        Deployment {
                            agent: e.agent.clone(),
                            environment: e.environment.clone(),
                            version: e.version.clone().unwrap_or_default(),
                            path: e.path.clone(),
                            generation: c.id.to_string(),
                            updated_at: crate::when::rfc3339(c.time),
                            updated_commit: c.id.to_string(),
                            updated_time: c.time,
                            generation_time: c.time,
                        },
                    );
                }
                Action::Updated => {
                    if let Some(d) = state.get_mut(&key) {
                        d.version = e.version.clone().unwrap_or_default();
                        d.path = e.path.clone();
                        d.updated_at = crate::when::rfc3339(c.time);
                        d.updated_commit = c.id.to_string();
                        d.updated_time = c.time;
                    }
                }
                Action::Moved => {
                    if let Some(d) = state.get_mut(&key) {
                        d.path = e.path.clone();
                    }
                }
                Action::Removed => {
                    state.remove(&key);
                }
            }
        }
        state.into_values().collect()
    }

    /// The snapshot at the tip.
    pub fn current(&self) -> Vec<Deployment> {
        self.snapshot(self.chain.len().checked_sub(1).map(|p| p as u32))
    }

    /// Deployment events only (no internal `moved` entries).
    pub fn deployment_events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(|e| e.action != Action::Moved)
    }
}

/// Reads the first-parent chain from `tip` back to the root (or to `stop`, exclusive), oldest
/// first: ids, committer times, records-folder trees and commit metadata.
struct ChainPart {
    ids: Vec<Oid>,
    times: Vec<i64>,
    trees: Vec<Option<Oid>>,
    meta: Vec<(String, i64, String)>,
    /// The walk reached `stop`.
    reached_stop: bool,
    shallow: bool,
}

fn read_chain(
    repo: &Repository,
    tip: Oid,
    folder: &str,
    stop: Option<&dyn Fn(Oid) -> bool>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ChainPart> {
    let git = |what: &'static str| move |e| Error::git(what, e);
    let shallow_roots = shallow_roots(repo);
    let mut part = ChainPart {
        ids: Vec::new(),
        times: Vec::new(),
        trees: Vec::new(),
        meta: Vec::new(),
        reached_stop: false,
        shallow: false,
    };
    let folder_path = std::path::Path::new(folder);
    let mut next = Some(tip);
    while let Some(id) = next {
        if let Some(stop) = stop
            && stop(id)
        {
            part.reached_stop = true;
            break;
        }
        let commit = repo.find_commit(id).map_err(git("reading a commit"))?;
        let tree = commit.tree().map_err(git("reading a tree"))?;
        let folder_tree = match tree.get_path(folder_path) {
            Ok(entry) if entry.kind() == Some(git2::ObjectType::Tree) => Some(entry.id()),
            _ => None,
        };
        let author = commit.author();
        let who = format!(
            "{} <{}>",
            String::from_utf8_lossy(author.name_bytes()),
            String::from_utf8_lossy(author.email_bytes())
        );
        let subject = commit
            .summary_bytes()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default();
        part.ids.push(id);
        part.times.push(commit.committer().when().seconds());
        part.trees.push(folder_tree);
        part.meta.push((who, author.when().seconds(), subject));
        if part.ids.len().is_multiple_of(4096) {
            progress(Progress::Chain(part.ids.len() as u64));
        }
        next = commit.parent_ids().next();
        if next.is_none() && shallow_roots.contains(&id) {
            part.shallow = true;
        }
    }
    part.ids.reverse();
    part.times.reverse();
    part.trees.reverse();
    part.meta.reverse();
    Ok(part)
}

/// Commits at which a shallow clone's history is cut.
fn shallow_roots(repo: &Repository) -> BTreeSet<Oid> {
    if !repo.is_shallow() {
        return BTreeSet::new();
    }
    std::fs::read_to_string(repo.path().join("shallow"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| Oid::from_str(l.trim()).ok())
        .collect()
}

/// Builds the history of `tip` from scratch.
pub fn build(
    repo: &Repository,
    tip: Oid,
    folder: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<History> {
    let mut history = History {
        folder: folder.to_string(),
        ..History::default()
    };
    extend(repo, &mut history, tip, progress)?;
    Ok(history)
}

/// Extends a history whose tip is a first-parent ancestor of `tip` with the new commits.
/// When its tip is not on `tip`'s chain (a rewritten branch), the history is rebuilt from
/// scratch and `false` is returned.
pub fn extend(
    repo: &Repository,
    history: &mut History,
    tip: Oid,
    progress: &mut dyn FnMut(Progress),
) -> Result<bool> {
    let old_tip = history.tip();
    let stop = old_tip.map(|t| move |id: Oid| id == t);
    let part = read_chain(
        repo,
        tip,
        &history.folder,
        stop.as_ref().map(|f| f as &dyn Fn(Oid) -> bool),
        progress,
    )?;
    let extended = old_tip.is_none() || part.reached_stop;
    if !extended {
        // The old tip is not on the new chain (force push, rebase): the walk went to the root,
        // so start over with what it read.
        *history = History {
            folder: std::mem::take(&mut history.folder),
            ..History::default()
        };
    }
    if history.chain.is_empty() {
        history.shallow = part.shallow;
    }
    let mut walker = Walker::new(repo, std::mem::take(&mut history.paths));
    let total = part.ids.len() as u64;
    let base = history.chain.len();
    let mut prev_tree = history.folder_trees.last().copied().flatten();
    for (i, id) in part.ids.iter().enumerate() {
        let pos = (base + i) as u32;
        let tree = part.trees[i];
        if tree != prev_tree {
            let mut changes = Vec::new();
            diff_trees(repo, prev_tree, tree, &history.folder, &mut changes)?;
            let (events, warnings) = walker.apply(&changes)?;
            if !events.is_empty() || !warnings.is_empty() {
                let (author, author_time, subject) = part.meta[i].clone();
                let index = history.commits.len() as u32;
                history.commits.push(CommitInfo {
                    id: *id,
                    pos,
                    time: part.times[i],
                    author,
                    author_time,
                    subject,
                });
                for mut e in events {
                    e.commit = index;
                    history.events.push(e);
                }
                for path in warnings {
                    history.warnings.push(Warning {
                        commit: index,
                        path,
                    });
                }
            }
        }
        prev_tree = tree;
        if i.is_multiple_of(1024) {
            progress(Progress::Diff(i as u64, total));
        }
    }
    history.chain.extend(&part.ids);
    history.times.extend(&part.times);
    history.folder_trees.extend(&part.trees);
    history.paths = walker.paths;
    progress(Progress::Done);
    Ok(extended || old_tip.is_none())
}

/// A changed record file: (path, blob before, blob after).
type Change = (String, Option<Oid>, Option<Oid>);

/// A tree entry for diffing: (sort key, is a tree, id, file mode).
type TreeItem = (Vec<u8>, bool, Oid, i32);

/// Diffs two trees of the records folder, descending only into subtrees that differ.
fn diff_trees(
    repo: &Repository,
    old: Option<Oid>,
    new: Option<Oid>,
    prefix: &str,
    out: &mut Vec<Change>,
) -> Result<()> {
    if old == new {
        return Ok(());
    }
    let entries = |id: Option<Oid>| -> Result<Vec<TreeItem>> {
        let Some(id) = id else {
            return Ok(Vec::new());
        };
        let tree = repo
            .find_tree(id)
            .map_err(|e| Error::git("reading a tree", e))?;
        Ok(tree
            .iter()
            .map(|e| {
                let is_tree = e.kind() == Some(git2::ObjectType::Tree);
                let mut key = e.name_bytes().to_vec();
                if is_tree {
                    key.push(b'/');
                }
                (key, is_tree, e.id(), e.filemode())
            })
            .collect())
    };
    let a = entries(old)?;
    let b = entries(new)?;
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let ord = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.0.cmp(&y.0),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        let (left, right) = match ord {
            std::cmp::Ordering::Less => {
                i += 1;
                (Some(&a[i - 1]), None)
            }
            std::cmp::Ordering::Greater => {
                j += 1;
                (None, Some(&b[j - 1]))
            }
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
                (Some(&a[i - 1]), Some(&b[j - 1]))
            }
        };
        let sample = left.or(right).expect("one side is present");
        if let (Some(l), Some(r)) = (left, right)
            && l.2 == r.2
            && l.3 == r.3
        {
            continue;
        }
        let name = String::from_utf8_lossy(sample.0.strip_suffix(b"/").unwrap_or(&sample.0));
        let path = format!("{prefix}/{name}");
        if sample.1 {
            diff_trees(repo, left.map(|e| e.2), right.map(|e| e.2), &path, out)?;
        } else if is_record_file(&path) {
            // Symbolic links are never records.
            let blob =
                |e: Option<&(Vec<u8>, bool, Oid, i32)>| e.filter(|e| e.3 != 0o120000).map(|e| e.2);
            let (before, after) = (blob(left), blob(right));
            if before != after {
                out.push((path, before, after));
            }
        }
    }
    Ok(())
}

struct Walker<'r> {
    repo: &'r Repository,
    /// Parsed identity of each blob seen (None: did not parse).
    blobs: HashMap<Oid, Option<Identity>>,
    paths: BTreeMap<String, PathState>,
    /// For each pair, the paths whose last parsable content declares it.
    pairs: HashMap<(String, String), BTreeSet<String>>,
}

fn pair_key(id: &Identity) -> (String, String) {
    (id.agent.clone(), id.environment.clone())
}

impl<'r> Walker<'r> {
    fn new(repo: &'r Repository, paths: BTreeMap<String, PathState>) -> Self {
        let mut pairs: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
        for (path, state) in &paths {
            if let Some(id) = &state.identity {
                pairs.entry(pair_key(id)).or_default().insert(path.clone());
            }
        }
        Walker {
            repo,
            blobs: HashMap::new(),
            paths,
            pairs,
        }
    }

    fn identity(&mut self, blob: Oid) -> Result<Option<Identity>> {
        if let Some(id) = self.blobs.get(&blob) {
            return Ok(id.clone());
        }
        let content = self
            .repo
            .find_blob(blob)
            .map_err(|e| Error::git("reading a record", e))?;
        let id = record::identity(content.content());
        self.blobs.insert(blob, id.clone());
        Ok(id)
    }

    /// The version and path of a pair, from the (lexicographically first) path that holds it.
    fn pair_state(&self, key: &(String, String)) -> Option<(String, String)> {
        let path = self.pairs.get(key)?.iter().next()?;
        let id = self.paths.get(path)?.identity.as_ref()?;
        Some((id.version.clone(), path.clone()))
    }

    fn set_path(&mut self, path: String, state: Option<PathState>) {
        let old = match state {
            Some(s) => {
                if let Some(id) = &s.identity {
                    self.pairs
                        .entry(pair_key(id))
                        .or_default()
                        .insert(path.clone());
                }
                let new_key = s.identity.as_ref().map(pair_key);
                let old = self.paths.insert(path.clone(), s);
                // Unlink the old pair only when it differs from the new one.
                old.and_then(|o| o.identity)
                    .filter(|o| Some(pair_key(o)) != new_key)
            }
            None => self.paths.remove(&path).and_then(|o| o.identity),
        };
        if let Some(old) = old {
            let key = pair_key(&old);
            if let Some(set) = self.pairs.get_mut(&key) {
                set.remove(&path);
                if set.is_empty() {
                    self.pairs.remove(&key);
                }
            }
        }
    }

    /// Applies one commit's changes; returns its events (sorted) and unparsable paths.
    fn apply(&mut self, changes: &[Change]) -> Result<(Vec<Event>, Vec<String>)> {
        let mut affected: BTreeSet<(String, String)> = BTreeSet::new();
        let mut warnings = Vec::new();
        let mut updates: Vec<(String, Option<PathState>)> = Vec::with_capacity(changes.len());
        for (path, _before, after) in changes {
            let old = self.paths.get(path).and_then(|s| s.identity.clone());
            if let Some(old) = &old {
                affected.insert(pair_key(old));
            }
            let new_state = match after {
                None => None,
                Some(blob) => {
                    let parsed = self.identity(*blob)?;
                    if parsed.is_none() {
                        warnings.push(path.clone());
                    }
                    // An unparsable file keeps the identity of its last parsable content.
                    let identity = parsed.or(old);
                    if let Some(id) = &identity {
                        affected.insert(pair_key(id));
                    }
                    Some(PathState {
                        blob: *blob,
                        identity,
                    })
                }
            };
            updates.push((path.clone(), new_state));
        }
        let before: Vec<Option<(String, String)>> =
            affected.iter().map(|k| self.pair_state(k)).collect();
        for (path, state) in updates {
            self.set_path(path, state);
        }
        let mut events = Vec::new();
        for (key, before) in affected.into_iter().zip(before) {
            let after = self.pair_state(&key);
            let (action, version, previous, path) = match (before, after) {
                (None, Some((v, p))) => (Action::Deployed, Some(v), None, p),
                (Some((old, _)), Some((v, p))) if old != v => {
                    (Action::Updated, Some(v), Some(old), p)
                }
                (Some((_, old_path)), Some((_, p))) if old_path != p => {
                    (Action::Moved, None, None, p)
                }
                (Some((old, p)), None) => (Action::Removed, None, Some(old), p),
                _ => continue,
            };
            let (agent, environment) = key;
            events.push(Event {
                commit: 0,
                agent,
                environment,
                action,
                version,
                previous_version: previous,
                path,
            });
        }
        Ok((events, warnings))
    }
}
