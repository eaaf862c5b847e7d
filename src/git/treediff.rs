//! Diffing two trees straight from the object database: tree objects are read raw and walked
//! in git's order without copies, and only subtrees whose ids differ are opened. Every changed
//! regular file comes out with its blob before and after; the history engine and `check` ask
//! for it (the history engine with a filter on paths).

use git2::{Oid, Repository};

use crate::error::{Error, Result};

/// A changed file: (path, blob before, blob after).
pub type Change = (String, Option<Oid>, Option<Oid>);

/// Every regular file that differs between two trees (`None`: the empty tree), with its blob
/// before and after. Only subtrees whose ids differ are opened.
pub fn changed_files(repo: &Repository, old: Option<Oid>, new: Option<Oid>) -> Result<Vec<Change>> {
    let odb = repo
        .odb()
        .map_err(|e| Error::git("opening the object database", e))?;
    let (a, b) = (read_tree(&odb, old)?, read_tree(&odb, new)?);
    let mut out = Vec::new();
    diff_trees(&odb, &a, &b, "", &|_| true, &mut out)?;
    Ok(out)
}

/// A tree object read raw from the object database and walked without copies.
pub(crate) struct RawTree<'o> {
    data: Option<git2::OdbObject<'o>>,
}

/// One entry of a raw tree.
#[derive(Clone, Copy)]
struct RawEntry<'a> {
    mode: u32,
    name: &'a [u8],
    id: &'a [u8],
}

impl RawEntry<'_> {
    fn is_tree(&self) -> bool {
        self.mode == 0o40000
    }
    fn oid(&self) -> Oid {
        Oid::from_bytes(self.id).unwrap_or(Oid::ZERO_SHA1)
    }
}

impl RawTree<'_> {
    fn bytes(&self) -> &[u8] {
        self.data.as_ref().map_or(&[], |d| d.data())
    }
}

/// Parses the entry at `at` of a raw tree: `<octal mode> <name>\0<20-byte id>`.
fn raw_entry(data: &[u8], at: usize) -> Option<(RawEntry<'_>, usize)> {
    let rest = data.get(at..)?;
    let space = rest.iter().position(|&b| b == b' ')?;
    let mut mode = 0u32;
    for &d in &rest[..space] {
        if !(b'0'..=b'7').contains(&d) {
            return None;
        }
        mode = mode.checked_mul(8)? + u32::from(d - b'0');
    }
    let name_start = space + 1;
    let nul = name_start + rest[name_start..].iter().position(|&b| b == 0)?;
    let id = rest.get(nul + 1..nul + 21)?;
    Some((
        RawEntry {
            mode,
            name: &rest[name_start..nul],
            id,
        },
        at + nul + 21,
    ))
}

pub(crate) fn read_tree<'o>(odb: &'o git2::Odb<'_>, id: Option<Oid>) -> Result<RawTree<'o>> {
    let data = match id {
        Some(id) => Some(odb.read(id).map_err(|e| Error::git("reading a tree", e))?),
        None => None,
    };
    Ok(RawTree { data })
}

/// Where the entry starting at `at` ends: after its name's NUL and the 20-byte id.
fn entry_end(data: &[u8], at: usize) -> Option<usize> {
    let nul = data.get(at..)?.iter().position(|&b| b == 0)?;
    let end = at + nul + 21;
    (end <= data.len()).then_some(end)
}

/// The length of the common prefix of two byte strings, compared eight bytes at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n && a[i..i + 8] == b[i..i + 8] {
        i += 8;
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// The length of the common suffix of two byte strings, compared eight bytes at a time.
fn common_suffix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (ea, eb) = (a.len(), b.len());
    let mut k = 0;
    while k + 8 <= n && a[ea - k - 8..ea - k] == b[eb - k - 8..eb - k] {
        k += 8;
    }
    while k < n && a[ea - k - 1] == b[eb - k - 1] {
        k += 1;
    }
    k
}

/// Orders tree entries as git stores them: by name, a tree's name followed by a virtual `/`.
fn git_order(a: &RawEntry, b: &RawEntry) -> std::cmp::Ordering {
    let n = a.name.len().min(b.name.len());
    a.name[..n].cmp(&b.name[..n]).then_with(|| {
        let next = |e: &RawEntry| e.name.get(n).copied().or(e.is_tree().then_some(b'/'));
        next(a).cmp(&next(b))
    })
}

/// Diffs two trees of the records folder, descending only into subtrees that differ. Entries
/// are compared in place, in git's order, straight from the raw objects.
pub(crate) fn diff_trees(
    odb: &git2::Odb<'_>,
    old: &RawTree,
    new: &RawTree,
    prefix: &str,
    wanted: &dyn Fn(&str) -> bool,
    out: &mut Vec<Change>,
) -> Result<()> {
    use std::cmp::Ordering;
    let corrupt = || Error::Corrupt {
        what: format!("a tree under {prefix}"),
    };
    let (a, b) = (old.bytes(), new.bytes());
    // Entries before the first differing byte are identical on both sides: skip them whole.
    let common = common_prefix(a, b);
    let mut start = 0;
    while let Some(end) = entry_end(a, start).filter(|&e| e <= common) {
        start = end;
    }
    // Likewise after the last differing byte: once what is left of both trees lies in their
    // common suffix, the rest is the same entries (one changed record among hundreds is the
    // common case, and this spares parsing the entries after it).
    let suffix = common_suffix(a, b);
    let (mut i, mut j) = (start, start);
    while i < a.len() || j < b.len() {
        let rest = a.len() - i;
        if rest == b.len() - j && rest <= suffix {
            break;
        }
        // Identical entries are skipped without parsing them.
        if let (Some(ea), Some(eb)) = (entry_end(a, i), entry_end(b, j))
            && a[i..ea] == b[j..eb]
        {
            i = ea;
            j = eb;
            continue;
        }
        let left = if i < a.len() {
            Some(raw_entry(a, i).ok_or_else(corrupt)?)
        } else {
            None
        };
        let right = if j < b.len() {
            Some(raw_entry(b, j).ok_or_else(corrupt)?)
        } else {
            None
        };
        let ord = match (&left, &right) {
            (Some((x, _)), Some((y, _))) => git_order(x, y),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let (l, r) = match ord {
            Ordering::Less => (left, None),
            Ordering::Greater => (None, right),
            Ordering::Equal => (left, right),
        };
        if let Some((_, next)) = l {
            i = next;
        }
        if let Some((_, next)) = r {
            j = next;
        }
        let (l, r) = (l.map(|x| x.0), r.map(|x| x.0));
        if let (Some(x), Some(y)) = (&l, &r)
            && x.id == y.id
            && x.mode == y.mode
        {
            continue;
        }
        let Some(sample) = l.or(r) else {
            break;
        };
        let name = String::from_utf8_lossy(sample.name);
        let path = if prefix.is_empty() {
            name.into_owned()
        } else {
            format!("{prefix}/{name}")
        };
        if sample.is_tree() {
            let sub = |e: Option<RawEntry>| e.filter(RawEntry::is_tree).map(|e| e.oid());
            let (lt, rt) = (read_tree(odb, sub(l))?, read_tree(odb, sub(r))?);
            diff_trees(odb, &lt, &rt, &path, wanted, out)?;
        } else if wanted(&path) {
            // Only regular files are records: not symbolic links, submodules or trees.
            let blob = |e: Option<RawEntry>| {
                e.filter(|e| e.mode == 0o100644 || e.mode == 0o100755)
                    .map(|e| e.oid())
            };
            let (before, after) = (blob(l), blob(r));
            if before != after {
                out.push((path, before, after));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_affixes() {
        assert_eq!(common_prefix(b"abcdefghij-x", b"abcdefghij-y"), 11);
        assert_eq!(common_suffix(b"x-abcdefghij", b"yy-abcdefghij"), 11);
        assert_eq!(common_suffix(b"same", b"same"), 4);
        assert_eq!(common_suffix(b"", b"abc"), 0);
    }

    /// The raw tree diff agrees with libgit2's own on trees edited at the start, the middle
    /// and the end, with files added, removed, changed and turned into folders.
    #[test]
    fn the_raw_tree_diff_agrees_with_libgit2() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let blob = |s: &str| repo.blob(s.as_bytes()).unwrap();
        // A folder of agents, each a folder of two files; an edit gives each file's content
        // (`None`: no such file).
        type Edit<'e> = &'e dyn Fn(usize, &str) -> Option<String>;
        let build = |edit: Edit| {
            let mut top = repo.treebuilder(None).unwrap();
            for a in 0..40 {
                let mut sub = repo.treebuilder(None).unwrap();
                for env in ["prod", "staging"] {
                    if let Some(content) = edit(a, env) {
                        sub.insert(format!("{env}.yaml"), blob(&content), 0o100644)
                            .unwrap();
                    }
                }
                if !sub.is_empty() {
                    let id = sub.write().unwrap();
                    top.insert(format!("agent-{a:02}"), id, 0o040000).unwrap();
                }
            }
            top.write().unwrap()
        };
        let base = build(&|a, env| Some(format!("{a} {env} 1")));
        let variants: [Edit; 5] = [
            &|a, env| Some(format!("{a} {env} {}", if a == 0 { 2 } else { 1 })),
            &|a, env| Some(format!("{a} {env} {}", if a == 20 { 2 } else { 1 })),
            &|a, env| {
                Some(format!(
                    "{a} {env} {}",
                    if a == 39 && env == "prod" { 2 } else { 1 }
                ))
            },
            &|a, env| (a != 13 && !(a == 30 && env == "staging")).then(|| format!("{a} {env} 1")),
            &|a, env| Some(format!("{a} {env} {}", if a % 7 == 3 { 9 } else { 1 })),
        ];
        for (k, edit) in variants.iter().enumerate() {
            let other = build(*edit);
            for (old, new) in [(base, other), (other, base)] {
                let mut ours = changed_files(&repo, Some(old), Some(new)).unwrap();
                ours.sort();
                let (ta, tb) = (repo.find_tree(old).unwrap(), repo.find_tree(new).unwrap());
                let diff = repo.diff_tree_to_tree(Some(&ta), Some(&tb), None).unwrap();
                let mut theirs: Vec<Change> = diff
                    .deltas()
                    .map(|d| {
                        let id = |f: git2::DiffFile| (!f.id().is_zero()).then(|| f.id());
                        let path = d.new_file().path().or(d.old_file().path()).unwrap();
                        (
                            path.to_str().unwrap().to_string(),
                            id(d.old_file()),
                            id(d.new_file()),
                        )
                    })
                    .collect();
                theirs.sort();
                assert_eq!(ours, theirs, "variant {k}");
                assert!(!ours.is_empty(), "variant {k}");
            }
        }
    }
}
