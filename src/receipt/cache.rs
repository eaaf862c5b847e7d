//! The receipts' cache under the git directory (`<git dir>/ledgit/receipts.idx`, never in the
//! work tree): every note already checked, with its receipts and verdicts, so that a second
//! `audit`, `history --applied` or page reads no note and verifies no signature again. A note's
//! verdict depends only on its commit and its content (the record and the reconciler keys it is
//! judged by are the commit's own), so an entry keyed by (commit, note blob) never goes stale:
//! when the notes ref moves, only the notes that are new are checked. The file is a magic, the
//! payload's length and CRC-32, then the payload; one that does not check is ignored and
//! rewritten, so a damaged cache costs time, never a wrong verdict.

use std::collections::HashMap;
use std::path::PathBuf;

use git2::{Oid, Repository};

use crate::error::Result;
use crate::finding::Code;
use crate::receipt::check::{self, Claim, Declared, Problem, Receipt};
use crate::receipt::notes;

const MAGIC: &[u8; 8] = b"LEDGITR3";

/// Where the cache of `repo` lives.
pub fn path(repo: &Repository) -> PathBuf {
    repo.commondir().join("ledgit").join("receipts.idx")
}

/// Every receipt under the notes commit `notes_tip`, checked, in applied order: from the
/// cache where it has them, the rest checked now (then the cache is saved); `history` (the
/// branch's) answers the version checks of those on its chain.
pub fn receipts(
    repo: &Repository,
    notes_tip: Oid,
    history: Option<&crate::git::history::History>,
) -> Result<Vec<Receipt>> {
    let file = path(repo);
    let (tip, cached_chain, cached) = std::fs::read(&file)
        .ok()
        .and_then(|b| decode(&b))
        .unwrap_or_else(|| (Oid::ZERO_SHA1, Oid::ZERO_SHA1, Vec::new()));
    // Which receipts count depends on the branch too (a receipt off it is a finding): the
    // cache holds for the notes and the branch's tip it was saved at.
    let chain_tip = history
        .and_then(|h| h.chain().last().copied())
        .unwrap_or(Oid::ZERO_SHA1);
    if tip == notes_tip && cached_chain == chain_tip {
        // Saved in applied order.
        return Ok(cached.into_iter().map(|(_, r)| r).collect());
    }
    let positions = history.map(check::chain_positions);
    let on_chain = |c: Oid| positions.as_ref().is_none_or(|p| p.contains_key(&c));
    let mut known: Entries = HashMap::new();
    let mut again: std::collections::HashSet<(Oid, Oid)> = Default::default();
    for (blob, mut r) in cached {
        let off = r
            .problem
            .as_ref()
            .is_some_and(|p| p.code == crate::finding::Code::ReceiptOffBranch);
        match (off, on_chain(r.commit)) {
            // Off the branch when checked, on it now (the branch moved on to it): check again.
            (true, true) => {
                again.insert((r.commit, blob));
                continue;
            }
            // On it when checked, off it now (the branch was rewritten): off the branch.
            (false, false) => {
                r.problem = Some(check::Problem {
                    code: crate::finding::Code::ReceiptOffBranch,
                    message: check::off_branch(r.commit),
                });
            }
            _ => {}
        }
        known.entry((r.commit, blob)).or_default().push(r);
    }
    for key in &again {
        known.remove(key);
    }
    let all = notes::all_at(repo, notes_tip)?;
    let missing: Vec<(Oid, Oid)> = all
        .iter()
        .filter(|key| !known.contains_key(key))
        .copied()
        .collect();
    let blob_of: HashMap<Oid, Oid> = missing.iter().copied().collect();
    let mut fresh: Entries = missing.iter().map(|k| (*k, Vec::new())).collect();
    let declared = match history {
        Some(h) if !missing.is_empty() => Some(Declared::new(h)),
        _ => None,
    };
    for r in check::notes_checked(repo, &missing, declared.as_ref())? {
        if let Some(blob) = blob_of.get(&r.commit) {
            fresh.entry((r.commit, *blob)).or_default().push(r);
        }
    }
    let wanted: std::collections::HashSet<(Oid, Oid)> = all.iter().copied().collect();
    known.retain(|k, _| wanted.contains(k));
    known.extend(fresh);
    let mut out: Vec<(Oid, Receipt)> = known
        .into_iter()
        .flat_map(|((_, blob), list)| list.into_iter().map(move |r| (blob, r)))
        .collect();
    out.sort_by_key(|(_, r)| (r.applied_time, r.commit, r.line));
    // A cache that cannot be written costs the next run time, not a result.
    let _ = crate::support::fsutil::write_atomic_nosync(&file, &encode(notes_tip, chain_tip, &out));
    Ok(out.into_iter().map(|(_, r)| r).collect())
}

type Entries = HashMap<(Oid, Oid), Vec<Receipt>>;

/// What the cache file holds: the notes tip, the branch tip, and each receipt with its note's
/// blob.
type Saved = (Oid, Oid, Vec<(Oid, Receipt)>);

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn oid(&mut self, v: Oid) {
        self.0.extend_from_slice(v.as_bytes());
    }
    fn text(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.text(s);
            }
            None => self.u8(0),
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
    fn oid(&mut self) -> Option<Oid> {
        self.take(20).and_then(|b| Oid::from_bytes(b).ok())
    }
    fn text(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        self.take(n)
            .and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_string)
    }
    fn opt_text(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            _ => self.text().map(Some),
        }
    }
}

fn encode(tip: Oid, chain_tip: Oid, receipts: &[(Oid, Receipt)]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(receipts.len() * 128));
    w.oid(tip);
    w.oid(chain_tip);
    w.u32(receipts.len() as u32);
    for (blob, r) in receipts {
        w.oid(r.commit);
        w.oid(*blob);
        w.u32(r.line);
        w.text(&r.keyid);
        w.i64(r.applied_time);
        match &r.problem {
            Some(p) => {
                w.u8(1);
                w.text(p.code.as_str());
                w.text(&p.message);
            }
            None => w.u8(0),
        }
        match &r.claim {
            Some(c) => {
                w.u8(1);
                claim(&mut w, c);
            }
            None => w.u8(0),
        }
    }
    let payload = w.0;
    let mut out = Vec::with_capacity(payload.len() + 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn claim(w: &mut Writer, c: &Claim) {
    for t in [&c.agent, &c.environment, &c.action] {
        w.text(t);
    }
    w.opt_text(c.version.as_deref());
    w.text(&c.reconciler);
}

/// The notes tip and the branch tip the cache was saved at, and its receipts with their note blobs, in applied
/// order.
fn decode(bytes: &[u8]) -> Option<Saved> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let mut r = Reader(rest);
    let len = u64::from_le_bytes(r.take(8)?.try_into().ok()?) as usize;
    let crc = r.u32()?;
    let payload = r.take(len)?;
    if crc32fast::hash(payload) != crc || !r.0.is_empty() {
        return None;
    }
    let mut r = Reader(payload);
    let tip = r.oid()?;
    let chain_tip = r.oid()?;
    let n = r.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(payload.len() / 60));
    for _ in 0..n {
        let commit = r.oid()?;
        let blob = r.oid()?;
        let line = r.u32()?;
        let keyid = r.text()?;
        let applied_time = r.i64()?;
        let problem = match r.u8()? {
            0 => None,
            _ => Some(Problem {
                code: Code::from_name(&r.text()?)?,
                message: r.text()?,
            }),
        };
        let claim = match r.u8()? {
            0 => None,
            _ => Some(read_claim(&mut r)?),
        };
        out.push((
            blob,
            Receipt {
                commit,
                line,
                keyid,
                claim,
                applied_time,
                problem,
            },
        ));
    }
    r.0.is_empty().then_some((tip, chain_tip, out))
}

fn read_claim(r: &mut Reader<'_>) -> Option<Claim> {
    Some(Claim {
        agent: r.text()?,
        environment: r.text()?,
        action: r.text()?,
        version: r.opt_text()?,
        reconciler: r.text()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_refused() {
        let s =
            crate::receipt::Statement::new(crate::receipt::statement::tests::apply(), "p", None);
        let commit = Oid::hash_object(git2::ObjectType::Blob, b"c").unwrap();
        let blob = Oid::hash_object(git2::ObjectType::Blob, b"b").unwrap();
        let receipt = Receipt {
            commit,
            line: 3,
            keyid: "r1".into(),
            claim: Some(Claim::of(&s)),
            applied_time: 42,
            problem: Some(Problem {
                code: Code::ReceiptMoved,
                message: "m".into(),
            }),
        };
        let bytes = encode(blob, commit, &[(blob, receipt.clone())]);
        let (tip, chain_tip, back) = decode(&bytes).unwrap();
        assert_eq!((tip, chain_tip), (blob, commit));
        assert_eq!(back[0].0, blob);
        let got = &back[0].1;
        assert_eq!(got.claim, receipt.claim);
        assert_eq!(got.problem, receipt.problem);
        assert_eq!((got.line, got.applied_time), (3, 42));
        let mut damaged = bytes.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(decode(&damaged).is_none());
        assert!(decode(&bytes[..bytes.len() - 1]).is_none());
    }
}
