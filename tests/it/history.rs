//! The history engine through the real binary, on real repositories with real merge commits and
//! committer times in the past: the edge cases of SPEC "History".

use crate::common::{DAY, HOUR, T0, TestRepo, record};
use serde_json::Value;

fn events(repo: &TestRepo, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["history", "--format", "json"];
    all.extend_from_slice(args);
    let run = repo.ledgit(&all);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json().as_array().unwrap().clone()
}

/// (agent, environment, action, version, previous_version) of each event.
fn summary(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {}",
                e["agent"].as_str().unwrap(),
                e["environment"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["version"].as_str().unwrap_or("null"),
                e["previous_version"].as_str().unwrap_or("null"),
            )
        })
        .collect()
}

fn base() -> TestRepo {
    let repo = TestRepo::new();
    repo.set("support-bot", "staging", "1.0.0");
    repo.commit("Add support-bot", T0);
    repo
}

#[test]
fn events_follow_the_spec_shape() {
    let repo = base();
    repo.set("support-bot", "staging", "1.1.0");
    let c = repo.commit("Update support-bot", T0 + DAY);
    let ev = events(&repo, &[]);
    assert_eq!(
        summary(&ev),
        [
            "support-bot staging deployed 1.0.0 null",
            "support-bot staging updated 1.1.0 1.0.0"
        ]
    );
    let e = &ev[1];
    assert_eq!(e["commit"], c.as_str());
    assert_eq!(e["time"], "2024-01-02T00:00:00Z");
    assert_eq!(e["author"], "Ada Lovelace <ada@example.com>");
    assert_eq!(e["author_time"], "2024-01-02T00:00:00Z");
    assert_eq!(e["subject"], "Update support-bot");
}

#[test]
fn a_no_ff_merge_takes_effect_when_it_lands() {
    let repo = base();
    repo.git(&["checkout", "-q", "-b", "bump"]);
    repo.set("support-bot", "staging", "1.1.0");
    repo.commit("Bump support-bot", T0 + DAY);
    repo.git(&["checkout", "-q", "main"]);
    repo.set("other", "staging", "1");
    repo.commit("Unrelated", T0 + 2 * DAY);
    let merge = repo.merge(
        "bump",
        "Merge pull request #12 from team/bump",
        T0 + 3 * DAY,
    );
    let ev = events(&repo, &["--agent", "support-bot"]);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1]["commit"], merge.as_str());
    assert_eq!(ev[1]["time"], "2024-01-04T00:00:00Z");
    assert_eq!(ev[1]["author_time"], "2024-01-04T00:00:00Z");
    assert_eq!(ev[1]["pull_request"], 12);
    let text = repo.ledgit(&["history", "--agent", "support-bot"]);
    assert!(
        text.stdout.contains("#12") || text.stdout.contains("pull request #12"),
        "{}",
        text.stdout
    );
}

#[test]
fn a_fast_forward_merge_keeps_the_branch_commits() {
    let repo = base();
    repo.git(&["checkout", "-q", "-b", "ff"]);
    repo.set("support-bot", "staging", "1.1.0");
    let c = repo.commit("Bump", T0 + DAY);
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["merge", "-q", "--ff-only", "ff"]);
    let ev = events(&repo, &[]);
    assert_eq!(ev[1]["commit"], c.as_str());
}

#[test]
fn moving_a_record_is_no_event_but_the_path_follows() {
    let repo = base();
    let text = repo.read("deployments/support-bot/staging.yaml");
    repo.remove("deployments/support-bot/staging.yaml");
    repo.write("deployments/legacy/support-bot-staging.yaml", text);
    repo.commit("Move", T0 + DAY);
    assert_eq!(events(&repo, &[]).len(), 1);
    let status = repo.ledgit(&["status", "--format", "json"]).json();
    assert_eq!(
        status[0]["path"],
        "deployments/legacy/support-bot-staging.yaml"
    );
    assert_eq!(status[0]["updated_at"], "2024-01-01T00:00:00Z");
}

#[test]
fn delete_and_recreate_starts_a_new_generation() {
    let repo = base();
    let first = repo.git(&["rev-parse", "HEAD"]);
    repo.remove("deployments/support-bot/staging.yaml");
    repo.commit("Remove", T0 + DAY);
    repo.set("support-bot", "staging", "1.0.0");
    let again = repo.commit("Re-create", T0 + 2 * DAY);
    assert_eq!(
        summary(&events(&repo, &[])),
        [
            "support-bot staging deployed 1.0.0 null",
            "support-bot staging removed null 1.0.0",
            "support-bot staging deployed 1.0.0 null"
        ]
    );
    let status = repo.ledgit(&["status", "--format", "json"]).json();
    assert_eq!(status[0]["generation"], again.as_str());
    assert_ne!(status[0]["generation"], first.as_str());
}

#[test]
fn two_records_in_one_commit_are_ordered_by_agent_then_environment() {
    let repo = base();
    repo.set("zeta", "development", "1");
    repo.set("alpha", "staging", "1");
    repo.set("alpha", "development", "1");
    repo.commit("Three", T0 + DAY);
    let s = summary(&events(&repo, &[]));
    assert_eq!(
        &s[1..],
        [
            "alpha development deployed 1 null",
            "alpha staging deployed 1 null",
            "zeta development deployed 1 null"
        ]
    );
}

#[test]
fn comments_and_annotations_are_no_version_event() {
    let repo = base();
    let path = "deployments/support-bot/staging.yaml";
    repo.write(
        path,
        format!(
            "# owned by support\n{}annotations:\n  owner: team\n",
            record("support-bot", "staging", "1.0.0")
        ),
    );
    repo.commit("Annotate", T0 + DAY);
    assert_eq!(events(&repo, &[]).len(), 1);
}

#[test]
fn clock_skew_keeps_chain_order() {
    let repo = base();
    repo.set("support-bot", "staging", "2");
    repo.commit("Later commit with an earlier clock", T0 - DAY);
    repo.set("support-bot", "staging", "3");
    repo.commit("Next", T0 + DAY);
    assert_eq!(
        summary(&events(&repo, &[])),
        [
            "support-bot staging deployed 1.0.0 null",
            "support-bot staging updated 2 1.0.0",
            "support-bot staging updated 3 2"
        ]
    );
    // The snapshot at T0 is after the newest commit (in chain order) at or before T0: "2".
    let at = repo
        .ledgit(&["status", "--format", "json", "--at", "2024-01-01T00:00:00Z"])
        .json();
    assert_eq!(at[0]["version"], "2");
}

#[test]
fn status_at_a_time_answers_what_ran_then() {
    let repo = base();
    repo.set("support-bot", "staging", "1.1.0");
    repo.commit("Bump", T0 + 2 * DAY);
    let at = |t: &str| {
        repo.ledgit(&["status", "--format", "json", "--at", t])
            .json()
    };
    assert_eq!(at("2024-01-02")[0]["version"], "1.0.0");
    assert_eq!(at("2024-01-03T00:00:00Z")[0]["version"], "1.1.0");
    assert_eq!(at("2023-12-31").as_array().unwrap().len(), 0);
}

#[test]
fn an_unparsable_record_is_a_warning_and_keeps_its_last_version() {
    let repo = base();
    let path = "deployments/support-bot/staging.yaml";
    repo.write(path, "apiVersion: ledgit/v1\nagent: [broken\n");
    let bad = repo.commit("Typo", T0 + DAY);
    repo.set("support-bot", "staging", "1.0.0");
    repo.commit("Fix typo", T0 + 2 * DAY);
    let run = repo.ledgit(&["history", "--format", "json"]);
    assert_eq!(
        run.json().as_array().unwrap().len(),
        1,
        "a typo fixed next leaves no trace"
    );
    assert!(
        run.stderr.contains(path) && run.stderr.contains(&bad[..12]),
        "{}",
        run.stderr
    );
}

/// A control character in a comment makes the file unparsable for `validate`; the history and
/// the snapshot must agree and keep the last parsable version.
#[test]
fn a_control_character_in_a_comment_keeps_the_last_version() {
    let repo = base();
    let path = "deployments/support-bot/staging.yaml";
    repo.write(
        path,
        record("support-bot", "staging", "1.9.9").replace("\"1.9.9\"", "1.9.9 # \x01"),
    );
    repo.commit("Bad byte", T0 + DAY);
    assert_eq!(repo.ledgit(&["validate"]).code, 1);
    let run = repo.ledgit(&["history", "--format", "json"]);
    assert_eq!(
        summary(run.json().as_array().unwrap()),
        ["support-bot staging deployed 1.0.0 null"]
    );
    assert!(run.stderr.contains(path), "{}", run.stderr);
    let status = repo.ledgit(&["status", "--format", "json"]).json();
    assert_eq!(status[0]["version"], "1.0.0");
}

#[test]
fn filters_since_until_limit_reverse() {
    let repo = base();
    for (i, v) in ["2", "3", "4"].iter().enumerate() {
        repo.set("support-bot", "staging", v);
        repo.commit(&format!("v{v}"), T0 + (i as i64 + 1) * DAY);
    }
    let versions = |args: &[&str]| -> Vec<String> {
        events(&repo, args)
            .iter()
            .map(|e| e["version"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        versions(&["--since", "2024-01-02", "--until", "2024-01-03T00:00:00Z"]),
        ["2", "3"]
    );
    assert_eq!(versions(&["--limit", "2"]), ["3", "4"]);
    assert_eq!(versions(&["--limit", "2", "--reverse"]), ["4", "3"]);
    assert_eq!(
        versions(&["--environment", "production"]),
        Vec::<String>::new()
    );
    let bad = repo.ledgit(&["history", "--since", "yesterday-ish"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("not a time"), "{}", bad.stderr);
}

#[test]
fn the_index_is_extended_rebuilt_after_a_rewrite_and_survives_corruption() {
    let repo = base();
    repo.set("support-bot", "staging", "2");
    repo.commit("v2", T0 + DAY);
    let first = summary(&events(&repo, &[]));
    let index_dir = repo.path().join(".git/ledgit");
    assert!(
        index_dir.is_dir(),
        "the index lives under the git directory"
    );
    // New commits: extended.
    repo.set("support-bot", "staging", "3");
    repo.commit("v3", T0 + 2 * DAY);
    assert_eq!(events(&repo, &[]).len(), 3);
    // Force-push style rewrite: back two commits and a different future.
    repo.git(&["reset", "-q", "--hard", "HEAD~2"]);
    repo.set("support-bot", "staging", "9");
    repo.commit("v9", T0 + 3 * DAY);
    assert_eq!(
        summary(&events(&repo, &[])),
        [
            "support-bot staging deployed 1.0.0 null",
            "support-bot staging updated 9 1.0.0"
        ]
    );
    // A damaged index is detected and rebuilt.
    for entry in std::fs::read_dir(&index_dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "idx") {
            continue;
        }
        let mut bytes = std::fs::read(&p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    }
    assert_eq!(events(&repo, &[]).len(), 2);
    // An older revision of the chain is answered from the index.
    assert_eq!(events(&repo, &["--rev", "HEAD~1"]).len(), 1);
    assert_eq!(first.len(), 2);
}

#[test]
fn empty_repository_and_unborn_branch() {
    let repo = TestRepo::new();
    let run = repo.ledgit(&["history", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json(), serde_json::json!([]));
    assert!(run.stderr.contains("no commits"), "{}", run.stderr);
    let status = repo.ledgit(&["status"]);
    assert_eq!(status.code, 0);
    assert!(status.stdout.contains("no deployments"));
}

#[test]
fn early_commits_without_config_or_records() {
    let repo = TestRepo::empty();
    repo.write("README.md", "hello\n");
    repo.commit("Start", T0);
    repo.write("ledgit.yaml", crate::common::CONFIG);
    repo.commit("Adopt ledgit", T0 + HOUR);
    repo.set("support-bot", "staging", "1");
    repo.commit("First record", T0 + 2 * HOUR);
    assert_eq!(
        summary(&events(&repo, &[])),
        ["support-bot staging deployed 1 null"]
    );
}

#[test]
fn a_shallow_clone_says_the_history_is_cut() {
    let repo = base();
    repo.set("support-bot", "staging", "2");
    repo.commit("v2", T0 + DAY);
    repo.set("support-bot", "staging", "3");
    repo.commit("v3", T0 + 2 * DAY);
    let clone_dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", repo.path().display());
    let dest = clone_dir.path().join("c");
    repo.git(&["clone", "-q", "--depth", "1", &url, dest.to_str().unwrap()]);
    let run = crate::common::ledgit_in(&dest, &["history", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("shallow clone"), "{}", run.stderr);
    assert_eq!(run.json().as_array().unwrap().len(), 1);
}

#[test]
fn show_lists_records_generations_and_history() {
    let repo = base();
    repo.set("support-bot", "production", "1.0.0");
    repo.commit("Promote", T0 + 2 * DAY);
    let run = repo.ledgit(&["show", "support-bot", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v["records"].as_array().unwrap().len(), 2);
    assert_eq!(v["history"].as_array().unwrap().len(), 2);
    let missing = repo.ledgit(&["show", "nobody"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("known agents: support-bot"),
        "{}",
        missing.stderr
    );
    // A known agent in an environment it never ran in: the hint is about its environments.
    let elsewhere = repo.ledgit(&["show", "support-bot", "prod"]);
    assert_eq!(elsewhere.code, 2);
    assert!(
        elsewhere
            .stderr
            .contains("known environments of this agent: production, staging"),
        "{}",
        elsewhere.stderr
    );
}

#[test]
fn status_text_marks_agents_whose_environments_differ() {
    let repo = base();
    repo.set("support-bot", "production", "0.9.0");
    repo.set("steady", "staging", "1");
    repo.set("steady", "production", "1");
    repo.commit("More", T0 + DAY);
    let run = repo.ledgit(&["status"]);
    let line = |agent: &str| {
        run.stdout
            .lines()
            .find(|l| l.contains(agent))
            .unwrap()
            .to_string()
    };
    assert!(line("support-bot").starts_with('*'), "{}", run.stdout);
    assert!(line("steady").starts_with(' '), "{}", run.stdout);
    assert!(
        !run.stdout.contains('\u{1b}'),
        "no colour when NO_COLOR is set"
    );
}

#[test]
fn appended_index_segments_give_the_same_history_as_a_rebuild() {
    let repo = base();
    let index_dir = repo.path().join(".git/ledgit");
    let mut sizes = Vec::new();
    for i in 0..40 {
        repo.set("support-bot", "staging", &format!("2.{i}.0"));
        if i % 5 == 0 {
            repo.set(&format!("agent-{i}"), "production", "1");
        }
        if i == 17 {
            repo.remove("deployments/agent-10/production.yaml");
        }
        repo.commit(&format!("v{i}"), T0 + (i + 1) * HOUR);
        assert!(!events(&repo, &[]).is_empty());
        // The snapshot comes from the index's newest segment.
        assert_eq!(repo.ledgit(&["status"]).code, 0);
        let file = std::fs::read_dir(&index_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".idx"))
            .unwrap();
        sizes.push(std::fs::metadata(file).unwrap().len());
    }
    // Small appends, and a rewrite once the deltas pile up.
    assert!(
        sizes.windows(2).filter(|w| w[1] < w[0]).count() >= 1,
        "{sizes:?}"
    );
    let incremental = repo.ledgit(&["history", "--format", "json"]).stdout;
    let status = repo.ledgit(&["status", "--format", "json"]).stdout;
    std::fs::remove_dir_all(&index_dir).unwrap();
    assert_eq!(
        repo.ledgit(&["history", "--format", "json"]).stdout,
        incremental
    );
    assert_eq!(repo.ledgit(&["status", "--format", "json"]).stdout, status);
    let rows = repo.ledgit(&["status", "--format", "json"]).json();
    let rows = rows.as_array().unwrap();
    let bot = rows.iter().find(|r| r["agent"] == "support-bot").unwrap();
    assert_eq!(bot["version"], "2.39.0");
    assert!(rows.iter().all(|r| r["agent"] != "agent-10"));
    assert!(rows.iter().any(|r| r["agent"] == "agent-35"));
}

/// A focused walk (what `check` does without an index) gives exactly the full history's events
/// of its agents, on a history of random edits: records written, moved between paths, broken
/// and fixed, given another agent's identity, deleted.
#[test]
fn a_focused_walk_has_the_full_walks_events_of_its_agents() {
    let repo = TestRepo::new();
    let agents = ["alpha", "beta", "gamma"];
    let envs = ["staging", "production"];
    let paths = [
        "deployments/alpha/staging.yaml",
        "deployments/alpha/production.yaml",
        "deployments/beta/staging.yaml",
        "deployments/gamma/production.yaml",
        "deployments/misc/one.yaml",
        "deployments/misc/two.yaml",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    repo.set("alpha", "staging", "1.0.0");
    repo.commit("start", T0);
    for i in 1..80 {
        for _ in 0..1 + next(2) {
            let path = paths[next(paths.len())];
            let exists = repo.path().join(path).exists();
            match next(6) {
                0 if exists => repo.remove(path),
                1 => repo.write(path, "agent: [\n"),
                2 => repo.write(
                    path,
                    // An escaped name: no literal `alpha` in the file.
                    format!(
                        "agent: \"\\x61lpha\"\nenvironment: {}\nversion: \"{i}.0.0\"\n",
                        envs[next(2)]
                    ),
                ),
                _ => repo.write(
                    path,
                    record(
                        agents[next(3)],
                        envs[next(2)],
                        &format!("{}.{i}.0", next(3)),
                    ),
                ),
            }
        }
        if !repo.git(&["status", "--porcelain"]).is_empty() {
            repo.commit(&format!("edit {i}"), T0 + i as i64 * HOUR);
        }
    }
    let git = git2::Repository::open(repo.path()).unwrap();
    let tip = git.head().unwrap().target().unwrap();
    let full = ledgit::git::history::build(&git, tip, "deployments", &mut |_| {}).unwrap();
    let of = |h: &ledgit::git::history::History, agent: &str| -> Vec<String> {
        h.events()
            .iter()
            .filter(|e| h.str(e.agent) == agent)
            .map(|e| {
                format!(
                    "{} {} {:?} {:?} {:?} {}",
                    h.commit_of(e).id,
                    h.str(e.environment),
                    e.action,
                    h.opt(e.version),
                    h.opt(e.previous_version),
                    h.str(e.path)
                )
            })
            .collect()
    };
    for focus in [vec!["alpha"], vec!["beta", "gamma"], vec!["alpha", "gamma"]] {
        let set = focus.iter().map(|a| a.to_string()).collect();
        let focused = ledgit::git::history::build_focused(
            &git,
            tip,
            "deployments",
            &ledgit::git::history::Focus::new(set),
            &mut |_| {},
        )
        .unwrap();
        for agent in agents {
            let expected = if focus.contains(&agent) {
                of(&full, agent)
            } else {
                Vec::new()
            };
            assert_eq!(
                of(&focused, agent),
                expected,
                "{agent} with focus {focus:?}"
            );
        }
        assert_eq!(focused.chain(), full.chain());
    }
    // The random history is not trivial.
    assert!(full.events().len() > 40, "{}", full.events().len());
    assert!(!full.warnings().is_empty());
}
