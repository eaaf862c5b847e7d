//! The index file's format: a payload of the tip's snapshot, the history's strings (read back
//! with one copy) and the chain, commits, events and warnings naming strings by position; the
//! base segment and the delta segments appended after it, each with its magic, length and
//! CRC-32. Encoding and decoding only: where the files are and when they are written is the
//! index's business (the parent module).

use std::collections::BTreeMap;

use git2::Oid;

use crate::git::history::{self, Action, CommitInfo, Event, History, PathState, Sym, Warning};
use crate::model::Deployment;
use crate::model::record::Identity;

/// Bump when the format or the meaning of the history changes.
pub(super) const MAGIC: &[u8; 8] = b"LEDGITH7";
/// The magic of a delta segment appended after the base.
pub(super) const DELTA: &[u8; 8] = b"LEDGITD7";
pub(super) const HEADER: usize = 8 + 8 + 4;
pub(super) const NONE: u32 = u32::MAX;

pub(super) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
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
    /// A string written out: length, then bytes.
    fn text(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
    }
    /// A symbol: its position in the history's strings.
    fn sym(&mut self, s: Sym) {
        self.u32(s.index() as u32);
    }
    fn opt_sym(&mut self, s: Option<Sym>) {
        match s {
            Some(s) => self.sym(s),
            None => self.u32(NONE),
        }
    }
}

pub(super) fn action_code(a: Action) -> u8 {
    match a {
        Action::Deployed => 0,
        Action::Updated => 1,
        Action::Removed => 2,
        Action::Moved => 3,
    }
}

/// Where a segment's new items start: lengths of the history it extends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lengths {
    pub chain: usize,
    pub commits: usize,
    pub events: usize,
    pub warnings: usize,
    pub strings: usize,
}

impl Lengths {
    pub fn of(h: &History) -> Lengths {
        Lengths {
            chain: h.chain.len(),
            commits: h.commits.len(),
            events: h.events.len(),
            warnings: h.warnings.len(),
            strings: h.strings.len(),
        }
    }
}

/// Serializes a history into the index format (one base segment).
pub fn encode(h: &History) -> Vec<u8> {
    segment(MAGIC, h, &h.current(), Lengths::default(), |w| {
        w.text(&h.folder);
        w.u8(u8::from(h.shallow));
    })
}

/// A delta segment: what `h` has beyond `from`, to append to an index that holds `from`.
/// `rows` is the snapshot at `h`'s tip.
pub fn encode_delta(h: &History, rows: &[Deployment], from: Lengths) -> Vec<u8> {
    segment(DELTA, h, rows, from, |w| {
        // What the delta extends: the reader checks it against what it has decoded so far.
        w.u32(from.chain as u32);
        w.u32(from.commits as u32);
        w.u32(from.events as u32);
        w.u32(from.warnings as u32);
        w.u32(from.strings as u32);
        w.oid(
            from.chain
                .checked_sub(1)
                .map_or(Oid::ZERO_SHA1, |i| h.chain[i]),
        );
    })
}

/// One segment: header, then the tip's snapshot (self-contained, so that commands needing only
/// the current records skip the rest), the strings from `from` on (their count, the length of
/// their text, where each ends, the text), `head`, and the items from `from` on. Symbols are
/// positions in the whole history's strings, so a delta's items may name strings of the base.
pub(super) fn segment(
    magic: &[u8; 8],
    h: &History,
    rows: &[Deployment],
    from: Lengths,
    head: impl FnOnce(&mut Writer),
) -> Vec<u8> {
    let mut w = Writer {
        buf: Vec::with_capacity(
            64 + (h.chain.len() - from.chain) * 50 + (h.events.len() - from.events) * 30,
        ),
    };
    w.buf.extend_from_slice(&encode_snapshot(h, rows));
    let (text, ends) = h.strings.tail(from.strings);
    w.u32((h.strings.len() - from.strings.min(h.strings.len())) as u32);
    w.u32(text.len() as u32);
    for end in ends {
        w.u32(end);
    }
    w.buf.extend_from_slice(text.as_bytes());
    head(&mut w);
    // Of the records folder's trees only the tip's is needed, to continue the walk.
    w.opt_oid(h.tip_tree);
    w.u32((h.chain.len() - from.chain) as u32);
    for i in from.chain..h.chain.len() {
        w.oid(h.chain[i]);
        w.i64(h.times[i]);
    }
    w.u32((h.commits.len() - from.commits) as u32);
    for c in &h.commits[from.commits..] {
        w.u32(c.pos);
        w.i64(c.author_time);
        w.sym(c.author);
        w.sym(c.subject);
    }
    w.u32((h.events.len() - from.events) as u32);
    for e in &h.events[from.events..] {
        w.u32(e.commit);
        w.sym(e.agent);
        w.sym(e.environment);
        w.u8(action_code(e.action));
        w.opt_sym(e.version);
        w.opt_sym(e.previous_version);
        w.sym(e.path);
    }
    w.u32((h.warnings.len() - from.warnings) as u32);
    for x in &h.warnings[from.warnings..] {
        w.u32(x.commit);
        w.sym(x.path);
    }
    // The walk state is small (one entry per record file): each segment has all of it.
    w.u32(h.paths.len() as u32);
    for (path, state) in &h.paths {
        w.text(path);
        w.oid(state.blob);
        match &state.identity {
            Some(id) => {
                w.u8(1);
                w.text(&id.agent);
                w.text(&id.environment);
                w.text(&id.version);
            }
            None => w.u8(0),
        }
    }
    let payload = w.buf;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The payloads of the intact segments of an index file, in order. Reading stops at the
/// first segment that is short, of an unknown kind or fails its checksum; `clean` says whether
/// the whole file was read.
pub(super) fn segments(bytes: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + HEADER) else {
            return (out, false);
        };
        let magic: &[u8; 8] = header[..8].try_into().expect("8 bytes");
        let expected = if out.is_empty() { MAGIC } else { DELTA };
        let len = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")) as usize;
        let payload = at
            .checked_add(HEADER)
            .and_then(|start| Some((start, start.checked_add(len)?)))
            .and_then(|(start, end)| bytes.get(start..end));
        let Some(payload) = payload
            .filter(|p| magic == expected && crc32fast::hash(p).to_le_bytes() == header[16..20])
        else {
            return (out, false);
        };
        out.push(payload);
        at += HEADER + len;
    }
    (out, true)
}

/// The tip's snapshot section: length, tip id, then per deployment its strings inline and the
/// ids and times of its generation and last update.
pub(super) fn encode_snapshot(h: &History, rows: &[Deployment]) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    let tip = h.tip().unwrap_or(Oid::ZERO_SHA1);
    out.extend_from_slice(tip.as_bytes());
    let root = h.chain.first().copied().unwrap_or(Oid::ZERO_SHA1);
    out.extend_from_slice(root.as_bytes());
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    let put = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    for d in rows {
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

pub(super) fn snapshot_of(payload: &[u8], tip: Oid) -> Option<TipSnapshot> {
    let mut r = Reader {
        buf: payload,
        at: 0,
    };
    r.u32()?;
    if r.oid()? != tip {
        return None;
    }
    let root = r.oid()?;
    let n = r.count(64)?;
    let mut rows = Vec::with_capacity(n);
    let text = |r: &mut Reader| r.text().map(str::to_string);
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
            updated_at: crate::support::when::rfc3339(updated_time),
            updated_commit,
            updated_time,
            generation_time,
        });
    }
    Some(TipSnapshot { root, rows })
}

pub(super) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
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
    /// A string written out: length, then bytes.
    fn text(&mut self) -> Option<&'a str> {
        let l = self.u32()? as usize;
        std::str::from_utf8(self.take(l)?).ok()
    }
    /// A count, bounded by what the remaining bytes could hold.
    fn count(&mut self, min_item: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n.saturating_mul(min_item) <= self.buf.len() - self.at).then_some(n)
    }
}

/// A symbol of `strings`, as [`Writer::sym`] wrote it.
pub(super) fn sym(strings: &history::Strings, raw: u32) -> Option<Sym> {
    strings.sym(raw as usize)
}

pub(super) fn opt_sym(strings: &history::Strings, raw: u32) -> Option<Option<Sym>> {
    match raw {
        NONE => Some(None),
        _ => sym(strings, raw).map(Some),
    }
}

/// A segment, opened: its strings (text and ends, as [`segment`] wrote them) and a reader
/// positioned after them.
pub(super) struct Opened<'a> {
    text: &'a [u8],
    ends: &'a [u8],
    r: Reader<'a>,
}

pub(super) fn open(payload: &[u8]) -> Option<Opened<'_>> {
    let mut r = Reader {
        buf: payload,
        at: 0,
    };
    let snapshot_len = r.u32()? as usize;
    r.take(snapshot_len)?;
    let n = r.count(4)?;
    let text_len = r.u32()? as usize;
    let ends = r.take(n.checked_mul(4)?)?;
    let text = r.take(text_len)?;
    Some(Opened { text, ends, r })
}

/// Reads an index file: its base segment and the deltas after it. `None` when the base is not
/// intact; a damaged or stale delta ends the reading there (the history is then that of the
/// last good segment, which is still a true prefix of the branch). The flag says whether the
/// whole file was used (otherwise the next save rewrites it).
pub fn decode_file(bytes: &[u8]) -> Option<(History, bool, usize)> {
    let (segments, mut clean) = segments(bytes);
    let count = segments.len();
    let mut segments = segments.into_iter();
    let mut base = open(segments.next()?)?;
    let mut h = History {
        folder: base.r.text()?.to_string(),
        shallow: base.r.u8()? == 1,
        ..History::default()
    };
    h.strings.extend_from(base.text, base.ends)?;
    decode_body(&mut base.r, &mut h)?;
    for payload in segments {
        let applied = (|| {
            let Opened { text, ends, mut r } = open(payload)?;
            let from = Lengths {
                chain: r.u32()? as usize,
                commits: r.u32()? as usize,
                events: r.u32()? as usize,
                warnings: r.u32()? as usize,
                strings: r.u32()? as usize,
            };
            let tip = r.oid()?;
            if from != Lengths::of(&h) || h.tip().unwrap_or(Oid::ZERO_SHA1) != tip {
                return None;
            }
            // Apply in place; undo the appended items if the segment turns out malformed.
            if h.strings.extend_from(text, ends).is_none() || decode_body(&mut r, &mut h).is_none()
            {
                h.chain.truncate(from.chain);
                h.times.truncate(from.chain);
                h.commits.truncate(from.commits);
                h.events.truncate(from.events);
                h.warnings.truncate(from.warnings);
                h.strings.truncate(from.strings);
                return None;
            }
            Some(())
        })();
        if applied.is_none() {
            clean = false;
            break;
        }
    }
    Some((h, clean, count))
}

/// Reads an index file; `None` when it is not an intact index of this format.
pub fn decode(bytes: &[u8]) -> Option<History> {
    decode_file(bytes).map(|(h, _, _)| h)
}

/// Appends a segment's items to `h`, whose strings already include the segment's.
/// The walk state (paths, tip tree) is replaced only when the whole segment reads well.
pub(super) fn decode_body(r: &mut Reader, h: &mut History) -> Option<()> {
    let tip_tree = r.opt_oid()?;
    let n = r.count(28)?;
    h.chain.reserve(n);
    h.times.reserve(n);
    for _ in 0..n {
        h.chain.push(r.oid()?);
        h.times.push(r.i64()?);
    }
    let n = r.count(20)?;
    h.commits.reserve(n);
    for _ in 0..n {
        let pos = r.u32()?;
        let author_time = r.i64()?;
        let author = sym(&h.strings, r.u32()?)?;
        let subject = sym(&h.strings, r.u32()?)?;
        let p = pos as usize;
        h.commits.push(CommitInfo {
            id: *h.chain.get(p)?,
            pos,
            time: *h.times.get(p)?,
            author,
            author_time,
            subject,
        });
    }
    let n = r.count(EVENT)?;
    h.events.reserve(n);
    let strings = &h.strings;
    for raw in r.take(n * EVENT)?.chunks_exact(EVENT) {
        let u = |at: usize| u32::from_le_bytes([raw[at], raw[at + 1], raw[at + 2], raw[at + 3]]);
        let commit = u(0);
        if commit as usize >= h.commits.len() {
            return None;
        }
        let action = match raw[12] {
            0 => Action::Deployed,
            1 => Action::Updated,
            2 => Action::Removed,
            3 => Action::Moved,
            _ => return None,
        };
        h.events.push(Event {
            commit,
            agent: sym(strings, u(4))?,
            environment: sym(strings, u(8))?,
            action,
            version: opt_sym(strings, u(13))?,
            previous_version: opt_sym(strings, u(17))?,
            path: sym(strings, u(21))?,
        });
    }
    let n = r.count(8)?;
    for _ in 0..n {
        let commit = r.u32()?;
        if commit as usize >= h.commits.len() {
            return None;
        }
        h.warnings.push(Warning {
            commit,
            path: sym(&h.strings, r.u32()?)?,
        });
    }
    let n = r.count(25)?;
    let mut paths = BTreeMap::new();
    for _ in 0..n {
        let path = r.text()?.to_string();
        let blob = r.oid()?;
        let identity = match r.u8()? {
            0 => None,
            1 => Some(Identity {
                agent: r.text()?.to_string(),
                environment: r.text()?.to_string(),
                version: r.text()?.to_string(),
            }),
            _ => return None,
        };
        paths.insert(path, PathState { blob, identity });
    }
    if r.at != r.buf.len() {
        return None;
    }
    h.paths = paths;
    h.tip_tree = tip_tree;
    Some(())
}

/// The size of an encoded event: commit, agent, environment, action, version, previous
/// version, path.
pub(super) const EVENT: usize = 4 + 4 + 4 + 1 + 4 + 4 + 4;

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A small history with every kind of event, for the index tests.
    pub(in crate::git::index) fn sample() -> History {
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
        let mut strings = history::Strings::default();
        let mut n = |s: &str| strings.push(s).unwrap();
        let commits = vec![CommitInfo {
            id: oid(2),
            pos: 1,
            time: 90,
            author: n("A <a@x>"),
            author_time: 80,
            subject: n("s \"quoted\""),
        }];
        let events = vec![Event {
            commit: 0,
            agent: n("a"),
            environment: n("prod"),
            action: Action::Updated,
            version: Some(n("2")),
            previous_version: Some(n("1")),
            path: n("deployments/a/prod.yaml"),
        }];
        let warnings = vec![Warning {
            commit: 0,
            path: n("deployments/b.yaml"),
        }];
        History {
            folder: "deployments".into(),
            chain: vec![oid(1), oid(2)],
            times: vec![100, 90],
            tip_tree: Some(oid(3)),
            commits,
            events,
            warnings,
            strings,
            paths,
            shallow: true,
        }
    }

    /// The sample history before its last commit.
    fn prefix(h: &History) -> History {
        History {
            chain: h.chain[..1].to_vec(),
            times: h.times[..1].to_vec(),
            commits: Vec::new(),
            events: Vec::new(),
            warnings: Vec::new(),
            strings: history::Strings::default(),
            tip_tree: None,
            ..h.clone()
        }
    }

    #[test]
    fn deltas_extend_the_base_and_damaged_or_stale_ones_are_dropped() {
        let full = sample();
        let base = prefix(&full);
        let delta = encode_delta(&full, &full.current(), Lengths::of(&base));
        let mut file = encode(&base);
        file.extend_from_slice(&delta);
        assert_eq!(decode_file(&file), Some((full.clone(), true, 2)));
        // A torn append: the history of the base, and a rewrite is due.
        let torn = &file[..file.len() - 3];
        assert_eq!(decode_file(torn), Some((base.clone(), false, 1)));
        // A delta written for another base (a concurrent writer) is not applied.
        let mut stale = encode(&base);
        stale.extend_from_slice(&encode_delta(&full, &full.current(), Lengths::default()));
        assert_eq!(
            decode_file(&stale).map(|(h, clean, _)| (h, clean)),
            Some((base, false))
        );
        // Every flipped byte of the delta is caught.
        let start = file.len() - delta.len();
        for i in start..file.len() {
            let mut altered = file.clone();
            altered[i] ^= 0x20;
            let (h, _, _) = decode_file(&altered).unwrap();
            assert!(h == full || h.chain.len() == 1, "byte {i}");
        }
    }

    #[test]
    fn round_trips() {
        let h = sample();
        let back = decode(&encode(&h)).unwrap();
        assert_eq!(back, h);
        // What JSON must escape is known again after reading.
        let subject = back.commits[0].subject;
        assert_eq!(back.str(subject), "s \"quoted\"");
        assert!(!back.strings.json_plain(subject));
        assert!(back.strings.json_plain(back.events[0].agent));
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
