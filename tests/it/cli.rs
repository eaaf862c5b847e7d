//! The command line end to end: init, validate in every repository state, help, exit codes,
//! and snapshots of the text people read.

use crate::common::{T0, TestRepo, ledgit_in};

#[test]
fn init_example_then_validate_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let run = ledgit_in(dir.path(), &["init", "--example", "demo"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let demo = dir.path().join("demo");
    let v = ledgit_in(&demo, &["validate", "--format", "json"]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert_eq!(v.json()["records"], 9);
    let h = ledgit_in(&demo, &["history", "--format", "json"]);
    assert_eq!(h.json().as_array().unwrap().len(), 13);
    let again = ledgit_in(dir.path(), &["init", "demo"]);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    // With no init.defaultBranch set (the tests' git has no global config), the branch is
    // `main`, as the README says, not libgit2's `master`.
    let head = std::fs::read_to_string(demo.join(".git/HEAD")).unwrap();
    assert_eq!(head.trim(), "ref: refs/heads/main");
}

#[test]
fn init_plain_writes_a_valid_empty_repository() {
    let dir = tempfile::tempdir().unwrap();
    let run = ledgit_in(dir.path(), &["init"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(dir.path().join(".git").is_dir());
    let v = ledgit_in(dir.path(), &["validate"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
}

#[test]
fn validate_text_output_shows_the_line_and_a_caret() {
    let repo = TestRepo::new();
    repo.write(
        "deployments/support-bot/production.yaml",
        "apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: support-bot\nenvironment: production\nverison: 1.4.2\n",
    );
    let run = repo.ledgit(&["validate"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn validate_github_format() {
    let repo = TestRepo::new();
    repo.write(
        "deployments/support-bot/production.yaml",
        crate::common::record("support-bot", "production", "1").replace("\"1\"", "1.10"),
    );
    let run = repo.ledgit(&["validate", "--format", "github"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!(run.stdout);
}

#[test]
fn validate_works_in_every_repository_state() {
    // No commits yet: the work tree is checked; --rev has nothing to read.
    let repo = TestRepo::new();
    repo.set("support-bot", "staging", "1");
    assert_eq!(repo.ledgit(&["validate"]).code, 0);
    let none = repo.ledgit(&["validate", "--rev", "HEAD"]);
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("no commits"), "{}", none.stderr);
    // From a subfolder, and with -C.
    repo.commit("one", T0);
    assert_eq!(
        ledgit_in(&repo.path().join("deployments"), &["validate"]).code,
        0
    );
    let elsewhere = tempfile::tempdir().unwrap();
    assert_eq!(
        ledgit_in(
            elsewhere.path(),
            &["-C", repo.path().to_str().unwrap(), "validate"]
        )
        .code,
        0
    );
    // Detached HEAD.
    repo.set("support-bot", "staging", "2");
    repo.commit("two", T0 + 1);
    repo.git(&["checkout", "-q", "--detach", "HEAD~1"]);
    assert_eq!(repo.ledgit(&["validate"]).code, 0);
    assert_eq!(
        repo.ledgit(&["history", "--format", "json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // --rev reads a commit without a checkout, even one whose work tree is broken.
    repo.write("deployments/support-bot/staging.yaml", "{");
    assert_eq!(repo.ledgit(&["validate"]).code, 1);
    assert_eq!(repo.ledgit(&["validate", "--rev", "main"]).code, 0);
    // A bare clone: HEAD's tree is checked.
    let bare = tempfile::tempdir().unwrap();
    let dest = bare.path().join("b.git");
    repo.git(&[
        "clone",
        "-q",
        "--bare",
        repo.path().to_str().unwrap(),
        dest.to_str().unwrap(),
    ]);
    let run = ledgit_in(&dest, &["validate", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["records"], 1);
    // Not a repository at all.
    let nothing = ledgit_in(elsewhere.path(), &["validate"]);
    assert_eq!(nothing.code, 2);
    assert!(nothing.stderr.contains("ledgit init"), "{}", nothing.stderr);
}

#[test]
fn a_missing_revision_is_exit_2_with_a_hint() {
    let repo = TestRepo::new();
    repo.commit("one", T0);
    let run = repo.ledgit(&["validate", "--rev", "no-such-branch"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("`no-such-branch` not found") && run.stderr.contains("hint"),
        "{}",
        run.stderr
    );
}

#[test]
fn help_explains_each_command_with_an_example() {
    for cmd in [
        "init", "validate", "history", "status", "show", "diff", "check", "promote", "set",
        "leases",
    ] {
        let run = ledgit_in(std::path::Path::new("."), &[cmd, "--help"]);
        assert_eq!(run.code, 0);
        assert!(run.stdout.contains("Examples:"), "{cmd}: {}", run.stdout);
        assert!(run.stdout.contains(&format!("ledgit {cmd}")), "{cmd}");
    }
    let bad = ledgit_in(std::path::Path::new("."), &["validate", "--format", "yaml"]);
    assert_eq!(bad.code, 2);
}

#[test]
fn validating_a_commit_twice_gives_the_same_findings_from_the_cache() {
    let repo = TestRepo::new();
    repo.set("support-bot", "staging", "1");
    repo.write(
        "deployments/support-bot/production.yaml",
        "apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: support-bot\nenvironment: prod\nversion: 1.10\n",
    );
    repo.commit("one", T0);
    let first = repo.ledgit(&["validate", "--rev", "HEAD"]);
    assert_eq!(first.code, 1);
    let cache: Vec<_> = std::fs::read_dir(repo.path().join(".git/ledgit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("validate-"))
        .collect();
    assert_eq!(
        cache.len(),
        1,
        "the checks of a commit are cached under the git directory"
    );
    let second = repo.ledgit(&["validate", "--rev", "HEAD"]);
    assert_eq!(second.stdout, first.stdout);
    // A damaged cache is ignored.
    std::fs::write(&cache[0], b"{not json").unwrap();
    assert_eq!(
        repo.ledgit(&["validate", "--rev", "HEAD"]).stdout,
        first.stdout
    );
    // Another config (production renamed prod) changes what the same files mean.
    repo.write(
        "ledgit.yaml",
        crate::common::CONFIG.replace("production", "prod"),
    );
    repo.commit("rename", T0 + 1);
    let renamed = repo
        .ledgit(&["validate", "--rev", "HEAD", "--format", "json"])
        .json();
    let codes: Vec<&str> = renamed["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(
        first.stdout.contains("unknown-environment"),
        "{}",
        first.stdout
    );
    assert_eq!(codes, ["path-mismatch", "version-not-string"], "{renamed}");
}

/// The private-key scan fails closed: a large file is still scanned (up to 16 MiB), and a
/// larger one is a finding rather than silence; in the work tree and in a commit alike.
#[test]
fn large_tracked_files_are_scanned_for_keys_or_reported() {
    let repo = TestRepo::new();
    repo.set("support-bot", "staging", "1.0.0");
    let key = std::fs::read_to_string(
        crate::common::project_root().join("fixtures/repos/private-key-elsewhere/keys/signing.pem"),
    )
    .unwrap();
    let mut big = "x".repeat(2 << 20);
    big.push('\n');
    big.push_str(&key);
    repo.write("assets/bundle.txt", &big);
    repo.write("assets/huge.bin", vec![b'a'; 17 << 20]);
    repo.commit("Add assets", crate::common::T0);
    for args in [
        &["validate", "--format", "json"][..],
        &["validate", "--rev", "HEAD", "--format", "json"],
    ] {
        let run = repo.ledgit(args);
        assert_eq!(run.code, 1, "{}", run.stdout);
        let found: Vec<(String, String)> = run.json()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["code"].as_str().unwrap().to_string(),
                    f["path"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert!(
            found.contains(&("private-key".into(), "assets/bundle.txt".into())),
            "{args:?}: {found:?}"
        );
        assert!(
            found.contains(&("unscanned-file".into(), "assets/huge.bin".into())),
            "{args:?}: {found:?}"
        );
    }
}

/// bash loads the completion script and completes subcommands and `--format` values.
#[test]
fn bash_completes_subcommands_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    let script = crate::common::ledgit_in(dir.path(), &["completions", "bash"]);
    assert_eq!(script.code, 0, "{}", script.stderr);
    std::fs::write(dir.path().join("ledgit.bash"), &script.stdout).unwrap();
    let complete = |words: &str, cword: usize| -> Vec<String> {
        let out = std::process::Command::new("bash")
            .arg("--norc")
            .arg("-c")
            .arg(format!(
                "source ledgit.bash; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; _ledgit ledgit \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\""
            ))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let subcommands = complete("ledgit ''", 1);
    for expected in [
        "validate",
        "history",
        "status",
        "serve",
        "completions",
        "man",
    ] {
        assert!(
            subcommands.iter().any(|s| s == expected),
            "{expected}: {subcommands:?}"
        );
    }
    let formats = complete("ledgit history --format ''", 3);
    assert_eq!(formats, ["text", "json", "csv"], "{formats:?}");
    let prefixed = complete("ledgit sta", 1);
    assert_eq!(prefixed, ["status", "state"]);
    let unknown = crate::common::ledgit_in(dir.path(), &["completions", "nushell"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("bash") && unknown.stderr.contains("zsh"),
        "{}",
        unknown.stderr
    );
}

/// One man page per subcommand, each rendered by man without a warning.
#[test]
fn man_pages_render_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let run = crate::common::ledgit_in(dir.path(), &["man", "pages"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut pages: Vec<String> = std::fs::read_dir(dir.path().join("pages"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for expected in [
        "ledgit.1",
        "ledgit-serve.1",
        "ledgit-token-issue.1",
        "ledgit-keys-generate.1",
    ] {
        assert!(pages.iter().any(|p| p == expected), "{expected}: {pages:?}");
    }
    assert!(!pages.iter().any(|p| p.contains("help")), "{pages:?}");
    if std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped rendering: man is not installed");
        return;
    }
    for page in &pages {
        let out = std::process::Command::new("man")
            .args(["--warnings", "-l"])
            .arg(dir.path().join("pages").join(page))
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0")
            .output()
            .unwrap();
        assert!(out.status.success(), "{page}");
        let text = String::from_utf8_lossy(&out.stdout);
        let name = page.trim_end_matches(".1").replace('-', " ");
        assert!(
            text.contains(&name) || text.contains(page.trim_end_matches(".1")),
            "{page}:\n{text}"
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "{page} has warnings"
        );
    }
    let stdout = crate::common::ledgit_in(dir.path(), &["man"]);
    assert!(
        stdout.stdout.starts_with(".ie"),
        "{}",
        &stdout.stdout[..40.min(stdout.stdout.len())]
    );
}

/// A state URL may carry a password: `--help` names the variable, never its value.
#[test]
fn help_never_prints_the_state_url_from_the_environment() {
    for cmd in [
        &["watch", "--help"][..],
        &["reconcile", "--help"],
        &["status", "--help"],
        &["journal", "--help"],
        &["leases", "--help"],
        &["serve", "--help"],
    ] {
        let out = crate::common::ledgit_command()
            .env("LEDGIT_STATE", "postgres://u:hunter2-secret@db/ledgit")
            .args(cmd)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd:?}");
        assert!(text.contains("LEDGIT_STATE"), "{cmd:?}: {text}");
        assert!(
            !text.contains("hunter2"),
            "{cmd:?} printed the password: {text}"
        );
    }
}
