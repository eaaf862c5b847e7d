//! The history engine: what ran where, and since when, derived from the commit log alone.
//!
//! It walks the first-parent chain of the tracked branch once, oldest first. A commit whose
//! records folder has the same tree id as its parent's is skipped without opening deeper trees;
//! otherwise only the subtrees that changed are diffed, and each changed blob is parsed once
//! (cached by blob id). Identity is the (agent, environment) pair in a record's content, not its
//! path. The result, a [`History`], holds the chain, the deployment events and the warnings; it
//! answers snapshots at any commit or time, and is kept on disk by `index` so that the next query
//! only walks new commits.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use git2::{Oid, Repository};

use crate::error::{Error, Result};
use crate::git::strings::Interner;
pub use crate::git::strings::{Strings, Sym};
pub use crate::git::treediff::{Change, changed_files};
use crate::git::treediff::{RawTree, diff_trees, read_tree};
use crate::model::Deployment;
use crate::model::record::is_record_file;
use crate::model::record::{self, Identity};

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
    pub author: Sym,
    pub author_time: i64,
    /// The first line of the message.
    pub subject: Sym,
}

/// One event. `commit` indexes [`History::commits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub commit: u32,
    pub agent: Sym,
    pub environment: Sym,
    pub action: Action,
    /// `None` for `removed`.
    pub version: Option<Sym>,
    /// `None` for `deployed`.
    pub previous_version: Option<Sym>,
    /// The record's path after the commit (before it, for `removed`).
    pub path: Sym,
}

/// A record file that did not parse at some commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub commit: u32,
    pub path: Sym,
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
    pub(in crate::git) folder: String,
    /// First-parent chain, oldest first: commit ids and committer times.
    pub(in crate::git) chain: Vec<Oid>,
    pub(in crate::git) times: Vec<i64>,
    /// The records folder's tree at the tip, to continue the walk.
    pub(in crate::git) tip_tree: Option<Oid>,
    /// Commits that carry events or warnings, in chain order.
    pub(in crate::git) commits: Vec<CommitInfo>,
    /// Events in chain order; within a commit by agent, then environment.
    pub(in crate::git) events: Vec<Event>,
    pub(in crate::git) warnings: Vec<Warning>,
    /// The text of the symbols of commits, events and warnings.
    pub(in crate::git) strings: Strings,
    /// Record files at the tip, for continuing the walk.
    pub(in crate::git) paths: BTreeMap<String, PathState>,
    /// The oldest commit is a shallow-clone boundary: the history before it is missing.
    pub(in crate::git) shallow: bool,
}

/// What a walk found, read-only: the history engine and its index alone build and continue it,
/// so the chain, the events and the symbols they point into always agree.
/// Which deployment events a reader asks for: of one agent, in one environment, committed
/// within a time range (seconds, both ends included). The command line's `history` and the
/// server's `/v1/history` filter with this, so they cannot disagree.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFilter<'a> {
    pub agent: Option<&'a str>,
    pub environment: Option<&'a str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl History {
    /// The records folder the history is about.
    pub fn folder(&self) -> &str {
        &self.folder
    }
    /// The first-parent chain, oldest first.
    pub fn chain(&self) -> &[Oid] {
        &self.chain
    }
    /// The committer time of each commit of the chain.
    pub fn times(&self) -> &[i64] {
        &self.times
    }
    /// The chain's first commit: the repository's identity.
    pub fn root(&self) -> Option<Oid> {
        self.chain.first().copied()
    }
    /// The commits that carry events or warnings, in chain order.
    pub fn commits(&self) -> &[CommitInfo] {
        &self.commits
    }
    /// The events in chain order; within a commit by agent, then environment.
    pub fn events(&self) -> &[Event] {
        &self.events
    }
    /// What the walk noticed without stopping.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }
    /// The text of the symbols of commits, events and warnings.
    pub fn strings(&self) -> &Strings {
        &self.strings
    }
    /// Whether the oldest commit is a shallow-clone boundary (the history before it is missing).
    pub fn shallow(&self) -> bool {
        self.shallow
    }

    /// The history of a records folder before its first commit.
    pub fn empty(folder: &str) -> History {
        History {
            folder: folder.to_string(),
            ..History::default()
        }
    }

    /// A history of only these commits and symbols, for the renderers' tests.
    #[cfg(test)]
    pub(crate) fn of_commits(commits: Vec<CommitInfo>, strings: Strings) -> History {
        History {
            commits,
            strings,
            ..History::default()
        }
    }
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

    /// The text of a symbol.
    pub fn str(&self, s: Sym) -> &str {
        self.strings.get(s)
    }

    /// The text of an optional symbol.
    pub fn opt(&self, s: Option<Sym>) -> Option<&str> {
        s.map(|s| self.strings.get(s))
    }

    /// The commit an event belongs to.
    pub fn commit_of(&self, e: &Event) -> &CommitInfo {
        &self.commits[e.commit as usize]
    }

    /// Whether `e` is a deployment event `filter` keeps (a move of a record's file is none).
    pub fn keeps(&self, filter: &EventFilter, e: &Event) -> bool {
        let t = self.commit_of(e).time;
        e.action != Action::Moved
            && filter.agent.is_none_or(|a| self.str(e.agent) == a)
            && filter
                .environment
                .is_none_or(|x| self.str(e.environment) == x)
            && filter.since.is_none_or(|s| t >= s)
            && filter.until.is_none_or(|u| t <= u)
    }

    /// Cuts the history to how it was at chain position `pos` (inclusive). The result is for
    /// reading: it keeps no walk state, so it cannot be extended.
    pub fn truncate(&mut self, pos: u32) {
        let n = pos as usize + 1;
        let commits_n = self.commits.partition_point(|c| c.pos <= pos);
        let events_n = self
            .events
            .partition_point(|e| (e.commit as usize) < commits_n);
        let warnings_n = self
            .warnings
            .partition_point(|w| (w.commit as usize) < commits_n);
        self.chain.truncate(n);
        self.times.truncate(n);
        self.commits.truncate(commits_n);
        self.events.truncate(events_n);
        self.warnings.truncate(warnings_n);
        self.paths.clear();
        self.tip_tree = None;
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
        /// Per pair: the events that made its generation, its version and its path.
        struct Cell<'h> {
            generation: &'h Event,
            updated: &'h Event,
            path: Sym,
        }
        let mut state: HashMap<(&str, &str), Cell> = HashMap::new();
        let end = self.commits.partition_point(|c| c.pos <= pos);
        let end = self.events.partition_point(|e| (e.commit as usize) < end);
        for e in &self.events[..end] {
            let key = (self.str(e.agent), self.str(e.environment));
            replay(
                &mut state,
                key,
                e.action,
                || Cell {
                    generation: e,
                    updated: e,
                    path: e.path,
                },
                |cell, changed| {
                    if changed {
                        cell.updated = e;
                    }
                    cell.path = e.path;
                },
            );
        }
        let mut rows: Vec<Deployment> = state
            .into_values()
            .map(|cell| {
                let generation = self.commit_of(cell.generation);
                let updated = self.commit_of(cell.updated);
                let e = cell.updated;
                Deployment {
                    agent: self.str(e.agent).to_string(),
                    environment: self.str(e.environment).to_string(),
                    version: self.opt(e.version).unwrap_or_default().to_string(),
                    path: self.str(cell.path).to_string(),
                    generation: generation.id.to_string(),
                    updated_at: crate::support::when::rfc3339(updated.time),
                    updated_commit: updated.id.to_string(),
                    updated_time: updated.time,
                    generation_time: generation.time,
                }
            })
            .collect();
        sort_rows(&mut rows);
        rows
    }

    /// Brings a snapshot forward by the events from index `from` on (the snapshot must be the
    /// one after the events before `from`). Cheaper than [`History::current`] when few events
    /// are new.
    pub fn advance(&self, rows: Vec<Deployment>, from: usize) -> Vec<Deployment> {
        let mut state: HashMap<(String, String), Deployment> = rows
            .into_iter()
            .map(|d| ((d.agent.clone(), d.environment.clone()), d))
            .collect();
        for e in &self.events[from.min(self.events.len())..] {
            let c = self.commit_of(e);
            let key = (
                self.str(e.agent).to_string(),
                self.str(e.environment).to_string(),
            );
            let (version, path) = (self.opt(e.version).unwrap_or_default(), self.str(e.path));
            replay(
                &mut state,
                key,
                e.action,
                || Deployment {
                    agent: self.str(e.agent).to_string(),
                    environment: self.str(e.environment).to_string(),
                    version: version.to_string(),
                    path: path.to_string(),
                    generation: c.id.to_string(),
                    updated_at: crate::support::when::rfc3339(c.time),
                    updated_commit: c.id.to_string(),
                    updated_time: c.time,
                    generation_time: c.time,
                },
                |d, changed| {
                    if changed {
                        d.version = version.to_string();
                        d.updated_at = crate::support::when::rfc3339(c.time);
                        d.updated_commit = c.id.to_string();
                        d.updated_time = c.time;
                    }
                    d.path = path.to_string();
                },
            );
        }
        let mut rows: Vec<Deployment> = state.into_values().collect();
        sort_rows(&mut rows);
        rows
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

/// What an event does to its pair's row in a snapshot, the one place that says it: `deployed`
/// starts a row (a new generation), `updated` changes its version (`changed`) and path, `moved`
/// only its path, `removed` drops it. An update of a pair without a row changes nothing.
fn replay<K: std::hash::Hash + Eq, R>(
    state: &mut HashMap<K, R>,
    key: K,
    action: Action,
    start: impl FnOnce() -> R,
    change: impl FnOnce(&mut R, bool),
) {
    match action {
        Action::Deployed => {
            state.insert(key, start());
        }
        Action::Updated | Action::Moved => {
            if let Some(row) = state.get_mut(&key) {
                change(row, action == Action::Updated);
            }
        }
        Action::Removed => {
            state.remove(&key);
        }
    }
}

/// Snapshot rows in their order: by agent, then environment.
fn sort_rows(rows: &mut [Deployment]) {
    rows.sort_by(|a, b| (&a.agent, &a.environment).cmp(&(&b.agent, &b.environment)));
}

/// Reads the first-parent chain from `tip` back to the root (or to `stop`, exclusive), oldest
/// first: ids, committer times, records-folder trees and commit metadata.
struct ChainPart {
    ids: Vec<Oid>,
    times: Vec<i64>,
    trees: Vec<Option<Oid>>,
    /// Author, author time and subject.
    meta: Vec<(Arc<str>, i64, Box<str>)>,
    /// The walk reached `stop`.
    reached_stop: bool,
    shallow: bool,
}

fn read_chain(
    repo: &Repository,
    tip: Oid,
    folder: &str,
    stop: Option<&dyn Fn(Oid) -> bool>,
    meta: bool,
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
    let mut authors: HashMap<String, Arc<str>> = HashMap::new();
    let nobody: Arc<str> = Arc::from("");
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
        part.ids.push(id);
        part.times.push(commit.committer().when().seconds());
        part.trees.push(folder_tree);
        if meta {
            let author = commit.author();
            let who = format!(
                "{} <{}>",
                String::from_utf8_lossy(author.name_bytes()),
                String::from_utf8_lossy(author.email_bytes())
            );
            let who = authors
                .entry(who)
                .or_insert_with_key(|k| Arc::from(k.as_str()))
                .clone();
            let subject: Box<str> = commit
                .summary_bytes()
                .map(|s| String::from_utf8_lossy(s).into())
                .unwrap_or_default();
            part.meta.push((who, author.when().seconds(), subject));
        } else {
            part.meta.push((nobody.clone(), 0, Box::default()));
        }
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
    walk(repo, &mut history, tip, None, progress)?;
    Ok(history)
}

/// Builds the history of `tip` from scratch for the pairs of the agents in `focus` only, and
/// without authors and subjects: what `ledgit check` needs of a base without an index. Every
/// record is still read and parsed (a file's pair is in its content, not its path), but only
/// the focused agents' pairs are followed, so the events are exactly those the full history
/// has for them. Such a history is partial: it is never saved as the index.
pub fn build_focused(
    repo: &Repository,
    tip: Oid,
    folder: &str,
    focus: &Focus,
    progress: &mut dyn FnMut(Progress),
) -> Result<History> {
    let mut history = History {
        folder: folder.to_string(),
        ..History::default()
    };
    walk(repo, &mut history, tip, Some(focus), progress)?;
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
    walk(repo, history, tip, None, progress)
}

/// [`extend`], following only the agents in `focus` when given.
fn walk(
    repo: &Repository,
    history: &mut History,
    tip: Oid,
    focus: Option<&Focus>,
    progress: &mut dyn FnMut(Progress),
) -> Result<bool> {
    let old_tip = history.tip();
    let stop = old_tip.map(|t| move |id: Oid| id == t);
    let part = read_chain(
        repo,
        tip,
        &history.folder,
        stop.as_ref().map(|f| f as &dyn Fn(Oid) -> bool),
        focus.is_none(),
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
    let total = part.ids.len();
    let base = history.chain.len();
    let mut walker = Walker::new(
        repo,
        std::mem::take(&mut history.paths),
        std::mem::take(&mut history.strings),
        focus,
    );
    // The chain is processed in slices so that the working set (changes, parsed blobs, the
    // workers' pack mappings) stays bounded however long the history is.
    for start in (0..total).step_by(SLICE) {
        let end = (start + SLICE).min(total);
        let before = match start {
            0 => history.tip_tree,
            _ => part.trees[start - 1],
        };
        let (mut changes, blobs) = collect_changes(
            repo,
            &history.folder,
            &part.trees[start..end],
            before,
            focus,
            &mut |p| match p {
                Progress::Diff(done, _) => {
                    progress(Progress::Diff(start as u64 + done, total as u64))
                }
                other => progress(other),
            },
        )?;
        walker.blobs = blobs;
        for i in start..end {
            let Some(changes) = changes[i - start].take() else {
                continue;
            };
            let (events, warnings) = walker.apply(&changes)?;
            if events.is_empty() && warnings.is_empty() {
                continue;
            }
            let (author, author_time, subject) = &part.meta[i];
            let index = history.commits.len() as u32;
            history.commits.push(CommitInfo {
                id: part.ids[i],
                pos: (base + i) as u32,
                time: part.times[i],
                author: walker.names.get(&mut walker.strings, author)?,
                author_time: *author_time,
                subject: walker.strings.push(subject)?,
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
    let total = total as u64;
    progress(Progress::Diff(total, total));
    history.chain.extend(&part.ids);
    history.times.extend(&part.times);
    if let Some(last) = part.trees.last() {
        history.tip_tree = *last;
    }
    history.paths = walker.paths;
    history.strings = walker.strings;
    progress(Progress::Done);
    Ok(extended || old_tip.is_none())
}

/// How many commits of the chain are diffed and applied at a time.
const SLICE: usize = 16_384;

/// What a blob says to the walk.
#[derive(Debug, Clone)]
enum Parse {
    /// A record of this pair and version.
    Record(Identity),
    /// A record of an agent out of focus (a focused walk follows only some agents).
    Unfocused,
    /// Not read by a focused walk: the file cannot name a focused agent. It may still not
    /// parse, which matters where the path holds a focused pair (the pair stays).
    Unnamed,
    /// Not a record that parses: the path keeps its last parsable identity.
    Failed,
}

impl Parse {
    fn of(bytes: &[u8], focus: Option<&Focus>) -> Parse {
        if let Some(focus) = focus
            && !focus.may_name(bytes)
        {
            return Parse::Unnamed;
        }
        Parse::fully(bytes, focus)
    }

    fn fully(bytes: &[u8], focus: Option<&Focus>) -> Parse {
        match record::identity(bytes) {
            None => Parse::Failed,
            Some(id) if focus.is_none_or(|f| f.agents.contains(&id.agent)) => Parse::Record(id),
            Some(_) => Parse::Unfocused,
        }
    }
}

/// The agents a focused walk follows.
#[derive(Debug, Clone, Default)]
pub struct Focus {
    agents: HashSet<String>,
    /// All the agents are DNS labels, which lets [`Focus::may_name`] rule files out unparsed.
    labels: bool,
}

impl Focus {
    pub fn new(agents: HashSet<String>) -> Focus {
        let labels = agents.iter().all(|a| crate::model::shape::is_dns_label(a));
        Focus { agents, labels }
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    pub fn contains(&self, agent: &str) -> bool {
        self.agents.contains(agent)
    }

    /// False only when the file cannot name a focused agent, whatever YAML it holds. A scalar
    /// equal to a DNS label is the label's characters, bounded by characters that cannot be
    /// part of it (quotes, spaces, line ends, indicators): plain and quoted scalars fold lines
    /// into spaces, which a label has none of. Only escapes (`\`) and tags (`!`) could spell a
    /// label otherwise, and a file with either is parsed.
    fn may_name(&self, bytes: &[u8]) -> bool {
        if !self.labels || bytes.iter().any(|&b| b == b'\\' || b == b'!') {
            return true;
        }
        let label = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
        bytes.split(|b| !label(b)).any(|run| {
            !run.is_empty() && std::str::from_utf8(run).is_ok_and(|r| self.agents.contains(r))
        })
    }
}

/// What each blob read so far says, by blob id.
type BlobCache = HashMap<Oid, Parse>;

/// What a worker found: the changes of each changed commit (by chain index) and the blobs it
/// parsed.
type Diffed = (Vec<(usize, Vec<Change>)>, BlobCache);

/// Diffs every commit whose records folder changed against its first parent, and parses each
/// new blob once. Commits are read newest first, the order in which git packs store deltas
/// (a newer object is the base of an older one), and the chain is split between threads, each
/// with its own handle on the repository. Returns the changes per chain index (`None`: the
/// folder's tree did not change) and the parsed blobs.
fn collect_changes(
    repo: &Repository,
    folder: &str,
    trees: &[Option<Oid>],
    before_first: Option<Oid>,
    focus: Option<&Focus>,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Vec<Option<Vec<Change>>>, BlobCache)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let n = trees.len();
    let done = AtomicU64::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(4);
    let chunk = n.div_ceil(threads).max(1);
    let git_dir = repo.path().to_path_buf();
    let (finished_tx, finished) = std::sync::mpsc::channel::<()>();
    let parts: Vec<Result<Diffed>> = if n < 4096 {
        // A few new commits: no thread, and no second handle on the repository.
        vec![diff_range(
            repo,
            folder,
            trees,
            before_first,
            focus,
            0..n,
            &done,
        )]
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|start| {
                    let end = (start + chunk).min(n);
                    let (git_dir, done, finished_tx) = (&git_dir, &done, finished_tx.clone());
                    s.spawn(move || {
                        let result = Repository::open(git_dir)
                            .map_err(|e| Error::git("opening the repository", e))
                            .and_then(|repo| {
                                diff_range(
                                    &repo,
                                    folder,
                                    trees,
                                    before_first,
                                    focus,
                                    start..end,
                                    done,
                                )
                            });
                        let _ = finished_tx.send(());
                        result
                    })
                })
                .collect();
            drop(finished_tx);
            // Report progress while the workers run; wake as soon as the last one is done.
            let mut running = handles.len();
            while running > 0 {
                match finished.recv_timeout(std::time::Duration::from_millis(100)) {
                    Ok(()) => running -= 1,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        progress(Progress::Diff(done.load(Ordering::Relaxed), n as u64));
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Internal {
                            what: "a history worker failed".into(),
                        })
                    })
                })
                .collect()
        })
    };
    let mut changes: Vec<Option<Vec<Change>>> = Vec::new();
    changes.resize_with(n, || None);
    let mut blobs = BlobCache::new();
    for part in parts {
        let (list, cache) = part?;
        for (i, c) in list {
            changes[i] = Some(c);
        }
        blobs.extend(cache);
    }
    Ok((changes, blobs))
}

/// Phase one for the chain indexes in `range`, newest first.
fn diff_range(
    repo: &Repository,
    folder: &str,
    trees: &[Option<Oid>],
    before_first: Option<Oid>,
    focus: Option<&Focus>,
    range: std::ops::Range<usize>,
    done: &std::sync::atomic::AtomicU64,
) -> Result<Diffed> {
    let mut out = Vec::new();
    let mut blobs = BlobCache::new();
    let odb = repo
        .odb()
        .map_err(|e| Error::git("opening the object database", e))?;
    // The "before" tree of one commit is the "after" tree of the next older one.
    let mut carried: Option<(Option<Oid>, RawTree)> = None;
    for i in range.rev() {
        let after_id = trees[i];
        let before_id = if i == 0 { before_first } else { trees[i - 1] };
        if after_id == before_id {
            continue;
        }
        let after = match carried.take() {
            Some((id, tree)) if id == after_id => tree,
            _ => read_tree(&odb, after_id)?,
        };
        let before = read_tree(&odb, before_id)?;
        let mut changes = Vec::new();
        diff_trees(&odb, &before, &after, folder, &is_record_file, &mut changes)?;
        for (_, _, blob) in &changes {
            if let Some(blob) = blob
                && !blobs.contains_key(blob)
            {
                let content = odb
                    .read(*blob)
                    .map_err(|e| Error::git("reading a record", e))?;
                blobs.insert(*blob, Parse::of(content.data(), focus));
            }
        }
        out.push((i, changes));
        carried = Some((before_id, before));
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok((out, blobs))
}

struct Walker<'r> {
    repo: &'r Repository,
    /// Parsed identity of each blob seen (None: did not parse).
    blobs: BlobCache,
    paths: BTreeMap<String, PathState>,
    /// For each pair, the paths whose last parsable content declares it.
    pairs: HashMap<(String, String), BTreeSet<String>>,
    /// The history's strings, extended as events are found.
    strings: Strings,
    /// The agents followed (all when `None`).
    focus: Option<&'r Focus>,
    names: Interner,
}

fn pair_key(id: &Identity) -> (String, String) {
    (id.agent.clone(), id.environment.clone())
}

impl<'r> Walker<'r> {
    fn new(
        repo: &'r Repository,
        paths: BTreeMap<String, PathState>,
        strings: Strings,
        focus: Option<&'r Focus>,
    ) -> Self {
        let mut pairs: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
        for (path, state) in &paths {
            if let Some(id) = &state.identity {
                pairs.entry(pair_key(id)).or_default().insert(path.clone());
            }
        }
        Walker {
            repo,
            blobs: BlobCache::new(),
            paths,
            pairs,
            strings,
            names: Interner::default(),
            focus,
        }
    }

    /// What `blob` says; `fully`: parsed even where the focus rules it out unread.
    fn parse(&mut self, blob: Oid, fully: bool) -> Result<Parse> {
        match self.blobs.get(&blob) {
            Some(Parse::Unnamed) if fully => {}
            Some(parse) => return Ok(parse.clone()),
            None => {}
        }
        let content = self
            .repo
            .find_blob(blob)
            .map_err(|e| Error::git("reading a record", e))?;
        let parse = if fully {
            Parse::fully(content.content(), self.focus)
        } else {
            Parse::of(content.content(), self.focus)
        };
        self.blobs.insert(blob, parse.clone());
        Ok(parse)
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
    fn apply(&mut self, changes: &[Change]) -> Result<(Vec<Event>, Vec<Sym>)> {
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
                    // Where the path holds a focused pair, whether the file parses decides
                    // whether the pair stays.
                    let identity = match self.parse(*blob, old.is_some())? {
                        Parse::Record(id) => Some(id),
                        Parse::Unfocused | Parse::Unnamed => None,
                        // An unparsable file keeps the identity of its last parsable content.
                        Parse::Failed => {
                            warnings.push(self.names.get(&mut self.strings, path)?);
                            old
                        }
                    };
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
            let (names, strings) = (&mut self.names, &mut self.strings);
            let mut name = |s: &str| names.get(strings, s);
            events.push(Event {
                commit: 0,
                agent: name(&agent)?,
                environment: name(&environment)?,
                action,
                version: version.as_deref().map(&mut name).transpose()?,
                previous_version: previous.as_deref().map(&mut name).transpose()?,
                path: name(&path)?,
            });
        }
        Ok((events, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_focus_rules_out_only_files_that_cannot_name_its_agents() {
        let focus = Focus::new(["support-bot".to_string()].into());
        let named = [
            "agent: support-bot\n",
            "agent: 'support-bot'\n",
            "agent: \"support-bot\"\n",
            "{agent: support-bot, environment: e, version: v}\n",
            "agent: |-\n  support-bot\nenvironment: e\nversion: v\n",
            "agent: &a support-bot\nenvironment: *a\nversion: v\n",
            "agent: support-bot # the bot\nenvironment: e\nversion: v\n",
            // Escapes and tags could spell the name without its letters: always parsed.
            "agent: \"support\\x2dbot\"\nenvironment: e\nversion: v\n",
            "agent: !!str support-bot\nenvironment: e\nversion: v\n",
        ];
        for doc in named {
            assert!(focus.may_name(doc.as_bytes()), "{doc}");
            if let Some(id) = record::identity(doc.as_bytes()) {
                assert_eq!(id.agent, "support-bot", "{doc}");
            }
        }
        let unnamed = [
            "agent: other-bot\nenvironment: e\nversion: v\n",
            "agent: support-bot-2\nenvironment: e\nversion: v\n",
            "agent: Support-bot\nenvironment: e\nversion: v\n",
            "agent: \"support-\n  bot\"\nenvironment: e\nversion: v\n",
        ];
        for doc in unnamed {
            assert!(!focus.may_name(doc.as_bytes()), "{doc}");
            // What the parser says agrees: none of these is support-bot.
            let agent = record::identity(doc.as_bytes()).map(|id| id.agent);
            assert_ne!(agent.as_deref(), Some("support-bot"), "{doc}");
        }
        // A name that is not a DNS label could be folded or spelled otherwise: never ruled out.
        let loose = Focus::new(["Support Bot".to_string()].into());
        assert!(loose.may_name(b"agent: other-bot\n"));
    }
}
