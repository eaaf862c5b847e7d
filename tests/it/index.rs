//! The history index as a long-running server and CLI commands share it: several branches
//! queried in turn each keep an index, and processes extending it at once lose nothing.

use crate::common::{DAY, T0, TestRepo};
use git2::{Oid, Repository};
use ledgit::git::index::{self, Source};

const FOLDER: &str = "deployments";

/// The history of `rev` through the index, how it was obtained, and the commit.
fn load(dir: &std::path::Path, rev: &str) -> (ledgit::git::history::History, Source, Oid) {
    let git = Repository::open(dir).unwrap();
    let tip = git
        .revparse_single(rev)
        .unwrap()
        .peel_to_commit()
        .unwrap()
        .id();
    let (h, source) = index::history(&git, tip, FOLDER, &mut |_| {}).unwrap();
    (h, source, tip)
}

fn query(dir: &std::path::Path, rev: &str) -> Source {
    load(dir, rev).1
}

/// The events of a history as text (symbols differ between histories; their strings not).
fn rendered(h: &ledgit::git::history::History) -> Vec<String> {
    h.events()
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {:?} {:?} {}",
                h.commit_of(e).id,
                h.str(e.agent),
                h.str(e.environment),
                e.action.as_str(),
                h.opt(e.version),
                h.opt(e.previous_version),
                h.str(e.path)
            )
        })
        .collect()
}

fn fresh(dir: &std::path::Path, tip: Oid) -> Vec<String> {
    let git = Repository::open(dir).unwrap();
    rendered(&ledgit::git::history::build(&git, tip, FOLDER, &mut |_| {}).unwrap())
}

#[test]
fn branches_queried_in_turn_each_keep_their_index() {
    let repo = TestRepo::new();
    repo.set("a", "staging", "1");
    repo.commit("one", T0);
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.set("a", "staging", "2-feature");
    repo.commit("feature", T0 + DAY);
    repo.git(&["checkout", "-q", "main"]);
    repo.set("a", "staging", "2-main");
    repo.commit("main", T0 + DAY);
    assert_eq!(query(repo.path(), "main"), Source::Built);
    assert_eq!(query(repo.path(), "feature"), Source::Built);
    for _ in 0..3 {
        assert_eq!(query(repo.path(), "main"), Source::Cached);
        assert_eq!(query(repo.path(), "feature"), Source::Cached);
    }
    // Both move on: each extends its own.
    repo.set("b", "staging", "1");
    repo.commit("main 2", T0 + 2 * DAY);
    assert_eq!(query(repo.path(), "main"), Source::Extended(1));
    assert_eq!(query(repo.path(), "feature"), Source::Cached);
    repo.git(&["checkout", "-q", "feature"]);
    repo.set("c", "staging", "1");
    repo.commit("feature 2", T0 + 2 * DAY);
    assert_eq!(query(repo.path(), "feature"), Source::Extended(1));
    assert_eq!(query(repo.path(), "main"), Source::Cached);
    // What the index answers is what a walk from scratch finds.
    for rev in ["main", "feature", "main~1"] {
        let (h, _, tip) = load(repo.path(), rev);
        assert_eq!(rendered(&h), fresh(repo.path(), tip), "{rev}");
    }
}

#[test]
fn processes_extending_the_index_at_once_lose_nothing() {
    let repo = TestRepo::new();
    repo.set("a", "staging", "0");
    repo.commit("start", T0);
    assert_eq!(query(repo.path(), "main"), Source::Built);
    for round in 1..=5 {
        for i in 0..20 {
            repo.set("a", "staging", &format!("{round}.{i}"));
            repo.commit("next", T0 + i64::from(round * 100 + i));
        }
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let dir = repo.path().to_path_buf();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    query(&dir, "main")
                })
            })
            .collect();
        let sources: Vec<Source> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        // Exactly one of them walked the new commits; the others waited for it and read its
        // work.
        let extended = sources
            .iter()
            .filter(|s| **s == Source::Extended(20))
            .count();
        let cached = sources.iter().filter(|s| **s == Source::Cached).count();
        assert_eq!((extended, cached), (1, 3), "round {round}: {sources:?}");
        // Nothing was lost: the next query needs no walk, and answers as a fresh build.
        assert_eq!(query(repo.path(), "main"), Source::Cached, "round {round}");
        let (h, _, tip) = load(repo.path(), "main");
        assert_eq!(rendered(&h), fresh(repo.path(), tip));
    }
}
