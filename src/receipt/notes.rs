//! Where receipts live: git notes on the applied commit under [`NOTES_REF`], one DSSE envelope
//! per line (`git log --notes=ledgit/applied` shows them). A note is written by building the
//! notes commit directly (blob, fan-out trees, commit) and moving the notes ref only if it is
//! still where it was read (compare and swap), so neither the work tree, the index nor the
//! tracked branch is touched, and two writers in one repository never lose each other's lines:
//! the loser reads again and adds its line to what the winner wrote. A line already in the note
//! is not added twice. Notes from another clone merge the same way: every line of both sides
//! is kept, once.

use std::collections::HashSet;

use git2::{ErrorCode, ObjectType, Oid, Repository, Tree};

use crate::error::{Error, Result};
use crate::git::repo::{GitFailure, Repo};

/// The notes ref receipts are written under.
pub const NOTES_REF: &str = "refs/notes/ledgit/applied";
/// How many times a write is tried again after another writer moved the ref first.
const ATTEMPTS: usize = 50;
/// How many times a rejected push is followed by a fetch, a merge and a new push.
const PUSH_ATTEMPTS: usize = 5;

fn git_err(what: &str) -> impl Fn(git2::Error) -> Error + '_ {
    move |e| Error::git(what.to_string(), e)
}

/// The tip of the notes ref, if any note was ever written.
pub fn tip(repo: &Repository) -> Result<Option<Oid>> {
    match repo.refname_to_id(NOTES_REF) {
        Ok(id) => Ok(Some(id)),
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(Error::git("reading the receipts' notes ref", e)),
    }
}

/// The path of `commit`'s note in a notes tree (`ab/cdef…` or flat), and its blob.
fn find(repo: &Repository, tree: &Tree<'_>, commit: Oid) -> Option<(Vec<String>, Oid)> {
    let hex = commit.to_string();
    let mut path = Vec::new();
    let mut rest = hex.as_str();
    let mut here = tree.clone();
    loop {
        if let Some(e) = here.get_name(rest) {
            path.push(rest.to_string());
            return Some((path, e.id()));
        }
        if rest.len() <= 2 {
            return None;
        }
        let (dir, tail) = rest.split_at(2);
        let sub = here.get_name(dir)?.id();
        here = repo.find_tree(sub).ok()?;
        path.push(dir.to_string());
        rest = tail;
    }
}

/// The numbered lines of `commit`'s note in the notes commit `notes` (none without a note).
pub fn numbered_lines_at(repo: &Repository, notes: Oid, commit: Oid) -> Result<Vec<(u32, String)>> {
    let tree = repo
        .find_commit(notes)
        .and_then(|c| c.tree())
        .map_err(git_err("reading the receipts' notes"))?;
    match find(repo, &tree, commit) {
        Some((_, blob)) => numbered_lines(repo, blob),
        None => Ok(Vec::new()),
    }
}

/// The lines of `commit`'s note in the notes commit `notes` (none without a note).
pub fn lines_at(repo: &Repository, notes: Oid, commit: Oid) -> Result<Vec<String>> {
    Ok(unnumbered(numbered_lines_at(repo, notes, commit)?))
}

/// The receipts' lines on `commit` at the notes ref's tip, numbered as in the note.
pub fn numbered_lines_on(repo: &Repository, commit: Oid) -> Result<Vec<(u32, String)>> {
    match tip(repo)? {
        Some(t) => numbered_lines_at(repo, t, commit),
        None => Ok(Vec::new()),
    }
}

/// The receipts' lines on `commit` at the notes ref's tip.
pub fn lines(repo: &Repository, commit: Oid) -> Result<Vec<String>> {
    Ok(unnumbered(numbered_lines_on(repo, commit)?))
}

fn unnumbered(lines: Vec<(u32, String)>) -> Vec<String> {
    lines.into_iter().map(|(_, l)| l).collect()
}

/// The non-empty lines of a note's blob, each with its line number (1-based) in the note.
pub fn numbered_lines(repo: &Repository, blob: Oid) -> Result<Vec<(u32, String)>> {
    let blob = repo
        .find_blob(blob)
        .map_err(git_err("reading a receipts note"))?;
    Ok(String::from_utf8_lossy(blob.content())
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i as u32 + 1, l.to_string()))
        .collect())
}

/// The non-empty lines of a note's blob.
pub fn text_lines(repo: &Repository, blob: Oid) -> Result<Vec<String>> {
    Ok(unnumbered(numbered_lines(repo, blob)?))
}

/// Every note under the notes commit `notes`: (annotated commit, note blob).
pub fn all_at(repo: &Repository, notes: Oid) -> Result<Vec<(Oid, Oid)>> {
    let tree = repo
        .find_commit(notes)
        .and_then(|c| c.tree())
        .map_err(git_err("reading the receipts' notes"))?;
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(ObjectType::Blob) {
            let name = format!("{}{}", dir.replace('/', ""), entry.name().unwrap_or(""));
            if let Ok(commit) = Oid::from_str(&name)
                && name.len() == 40
            {
                out.push((commit, entry.id()));
            }
        }
        git2::TreeWalkResult::Ok
    })
    .map_err(git_err("walking the receipts' notes"))?;
    Ok(out)
}

/// `tree` with the note at `path` set to `blob` (trees on the way created as needed).
fn put(repo: &Repository, tree: Option<&Tree<'_>>, path: &[String], blob: Oid) -> Result<Oid> {
    let err = git_err("writing a receipts note");
    let mut b = repo.treebuilder(tree).map_err(&err)?;
    match path {
        [name] => {
            b.insert(name, blob, 0o100644).map_err(&err)?;
        }
        [dir, rest @ ..] => {
            let sub = tree
                .and_then(|t| t.get_name(dir))
                .and_then(|e| repo.find_tree(e.id()).ok());
            let id = put(repo, sub.as_ref(), rest, blob)?;
            b.insert(dir, id, 0o040000).map_err(&err)?;
        }
        [] => {
            return Err(Error::Internal {
                what: "an empty note path".into(),
            });
        }
    }
    b.write().map_err(&err)
}

/// Where a new note of `commit` goes: `ab/cdef…` (one level of fan-out, as git uses once notes
/// are many, so a write rewrites two small trees rather than one large one).
fn fanout(commit: Oid) -> Vec<String> {
    let hex = commit.to_string();
    vec![hex[..2].to_string(), hex[2..].to_string()]
}

fn signature() -> Result<git2::Signature<'static>> {
    git2::Signature::now("ledgit", "ledgit@localhost").map_err(git_err("signing the notes commit"))
}

/// Moves the notes ref from `from` to `to`, only if it is still at `from`. Returns false when
/// another writer moved it first.
fn swap(repo: &Repository, from: Option<Oid>, to: Oid, message: &str) -> Result<bool> {
    // libgit2 compares the ref with `from` under the ref's lock; the zero id means "must not
    // exist yet" (its plain create checks existence before locking, and two first writers
    // would both win).
    let old = from.unwrap_or(Oid::ZERO_SHA1);
    let result = repo.reference_matching(NOTES_REF, to, true, old, message);
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                e.code(),
                ErrorCode::Modified | ErrorCode::Exists | ErrorCode::Locked
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::git("moving the receipts' notes ref", e)),
    }
}

/// Adds the receipts `lines` to `commit`'s note, keeping what the note holds and leaving out
/// lines it already has. Returns how many lines were added (0: all were there already).
pub fn add(repo: &Repository, commit: Oid, new: &[String]) -> Result<usize> {
    let err = git_err("writing a receipts note");
    for attempt in 0..ATTEMPTS {
        let from = tip(repo)?;
        let tree = match from {
            Some(t) => Some(repo.find_commit(t).and_then(|c| c.tree()).map_err(&err)?),
            None => None,
        };
        let found = tree.as_ref().and_then(|t| find(repo, t, commit));
        let mut lines = match &found {
            Some((_, blob)) => text_lines(repo, *blob)?,
            None => Vec::new(),
        };
        let mut have: HashSet<String> = lines.iter().cloned().collect();
        let mut added = 0;
        for l in new {
            if have.insert(l.clone()) {
                lines.push(l.clone());
                added += 1;
            }
        }
        if added == 0 {
            return Ok(0);
        }
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let blob = repo.blob(text.as_bytes()).map_err(&err)?;
        let path = found.map(|(p, _)| p).unwrap_or_else(|| fanout(commit));
        let root = put(repo, tree.as_ref(), &path, blob)?;
        let root = repo.find_tree(root).map_err(&err)?;
        let parent = match from {
            Some(t) => Some(repo.find_commit(t).map_err(&err)?),
            None => None,
        };
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let sig = signature()?;
        let message = format!("ledgit: receipt for {commit}\n");
        let made = repo
            .commit(None, &sig, &sig, &message, &root, &parents)
            .map_err(&err)?;
        if swap(repo, from, made, "ledgit: receipt")? {
            return Ok(added);
        }
        // Another writer moved the ref: read its notes and try again, after a short pause that
        // grows, so that many writers do not keep colliding.
        std::thread::sleep(std::time::Duration::from_millis(1 + attempt as u64));
    }
    Err(Error::Internal {
        what: format!("the receipts' notes ref kept moving under {ATTEMPTS} attempts to write"),
    })
}

/// Merges the notes commit `theirs` (another clone's) into the notes ref: every line of both
/// sides is kept, once. Returns the new tip.
pub fn merge(repo: &Repository, theirs: Oid) -> Result<Oid> {
    let err = git_err("merging receipts notes");
    for _ in 0..ATTEMPTS {
        let ours = tip(repo)?;
        let Some(ours_id) = ours else {
            if swap(repo, None, theirs, "ledgit: receipts fetched")? {
                return Ok(theirs);
            }
            continue;
        };
        if ours_id == theirs || repo.graph_descendant_of(ours_id, theirs).map_err(&err)? {
            return Ok(ours_id);
        }
        if repo.graph_descendant_of(theirs, ours_id).map_err(&err)? {
            if swap(repo, ours, theirs, "ledgit: receipts fast-forwarded")? {
                return Ok(theirs);
            }
            continue;
        }
        let base = repo.merge_base(ours_id, theirs).ok();
        let their_commit = repo.find_commit(theirs).map_err(&err)?;
        let their_tree = their_commit.tree().map_err(&err)?;
        let base_tree = match base {
            Some(b) => Some(repo.find_commit(b).and_then(|c| c.tree()).map_err(&err)?),
            None => None,
        };
        let diff = repo
            .diff_tree_to_tree(base_tree.as_ref(), Some(&their_tree), None)
            .map_err(&err)?;
        let mut changed: Vec<(Oid, Oid)> = Vec::new();
        for d in diff.deltas() {
            let new = d.new_file();
            if new.id().is_zero() {
                continue;
            }
            let name: String = new
                .path()
                .map(|p| p.to_string_lossy().replace('/', ""))
                .unwrap_or_default();
            if let Ok(commit) = Oid::from_str(&name)
                && name.len() == 40
            {
                changed.push((commit, new.id()));
            }
        }
        let our_commit = repo.find_commit(ours_id).map_err(&err)?;
        let mut root = our_commit.tree().map_err(&err)?;
        for (commit, blob) in changed {
            let found = find(repo, &root, commit);
            let mut lines = match &found {
                Some((_, b)) => text_lines(repo, *b)?,
                None => Vec::new(),
            };
            let mut have: HashSet<String> = lines.iter().cloned().collect();
            for l in text_lines(repo, blob)? {
                if have.insert(l.clone()) {
                    lines.push(l);
                }
            }
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let merged = repo.blob(text.as_bytes()).map_err(&err)?;
            let path = found.map(|(p, _)| p).unwrap_or_else(|| fanout(commit));
            let id = put(repo, Some(&root), &path, merged)?;
            root = repo.find_tree(id).map_err(&err)?;
        }
        let sig = signature()?;
        let made = repo
            .commit(
                None,
                &sig,
                &sig,
                "ledgit: merge receipts\n",
                &root,
                &[&our_commit, &their_commit],
            )
            .map_err(&err)?;
        if swap(repo, ours, made, "ledgit: receipts merged")? {
            return Ok(made);
        }
    }
    Err(Error::Internal {
        what: format!("the receipts' notes ref kept moving under {ATTEMPTS} attempts to merge"),
    })
}

/// Where a remote's notes are fetched to before they are merged.
fn fetched_ref(remote: &str) -> String {
    let safe: String = remote
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("refs/ledgit/receipts/{safe}")
}

/// Fetches `remote`'s receipts and merges them into the local notes (nothing when the remote
/// has none yet).
pub fn pull(repo: &Repo, remote: &str) -> Result<()> {
    let into = fetched_ref(remote);
    let refspec = format!("+{NOTES_REF}:{into}");
    match repo.fetch_refspec(remote, &refspec) {
        Ok(()) => {}
        Err(e) => {
            return match &e.failure {
                GitFailure::Exit(_, said) if said.contains("couldn't find remote ref") => Ok(()),
                _ => Err(Error::Push {
                    remote: remote.to_string(),
                    said: e.to_string(),
                }),
            };
        }
    }
    let theirs = repo
        .git
        .refname_to_id(&into)
        .map_err(git_err("reading the fetched receipts"))?;
    merge(&repo.git, theirs)?;
    Ok(())
}

/// Pushes the notes ref to `remote`; a rejected push (another clone pushed first) fetches the
/// remote's notes, merges them and pushes again, a bounded number of times.
pub fn push(repo: &Repo, remote: &str) -> Result<()> {
    let mut last = String::new();
    for _ in 0..PUSH_ATTEMPTS {
        if tip(&repo.git)?.is_none() {
            return Ok(());
        }
        let refspec = format!("{NOTES_REF}:{NOTES_REF}");
        match repo.push_refspec(remote, &refspec) {
            Ok(()) => return Ok(()),
            Err(GitFailure::Exit(_, said)) => {
                last = said;
                pull(repo, remote)?;
            }
            Err(other) => {
                return Err(Error::Push {
                    remote: remote.to_string(),
                    said: describe(&other),
                });
            }
        }
    }
    Err(Error::Push {
        remote: remote.to_string(),
        said: format!("rejected {PUSH_ATTEMPTS} times, the last time with: {last}"),
    })
}

fn describe(f: &GitFailure) -> String {
    match f {
        GitFailure::Spawn(e) => format!("cannot run git: {e}"),
        GitFailure::Exit(status, said) => format!("git push failed ({status}): {said}"),
        GitFailure::TimedOut => "git push timed out".into(),
        GitFailure::Wait(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, Repository, Oid) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let c = repo
            .commit(Some("HEAD"), &sig, &sig, "c", &tree, &[])
            .unwrap();
        drop(tree);
        (dir, repo, c)
    }

    #[test]
    fn lines_are_added_once_and_read_back() {
        let (_d, repo, c) = repo();
        assert_eq!(add(&repo, c, &["a".into()]).unwrap(), 1);
        assert_eq!(add(&repo, c, &["a".into(), "b".into()]).unwrap(), 1);
        assert_eq!(add(&repo, c, &["b".into()]).unwrap(), 0);
        assert_eq!(lines(&repo, c).unwrap(), ["a", "b"]);
        // git reads them as notes.
        let note = repo.find_note(Some(NOTES_REF), c).unwrap();
        assert_eq!(note.message().ok(), Some("a\nb\n"));
        let all = all_at(&repo, tip(&repo).unwrap().unwrap()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].0, c);
        // The branch did not move.
        assert_eq!(repo.head().unwrap().target(), Some(c));
    }

    #[test]
    fn a_note_written_flat_by_git_is_extended_in_place() {
        let (_d, repo, c) = repo();
        let sig = git2::Signature::now("t", "t@t").unwrap();
        repo.note(&sig, &sig, Some(NOTES_REF), c, "old\n", false)
            .unwrap();
        add(&repo, c, &["new".into()]).unwrap();
        assert_eq!(lines(&repo, c).unwrap(), ["old", "new"]);
        assert_eq!(
            all_at(&repo, tip(&repo).unwrap().unwrap()).unwrap().len(),
            1
        );
    }

    #[test]
    fn diverged_notes_merge_keeping_both_sides() {
        let (_d, repo, c) = repo();
        add(&repo, c, &["base".into()]).unwrap();
        let base = tip(&repo).unwrap().unwrap();
        add(&repo, c, &["ours".into()]).unwrap();
        let ours = tip(&repo).unwrap().unwrap();
        // Their side: from the base, another line on the same commit.
        repo.reference(NOTES_REF, base, true, "t").unwrap();
        add(&repo, c, &["theirs".into()]).unwrap();
        let theirs = tip(&repo).unwrap().unwrap();
        repo.reference(NOTES_REF, ours, true, "t").unwrap();
        let merged = merge(&repo, theirs).unwrap();
        assert_eq!(
            lines_at(&repo, merged, c).unwrap(),
            ["base", "ours", "theirs"]
        );
        // Merging again changes nothing.
        assert_eq!(merge(&repo, theirs).unwrap(), merged);
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let (d, _repo, c) = repo();
        let path = d.path().to_path_buf();
        std::thread::scope(|s| {
            for w in 0..4 {
                let path = path.clone();
                s.spawn(move || {
                    let repo = Repository::open(&path).unwrap();
                    for i in 0..10 {
                        add(&repo, c, &[format!("w{w}-{i}")]).unwrap();
                    }
                });
            }
        });
        let repo = Repository::open(&path).unwrap();
        assert_eq!(lines(&repo, c).unwrap().len(), 40);
    }
}
