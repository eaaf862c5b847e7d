//! Pull-request review and promotion through the real binary: `diff`, `check`, `promote`, `set`
//! on repositories with real merge commits and committer times in the past.

use crate::common::{DAY, HOUR, T0, TestRepo};

/// development -> staging -> production (soak 24h); support-bot 1.0.0 everywhere at T0,
/// then 1.1.0 deployed to development at T0+1d and staging at T0+2d.
fn pipeline() -> TestRepo {
    let repo = TestRepo::new();
    repo.git(&["config", "user.name", "Grace Hopper"]);
    repo.git(&["config", "user.email", "grace@example.com"]);
    for env in ["development", "staging", "production"] {
        repo.set("support-bot", env, "1.0.0");
    }
    repo.commit("Initial", T0);
    repo.set("support-bot", "development", "1.1.0");
    repo.commit("dev 1.1.0", T0 + DAY);
    repo.set("support-bot", "staging", "1.1.0");
    repo.commit("staging 1.1.0", T0 + 2 * DAY);
    repo
}

/// Opens a pull request branch `pr` that runs `edit`, merged nowhere; returns to `pr`.
fn pull_request(repo: &TestRepo, edit: impl FnOnce(&TestRepo), time: i64) {
    repo.git(&["checkout", "-q", "-b", "pr"]);
    edit(repo);
    repo.commit("Pull request", time);
}

fn codes(run: &crate::common::Run) -> Vec<String> {
    run.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

fn check(repo: &TestRepo, now: &str) -> crate::common::Run {
    repo.ledgit(&["check", "--base", "main", "--now", now, "--format", "json"])
}

/// `ledgit promote support-bot --from FROM --to TO`, then `extra`.
fn promote(repo: &TestRepo, from: &str, to: &str, extra: &[&str]) -> crate::common::Run {
    let mut args = vec!["promote", "support-bot", "--from", from, "--to", to];
    args.extend_from_slice(extra);
    repo.ledgit(&args)
}

#[test]
fn a_promotion_after_the_soak_passes_with_context() {
    let repo = pipeline();
    pull_request(
        &repo,
        |r| r.set("support-bot", "production", "1.1.0"),
        T0 + 3 * DAY,
    );
    let run = check(&repo, "2024-01-04T00:00:00Z");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let v = run.json();
    let change = &v["changes"][0];
    assert_eq!(change["action"], "updated");
    assert_eq!(change["promotion"]["from"], "staging");
    assert_eq!(change["promotion"]["since"], "2024-01-03T00:00:00Z");
    assert_eq!(change["promotion"]["soak_met"], true);
}

#[test]
fn soak_is_measured_to_now() {
    let repo = pipeline();
    pull_request(
        &repo,
        |r| r.set("support-bot", "production", "1.1.0"),
        T0 + 2 * DAY + HOUR,
    );
    let run = check(&repo, "2024-01-03T12:00:00Z");
    assert_eq!(run.code, 1);
    assert_eq!(codes(&run), ["soak-not-met"]);
    let f = &run.json()["findings"][0];
    assert_eq!(f["path"], "deployments/support-bot/production.yaml");
    assert_eq!(f["line"], 5);
    // The same change a day later passes.
    assert_eq!(check(&repo, "2024-01-04T00:00:01Z").code, 0);
}

/// A commit whose committer date is older than its parent's cannot make a version look as if
/// it had soaked: gates read times made monotonic along the first-parent chain.
#[test]
fn a_backdated_commit_does_not_satisfy_the_soak() {
    let repo = pipeline();
    repo.set("support-bot", "development", "2.0.0");
    repo.commit("dev 2.0.0", T0 + 4 * DAY);
    repo.write("README.md", "notes\n");
    repo.commit("notes", T0 + 5 * DAY);
    repo.set("support-bot", "staging", "2.0.0");
    repo.commit("staging 2.0.0, dated three days back", T0 + DAY);
    pull_request(
        &repo,
        |r| r.set("support-bot", "production", "2.0.0"),
        T0 + 5 * DAY + HOUR,
    );
    let run = check(&repo, "2024-01-06T02:00:00Z");
    assert_eq!(codes(&run), ["soak-not-met"], "{}", run.stdout);
    let change = &run.json()["changes"][0];
    assert_eq!(change["promotion"]["since"], "2024-01-06T00:00:00Z");
    // A day after the commit landed (by the chain's clock), the soak is met.
    assert_eq!(check(&repo, "2024-01-07T00:00:01Z").code, 0);
}

#[test]
fn a_version_that_never_ran_upstream_is_refused() {
    let repo = pipeline();
    pull_request(
        &repo,
        |r| r.set("support-bot", "staging", "1.2.0"),
        T0 + 3 * DAY,
    );
    let run = check(&repo, "2024-01-05");
    assert_eq!(codes(&run), ["promotion-missing"]);
    let text = repo.ledgit(&["check", "--base", "main", "--now", "2024-01-05"]);
    assert!(
        text.stdout
            .contains("deployments/support-bot/staging.yaml:5:10"),
        "{}",
        text.stdout
    );
}

#[test]
fn upstream_in_the_same_change_counts_only_without_soak() {
    let repo = pipeline();
    pull_request(
        &repo,
        |r| {
            r.set("support-bot", "development", "1.2.0");
            r.set("support-bot", "staging", "1.2.0");
        },
        T0 + 3 * DAY,
    );
    assert_eq!(check(&repo, "2024-01-05").code, 0, "staging has no soak");
    let repo = pipeline();
    pull_request(
        &repo,
        |r| {
            r.set("support-bot", "staging", "1.1.0");
            r.set("support-bot", "production", "1.1.1");
            r.set("support-bot", "staging", "1.1.1");
            r.set("support-bot", "development", "1.1.1");
        },
        T0 + 3 * DAY,
    );
    assert!(codes(&check(&repo, "2024-01-05")).contains(&"soak-not-met".to_string()));
}

#[test]
fn rollbacks_pass_other_downgrades_do_not() {
    let repo = pipeline();
    repo.set("support-bot", "production", "1.1.0");
    repo.commit("prod 1.1.0", T0 + 4 * DAY);
    pull_request(
        &repo,
        |r| r.set("support-bot", "production", "1.0.0"),
        T0 + 5 * DAY,
    );
    let run = check(&repo, "2024-01-06");
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        run.json()["changes"][0]["rollback"]["last_ran"],
        "2024-01-05T00:00:00Z"
    );
    assert_eq!(run.json()["changes"][0]["downgrade"], true);

    let repo = pipeline();
    pull_request(
        &repo,
        |r| r.set("support-bot", "development", "0.9.0"),
        T0 + 3 * DAY,
    );
    assert_eq!(codes(&check(&repo, "2024-01-06")), ["downgrade"]);
}

#[test]
fn an_override_annotation_is_a_reviewable_warning() {
    let repo = pipeline();
    pull_request(
        &repo,
        |r| {
            let text = crate::common::record("support-bot", "production", "1.1.0")
                + "annotations:\n  ledgit.dev/skip-soak: \"incident 42: security fix\"\n";
            r.write("deployments/support-bot/production.yaml", text);
        },
        T0 + 2 * DAY + HOUR,
    );
    let run = check(&repo, "2024-01-03T02:00:00Z");
    assert_eq!(run.code, 0, "{}", run.stdout);
    let f = &run.json()["findings"][0];
    assert_eq!(f["code"], "policy-override");
    assert_eq!(f["severity"], "warning");
    assert!(f["message"].as_str().unwrap().contains("incident 42"));
}

#[test]
fn a_private_key_anywhere_in_the_change_is_found_even_if_removed_again() {
    let repo = pipeline();
    repo.git(&["checkout", "-q", "-b", "pr"]);
    repo.write("notes/key.pem", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n");
    repo.commit("oops", T0 + 3 * DAY);
    repo.remove("notes/key.pem");
    repo.commit("remove the key", T0 + 3 * DAY + 60);
    let run = check(&repo, "2024-01-05");
    assert_eq!(codes(&run), ["private-key"]);
    assert_eq!(run.json()["findings"][0]["path"], "notes/key.pem");
}

#[test]
fn head_validation_findings_fail_the_check() {
    let repo = pipeline();
    pull_request(
        &repo,
        |r| r.write("deployments/support-bot/production.yaml", "agent: [oops\n"),
        T0 + 3 * DAY,
    );
    let run = check(&repo, "2024-01-05");
    assert_eq!(run.code, 1);
    assert!(codes(&run).contains(&"yaml-syntax".to_string()));
}

#[test]
fn merge_commits_land_changes_at_merge_time() {
    let repo = pipeline();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.set("support-bot", "development", "1.3.0");
    repo.commit("dev 1.3.0 authored early", T0 + 3 * DAY);
    repo.git(&["checkout", "-q", "main"]);
    repo.merge(
        "feature",
        "Merge pull request #5 from feature",
        T0 + 6 * DAY,
    );
    pull_request(
        &repo,
        |r| r.set("support-bot", "staging", "1.3.0"),
        T0 + 7 * DAY,
    );
    let run = check(&repo, "2024-01-08");
    assert_eq!(run.code, 0);
    assert_eq!(
        run.json()["changes"][0]["promotion"]["since"],
        "2024-01-07T00:00:00Z"
    );
}

#[test]
fn github_and_markdown_formats() {
    let repo = pipeline();
    pull_request(
        &repo,
        |r| r.set("support-bot", "staging", "1.2.0"),
        T0 + 3 * DAY,
    );
    let gh = repo.ledgit(&[
        "check",
        "--base",
        "main",
        "--now",
        "2024-01-05",
        "--format",
        "github",
    ]);
    assert!(gh.stdout.starts_with("::error file=deployments/support-bot/staging.yaml,line=5,col=10,title=ledgit promotion-missing::"), "{}", gh.stdout);
    let md = repo.ledgit(&[
        "check",
        "--base",
        "main",
        "--now",
        "2024-01-05",
        "--format",
        "markdown",
    ]);
    insta::assert_snapshot!(md.stdout);
    let diff = repo.ledgit(&["diff", "main..pr", "--format", "markdown"]);
    assert!(
        diff.stdout
            .contains("| support-bot | staging | `1.1.0` → `1.2.0` | never ran in development |"),
        "{}",
        diff.stdout
    );
}

#[test]
fn bad_input_is_exit_2_with_a_hint() {
    let repo = pipeline();
    let missing = repo.ledgit(&["diff", "main..nope"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("`nope` not found"),
        "{}",
        missing.stderr
    );
    let format = repo.ledgit(&["check", "--base", "main", "--format", "yaml"]);
    assert_eq!(format.code, 2);
    let env = promote(&repo, "staging", "prod", &[]);
    assert_eq!(env.code, 2);
    assert!(
        env.stderr
            .contains("declared environments: development, staging, production"),
        "{}",
        env.stderr
    );
    let agent = repo.ledgit(&[
        "promote",
        "nobody",
        "--from",
        "staging",
        "--to",
        "production",
    ]);
    assert_eq!(agent.code, 2);
    assert!(
        agent.stderr.contains("agents in staging: support-bot"),
        "{}",
        agent.stderr
    );
    let set = repo.ledgit(&["set", "nobody", "staging", "1"]);
    assert_eq!(set.code, 2);
    assert!(set.stderr.contains("--create"), "{}", set.stderr);
}

#[test]
fn base_not_an_ancestor_is_said_and_the_diff_still_works() {
    let repo = pipeline();
    repo.git(&["checkout", "-q", "-b", "other", "HEAD~1"]);
    repo.set("support-bot", "production", "0.5.0");
    repo.commit("diverged", T0 + 3 * DAY);
    let run = repo.ledgit(&["diff", "main..other", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("not an ancestor"), "{}", run.stderr);
    assert_eq!(run.json().as_array().unwrap().len(), 2);
}

#[test]
fn promote_edits_exactly_one_line_and_keeps_everything_else() {
    let repo = pipeline();
    let path = "deployments/support-bot/production.yaml";
    let original = "# Production: page the on-call before changing.\r\napiVersion: ledgit/v1\r\nkind: AgentDeployment\r\nagent:   support-bot\r\nenvironment: production\r\nversion: '1.0.0'   # pinned by ops\r\nannotations: {owner: team-support}\r\n";
    repo.write(path, original);
    repo.commit("Annotate production", T0 + 2 * DAY + 60);
    let run = promote(&repo, "staging", "production", &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let after = repo.read(path);
    assert_eq!(after, original.replace("'1.0.0'", "'1.1.0'"));
    let changed = original
        .split_inclusive('\n')
        .zip(after.split_inclusive('\n'))
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, 1);
    assert!(run.stdout.contains("1.0.0 -> 1.1.0"), "{}", run.stdout);
}

#[test]
fn promote_refuses_what_check_refuses_unless_forced() {
    let repo = pipeline();
    repo.set("support-bot", "development", "2.0.0");
    repo.commit("dev 2.0.0", T0 + 3 * DAY);
    // staging has no soak: 2.0.0 ran in development, so this passes.
    let ok = promote(&repo, "development", "staging", &[]);
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    // production needs 24h in staging; 2.0.0 is only in the work tree's staging.
    let refused = promote(&repo, "staging", "production", &[]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stdout.contains("nothing was written"),
        "{}",
        refused.stdout
    );
    assert!(
        repo.read("deployments/support-bot/production.yaml")
            .contains("1.0.0")
    );
    let forced = promote(&repo, "staging", "production", &["--force"]);
    assert_eq!(forced.code, 0);
    assert!(
        repo.read("deployments/support-bot/production.yaml")
            .contains("2.0.0")
    );
}

#[test]
fn promote_all_creates_missing_records_on_a_branch_and_commits() {
    let repo = pipeline();
    let text = crate::common::record("triage-bot", "development", "0.1.0")
        + "annotations:\n  owner: team-platform\n";
    repo.write("deployments/triage-bot/development.yaml", text);
    repo.commit("triage-bot", T0 + 2 * DAY + 60);
    let run = repo.ledgit(&[
        "promote",
        "--all",
        "--from",
        "development",
        "--to",
        "staging",
        "--branch",
        "promote-staging",
        "--commit",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        repo.git(&["rev-parse", "--abbrev-ref", "HEAD"]),
        "promote-staging"
    );
    let created = repo.read("deployments/triage-bot/staging.yaml");
    assert!(created.contains("  owner: team-platform\n"), "{created}");
    assert_eq!(repo.ledgit(&["validate"]).code, 0);
    let message = repo.git(&["log", "-1", "--format=%B"]);
    assert!(message.contains("triage-bot 0.1.0 to staging"), "{message}");
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
}

#[test]
fn promote_and_set_say_what_they_did_in_json() {
    let repo = pipeline();
    let as_json = |extra: &[&str]| {
        let mut args = vec!["--format", "json"];
        args.extend_from_slice(extra);
        promote(&repo, "staging", "production", &args)
    };
    // Refused, a downgrade that is no rollback: nothing written, the change and why.
    repo.set("support-bot", "staging", "0.9.0");
    repo.commit("staging 0.9.0", T0 + 3 * DAY);
    let refused = as_json(&[]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let v = refused.json();
    assert_eq!(v["written"], false);
    assert_eq!(v["changes"][0]["version"], "0.9.0");
    assert_eq!(v["findings"][0]["code"], "downgrade");
    // Forced, on a branch, committed: what was written and where.
    let done = as_json(&["--force", "--branch", "hotfix", "--commit"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let v = done.json();
    assert_eq!(v["written"], true);
    assert_eq!(v["branch"], "hotfix");
    assert_eq!(
        v["commit"].as_str().unwrap(),
        repo.git(&["rev-parse", "HEAD"])
    );
    assert_eq!(
        v["changes"][0]["path"],
        "deployments/support-bot/production.yaml"
    );
    assert_eq!(v["findings"][0]["code"], "downgrade");
    // Already set: nothing to change.
    let again = repo.ledgit(&[
        "set",
        "support-bot",
        "production",
        "0.9.0",
        "--format",
        "json",
    ]);
    assert_eq!(again.code, 0);
    assert_eq!(
        again.json(),
        serde_json::json!({"written": false, "branch": null, "commit": null, "changes": [], "findings": []})
    );
}

#[test]
fn set_rolls_back_and_refuses_unparsable_records() {
    let repo = pipeline();
    repo.set("support-bot", "production", "1.1.0");
    repo.commit("prod 1.1.0", T0 + 4 * DAY);
    let run = repo.ledgit(&["set", "support-bot", "production", "1.0.0"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(run.stdout.contains("rollback"), "{}", run.stdout);
    repo.write("deployments/support-bot/staging.yaml", "version: [broken\n");
    let broken = repo.ledgit(&["set", "support-bot", "staging", "1.2.0"]);
    assert_eq!(broken.code, 1);
    assert!(
        broken.stdout.contains("nothing was written"),
        "{}",
        broken.stdout
    );
    assert_eq!(
        repo.read("deployments/support-bot/staging.yaml"),
        "version: [broken\n"
    );
}

#[test]
fn diff_between_environments() {
    let repo = pipeline();
    let run = repo.ledgit(&["diff", "--env", "staging..production", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = run.json();
    assert_eq!(v[0]["version"], "1.1.0");
    assert_eq!(v[0]["previous_version"], "1.0.0");
    assert_eq!(v[0]["promotion"]["since"], "2024-01-03T00:00:00Z");
}

/// The history files of a repository (the index), if any.
fn index_files(repo: &TestRepo) -> Vec<String> {
    std::fs::read_dir(repo.path().join(".git/ledgit"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("history-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Without an index, `check` follows only the agents the pull request touches; its answer must
/// be the one the full (indexed) history gives, through moved files, a record that briefly did
/// not parse, an escaped name and agents the change leaves alone.
#[test]
fn check_without_an_index_answers_as_the_full_history_does() {
    let repo = pipeline();
    repo.set("quiet-bot", "development", "3.0.0");
    repo.set("other-bot", "development", "2.0.0");
    repo.commit("More bots", T0 + 2 * DAY + HOUR);
    // support-bot's staging record moves to another file, breaks, and is fixed again.
    repo.remove("deployments/support-bot/staging.yaml");
    repo.write(
        "deployments/misc/stage.yaml",
        "apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: \"support\\x2dbot\"\nenvironment: staging\nversion: \"1.1.0\"\n",
    );
    repo.commit("Move staging", T0 + 2 * DAY + 2 * HOUR);
    repo.write("deployments/misc/stage.yaml", "agent: [\n");
    repo.commit("Oops", T0 + 2 * DAY + 3 * HOUR);
    repo.write(
        "deployments/misc/stage.yaml",
        crate::common::record("support-bot", "staging", "1.1.0"),
    );
    repo.commit("Fix", T0 + 2 * DAY + 4 * HOUR);
    // other-bot's file becomes a second file of quiet-bot, then goes back.
    repo.write(
        "deployments/other-bot/development.yaml",
        crate::common::record("quiet-bot", "development", "3.0.0"),
    );
    repo.commit("Swap", T0 + 2 * DAY + 5 * HOUR);
    repo.set("other-bot", "development", "2.0.0");
    repo.commit("Swap back", T0 + 2 * DAY + 6 * HOUR);
    pull_request(
        &repo,
        |r| {
            r.set("support-bot", "production", "1.1.0");
            r.set("other-bot", "development", "2.1.0");
            r.write("README.md", "docs\n");
        },
        T0 + 5 * DAY,
    );
    let now = "2024-01-10T00:00:00Z";
    let cold = check(&repo, now);
    assert_eq!(codes(&cold), ["path-mismatch"], "{}", cold.stdout);
    assert!(
        index_files(&repo).is_empty(),
        "a focused check leaves the index alone"
    );
    let changes = &cold.json()["changes"];
    assert_eq!(changes.as_array().unwrap().len(), 2, "{changes}");
    // The stay in staging started with the move (the broken commit left no trace).
    let promotion = &changes[1]["promotion"];
    assert_eq!(changes[1]["agent"], "support-bot");
    assert_eq!(promotion["since"], "2024-01-03T00:00:00Z");
    assert_eq!(promotion["soak_met"], true);
    let built = repo.ledgit(&["history", "--rev", "main"]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    assert!(!index_files(&repo).is_empty());
    let warm = check(&repo, now);
    assert_eq!(cold.stdout, warm.stdout);
}

/// A pull request that touches no record needs no history; one whose base record does not
/// parse gets the full walk (the pair is in older content), and the same answer as with the
/// index.
#[test]
fn check_reads_history_only_when_records_change_and_falls_back_when_base_is_broken() {
    let repo = pipeline();
    repo.write("deployments/support-bot/production.yaml", "agent: [\n");
    repo.commit("Broken production", T0 + 2 * DAY + HOUR);
    pull_request(&repo, |r| r.write("README.md", "docs\n"), T0 + 3 * DAY);
    let docs = check(&repo, "2024-01-10T00:00:00Z");
    assert_eq!(docs.json()["changes"].as_array().unwrap().len(), 0);
    assert!(index_files(&repo).is_empty());
    // Fixing the broken record at 1.1.0 is an update from 1.0.0, its last parsable content.
    repo.set("support-bot", "production", "1.1.0");
    repo.commit("Fix production", T0 + 4 * DAY);
    let cold = check(&repo, "2024-01-10T00:00:00Z");
    let changes = &cold.json()["changes"];
    assert_eq!(changes[0]["previous_version"], "1.0.0", "{changes}");
    assert!(
        !index_files(&repo).is_empty(),
        "the full walk saves the index"
    );
    std::fs::remove_dir_all(repo.path().join(".git/ledgit")).unwrap();
    repo.ledgit(&["history", "--rev", "main"]);
    assert_eq!(check(&repo, "2024-01-10T00:00:00Z").stdout, cold.stdout);
}

/// Names that do not exist get a guess and the names that do, from promote and set alike.
#[test]
fn promote_and_set_name_what_exists_when_a_name_does_not() {
    let repo = pipeline();
    let run = repo.ledgit(&[
        "promote",
        "suport-bot",
        "--from",
        "staging",
        "--to",
        "production",
    ]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("agent `suport-bot` has no record in staging")
            && run
                .stderr
                .contains("did you mean `support-bot`? known agents in staging:"),
        "{}",
        run.stderr
    );
    let run = repo.ledgit(&["set", "suport-bot", "production", "2.0.0"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("pass --create to deploy a new agent; did you mean `support-bot`?"),
        "{}",
        run.stderr
    );
    let run = repo.ledgit(&["set", "support-bot", "prod", "2.0.0"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("declared environments: development, staging, production"),
        "{}",
        run.stderr
    );
}

/// A pull request that breaks `revocations.yaml` would make every token check fail once
/// merged: `check` and `validate` refuse it, naming the file and the line.
#[test]
fn a_broken_revocation_list_fails_the_check() {
    let repo = pipeline();
    repo.write(
        "revocations.yaml",
        "apiVersion: ledgit/v1\nkind: Revocations\nrevoked:\n  - jti: a1b2\n",
    );
    repo.commit("Revoke a token", T0 + 2 * DAY + HOUR);
    pull_request(
        &repo,
        |r| {
            r.write(
                "revocations.yaml",
                "apiVersion: ledgit/v1\nkind: Revocations\nrevoked: {oops: [\n",
            )
        },
        T0 + 3 * DAY,
    );
    let run = check(&repo, "2024-01-04T00:00:00Z");
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let v = run.json();
    let f = &v["findings"][0];
    assert_eq!(f["code"], "yaml-syntax");
    assert_eq!(f["path"], "revocations.yaml");
    assert_eq!(f["line"], 3);
    let validate = repo.ledgit(&["validate"]);
    assert_eq!(validate.code, 1, "{}", validate.stdout);
    assert!(
        validate.stdout.contains("revocations.yaml:3"),
        "{}",
        validate.stdout
    );
}

/// Keys, gates, tokens issued and revoked are changes a reviewer approves: `diff` and `check`
/// name them.
#[test]
fn settings_changes_are_shown_in_deployment_terms() {
    let repo = pipeline();
    pull_request(
        &repo,
        |r| {
            r.write(
                "ledgit.yaml",
                crate::common::CONFIG.replace("soak: 24h", "soak: 2h"),
            );
            r.write(
                "revocations.yaml",
                "apiVersion: ledgit/v1\nkind: Revocations\nrevoked:\n  - jti: a1b2\n    reason: leaked in a log\n",
            );
        },
        T0 + 3 * DAY,
    );
    let run = repo.ledgit(&["diff", "main..pr"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("no deployment changes"),
        "{}",
        run.stdout
    );
    let lines: Vec<&str> = run.stdout.lines().skip(1).collect();
    assert!(
        lines[0].starts_with("ledgit.yaml")
            && lines[0].contains("production")
            && lines[0].contains("gate after staging, soak 1d -> after staging, soak 2h"),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].starts_with("revocations.yaml")
            && lines[1].contains("a1b2")
            && lines[1].contains("token revoked: leaked in a log"),
        "{}",
        run.stdout
    );
    let run = check(&repo, "2024-01-04T00:00:00Z");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let settings = run.json()["settings"].clone();
    let kinds: Vec<&str> = settings
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["environment-changed", "token-revoked"]);
    let text = repo.ledgit(&["check", "--base", "main", "--now", "2024-01-04T00:00:00Z"]);
    assert!(text.stdout.contains("2 changes checked"), "{}", text.stdout);
}

/// A private key added and removed again within the change, in a file between 1 and 16 MiB:
/// still in the change's history, so still reported.
#[test]
fn check_scans_the_changes_commits_as_far_as_validate_does() {
    let repo = pipeline();
    repo.git(&["checkout", "-q", "-b", "pr"]);
    let mut big = "x".repeat(2 << 20);
    big.push_str(
        "\n-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
    );
    repo.write("notes/dump.txt", &big);
    repo.commit("Add a dump", T0 + 3 * DAY);
    repo.remove("notes/dump.txt");
    repo.commit("Remove the dump", T0 + 3 * DAY + HOUR);
    let run = check(&repo, "2024-01-04T00:00:00Z");
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(codes(&run), ["private-key"]);
}

/// Versions that YAML 1.1 (PyYAML) would read as a boolean, null, number or date if written
/// bare: `ledgit set` writes each so that PyYAML reads back the exact string, and the
/// plain ones it keeps plain read back too.
#[test]
#[ignore = "needs PyYAML in bench/.venv; run with --include-ignored"]
fn every_version_ledgit_writes_reads_back_the_same_in_pyyaml() {
    let python = crate::common::needs(crate::common::venv_python(), "PyYAML in bench/.venv");
    let repo = TestRepo::new();
    repo.set("bot", "development", "1.0.0");
    repo.commit("Initial", T0);
    let versions = [
        "no",
        "yes",
        "on",
        "off",
        "y",
        "n",
        "~",
        "null",
        "true",
        "1:20",
        "2026-01-01",
        "1e3",
        "0x10",
        "1.10",
        "010",
        "0o17",
        "1_000",
        ".inf",
        "1.4.2",
        "2.0.0-rc.1",
        "v1",
    ];
    let mut files = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        // In place (the record exists), and a new record (`--create`).
        let run = repo.ledgit(&["set", "bot", "development", v]);
        assert_eq!(run.code, 0, "set {v}: {}{}", run.stdout, run.stderr);
        let edited = repo.read("deployments/bot/development.yaml");
        let agent = format!("new{i}");
        let run = repo.ledgit(&["set", &agent, "development", v, "--create"]);
        assert_eq!(
            run.code, 0,
            "set --create {v}: {}{}",
            run.stdout, run.stderr
        );
        let created = repo.read(&format!("deployments/{agent}/development.yaml"));
        files.push((v.to_string(), edited));
        files.push((v.to_string(), created));
    }
    let input = serde_json::to_string(&files).unwrap();
    let script = "import sys, json, yaml\nfor want, text in json.load(sys.stdin):\n    got = yaml.safe_load(text)['version']\n    print(json.dumps([want, got], default=repr))\n";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), files.len());
    for l in lines {
        assert_eq!(l[0], l[1], "PyYAML reads {} as {}", l[0], l[1]);
    }
}
