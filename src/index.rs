//! The on-disk history index: a [`History`] saved under the repository's git directory
//! (`<git dir>/ledgit/`, never in the work tree), so that a second query does not walk the chain
//! again and a query after a few new commits walks only those.
//!
//! The file is a magic, the payload length and its CRC-32, then the payload (strings interned
//! in a table). A file that is short, altered or of another format version fails the check and
//! is rebuilt, so a corrupt or half-written index can never give a wrong answer; writes go to a
//! temporary file renamed into place. A branch whose old tip is no longer on its first-parent
//! chain (force push, rebase) is rebuilt from scratch.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use git2::{Oid, Repository};

use crate::error::Result;
use crate::history::{
    self, Action, CommitInfo, Deployment, Event, History, Name, PathState, Progress, Warning,
};
use crate::record::Identity;

/// Bump when the format or the meaning of the history changes.
const MAGIC: &[u8; 8] = b"LEDGITH5";
const HEADER: usize = 8 + 8 + 4;
const NONE: u32 = u32::MAX;

/// How a history was obtained, for diagnostics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The index was up to date.
    Cached,
    /// The index was extended with new commits.
    Extended(usize),
    /// The index was missing, corrupt or stale, and the history was built from scratch.
    Built,
}

/// Where the index of a records folder lives.
pub fn index_path(repo: &Repository, folder: &str) -> PathBuf {
    let name = format!("{:08x}", crc32fast::hash(folder.as_bytes()));
    repo.commondir()
        .join("ledgit")
        .join(format!("history-{name}.idx"))
}

/// The history of `tip`, from the index where possible; the index is brought up to date.
pub fn history(
    repo: &Repository,
    tip: Oid,
    folder: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<(History, Source)> {
    let path = index_path(repo, folder);
    let cached = map(&path)
        .and_then(|bytes| decode(&bytes))
        .filter(|h| h.folder == folder);
    if let Some(mut h) = cached {
        if h.tip() == Some(tip) {
            return Ok((h, Source::Cached));
        }
        if let Some(pos) = h.position(tip) {
            // An older commit of the same chain (`--rev HEAD~50`): a prefix of what we know.
            h.truncate(pos);
            return Ok((h, Source::Cached));
        }
        let before = h.chain.len();
        let extended = history::extend(repo, &mut h, tip, progress)?;
        save(&path, &h);
        let source = if extended {
            Source::Extended(h.chain.len() - before)
        } else {
            Source::Built
        };
        return Ok((h, source));
    }
    let h = history::build(repo, tip, folder, progress)?;
    save(&path, &h);
    Ok((h, Source::Built))
}

/// Maps an index file for reading.
fn map(path: &std::path::Path) -> Option<memmap2::Mmap> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: index files are never modified in place: a new index is written to a temporary
    // file and renamed over the old one, so the mapped file keeps its content while mapped.
    // Its content is checked (length and CRC) before it is trusted.
    unsafe { memmap2::Mmap::map(&file) }.ok()
}

/// Saves the index; a repository we cannot write to (read-only mount) just goes without.
fn save(path: &std::path::Path, h: &History) {
    if let Some(dir) = path.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let _ = crate::fsutil::write_atomic_nosync(path, &encode(h));
    }
}

struct Writer<'h> {
    buf: Vec<u8>,
    strings: HashMap<&'h str, u32, BuildHasherDefault<FastHasher>>,
    /// Shared strings of the history are interned by address: equal `Name`s are one allocation.
    names: HashMap<usize, u32, BuildHasherDefault<FastHasher>>,
    table: Vec<&'h str>,
}

/// A multiplicative hash for addresses and short strings of a local file: fast, and the
/// keys are not chosen by an adversary.
#[derive(Default)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
}

impl<'h> Writer<'h> {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn oid(&mut self, v: Oid) {
        self.buf.extend_from_slice(v.as_bytes());
    }
    fn opt_oid(&mut self, v: Option<Oid>) {
        match v {
            Some(o) => {
                self.u8(1);
                self.oid(o);
            }
            None => self.u8(0),
        }
    }
    fn intern(&mut self, s: &'h str) -> u32 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.table.len() as u32;
        self.table.push(s);
        self.strings.insert(s, i);
        i
    }
    fn str(&mut self, s: &'h str) {
        let i = self.intern(s);
        self.u32(i);
    }
    fn name(&mut self, n: &'h Name) {
        let key = Arc::as_ptr(n) as *const u8 as usize;
        let i = match self.names.get(&key) {
            Some(&i) => i,
            None => {
                let i = self.intern(n);
                self.names.insert(key, i);
                i
            }
        };
        self.u32(i);
    }
    fn opt_name(&mut self, n: Option<&'h Name>) {
        match n {
            Some(n) => self.name(n),
            None => self.u32(NONE),
        }
    }
}

fn action_code(a: Action) -> u8 {
    match a {
        Action::Deployed => 0,
        Action::Updated => 1,
        Action::Removed => 2,
        Action::Moved => 3,
    }
}

/// Serializes a history into the index format.
pub fn encode(h: &History) -> Vec<u8> {
    let mut w = Writer {
        buf: Vec::with_capacity(64 + h.chain.len() * 50 + h.events.len() * 30),
        strings: HashMap::default(),
        names: HashMap::default(),
        table: Vec::new(),
    };
    w.str(&h.folder);
    w.u8(u8::from(h.shallow));
    // Of the records folder's trees only the tip's is needed, to continue the walk.
    w.opt_oid(h.tip_tree);
    w.u32(h.chain.len() as u32);
    for i in 0..h.chain.len() {
        w.oid(h.chain[i]);
        w.i64(h.times[i]);
    }
    w.u32(h.commits.len() as u32);
    for c in &h.commits {
        w.u32(c.pos);
        w.i64(c.author_time);
        w.name(&c.author);
        w.name(&c.subject);
    }
    w.u32(h.events.len() as u32);
    for e in &h.events {
        w.u32(e.commit);
        w.name(&e.agent);
        w.name(&e.environment);
        w.u8(action_code(e.action));
        w.opt_name(e.version.as_ref());
        w.opt_name(e.previous_version.as_ref());
        w.name(&e.path);
    }
    w.u32(h.warnings.len() as u32);
    for x in &h.warnings {
        w.u32(x.commit);
        w.name(&x.path);
    }
    w.u32(h.paths.len() as u32);
    for (path, state) in &h.paths {
        w.str(path);
        w.oid(state.blob);
        match &state.identity {
            Some(id) => {
                w.u8(1);
                w.str(&id.agent);
                w.str(&id.environment);
                w.str(&id.version);
            }
            None => w.u8(0),
        }
    }
    // The payload opens with the tip's snapshot, self-contained, so that commands that need
    // only the current records read it without decoding the rest; then the string table, so
    // the reader can resolve indexes as it goes.
    let snapshot = encode_snapshot(h);
    let mut table =
        Vec::with_capacity(snapshot.len() + 4 + w.table.iter().map(|s| s.len() + 4).sum::<usize>());
    table.extend_from_slice(&snapshot);
    table.extend_from_slice(&(w.table.len() as u32).to_le_bytes());
    for s in &w.table {
        table.extend_from_slice(&(s.len() as u32).to_le_bytes());
        table.extend_from_slice(s.as_bytes());
    }
    drop(w.strings);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&table);
    crc.update(&w.buf);
    let mut out = Vec::with_capacity(HEADER + table.len() + w.buf.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&((table.len() + w.buf.len()) as u64).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&table);
    drop(table);
    out.extend_from_slice(&w.buf);
    out
}

/// The tip's snapshot section: length, tip id, then per deployment its strings inline and the
/// ids and times of its generation and last update.
fn encode_snapshot(h: &History) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    let tip = h.tip().unwrap_or(Oid::ZERO_SHA1);
    out.extend_from_slice(tip.as_bytes());
    let root = h.chain.first().copied().unwrap_or(Oid::ZERO_SHA1);
    out.extend_from_slice(root.as_bytes());
    let rows = h.current();
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    let put = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    for d in &rows {
        for s in [
            &d.agent,
            &d.environment,
            &d.version,
            &d.path,
            &d.generation,
            &d.updated_commit,
        ] {
            put(&mut out, s);
        }
        out.extend_from_slice(&d.generation_time.to_le_bytes());
        out.extend_from_slice(&d.updated_time.to_le_bytes());
    }
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    out
}

/// The deployments at the tip of a chain, and the chain's first commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TipSnapshot {
    /// The oldest commit of the first-parent chain (identifies the repository).
    pub root: Oid,
    pub rows: Vec<Deployment>,
}

/// The deployments at `tip` from the index's snapshot section, when the index is intact and its
/// tip is `tip`. Reads the file whole (for the checksum) but decodes only that section.
pub fn tip_snapshot(repo: &Repository, tip: Oid, folder: &str) -> Option<TipSnapshot> {
    let bytes = map(&index_path(repo, folder))?;
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return None;
    }
    let payload = &bytes[HEADER..];
    let len = u64::from_le_bytes(bytes[8..16].try_into().ok()?) as usize;
    if payload.len() != len || crc32fast::hash(payload).to_le_bytes() != bytes[16..20] {
        return None;
    }
    let mut r = Reader {
        buf: payload,
        at: 0,
        table: Vec::new(),
    };
    r.u32()?;
    if r.oid()? != tip {
        return None;
    }
    let root = r.oid()?;
    let n = r.count(64)?;
    let mut rows = Vec::with_capacity(n);
    let text = |r: &mut Reader| -> Option<String> {
        let l = r.u32()? as usize;
        std::str::from_utf8(r.take(l)?).ok().map(str::to_string)
    };
    for _ in 0..n {
        let (agent, environment, version, path) =
            (text(&mut r)?, text(&mut r)?, text(&mut r)?, text(&mut r)?);
        let (generation, updated_commit) = (text(&mut r)?, text(&mut r)?);
        let generation_time = r.i64()?;
        let updated_time = r.i64()?;
        rows.push(Deployment {
            agent,
            environment,
            version,
            path,
            generation,
            updated_at: crate::when::rfc3339(updated_time),
            updated_commit,
            updated_time,
            generation_time,
        });
    }
    Some(TipSnapshot { root, rows })
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    table: Vec<Name>,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.buf.get(self.at..end)?;
        self.at = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn oid(&mut self) -> Option<Oid> {
        Oid::from_bytes(self.take(20)?).ok()
    }
    fn opt_oid(&mut self) -> Option<Option<Oid>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.oid()?)),
            _ => None,
        }
    }
    fn str(&mut self) -> Option<Name> {
        let i = self.u32()? as usize;
        self.table.get(i).cloned()
    }
    fn opt_str(&mut self) -> Option<Option<Name>> {
        let i = self.u32()?;
        if i == NONE {
            return Some(None);
        }
        self.table.get(i as usize).cloned().map(Some)
    }
    /// A count, bounded by what the remaining bytes could hold.
    fn count(&mut self, min_item: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.saturating_mul(min_item) <= self.buf.len() - self.at).then_some(n)
    }
}

/// Reads an index file; `None` when it is not a complete, intact index of this format.
pub fn decode(bytes: &[u8]) -> Option<History> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(bytes[8..16].try_into().ok()?) as usize;
    let payload = &bytes[HEADER..];
    if payload.len() != len {
        return None;
    }
    if crc32fast::hash(payload).to_le_bytes() != bytes[16..20] {
        return None;
    }
    let mut r = Reader {
        buf: payload,
        at: 0,
        table: Vec::new(),
    };
    let snapshot_len = r.u32()? as usize;
    r.take(snapshot_len)?;
    let n = r.count(4)?;
    let mut table = Vec::with_capacity(n);
    for _ in 0..n {
        let l = r.u32()? as usize;
        table.push(Name::from(std::str::from_utf8(r.take(l)?).ok()?));
    }
    r.table = table;
    let folder = r.str()?.to_string();
    let shallow = r.u8()? == 1;
    let tip_tree = r.opt_oid()?;
    let n = r.count(28)?;
    let (mut chain, mut times) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        chain.push(r.oid()?);
        times.push(r.i64()?);
    }
    let n = r.count(20)?;
    let mut commits = Vec::with_capacity(n);
    for _ in 0..n {
        let pos = r.u32()?;
        let author_time = r.i64()?;
        let author = r.str()?;
        let subject = r.str()?;
        let p = pos as usize;
        commits.push(CommitInfo {
            id: *chain.get(p)?,
            pos,
            time: *times.get(p)?,
            author,
            author_time,
            subject,
        });
    }
    let n = r.count(25)?;
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        let commit = r.u32()?;
        if commit as usize >= commits.len() {
            return None;
        }
        let agent = r.str()?;
        let environment = r.str()?;
        let action = match r.u8()? {
            0 => Action::Deployed,
            1 => Action::Updated,
            2 => Action::Removed,
            3 => Action::Moved,
            _ => return None,
        };
        events.push(Event {
            commit,
            agent,
            environment,
            action,
            version: r.opt_str()?,
            previous_version: r.opt_str()?,
            path: r.str()?,
        });
    }
    let n = r.count(8)?;
    let mut warnings = Vec::with_capacity(n);
    for _ in 0..n {
        let commit = r.u32()?;
        if commit as usize >= commits.len() {
            return None;
        }
        warnings.push(Warning {
            commit,
            path: r.str()?,
        });
    }
    let n = r.count(25)?;
    let mut paths = BTreeMap::new();
    for _ in 0..n {
        let path = r.str()?.to_string();
        let blob = r.oid()?;
        let identity = match r.u8()? {
            0 => None,
            1 => Some(Identity {
                agent: r.str()?.to_string(),
                environment: r.str()?.to_string(),
                version: r.str()?.to_string(),
            }),
            _ => return None,
        };
        paths.insert(path, PathState { blob, identity });
    }
    if r.at != payload.len() {
        return None;
    }
    Some(History {
        folder,
        chain,
        times,
        tip_tree,
        commits,
        events,
        warnings,
        paths,
        shallow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> History {
        let oid = |n: u8| Oid::from_bytes(&[n; 20]).unwrap();
        let mut paths = BTreeMap::new();
        paths.insert(
            "deployments/a/prod.yaml".to_string(),
            PathState {
                blob: oid(9),
                identity: Some(Identity {
                    agent: "a".into(),
                    environment: "prod".into(),
                    version: "2".into(),
                }),
            },
        );
        History {
            folder: "deployments".into(),
            chain: vec![oid(1), oid(2)],
            times: vec![100, 90],
            tip_tree: Some(oid(3)),
            commits: vec![CommitInfo {
                id: oid(2),
                pos: 1,
                time: 90,
                author: "A <a@x>".into(),
                author_time: 80,
                subject: "s".into(),
            }],
            events: vec![Event {
                commit: 0,
                agent: "a".into(),
                environment: "prod".into(),
                action: Action::Updated,
                version: Some("2".into()),
                previous_version: Some("1".into()),
                path: "deployments/a/prod.yaml".into(),
            }],
            warnings: vec![Warning {
                commit: 0,
                path: "deployments/b.yaml".into(),
            }],
            paths,
            shallow: true,
        }
    }

    #[test]
    fn round_trips() {
        let h = sample();
        assert_eq!(decode(&encode(&h)), Some(h));
    }

    #[test]
    fn the_snapshot_section_matches_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let h = sample();
        let path = index_path(&repo, "deployments");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, encode(&h)).unwrap();
        assert_eq!(
            tip_snapshot(&repo, h.tip().unwrap(), "deployments"),
            Some(TipSnapshot {
                root: h.chain[0],
                rows: h.current()
            })
        );
        assert_eq!(
            tip_snapshot(&repo, Oid::from_bytes(&[7; 20]).unwrap(), "deployments"),
            None
        );
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[30] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(tip_snapshot(&repo, h.tip().unwrap(), "deployments"), None);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_rejected() {
        let bytes = encode(&sample());
        for n in 0..bytes.len() {
            assert_eq!(decode(&bytes[..n]), None, "truncated at {n}");
        }
        for i in 0..bytes.len() {
            let mut altered = bytes.clone();
            altered[i] ^= 0x40;
            assert_eq!(decode(&altered), None, "byte {i} altered");
        }
    }
}
