//! Validation of a whole repository state: every file of the records folder (from the work tree
//! or from a commit's tree), the per-file rules of `record`, the rules across files (each
//! (agent, environment) pair once), and private keys anywhere they are tracked. Files are checked
//! in parallel; every finding is reported, none stops the others.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Tree, TreeWalkMode, TreeWalkResult};

use crate::error::{Error, Result};
use crate::finding::{self, Code, Finding};
use crate::model::config::Config;
use crate::model::record::{self, Record};
use crate::model::record::{MAX_FILE_SIZE, is_record_file};
use crate::support::secret;

/// Other tracked files are scanned for private keys up to this size (16 MiB); a larger one is
/// a finding, since what was not read cannot be said to hold no key.
pub const MAX_SCAN_SIZE: u64 = 16 << 20;

/// The outcome of validating one repository state.
#[derive(Debug, Default)]
pub struct Report {
    /// How many record files were examined.
    pub records: usize,
    /// Every finding, sorted by path and position.
    pub findings: Vec<Finding>,
    /// The records whose identity could be read, in path order.
    pub parsed: Vec<Record>,
}

/// Where a file's bytes come from.
enum Content {
    Disk(PathBuf),
    /// Read from the object database beforehand (or why that failed).
    Read(std::result::Result<Vec<u8>, Unreadable>),
}

/// Why a file's bytes could not be read: its finding (`unscanned`) says so.
#[derive(Debug, Clone, thiserror::Error)]
enum Unreadable {
    #[error("cannot read blob {oid}: {message}")]
    Blob { oid: Oid, message: String },
    #[error("cannot read: {0}")]
    Disk(std::sync::Arc<std::io::Error>),
}

/// A file to check.
struct Candidate {
    path: String,
    /// Its size, when known before reading it (always for work tree files).
    size: Option<u64>,
    content: Content,
    /// True for files in the records folder; others are only scanned for private keys.
    in_records: bool,
}

/// Validates the work tree at `root`: every file under the records folder, plus `tracked`
/// (repository-relative paths elsewhere, typically git's index) for private keys.
pub fn worktree(root: &Path, config: &Config, tracked: &[String]) -> Result<Report> {
    let mut findings = Vec::new();
    let mut candidates = Vec::new();
    let folder = root.join(&config.deployments);
    if folder.symlink_metadata().is_ok() {
        let walk = walkdir::WalkDir::new(&folder)
            .follow_links(false)
            .follow_root_links(false)
            .sort_by_file_name();
        for entry in walk {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(&folder).to_path_buf();
                Error::io(path, e.into())
            })?;
            let rel = relative(root, entry.path());
            let ft = entry.file_type();
            if ft.is_symlink() {
                findings.push(symlink_finding(&rel));
            } else if ft.is_file() {
                let size = entry
                    .metadata()
                    .map_err(|e| Error::io(entry.path(), e.into()))?
                    .len();
                candidates.push(Candidate {
                    path: rel,
                    size: Some(size),
                    content: Content::Disk(entry.path().to_path_buf()),
                    in_records: true,
                });
            }
        }
    }
    // The token ledger and the revocation list are checked even before they are tracked (just
    // written by `token issue` or `token revoke`).
    let lists = [
        crate::model::ledger::FILE_NAME,
        crate::model::revocations::FILE_NAME,
    ]
    .map(String::from);
    let untracked = lists.iter().filter(|p| !tracked.contains(*p));
    for path in tracked.iter().chain(untracked) {
        if config.in_deployments(path) {
            continue;
        }
        let abs = root.join(path);
        let Ok(meta) = abs.symlink_metadata() else {
            continue;
        };
        if meta.is_file() {
            candidates.push(Candidate {
                path: path.clone(),
                size: Some(meta.len()),
                content: Content::Disk(abs),
                in_records: false,
            });
        }
    }
    Ok(assemble(
        check_files(&candidates, config, Threads::All),
        findings,
        config,
    ))
}

/// Validates a commit's tree straight from the object database, without a checkout.
pub fn tree(repo: &Repository, tree: &Tree, config: &Config) -> Result<Report> {
    Ok(read_tree(repo, tree, config)?.check(config, Threads::All))
}

/// A commit's files, read from the object database and ready to be checked without touching
/// git again: [`read_tree`] does the reading, [`TreeFiles::check`] the (CPU-only) checking, so
/// a caller can check on one thread while another reads the repository (`ledgit check` reads
/// base's history meanwhile).
pub struct TreeFiles {
    /// Findings known from the tree alone (symbolic links).
    findings: Vec<Finding>,
    /// Per file: its cache key, and its outcome when the cache had it.
    files: Vec<((Oid, String), Option<Outcome>)>,
    /// The files the cache did not have, by position in `files`, with their bytes.
    missed: Vec<(usize, Candidate)>,
    /// The cache holds entries of files this tree does not have.
    stale: bool,
    cache_path: PathBuf,
}

/// How many threads [`TreeFiles::check`] may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// As many as the machine has (up to 8).
    All,
    /// The calling thread only: another thread is busy with other work.
    One,
}

/// Lists a commit's files and reads those whose outcome is not cached.
pub fn read_tree(repo: &Repository, tree: &Tree, config: &Config) -> Result<TreeFiles> {
    let mut findings = Vec::new();
    let mut listed = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let Ok(name) = entry.name() else {
            return TreeWalkResult::Ok;
        };
        let path = format!("{dir}{name}");
        let in_records = config.in_deployments(&path);
        match entry.kind() {
            Some(ObjectType::Blob) if entry.filemode() == 0o120000 && in_records => {
                findings.push(symlink_finding(&path));
            }
            Some(ObjectType::Blob) if entry.filemode() == 0o120000 => {}
            Some(ObjectType::Blob) => listed.push((entry.id(), path, in_records)),
            _ => {}
        }
        TreeWalkResult::Ok
    })
    .map_err(|e| Error::git("walking the tree", e))?;
    // Outcomes of blobs at paths already checked under the same config come from the cache.
    let cache_path = cache_path(repo, config);
    let mut cache = read_cache(&cache_path, config);
    let odb = repo
        .odb()
        .map_err(|e| Error::git("opening the object database", e))?;
    let mut files = Vec::with_capacity(listed.len());
    let mut missed = Vec::new();
    for (oid, path, in_records) in listed {
        let key = (oid, path);
        if let Some(outcome) = cache.remove(&key) {
            files.push((key, Some(outcome.restored())));
            continue;
        }
        let (size, bytes) = read_blob(&odb, oid);
        missed.push((
            files.len(),
            Candidate {
                path: key.1.clone(),
                size,
                content: Content::Read(bytes),
                in_records,
            },
        ));
        files.push((key, None));
    }
    Ok(TreeFiles {
        findings,
        files,
        missed,
        stale: !cache.is_empty(),
        cache_path,
    })
}

/// The findings of the token ledger (SPEC "The token ledger"; its statuses are not findings)
/// or of the revocation list, whose bytes are `bytes`.
fn list_findings(path: &str, bytes: &[u8]) -> Vec<Finding> {
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return vec![
            Finding::new(
                Code::FileTooLarge,
                path,
                1,
                1,
                format!("{path} is larger than 1 MiB"),
            )
            .hint("the list holds a few lines per token: remove what is not an entry"),
        ];
    }
    if path == crate::model::revocations::FILE_NAME {
        return crate::model::revocations::findings(bytes);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => crate::model::ledger::read(path, text).findings,
        Err(_) => vec![
            Finding::new(
                Code::NotUtf8,
                path,
                1,
                1,
                format!("{path} is not UTF-8 text"),
            )
            .hint("save the file as UTF-8"),
        ],
    }
}

/// A blob's size and bytes; a blob over [`MAX_SCAN_SIZE`] is not read.
fn read_blob(odb: &git2::Odb, oid: Oid) -> (Option<u64>, std::result::Result<Vec<u8>, Unreadable>) {
    let unreadable = |e: git2::Error| Unreadable::Blob {
        oid,
        message: e.message().to_string(),
    };
    match odb.read_header(oid) {
        Ok((size, _)) if size as u64 > MAX_SCAN_SIZE => (Some(size as u64), Ok(Vec::new())),
        Ok((size, _)) => (
            Some(size as u64),
            odb.read(oid).map(|o| o.data().to_vec()).map_err(unreadable),
        ),
        Err(e) => (None, Err(unreadable(e))),
    }
}

impl TreeFiles {
    /// Checks the files the cache did not have, updates the cache, and adds the rules across
    /// files.
    pub fn check(self, config: &Config, threads: Threads) -> Report {
        let TreeFiles {
            findings,
            mut files,
            missed,
            stale,
            cache_path,
        } = self;
        let (positions, candidates): (Vec<usize>, Vec<Candidate>) = missed.into_iter().unzip();
        let checked = check_files(&candidates, config, threads);
        let changed = !checked.is_empty();
        for (i, outcome) in positions.into_iter().zip(checked) {
            files[i].1 = Some(outcome);
        }
        if changed || stale {
            // Keep what this tree holds: the cache stays the size of one tree.
            let cache: Cache = files
                .iter()
                .filter_map(|(key, o)| Some((key.clone(), o.as_ref()?.for_cache())))
                .collect();
            write_cache(&cache_path, config, &cache);
        }
        let outcomes = files.into_iter().filter_map(|(_, o)| o).collect();
        assemble(outcomes, findings, config)
    }
}

/// Per (blob, path): what checking it found.
type Cache = HashMap<(Oid, String), Outcome>;

fn cache_path(repo: &Repository, config: &Config) -> PathBuf {
    let name = format!(
        "validate-{:08x}.cache",
        crc32fast::hash(config.deployments.as_bytes())
    );
    repo.commondir().join("ledgit").join(name)
}

/// A fingerprint of everything besides the file that a check depends on.
fn fingerprint(config: &Config) -> String {
    format!(
        "{}-{:08x}",
        CACHE_FORMAT,
        crc32fast::hash(format!("{config:?}").as_bytes())
    )
}

/// Bump when the checks change what they find.
const CACHE_FORMAT: &str = concat!("v3-", env!("CARGO_PKG_VERSION"));

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheFile {
    fingerprint: String,
    entries: Vec<(String, String, Outcome)>,
}

fn read_cache(path: &Path, config: &Config) -> Cache {
    let Ok(bytes) = std::fs::read(path) else {
        return Cache::new();
    };
    let Ok(file) = serde_json::from_slice::<CacheFile>(&bytes) else {
        return Cache::new();
    };
    if file.fingerprint != fingerprint(config) {
        return Cache::new();
    }
    file.entries
        .into_iter()
        .filter_map(|(oid, path, o)| Some(((Oid::from_str(&oid).ok()?, path), o)))
        .collect()
}

fn write_cache(path: &Path, config: &Config, cache: &Cache) {
    let file = CacheFile {
        fingerprint: fingerprint(config),
        entries: cache
            .iter()
            .map(|((oid, p), o)| (oid.to_string(), p.clone(), o.clone()))
            .collect(),
    };
    if let (Some(dir), Ok(bytes)) = (path.parent(), serde_json::to_vec(&file))
        && std::fs::create_dir_all(dir).is_ok()
    {
        let _ = crate::support::fsutil::write_atomic_nosync(path, &bytes);
    }
}

fn symlink_finding(path: &str) -> Finding {
    Finding::new(
        Code::Symlink,
        path,
        1,
        1,
        format!("{path} is a symbolic link; ledgit never follows links"),
    )
    .hint("replace the link with the file itself")
}

/// The outcome of each candidate, in order; on several threads when there are many.
fn check_files(candidates: &[Candidate], config: &Config, threads: Threads) -> Vec<Outcome> {
    let threads = match threads {
        Threads::All => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8),
        Threads::One => 1,
    };
    if candidates.len() < 512 || threads == 1 {
        return candidates
            .iter()
            .map(|c| guarded(c, config, check_one))
            .collect();
    }
    let chunk = candidates.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = candidates
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|c| guarded(c, config, check_one))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // `guarded` catches a panic per file, so every worker returns one outcome per file.
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// [`check_one`], failing closed: a panic while checking a file (a defect in ledgit) is a
/// finding on that file, never an outcome without findings.
fn guarded(c: &Candidate, config: &Config, check: fn(&Candidate, &Config) -> Outcome) -> Outcome {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(c, config))).unwrap_or_else(
        |_| Outcome {
            is_record: c.in_records && is_record_file(&c.path),
            findings: vec![
                Finding::new(
                    Code::InternalError,
                    &c.path,
                    1,
                    1,
                    format!("ledgit failed while checking {}", c.path),
                )
                .hint("this is a defect in ledgit: please report it with the file"),
            ],
            ..Outcome::default()
        },
    )
}

/// Adds the rules across files to the per-file outcomes.
fn assemble(outcomes: Vec<Outcome>, mut findings: Vec<Finding>, config: &Config) -> Report {
    let mut records = 0;
    let mut parsed = Vec::new();
    for outcome in outcomes {
        records += usize::from(outcome.is_record);
        findings.extend(outcome.findings);
        parsed.extend(outcome.record);
    }
    findings.extend(duplicate_pairs(&parsed, config));
    finding::sort(&mut findings);
    Report {
        records,
        findings,
        parsed,
    }
}

/// What checking one file found.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Outcome {
    is_record: bool,
    record: Option<Record>,
    findings: Vec<Finding>,
    /// The source line of each finding (kept out of `Finding`'s JSON form).
    #[serde(default)]
    source_lines: Vec<Option<String>>,
}

impl Outcome {
    /// Moves the findings' source lines aside, for the cache.
    fn for_cache(&self) -> Outcome {
        let mut o = self.clone();
        o.source_lines = o
            .findings
            .iter_mut()
            .map(|f| f.source_line.take())
            .collect();
        o
    }

    /// Puts the source lines back.
    fn restored(mut self) -> Outcome {
        for (f, line) in self
            .findings
            .iter_mut()
            .zip(std::mem::take(&mut self.source_lines))
        {
            f.source_line = line;
        }
        self
    }
}

fn check_one(c: &Candidate, config: &Config) -> Outcome {
    let is_record = c.in_records && is_record_file(&c.path);
    let mut out = Outcome {
        is_record,
        ..Outcome::default()
    };
    let size = c.size.unwrap_or(0);
    if is_record && size > MAX_FILE_SIZE {
        out.findings.push(
            Finding::new(
                Code::FileTooLarge,
                &c.path,
                1,
                1,
                format!("{} is {size} bytes; records are at most 1 MiB", c.path),
            )
            .hint("a record is a handful of lines: this is probably not a record"),
        );
        return out;
    }
    if size > MAX_SCAN_SIZE {
        out.findings.push(
            Finding::new(
                Code::Unscanned,
                &c.path,
                1,
                1,
                format!(
                    "{} is {size} bytes and was not scanned for private keys (at most 16 MiB are)",
                    c.path
                ),
            )
            .hint("keep large files out of the deployments repository"),
        );
        return out;
    }
    let bytes = match read(c) {
        Ok(b) => b,
        Err(message) if is_record => {
            out.findings.push(
                Finding::new(Code::NotUtf8, &c.path, 1, 1, message.to_string())
                    .hint("check the file's permissions"),
            );
            return out;
        }
        Err(message) => {
            out.findings.push(
                Finding::new(
                    Code::Unscanned,
                    &c.path,
                    1,
                    1,
                    format!("{} was not scanned for private keys: {message}", c.path),
                )
                .hint("check the file's permissions (or run `git fsck` for a commit's file)"),
            );
            return out;
        }
    };
    if let Some(line) = secret::private_key_line(&bytes) {
        out.findings.push(
            Finding::new(
                Code::PrivateKey,
                &c.path,
                line,
                1,
                format!("{} contains private key material", c.path),
            )
            .hint("remove the key from the repository, rotate it (it is compromised) and keep private keys outside the work tree"),
        );
    }
    if c.path == crate::model::ledger::FILE_NAME || c.path == crate::model::revocations::FILE_NAME {
        out.findings.extend(list_findings(&c.path, &bytes));
        return out;
    }
    if !is_record {
        return out;
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            out.findings.push(
                Finding::new(
                    Code::NotUtf8,
                    &c.path,
                    line as u32,
                    1,
                    format!(
                        "not UTF-8 text (invalid byte at offset {})",
                        e.valid_up_to()
                    ),
                )
                .hint("save the file as UTF-8"),
            );
            return out;
        }
    };
    let parsed = record::parse(&c.path, text, config);
    out.record = parsed.record;
    out.findings.extend(parsed.findings);
    out
}

fn read(c: &Candidate) -> std::result::Result<std::borrow::Cow<'_, [u8]>, Unreadable> {
    match &c.content {
        Content::Disk(path) => std::fs::read(path)
            .map(Into::into)
            .map_err(|e| Unreadable::Disk(std::sync::Arc::new(e))),
        Content::Read(bytes) => bytes.as_deref().map(Into::into).map_err(Clone::clone),
    }
}

/// One finding per file of every pair declared more than once, naming the other files.
fn duplicate_pairs(records: &[Record], config: &Config) -> Vec<Finding> {
    let mut by_pair: BTreeMap<(&str, &str), Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_pair
            .entry((&r.agent, &r.environment))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for ((agent, env), group) in by_pair.into_iter().filter(|(_, g)| g.len() > 1) {
        for r in &group {
            let others: Vec<&str> = group
                .iter()
                .filter(|o| o.path != r.path)
                .map(|o| o.path.as_str())
                .collect();
            out.push(
                Finding::new(
                    Code::DuplicatePair,
                    &r.path,
                    1,
                    1,
                    format!(
                        "`{agent}` in `{env}` is also declared in {}",
                        others.join(", ")
                    ),
                )
                .hint(format!(
                    "keep one record per agent and environment, at {}",
                    config.record_path(agent, env)
                )),
            );
        }
    }
    out
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_while_checking_is_a_finding_on_that_file() {
        let config = crate::model::config::parse(
            "ledgit.yaml",
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: staging\n",
        )
        .unwrap();
        let candidate = Candidate {
            path: "deployments/a/staging.yaml".into(),
            size: Some(3),
            content: Content::Read(Ok(b"a: b".to_vec())),
            in_records: true,
        };
        let outcome = guarded(&candidate, &config, |_, _| panic!("a defect"));
        assert!(outcome.is_record);
        assert_eq!(outcome.findings.len(), 1);
        assert_eq!(outcome.findings[0].code, Code::InternalError);
        assert_eq!(outcome.findings[0].path, "deployments/a/staging.yaml");
        // The same candidate checked normally: one outcome, no internal error.
        let fine = guarded(&candidate, &config, check_one);
        assert!(fine.findings.iter().all(|f| f.code != Code::InternalError));
    }
}
