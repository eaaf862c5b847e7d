//! A hermetic test environment: real git repositories in temporary folders, built with the git
//! command line under a fixed identity and fixed timestamps, with the user's and the system's
//! git configuration ignored; and a runner for the real `ledgit` binary.

#![allow(dead_code)]

pub mod example;
pub mod postgres;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// 2024-01-01T00:00:00Z, the base of every test clock.
pub const T0: i64 = 1_704_067_200;
pub const DAY: i64 = 86_400;
pub const HOUR: i64 = 3_600;

pub struct TestRepo {
    pub dir: tempfile::TempDir,
}

/// The result of running a command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Environment shared by git and ledgit in tests.
fn hermetic(cmd: &mut Command) -> &mut Command {
    cmd.env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Ada Lovelace")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada Lovelace")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("NO_COLOR", "1")
        .env("TZ", "UTC")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("LEDGIT_SIGNING_KEY")
        .env_remove("LEDGIT_STATE")
        .env_remove("LEDGIT_RECONCILER_KEY")
        .env_remove("LEDGIT_UI_SECRET")
        .env_remove("LEDGIT_HOOK_SECRET")
        .env_remove("LEDGIT_INTROSPECTION_SECRET")
}

pub const CONFIG: &str = "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: development\n  - name: staging\n    promote_from: development\n  - name: production\n    promote_from: staging\n    soak: 24h\n";

pub fn record(agent: &str, env: &str, version: &str) -> String {
    format!(
        "apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: {agent}\nenvironment: {env}\nversion: \"{version}\"\n"
    )
}

impl TestRepo {
    /// An empty repository on branch `main` (no commits).
    pub fn empty() -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        let repo = TestRepo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// The repository in `dir` (made by someone else, e.g. a generator).
    pub fn at(dir: tempfile::TempDir) -> TestRepo {
        TestRepo { dir }
    }

    /// A repository with `ledgit.yaml` written (not committed).
    pub fn new() -> TestRepo {
        let repo = TestRepo::empty();
        repo.write("ledgit.yaml", CONFIG);
        repo
    }

    /// A clone of `url` (a path or URL), on its default branch.
    pub fn clone_of(url: &Path) -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        let repo = TestRepo { dir };
        repo.git(&["clone", "-q", url.to_str().unwrap(), "."]);
        repo
    }

    /// A bare clone of this repository, to serve as a remote.
    pub fn bare_clone(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        self.git(&[
            "clone",
            "-q",
            "--bare",
            ".",
            dir.path().join("remote.git").to_str().unwrap(),
        ]);
        dir
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap()
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path().join(rel)).unwrap();
    }

    /// Writes a record at its conventional path.
    pub fn set(&self, agent: &str, env: &str, version: &str) {
        self.write(
            &format!("deployments/{agent}/{env}.yaml"),
            record(agent, env, version),
        );
    }

    /// Runs git with fixed dates; panics on failure. Returns stdout.
    pub fn git_at(&self, time: i64, args: &[&str]) -> String {
        let date = format!("@{time} +0000");
        let out = hermetic(&mut Command::new("git"))
            .current_dir(self.path())
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn git(&self, args: &[&str]) -> String {
        self.git_at(T0, args)
    }

    /// Stages everything and commits at `time`; returns the commit id.
    pub fn commit(&self, message: &str, time: i64) -> String {
        self.git_at(time, &["add", "-A"]);
        self.git_at(time, &["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Merges `branch` into the current branch with a merge commit at `time`.
    pub fn merge(&self, branch: &str, message: &str, time: i64) -> String {
        self.git_at(time, &["merge", "-q", "--no-ff", "-m", message, branch]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Runs the real binary in this repository.
    pub fn ledgit(&self, args: &[&str]) -> Run {
        ledgit_in(self.path(), args)
    }
}

/// The real binary as every test starts it, short or long-running: the hermetic environment
/// (no user or system git configuration, a fixed identity, no colour, UTC, none of ledgit's
/// own variables from the caller's shell).
pub fn ledgit_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledgit"));
    hermetic(&mut cmd);
    cmd
}

/// Runs the real binary with `dir` as the working directory.
pub fn ledgit_in(dir: &Path, args: &[&str]) -> Run {
    let out = ledgit_command()
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    Run::from(out)
}

/// The project's root folder.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies a folder tree, recreating symbolic links as links.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from).follow_links(false) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            std::os::unix::fs::symlink(target, &dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// What a test that needs a tool from outside the project does without it: fail, naming the
/// tool and how to get it. Such tests are `#[ignore = "needs ..."]`, so a plain `cargo test`
/// lists them as ignored with that reason instead of passing them untried; `cargo test --
/// --include-ignored` (what `.ci/run` runs, after installing every tool) runs them, and a
/// missing tool is then a failure, never a pass.
pub fn needs<T>(found: Option<T>, what: &str) -> T {
    found.unwrap_or_else(|| panic!("this test needs {what}; `bash .ci/run` installs it"))
}

/// The Python of `bench/.venv` with the PyPI packages the tests use (`.ci/run` makes it).
pub fn venv_python() -> Option<PathBuf> {
    let python = project_root().join("bench/.venv/bin/python");
    python.exists().then_some(python)
}

/// A program on the PATH, or at one of `paths`.
pub fn program(name: &str, paths: &[&str]) -> Option<PathBuf> {
    paths
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(name))
                    .find(|p| p.exists())
            })
        })
}

/// `t` (seconds since the epoch) in RFC 3339, UTC, as the server reads `?at=`.
pub fn when(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Waits until `check` is true, looking every 25 ms; fails naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: std::time::Duration, check: impl FnMut() -> bool) {
    assert!(wait_until(timeout, check), "timed out waiting for {what}");
}

/// Whether `check` came true within `timeout`, looking every 25 ms (for a caller that says
/// more than [`wait_for`] when it does not).
pub fn wait_until(timeout: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while !check() {
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    true
}

/// The 2,000-agent repository of the benchmarks (`bench/generate.py team DIR 3000`: 3,000
/// commits), made once per run of the test binary and shared by the tests that read it (none
/// writes its records).
pub fn team_repo() -> &'static Path {
    static TEAM: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    TEAM.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let generated = Command::new("python3")
            .arg(project_root().join("bench/generate.py"))
            .args(["team"])
            .arg(dir.path())
            .arg("3000")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("python3 runs");
        assert!(generated.status.success(), "{generated:?}");
        dir
    })
    .path()
}
