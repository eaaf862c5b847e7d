//! The reconciler end to end: real repositories, real actuator processes, a local webhook
//! server on 127.0.0.1, kill -9 in the middle of an action, and `watch` reacting to commits,
//! merges, fetches and packed refs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{DAY, T0, TestRepo, wait_for};

fn repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.set("alpha", "staging", "1.0.0");
    repo.set("beta", "staging", "1.0.0");
    repo.commit("Initial", T0);
    repo
}

/// An actuator script that appends the action to `log` and runs `extra` shell code.
fn script(dir: &Path, extra: &str) -> String {
    let path = dir.join("actuator.sh");
    let log = dir.join("actions.log");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$LEDGIT_ACTION $LEDGIT_AGENT/$LEDGIT_ENVIRONMENT $LEDGIT_VERSION $LEDGIT_PREVIOUS_VERSION key=$LEDGIT_IDEMPOTENCY_KEY gen=$LEDGIT_GENERATION\" >> {}\n{extra}\n",
            log.display()
        ),
    )
    .unwrap();
    format!("sh {}", path.display())
}

fn log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("actions.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn journal(repo: &TestRepo) -> Vec<serde_json::Value> {
    repo.ledgit(&["journal", "--format", "json", "--limit", "1000"])
        .json()
        .as_array()
        .unwrap()
        .clone()
}

fn sync_of(repo: &TestRepo, agent: &str) -> String {
    let status = repo.ledgit(&["status", "--format", "json"]).json();
    status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agent"] == agent)
        .map(|r| r["sync"].as_str().unwrap().to_string())
        .unwrap()
}

#[test]
fn applies_once_with_the_action_in_the_environment() {
    let repo = repo();
    let tools = tempfile::tempdir().unwrap();
    let cmd = script(tools.path(), "");
    let dry = repo.ledgit(&["reconcile", "--exec", &cmd, "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.contains("2 actions"), "{}", dry.stdout);
    assert!(log(tools.path()).is_empty(), "a dry run applies nothing");
    let run = repo.ledgit(&["reconcile", "--exec", &cmd, "--format", "json"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let lines = log(tools.path());
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with("deploy alpha/staging 1.0.0  key="),
        "{}",
        lines[0]
    );
    let generation = repo.git(&["rev-parse", "HEAD"]);
    assert!(lines[0].ends_with(&format!("gen={generation}")));
    // Nothing to do the second time.
    let again = repo.ledgit(&["reconcile", "--exec", &cmd, "--format", "json"]);
    assert_eq!(again.json()["actions"].as_array().unwrap().len(), 0);
    assert_eq!(sync_of(&repo, "alpha"), "Synced");
    // An update carries the previous version.
    repo.set("alpha", "staging", "1.1.0");
    repo.commit("Update", T0 + DAY);
    assert_eq!(repo.ledgit(&["reconcile", "--exec", &cmd]).code, 0);
    assert!(log(tools.path())[2].starts_with("update alpha/staging 1.1.0 1.0.0"));
    let j = journal(&repo);
    assert_eq!(j.len(), 3);
    assert!(
        j.iter()
            .all(|e| e["result"] == "applied" && e["duration_ms"].is_number())
    );
}

#[test]
fn removals_are_out_of_sync_until_pruned() {
    let repo = repo();
    let tools = tempfile::tempdir().unwrap();
    let cmd = script(tools.path(), "");
    repo.ledgit(&["reconcile", "--exec", &cmd]);
    repo.remove("deployments/beta/staging.yaml");
    repo.commit("Remove beta", T0 + DAY);
    let plan = repo
        .ledgit(&["reconcile", "--exec", &cmd, "--format", "json"])
        .json();
    assert_eq!(plan["out_of_sync"][0]["agent"], "beta");
    assert_eq!(plan["actions"].as_array().unwrap().len(), 0);
    let pruned = repo
        .ledgit(&["reconcile", "--exec", &cmd, "--prune", "--format", "json"])
        .json();
    assert_eq!(pruned["attempts"][0]["action"], "remove");
    assert!(
        log(tools.path())
            .last()
            .unwrap()
            .starts_with("remove beta/staging")
    );
}

#[test]
fn a_failing_actuator_is_recorded_and_the_others_still_run() {
    let repo = repo();
    let tools = tempfile::tempdir().unwrap();
    let flag = tools.path().join("fixed");
    let cmd = script(
        tools.path(),
        &format!(
            "[ \"$LEDGIT_AGENT\" = alpha ] && [ ! -e {} ] && {{ echo boom >&2; exit 7; }}\nexit 0",
            flag.display()
        ),
    );
    let run = repo.ledgit(&["reconcile", "--exec", &cmd]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("exited with 7"), "{}", run.stdout);
    assert_eq!(sync_of(&repo, "alpha"), "Failed");
    assert_eq!(sync_of(&repo, "beta"), "Synced");
    let status = repo.ledgit(&["status", "--format", "json"]).json();
    assert!(
        status[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("exited with 7")
    );
    assert_eq!(journal(&repo)[0]["output"], "boom\n");
    std::fs::write(&flag, "").unwrap();
    assert_eq!(repo.ledgit(&["reconcile", "--exec", &cmd]).code, 0);
    assert_eq!(sync_of(&repo, "alpha"), "Synced");
}

#[test]
fn a_hanging_actuator_is_killed_at_the_timeout() {
    let repo = repo();
    let start = Instant::now();
    let run = repo.ledgit(&[
        "reconcile",
        "--exec",
        "sh -c 'sleep 60'",
        "--timeout",
        "1s",
        "--environment",
        "staging",
    ]);
    assert_eq!(run.code, 1);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(run.stdout.contains("timed out"), "{}", run.stdout);
    assert!(journal(&repo).iter().all(|e| e["result"] == "failed"));
}

#[test]
fn kill_9_in_the_middle_of_an_action_loses_nothing() {
    let repo = repo();
    let tools = tempfile::tempdir().unwrap();
    let started = tools.path().join("started");
    let cmd = script(
        tools.path(),
        &format!(
            "if [ \"$LEDGIT_AGENT\" = beta ] && [ ! -e {0} ]; then touch {0}; sleep 5; fi",
            started.display()
        ),
    );
    let mut child = crate::common::ledgit_command()
        .current_dir(repo.path())
        .args(["reconcile", "--exec", &cmd])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the actuator to start on beta",
        Duration::from_secs(20),
        || started.exists(),
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let j = journal(&repo);
    assert_eq!(j.last().unwrap()["agent"], "beta");
    assert_eq!(j.last().unwrap()["result"], "running");
    assert_eq!(sync_of(&repo, "beta"), "Pending");
    // A restart takes the lock again, marks the attempt interrupted and applies beta.
    let run = repo.ledgit(&["reconcile", "--exec", &cmd]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let j = journal(&repo);
    let results: Vec<(&str, &str)> = j
        .iter()
        .map(|e| (e["agent"].as_str().unwrap(), e["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        results,
        [
            ("alpha", "applied"),
            ("beta", "interrupted"),
            ("beta", "applied")
        ]
    );
    assert_eq!(
        j[1]["idempotency_key"], j[2]["idempotency_key"],
        "a repeat has the same key"
    );
    assert_eq!(sync_of(&repo, "beta"), "Synced");
}

/// A reconciler in the middle of a three-second action on `repo`'s store, which it holds.
fn reconciler_in_an_action(repo: &TestRepo) -> Child {
    let child = crate::common::ledgit_command()
        .current_dir(repo.path())
        .args(["reconcile", "--exec", "sh -c 'sleep 3'"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the reconciler to start an action",
        Duration::from_secs(20),
        || journal(repo).iter().any(|e| e["result"] == "running"),
    );
    child
}

#[test]
fn a_second_reconciler_on_the_same_store_is_refused() {
    let repo = repo();
    let mut first = reconciler_in_an_action(&repo);
    let second = repo.ledgit(&["reconcile", "--exec", "true"]);
    assert_eq!(second.code, 2);
    assert!(
        second.stderr.contains(&format!("process {}", first.id())),
        "{}",
        second.stderr
    );
    first.wait().unwrap();
}

#[test]
fn a_store_of_another_repository_is_refused() {
    let one = repo();
    let state = one.path().join(".git/ledgit/reconcile.sqlite");
    assert_eq!(one.ledgit(&["reconcile", "--exec", "true"]).code, 0);
    let other = TestRepo::new();
    other.set("gamma", "staging", "1");
    other.commit("Other", T0 + 5);
    let run = other.ledgit(&[
        "reconcile",
        "--exec",
        "true",
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("another repository"), "{}", run.stderr);
    // status reads a store only of its own repository too.
    let status = other.ledgit(&["status", "--state", state.to_str().unwrap()]);
    assert_eq!(status.code, 2);
    assert!(
        status.stderr.contains("another repository"),
        "{}",
        status.stderr
    );
}

#[test]
fn status_reads_sync_states_from_the_store_given_with_state() {
    let repo = repo();
    let store = repo.path().join("custom.sqlite");
    let store = store.to_str().unwrap();
    assert_eq!(
        repo.ledgit(&["reconcile", "--exec", "true", "--state", store])
            .code,
        0
    );
    // The default store does not exist: no sync states.
    let plain = repo.ledgit(&["status", "--format", "json"]).json();
    assert!(plain[0].get("sync").is_none(), "{plain}");
    let with = repo
        .ledgit(&["status", "--state", store, "--format", "json"])
        .json();
    let syncs: Vec<&str> = with
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sync"].as_str().unwrap())
        .collect();
    assert_eq!(syncs, ["Synced", "Synced"]);
    // A store that does not exist is an error when named, not an empty answer.
    let missing = repo.ledgit(&["status", "--state", "nowhere.sqlite"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("no state store at"),
        "{}",
        missing.stderr
    );
}

/// A tip that does not contain the commit last applied (an older fetch, or a branch moved
/// backwards) never rolls the platform back by itself: the environment is held and says why;
/// `--allow-rewind` follows a branch rewritten on purpose.
#[test]
fn a_tip_behind_what_was_applied_is_held_unless_rewinding_is_allowed() {
    let repo = repo();
    let tools = tempfile::tempdir().unwrap();
    let cmd = script(tools.path(), "");
    repo.set("alpha", "staging", "2.0.0");
    repo.commit("v2", T0 + DAY);
    repo.ledgit(&["reconcile", "--exec", &cmd]);
    let applied = log(tools.path()).len();
    repo.git(&["reset", "-q", "--hard", "HEAD~1"]);
    let held = repo.ledgit(&["reconcile", "--exec", &cmd]);
    assert_eq!(held.code, 1, "{}{}", held.stdout, held.stderr);
    assert!(
        held.stdout.contains("held")
            && held.stdout.contains("staging")
            && held.stdout.contains("--allow-rewind"),
        "{}",
        held.stdout
    );
    assert_eq!(log(tools.path()).len(), applied, "nothing ran");
    let json = repo.ledgit(&["reconcile", "--exec", &cmd, "--format", "json"]);
    assert_eq!(json.json()["held"][0]["environment"], "staging");
    let run = repo.ledgit(&["reconcile", "--exec", &cmd, "--allow-rewind"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        log(tools.path())
            .last()
            .unwrap()
            .starts_with("update alpha/staging 1.0.0 2.0.0")
    );
}

/// An empty file where the store should be is refused, never taken for a new store: nothing
/// runs, and the file is left as it is.
#[test]
fn an_empty_store_file_is_refused_and_nothing_runs() {
    let repo = repo();
    let tools = tempfile::tempdir().unwrap();
    let cmd = script(tools.path(), "");
    let store = repo.path().join(".git/ledgit/reconcile.sqlite");
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    std::fs::write(&store, b"").unwrap();
    let run = repo.ledgit(&["reconcile", "--exec", &cmd]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("not a ledgit state store"),
        "{}",
        run.stderr
    );
    assert!(log(tools.path()).is_empty());
    assert_eq!(std::fs::metadata(&store).unwrap().len(), 0);
    // Another program's database: the same.
    std::fs::remove_file(&store).unwrap();
    let other = another_programs_database(&store);
    assert!(other);
    let run = repo.ledgit(&["reconcile", "--exec", &cmd]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(log(tools.path()).is_empty());
}

/// Writes another program's SQLite database at `path` (with Python's sqlite3 module): a valid
/// database without ledgit's tables.
fn another_programs_database(path: &Path) -> bool {
    let made = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('CREATE TABLE notes (x)'); c.commit()",
            path.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    made.success()
}

/// `state migrate` refuses a store a reconciler holds: the copy would miss what it writes.
#[test]
fn a_store_a_reconciler_holds_is_not_copied() {
    let repo = repo();
    let mut first = reconciler_in_an_action(&repo);
    let copy = repo.ledgit(&[
        "state",
        "migrate",
        "--from",
        ".git/ledgit/reconcile.sqlite",
        "--to",
        "postgres://ledgit@127.0.0.1:1/ledgit",
    ]);
    assert_eq!(copy.code, 2, "{}", copy.stderr);
    assert!(
        copy.stderr.contains(&format!("process {}", first.id())),
        "{}",
        copy.stderr
    );
    assert!(!copy.stderr.contains("upgrade ledgit"), "{}", copy.stderr);
    first.wait().unwrap();
}

#[test]
fn an_invalid_record_is_left_alone_and_the_valid_ones_apply() {
    let repo = repo();
    let tools = tempfile::tempdir().unwrap();
    let cmd = script(tools.path(), "");
    repo.ledgit(&["reconcile", "--exec", &cmd]);
    repo.write(
        "deployments/alpha/staging.yaml",
        "apiVersion: ledgit/v1\nagent: [broken\n",
    );
    repo.set("beta", "staging", "1.1.0");
    repo.commit("Break alpha, update beta", T0 + DAY);
    let run = repo.ledgit(&["reconcile", "--exec", &cmd, "--prune"]);
    assert_eq!(run.code, 1, "findings make the pass exit 1");
    assert!(
        run.stdout.contains("deployments/alpha/staging.yaml"),
        "{}",
        run.stdout
    );
    let last = log(tools.path());
    assert_eq!(last.len(), 3, "{last:?}");
    assert!(
        last[2].starts_with("update beta/staging 1.1.0"),
        "alpha is neither updated nor removed"
    );
}

/// A tiny HTTP server on 127.0.0.1 that answers every request with `respond` and records what
/// it got. Returns its URL.
type Received = std::thread::JoinHandle<Vec<(String, Vec<u8>)>>;

fn serve(
    respond: impl Fn(&str, &[u8], &mut std::net::TcpStream) + Send + 'static,
    count: usize,
) -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut got = Vec::new();
        for stream in listener.incoming().take(count) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.to_ascii_lowercase().starts_with("content-length:") {
                    len = line[15..].trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            respond(&head, &body, &mut stream);
            got.push((head, body));
        }
        got
    });
    (url, handle)
}

fn answer(stream: &mut std::net::TcpStream, status: &str, body: &[u8]) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(body);
}

fn webhook(repo: &TestRepo, url: &str, extra: &[&str]) -> crate::common::Run {
    let mut args = vec!["reconcile", "--webhook", url, "--environment", "staging"];
    args.extend_from_slice(extra);
    let out = crate::common::ledgit_command()
        .current_dir(repo.path())
        .env("LEDGIT_WEBHOOK_SECRET", "s3cret")
        .args(&args)
        .output()
        .unwrap();
    crate::common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn webhook_posts_signed_json() {
    let repo = repo();
    let (url, server) = serve(|_, _, s| answer(s, "200 OK", b"ok"), 2);
    let run = webhook(&repo, &url, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let got = server.join().unwrap();
    let (head, body) = &got[0];
    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(json["action"], "deploy");
    assert_eq!(json["agent"], "alpha");
    let signature = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("x-ledgit-signature: ")
                .or_else(|| l.strip_prefix("X-Ledgit-Signature: "))
        })
        .unwrap()
        .trim();
    assert_eq!(
        signature,
        ledgit::reconcile::actuator::signature(b"s3cret", body)
    );
}

#[test]
fn webhook_failures_500_redirect_slow_down_and_huge_bodies() {
    let repo = repo();
    let (url, server) = serve(|_, _, s| answer(s, "500 Internal Server Error", b"nope"), 2);
    let run = webhook(&repo, &url, &[]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("answered 500"), "{}", run.stdout);
    server.join().unwrap();

    let (url, server) = serve(
        |_, _, s| {
            let _ = write!(
                s,
                "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n"
            );
        },
        2,
    );
    let run = webhook(&repo, &url, &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("redirects are refused"),
        "{}",
        run.stdout
    );
    server.join().unwrap();

    let (url, server) = serve(
        |_, _, s| {
            std::thread::sleep(Duration::from_secs(3));
            answer(s, "200 OK", b"late");
        },
        1,
    );
    let start = Instant::now();
    let run = webhook(&repo, &url, &["--timeout", "1s"]);
    assert_eq!(run.code, 1);
    assert!(start.elapsed() < Duration::from_secs(10));
    drop(server);

    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let run = webhook(&repo, &down, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);

    let (url, server) = serve(|_, _, s| answer(s, "200 OK", &vec![b'x'; 10 << 20]), 2);
    let run = webhook(&repo, &url, &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    server.join().unwrap();
    let last = journal(&repo).last().unwrap().clone();
    assert_eq!(last["result"], "applied");
    assert_eq!(
        last["output"].as_str().unwrap().len(),
        ledgit::reconcile::actuator::MAX_OUTPUT
    );
}

struct Watch {
    child: Child,
}

impl Watch {
    fn start(dir: &Path, args: &[&str]) -> Watch {
        let child = crate::common::ledgit_command()
            .current_dir(dir)
            .arg("watch")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Watch { child }
    }

    /// SIGTERM, then the exit status and output.
    fn stop(mut self) -> (i32, String) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        (status.code().unwrap_or(-1), out)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn watch_reacts_to_commits_merges_and_packed_refs_and_stops_cleanly() {
    let repo = repo();
    let tools = tempfile::tempdir().unwrap();
    let cmd = script(tools.path(), "");
    let dir = tools.path().to_path_buf();
    let seen = |n: usize| {
        let dir = dir.clone();
        move || log(&dir).len() >= n
    };
    let watch = Watch::start(repo.path(), &["--exec", &cmd, "--interval", "1h"]);
    wait_for("the initial sync", Duration::from_secs(30), seen(2));
    // A commit.
    repo.set("alpha", "staging", "1.1.0");
    repo.commit("commit", T0 + DAY);
    wait_for("a commit", Duration::from_secs(30), seen(3));
    // A merge.
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.set("beta", "staging", "1.1.0");
    repo.commit("feature", T0 + 2 * DAY);
    repo.git(&["checkout", "-q", "main"]);
    repo.merge("feature", "Merge pull request #1", T0 + 3 * DAY);
    wait_for("a merge", Duration::from_secs(30), seen(4));
    // The ref moves inside packed-refs only.
    repo.git(&["pack-refs", "--all"]);
    repo.set("alpha", "staging", "1.2.0");
    repo.git(&["add", "-A"]);
    let tree = repo.git(&["write-tree"]);
    let head = repo.git(&["rev-parse", "HEAD"]);
    let commit = repo.git_at(
        T0 + 4 * DAY,
        &["commit-tree", &tree, "-p", &head, "-m", "packed"],
    );
    let packed = repo.path().join(".git/packed-refs");
    let text = std::fs::read_to_string(&packed)
        .unwrap()
        .replace(&head, &commit);
    std::fs::write(&packed, text).unwrap();
    wait_for("a move in packed-refs", Duration::from_secs(30), seen(5));
    assert!(log(tools.path())[4].starts_with("update alpha/staging 1.2.0"));
    let (code, out) = watch.stop();
    assert_eq!(code, 0, "{out}");
    assert!(out.trim_end().ends_with("stopped"), "{out}");
}

#[test]
fn watch_follows_a_fetch_and_retries_with_backoff() {
    let upstream = repo();
    let clone_dir = tempfile::tempdir().unwrap();
    let clone = clone_dir.path().join("c");
    upstream.git(&[
        "clone",
        "-q",
        upstream.path().to_str().unwrap(),
        clone.to_str().unwrap(),
    ]);
    let tools = tempfile::tempdir().unwrap();
    let flag = tools.path().join("attempted");
    // Fails the first time it sees beta 2.0.0, then succeeds.
    let cmd = script(
        tools.path(),
        &format!(
            "if [ \"$LEDGIT_VERSION\" = 2.0.0 ] && [ ! -e {0} ]; then touch {0}; exit 1; fi",
            flag.display()
        ),
    );
    let watch = Watch::start(
        &clone,
        &["--exec", &cmd, "--interval", "1h", "--fetch", "origin"],
    );
    wait_for("the initial sync", Duration::from_secs(30), || {
        log(tools.path()).len() >= 2
    });
    upstream.set("beta", "staging", "2.0.0");
    upstream.commit("beta 2.0.0", T0 + DAY);
    // Someone (or a cron job) fetches: the remote-tracking branch moves.
    let fetch = Command::new("git")
        .current_dir(&clone)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["fetch", "-q", "origin"])
        .status()
        .unwrap();
    assert!(fetch.success());
    wait_for(
        "the failed attempt and its retry",
        Duration::from_secs(30),
        || {
            log(tools.path())
                .iter()
                .filter(|l| l.contains("beta/staging 2.0.0"))
                .count()
                >= 2
        },
    );
    let (code, _) = watch.stop();
    assert_eq!(code, 0);
    let results: Vec<String> = crate::common::ledgit_in(&clone, &["journal", "--format", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["agent"] == "beta" && e["version"] == "2.0.0")
        .map(|e| e["result"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(results, ["failed", "applied"]);
}

/// Pulling from a remote is how a GitOps reconciler runs: every push to the remote, force
/// pushes included, is applied within two intervals, with nobody fetching by hand.
#[test]
fn watch_fetch_applies_every_push_to_the_remote() {
    let seed = repo();
    let remote = seed.bare_clone();
    let url = remote.path().join("remote.git");
    let watched = TestRepo::clone_of(&url);
    let pusher = TestRepo::clone_of(&url);
    let tools = tempfile::tempdir().unwrap();
    let cmd = script(tools.path(), "");
    let interval = Duration::from_secs(2);
    let deadline = 2 * interval + Duration::from_secs(2);
    let applied = |what: &'static str| {
        let dir = tools.path().to_path_buf();
        move || log(&dir).iter().any(|l| l.contains(what))
    };
    let watch = Watch::start(
        watched.path(),
        &["--exec", &cmd, "--interval", "2s", "--fetch", "origin"],
    );
    wait_for("the initial sync", Duration::from_secs(30), || {
        log(tools.path()).len() >= 2
    });
    pusher.set("alpha", "staging", "2.0.0");
    pusher.commit("alpha 2.0.0", T0 + DAY);
    pusher.git(&["push", "-q", "origin", "main"]);
    wait_for("the first push", deadline, applied("alpha/staging 2.0.0"));
    pusher.set("beta", "staging", "3.0.0");
    pusher.commit("beta 3.0.0", T0 + 2 * DAY);
    pusher.git(&["push", "-q", "origin", "main"]);
    wait_for("the second push", deadline, applied("beta/staging 3.0.0"));
    // History rewritten on the remote: back to the first commit, then another change. The
    // tip no longer contains what was applied: the environment is held, nothing rolls back.
    pusher.git(&["reset", "-q", "--hard", "HEAD~2"]);
    pusher.set("alpha", "staging", "1.5.0");
    pusher.commit("alpha 1.5.0 instead", T0 + 3 * DAY);
    pusher.git(&["push", "-q", "--force", "origin", "main"]);
    let before = log(tools.path()).len();
    std::thread::sleep(deadline);
    assert_eq!(log(tools.path()).len(), before, "{:?}", log(tools.path()));
    let (code, out) = watch.stop();
    assert_eq!(code, 0);
    assert!(
        out.contains("held") && out.contains("--allow-rewind"),
        "{out}"
    );
    // Followed on purpose: the rewritten branch is applied.
    let watch = Watch::start(
        watched.path(),
        &[
            "--exec",
            &cmd,
            "--interval",
            "2s",
            "--fetch",
            "origin",
            "--allow-rewind",
        ],
    );
    wait_for("the force push", deadline, applied("alpha/staging 1.5.0"));
    wait_for("beta back to 1.0.0", deadline, || {
        log(tools.path())
            .iter()
            .any(|l| l.starts_with("update beta/staging 1.0.0 3.0.0"))
    });
    let (code, _) = watch.stop();
    assert_eq!(code, 0);
}
