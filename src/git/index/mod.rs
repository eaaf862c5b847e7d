//! The on-disk history index: a [`History`] saved under the repository's git directory
//! (`<git dir>/ledgit/`, never in the work tree), so that a second query does not walk the chain
//! again and a query after a few new commits walks only those.
//!
//! The file is a magic, the payload length and its CRC-32, then the payload: the tip's snapshot,
//! the history's strings (read back with one copy), and the chain, commits, events and warnings,
//! which name strings by position. A file that is short, altered or of another format version fails the check and
//! is rebuilt, so a corrupt or half-written index can never give a wrong answer; writes go to a
//! temporary file renamed into place. A branch whose old tip is no longer on its first-parent
//! chain (force push, rebase) is rebuilt from scratch.

use std::path::PathBuf;

use git2::{Oid, Repository};

use crate::error::Result;

mod codec;

use crate::git::history::{self, History, Progress};
pub use codec::{Lengths, TipSnapshot, decode, decode_file, encode, encode_delta};
use codec::{segments, snapshot_of};

/// After this many deltas, the next save rewrites the file whole.
const MAX_DELTAS: usize = 32;

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

/// How many branches' indexes are kept per records folder: queries that alternate between a
/// few branches (`check --base main` on a feature branch, `status --rev release`) each find
/// theirs instead of rebuilding one index back and forth.
const SLOTS: usize = 4;
/// How far back from a new tip the first-parent chain is searched for a slot to extend.
const NEAR: usize = 2_000;

/// Where the index of a records folder lives: its first slot (see [`SLOTS`]).
pub fn index_path(repo: &Repository, folder: &str) -> PathBuf {
    slot_paths(repo, folder).swap_remove(0)
}

/// The slots' files, first the one that a single branch uses.
fn slot_paths(repo: &Repository, folder: &str) -> Vec<PathBuf> {
    let name = format!("{:08x}", crc32fast::hash(folder.as_bytes()));
    let dir = repo.commondir().join("ledgit");
    (0..SLOTS)
        .map(|i| match i {
            0 => dir.join(format!("history-{name}.idx")),
            _ => dir.join(format!("history-{name}.{i}.idx")),
        })
        .collect()
}

/// An index file that is there, mapped, with the tip of its newest intact segment.
struct Slot {
    path: PathBuf,
    file: memmap2::Mmap,
    tip: Oid,
    used: std::time::SystemTime,
}

/// The slots that hold an index, most recently used first.
fn open_slots(paths: &[PathBuf]) -> Vec<Slot> {
    let mut slots: Vec<Slot> = paths
        .iter()
        .filter_map(|path| {
            let file = map(path)?;
            let (segments, _) = segments(&file);
            let tip = Oid::from_bytes(segments.last()?.get(4..24)?).ok()?;
            let used = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
            Some(Slot {
                path: path.clone(),
                file,
                tip,
                used,
            })
        })
        .collect();
    slots.sort_by_key(|s| std::cmp::Reverse(s.used));
    slots
}

/// The path to write a new branch's index to: a free slot, else the least recently used.
fn free_slot(paths: &[PathBuf], slots: &[Slot]) -> PathBuf {
    paths
        .iter()
        .find(|p| !slots.iter().any(|s| &s.path == *p))
        .or_else(|| slots.last().map(|s| &s.path))
        .unwrap_or(&paths[0])
        .clone()
}

/// Marks a slot as used now (its modification time orders eviction).
fn touch(path: &std::path::Path) {
    if let Ok(file) = std::fs::OpenOptions::new().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Decodes a slot's history, when it is of `folder`.
fn decode_slot(slot: &Slot, folder: &str) -> Option<(History, bool, usize)> {
    decode_file(&slot.file).filter(|(h, _, _)| h.folder == folder)
}

/// An exclusive lock on a folder's index files, held while one process extends or rewrites
/// them; readers of an intact file need none (files are replaced by rename, and a torn
/// append fails its checksum).
struct Lock(Option<std::fs::File>);

fn lock(repo: &Repository, folder: &str) -> Lock {
    let name = format!("{:08x}", crc32fast::hash(folder.as_bytes()));
    let dir = repo.commondir().join("ledgit");
    let file = std::fs::create_dir_all(&dir).ok().and_then(|_| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("history-{name}.lock")))
            .ok()
    });
    // A repository we cannot write to goes without an index, and so without a lock.
    Lock(file.filter(|f| f.lock().is_ok()))
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            let _ = f.unlock();
        }
    }
}

/// The first slot among `slots` whose tip is at most [`NEAR`] first parents behind `tip`.
fn near_slot<'s>(repo: &Repository, tip: Oid, slots: &'s [Slot]) -> Option<&'s Slot> {
    let mut id = tip;
    for _ in 0..NEAR {
        if let Some(slot) = slots.iter().find(|s| s.tip == id) {
            return Some(slot);
        }
        id = repo.find_commit(id).ok()?.parent_id(0).ok()?;
    }
    None
}

/// The history of `tip`, from the index where possible; the index is brought up to date.
pub fn history(
    repo: &Repository,
    tip: Oid,
    folder: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<(History, Source)> {
    if let Some(found) = indexed(repo, tip, folder, progress)? {
        return Ok(found);
    }
    let _lock = lock(repo, folder);
    let paths = slot_paths(repo, folder);
    let slots = open_slots(&paths);
    if let Some(found) = cached(&slots, tip, folder) {
        // Another process built it while this one waited for the lock.
        return Ok(found);
    }
    let h = history::build(repo, tip, folder, progress)?;
    save(&free_slot(&paths, &slots), &h);
    Ok((h, Source::Built))
}

/// The history of the slot whose tip is `tip`, or of one whose chain holds it.
fn cached(slots: &[Slot], tip: Oid, folder: &str) -> Option<(History, Source)> {
    let slot = slots.iter().find(|s| s.tip == tip)?;
    let (h, _, _) = decode_slot(slot, folder)?;
    touch(&slot.path);
    Some((h, Source::Cached))
}

/// The history of `tip` through the index when there is a usable one (as it is, cut to an
/// older commit of its chain, or extended by new commits and saved), else `None`.
pub fn indexed(
    repo: &Repository,
    tip: Oid,
    folder: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<Option<(History, Source)>> {
    let paths = slot_paths(repo, folder);
    let slots = open_slots(&paths);
    if slots.is_empty() {
        return Ok(None);
    }
    if let Some(found) = cached(&slots, tip, folder) {
        return Ok(Some(found));
    }
    // From here on the index is written: one process at a time, and the files are read again
    // under the lock, since another process may have brought them forward meanwhile.
    let _lock = lock(repo, folder);
    let slots = open_slots(&paths);
    if let Some(found) = cached(&slots, tip, folder) {
        return Ok(Some(found));
    }
    // A slot a few commits behind: extend it.
    if let Some(slot) = near_slot(repo, tip, &slots)
        && let Some(decoded) = decode_slot(slot, folder)
    {
        return extend_slot(repo, slot, decoded, tip, &paths, &slots, progress).map(Some);
    }
    // An older commit of a slot's chain (`--rev HEAD~50`): a prefix of what it knows.
    for slot in &slots {
        if let Some((mut h, _, _)) = decode_slot(slot, folder)
            && let Some(pos) = h.position(tip)
        {
            h.truncate(pos);
            touch(&slot.path);
            return Ok(Some((h, Source::Cached)));
        }
    }
    // Far ahead of the most recent slot, or on another chain: extend it (the walk rebuilds
    // when its tip is not on the chain, and the result then goes to a slot of its own).
    match decode_slot(&slots[0], folder) {
        Some(decoded) => {
            extend_slot(repo, &slots[0], decoded, tip, &paths, &slots, progress).map(Some)
        }
        None => Ok(None),
    }
}

/// Extends a slot's history to `tip` and saves it: appended as a delta to its slot when it
/// was extended, written whole to a free slot when the walk had to rebuild.
fn extend_slot(
    repo: &Repository,
    slot: &Slot,
    (mut h, clean, count): (History, bool, usize),
    tip: Oid,
    paths: &[PathBuf],
    slots: &[Slot],
    progress: &mut dyn FnMut(Progress),
) -> Result<(History, Source)> {
    let before = h.chain.len();
    let from = Lengths::of(&h);
    // The old tip's snapshot, to bring forward by the new events only.
    let old = h.tip().and_then(|t| {
        let (segments, _) = segments(&slot.file);
        segments.last().and_then(|p| snapshot_of(p, t))
    });
    let extended = history::extend(repo, &mut h, tip, progress)?;
    if !extended {
        save(&free_slot(paths, slots), &h);
        return Ok((h, Source::Built));
    }
    if let (true, true, Some(old)) = (clean, count <= MAX_DELTAS, old) {
        // A few new commits: append what they added instead of rewriting the file.
        let rows = h.advance(old.rows, from.events);
        append(&slot.path, &encode_delta(&h, &rows, from));
    } else {
        save(&slot.path, &h);
    }
    let added = h.chain.len() - before;
    Ok((h, Source::Extended(added)))
}

/// Appends a delta segment. A torn append fails its checksum and is ignored by readers (the
/// next save then rewrites the file whole).
fn append(path: &std::path::Path, segment: &[u8]) {
    use std::io::Write;
    if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(path) {
        let _ = file.write_all(segment);
    }
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
        let _ = crate::support::fsutil::write_atomic_nosync(path, &encode(h));
    }
}

/// The deployments at `tip` from the index's snapshot section, when the index is intact and its
/// tip is `tip`. Reads the file whole (for the checksum) but decodes only that section.
pub fn tip_snapshot(repo: &Repository, tip: Oid, folder: &str) -> Option<TipSnapshot> {
    slot_paths(repo, folder).iter().find_map(|path| {
        let bytes = map(path)?;
        // Each segment carries the snapshot of the tip it was written for: the newest one for
        // `tip` is the answer (it was computed from that tip's whole history).
        let (segments, _) = segments(&bytes);
        segments
            .iter()
            .rev()
            .find_map(|payload| snapshot_of(payload, tip))
    })
}

#[cfg(test)]
mod tests {
    use super::codec::tests::sample;
    use super::*;

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
}
