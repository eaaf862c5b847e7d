//! Replicas on a shared PostgreSQL store, against a real PostgreSQL (a throw-away cluster per
//! test): leases and takeovers when a leader is killed or paused, fencing of a deposed leader's
//! writes, a database restart in the middle of a pass, a Jepsen-style run of three replicas
//! killed at random while 200 commits arrive, two `serve` replicas agreeing, and the copy of an
//! SQLite store. The actuator's log is the ground truth: each line is an action the platform
//! received, with its idempotency key, fencing token and the replica's process id.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::postgres::Cluster;
use crate::common::{T0, TestRepo, wait_for, wait_until};

/// One line of the actuator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    phase: String,
    action: String,
    agent: String,
    environment: String,
    version: String,
    key: String,
    epoch: i64,
    pid: u32,
}

/// An actuator that logs `start` and `done` lines; an action of `slow_version` first touches
/// `<dir>/started` and sleeps `slow_secs`.
fn actuator(dir: &Path, slow_version: &str, slow_secs: f32) -> String {
    let script = dir.join("actuator.sh");
    let log = dir.join("actions.log");
    let started = dir.join("started");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             line=\"$LEDGIT_ACTION $LEDGIT_AGENT $LEDGIT_ENVIRONMENT $LEDGIT_VERSION $LEDGIT_IDEMPOTENCY_KEY ${{LEDGIT_FENCING_TOKEN:-0}} $PPID\"\n\
             echo \"start $line\" >> {log}\n\
             if [ \"$LEDGIT_VERSION\" = '{slow_version}' ]; then touch {started}; sleep {slow_secs}; fi\n\
             echo \"done $line\" >> {log}\n",
            log = log.display(),
            started = started.display(),
        ),
    )
    .unwrap();
    format!("sh {}", script.display())
}

fn actions(dir: &Path) -> Vec<Applied> {
    std::fs::read_to_string(dir.join("actions.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 8).then(|| Applied {
                phase: f[0].into(),
                action: f[1].into(),
                agent: f[2].into(),
                environment: f[3].into(),
                version: f[4].into(),
                key: f[5].into(),
                epoch: f[6].parse().unwrap_or(-1),
                pid: f[7].parse().unwrap_or(0),
            })
        })
        .collect()
}

fn done(dir: &Path) -> Vec<Applied> {
    actions(dir)
        .into_iter()
        .filter(|a| a.phase == "done")
        .collect()
}

/// A `watch` replica; its stderr is kept in a file.
struct Replica {
    child: Child,
    log: PathBuf,
}

impl Replica {
    fn start(dir: &Path, url: &str, cmd: &str, logs: &Path, name: &str, extra: &[&str]) -> Replica {
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = crate::common::ledgit_command()
            .current_dir(dir)
            .args(["watch", "--state", url, "--exec", cmd])
            .args(["--interval", "1s", "--lease-ttl", "3s"])
            .args(extra)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Replica { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} failed");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn said(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn leases(repo: &Path, url: &str) -> Vec<serde_json::Value> {
    let run = crate::common::ledgit_in(repo, &["leases", "--state", url, "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json().as_array().unwrap().clone()
}

fn held_by(repo: &Path, url: &str, pid: u32) -> usize {
    leases(repo, url)
        .iter()
        .filter(|l| {
            l["live"] == true
                && l["holder"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("(pid {pid})"))
        })
        .count()
}

fn journal(repo: &Path, url: &str) -> Vec<serde_json::Value> {
    let run = crate::common::ledgit_in(
        repo,
        &[
            "journal", "--state", url, "--format", "json", "--limit", "100000",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json().as_array().unwrap().clone()
}

/// A repository with `alpha` 1.0.0 in every environment.
fn three_environments() -> TestRepo {
    let repo = TestRepo::new();
    for env in ["development", "staging", "production"] {
        repo.set("alpha", env, "1.0.0");
    }
    repo.commit("Initial", T0);
    repo
}

/// Replica A leading every environment and in the middle of a slow action (alpha 2.0.0 in
/// staging, `slow_secs` long), with replica B following: where the takeover tests start.
struct Takeover {
    _pg: Cluster,
    url: String,
    repo: TestRepo,
    tools: tempfile::TempDir,
    a: Replica,
    b: Replica,
}

impl Takeover {
    fn start(slow_secs: f32) -> Takeover {
        let pg = Cluster::start();
        let url = pg.url();
        let repo = three_environments();
        let tools = tempfile::tempdir().unwrap();
        let cmd = actuator(tools.path(), "2.0.0", slow_secs);
        let a = Replica::start(repo.path(), &url, &cmd, tools.path(), "a", &[]);
        wait_for("A to lead and deploy", Duration::from_secs(20), || {
            held_by(repo.path(), &url, a.pid()) == 3 && done(tools.path()).len() == 3
        });
        let b = Replica::start(repo.path(), &url, &cmd, tools.path(), "b", &[]);
        repo.set("alpha", "staging", "2.0.0");
        repo.commit("Update alpha in staging", T0 + 60);
        wait_for(
            "A to start the slow action",
            Duration::from_secs(20),
            || tools.path().join("started").exists(),
        );
        Takeover {
            _pg: pg,
            url,
            repo,
            tools,
            a,
            b,
        }
    }

    /// The journal's attempts of the slow action: result and epoch, oldest first.
    fn slow_attempts(&self) -> Vec<(String, i64)> {
        journal(self.repo.path(), &self.url)
            .iter()
            .filter(|e| e["version"] == "2.0.0")
            .map(|e| {
                (
                    e["result"].as_str().unwrap().to_string(),
                    e["epoch"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    /// Whether B has run the slow action again.
    fn b_ran_it(&self) -> bool {
        done(self.tools.path())
            .iter()
            .any(|x| x.version == "2.0.0" && x.pid == self.b.pid())
    }
}

#[test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run with --include-ignored"]
fn a_follower_takes_over_from_a_killed_leader_and_reruns_what_it_interrupted() {
    let mut t = Takeover::start(3.0);
    let (url, repo, tools) = (t.url.clone(), &t.repo, t.tools.path().to_path_buf());
    let tools = tools.as_path();
    let interrupted = actions(tools)
        .into_iter()
        .find(|x| x.version == "2.0.0")
        .unwrap();
    assert_eq!((interrupted.pid, interrupted.epoch), (t.a.pid(), 1));
    t.a.kill(); // SIGKILL, in the middle of the action
    wait_for(
        "B to take over and run the interrupted action again",
        Duration::from_secs(20),
        || t.b_ran_it(),
    );
    let b = &t.b;
    let again = done(tools)
        .into_iter()
        .find(|x| x.version == "2.0.0" && x.pid == b.pid())
        .unwrap();
    assert_eq!(again.key, interrupted.key, "a repeat has the same key");
    assert_eq!(again.epoch, 2, "the takeover is a new epoch");
    assert_eq!(held_by(repo.path(), &url, b.pid()), 3);
    // Nothing but the interrupted action started twice.
    let mut starts: BTreeMap<String, usize> = BTreeMap::new();
    for x in actions(tools).iter().filter(|x| x.phase == "start") {
        *starts.entry(x.key.clone()).or_default() += 1;
    }
    for (key, n) in &starts {
        let expected = if *key == interrupted.key { 2 } else { 1 };
        assert_eq!(*n, expected, "key {key} started {n} times");
    }
    assert_eq!(
        t.slow_attempts(),
        [("interrupted".to_string(), 1), ("applied".to_string(), 2)]
    );
    let j = journal(repo.path(), &url);
    let replica = j.last().unwrap()["replica"].as_str().unwrap().to_string();
    assert!(
        replica.ends_with(&format!("(pid {})", b.pid())),
        "{replica}"
    );
}

#[test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run with --include-ignored"]
fn a_paused_leader_is_fenced_and_rejoins_as_a_follower() {
    let t = Takeover::start(2.0);
    let (url, repo, tools, a, b) = (t.url.as_str(), &t.repo, t.tools.path(), &t.a, &t.b);
    a.signal("-STOP");
    wait_for("B to take over", Duration::from_secs(20), || {
        held_by(repo.path(), url, b.pid()) == 3
    });
    wait_for("B to run the action again", Duration::from_secs(20), || {
        t.b_ran_it()
    });
    let before = actions(tools).len();
    a.signal("-CONT");
    wait_for("A to say it was deposed", Duration::from_secs(20), || {
        a.said().contains("deposed")
    });
    // A rejoins as a follower: a new change is B's to apply.
    repo.set("alpha", "production", "1.1.0");
    repo.commit("Update alpha in production", T0 + 120);
    wait_for("the next change", Duration::from_secs(20), || {
        done(tools).iter().any(|x| x.version == "1.1.0")
    });
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<Applied> = actions(tools)[before..].to_vec();
    assert!(
        after
            .iter()
            .all(|x| x.pid != a.pid() || x.phase == "done" && x.version == "2.0.0"),
        "the deposed leader started something: {after:?}\n{}",
        a.said()
    );
    assert!(
        after
            .iter()
            .any(|x| x.version == "1.1.0" && x.pid == b.pid() && x.epoch == 2)
    );
    // Its late write was refused: the attempt it started stays interrupted, B's is applied.
    assert_eq!(
        t.slow_attempts(),
        [("interrupted".to_string(), 1), ("applied".to_string(), 2)]
    );
    assert_eq!(held_by(repo.path(), url, b.pid()), 3);
    assert_eq!(held_by(repo.path(), url, a.pid()), 0);
}

#[test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run with --include-ignored"]
fn a_database_restart_in_the_middle_of_a_pass_loses_and_duplicates_nothing() {
    let pg = Cluster::start();
    let url = pg.url();
    let repo = TestRepo::new();
    let agents: Vec<String> = (0..8).map(|i| format!("agent-{i}")).collect();
    for a in &agents {
        repo.set(a, "staging", "1.0.0");
    }
    repo.commit("Initial", T0);
    let tools = tempfile::tempdir().unwrap();
    // Every action takes a while, so the restart lands inside the pass.
    let cmd = actuator(tools.path(), "2.0.0", 0.4);
    let a = Replica::start(repo.path(), &url, &cmd, tools.path(), "a", &[]);
    let b = Replica::start(repo.path(), &url, &cmd, tools.path(), "b", &[]);
    wait_for("the first deploys", Duration::from_secs(30), || {
        done(tools.path()).len() == agents.len()
    });
    for a in &agents {
        repo.set(a, "staging", "2.0.0");
    }
    repo.commit("Update every agent", T0 + 60);
    wait_for("the pass to start", Duration::from_secs(20), || {
        tools.path().join("started").exists()
    });
    pg.restart();
    let before_restart_ended = done(tools.path()).len() - agents.len();
    assert!(
        before_restart_ended < agents.len(),
        "the restart came after the pass"
    );
    wait_for("every update", Duration::from_secs(60), || {
        done(tools.path()).len() == 2 * agents.len()
    });
    std::thread::sleep(Duration::from_secs(1));
    let j = journal(repo.path(), &url);
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in &j {
        by_key
            .entry(e["idempotency_key"].as_str().unwrap().to_string())
            .or_default()
            .push(e["result"].as_str().unwrap().to_string());
    }
    assert_eq!(by_key.len(), 2 * agents.len(), "{j:#?}");
    assert!(
        by_key.values().all(|r| r == &["applied"]),
        "an entry was lost or duplicated: {by_key:?}\nA: {}\nB: {}",
        a.said(),
        b.said()
    );
    // Both replicas are still there: one leads, the other follows.
    let l = leases(repo.path(), &url);
    assert!(l.iter().all(|l| l["live"] == true), "{l:?}");
    for r in [&a, &b] {
        assert!(
            Command::new("kill")
                .args(["-0", &r.pid().to_string()])
                .status()
                .unwrap()
                .success(),
            "a replica exited: {}",
            r.said()
        );
    }
    let status = repo.ledgit(&["status", "--state", &url, "--format", "json"]);
    let rows = status.json();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["sync"] == "Synced" && r["applied_version"] == "2.0.0"),
        "{rows}"
    );
}

/// A small deterministic generator (the seed makes a failing run repeatable).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run with --include-ignored"]
fn three_replicas_killed_at_random_converge_without_two_writers_per_epoch() {
    let seed: u64 = std::env::var("LEDGIT_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x001e_d917);
    let mut rng = Rng(seed | 1);
    let pg = Cluster::start();
    let url = pg.url();
    let envs = ["development", "staging", "production"];
    let agents = ["a0", "a1", "a2", "a3"];
    let seed_repo = TestRepo::new();
    for a in agents {
        for e in envs {
            seed_repo.set(a, e, "1.0.0");
        }
    }
    seed_repo.commit("Initial", T0);
    let remote = seed_repo.bare_clone();
    let origin = remote.path().join("remote.git");
    let pusher = TestRepo::clone_of(&origin);
    let tools = tempfile::tempdir().unwrap();
    let cmd = actuator(tools.path(), "never", 0.0);
    let clones: Vec<TestRepo> = (0..3).map(|_| TestRepo::clone_of(&origin)).collect();
    let start = |i: usize| {
        Replica::start(
            clones[i].path(),
            &url,
            &cmd,
            tools.path(),
            &format!("r{i}"),
            &["--fetch", "origin"],
        )
    };
    let mut replicas: Vec<Replica> = (0..3).map(start).collect();
    // The commit at which each (agent, environment) got each version.
    let mut order: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut last_kill = Instant::now();
    for i in 1..=200u32 {
        let agent = agents[rng.below(agents.len() as u64) as usize];
        let env = envs[rng.below(envs.len() as u64) as usize];
        let version = format!("1.0.{i}");
        pusher.set(agent, env, &version);
        pusher.commit(&format!("{agent} {env} {version}"), T0 + i64::from(i) * 60);
        pusher.git(&["push", "-q", "origin", "HEAD"]);
        order
            .entry((agent.to_string(), env.to_string()))
            .or_default()
            .push(version);
        if last_kill.elapsed() > Duration::from_millis(400 + rng.below(800)) {
            let victim = rng.below(3) as usize;
            replicas[victim].kill();
            if rng.below(2) == 0 {
                std::thread::sleep(Duration::from_millis(rng.below(500)));
            }
            replicas[victim] = start(victim);
            last_kill = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(rng.below(60)));
    }
    // Everything declared is applied in the end, at its final version.
    let finals: BTreeMap<(String, String), String> = order
        .iter()
        .map(|(k, v)| (k.clone(), v.last().unwrap().clone()))
        .collect();
    wait_for("convergence", Duration::from_secs(120), || {
        let status = pusher.ledgit(&["status", "--state", &url, "--format", "json"]);
        status.code == 0
            && status.json().as_array().unwrap().iter().all(|r| {
                let key = (
                    r["agent"].as_str().unwrap().to_string(),
                    r["environment"].as_str().unwrap().to_string(),
                );
                r["sync"] == "Synced"
                    && finals
                        .get(&key)
                        .is_none_or(|v| r["applied_version"].as_str() == Some(v.as_str()))
            })
    });
    let log = done(tools.path());
    // No epoch ever had two writers: by the actuator's log (process ids) and by the journal.
    let mut writers: BTreeMap<(String, i64), BTreeSet<u32>> = BTreeMap::new();
    for x in &log {
        writers
            .entry((x.environment.clone(), x.epoch))
            .or_default()
            .insert(x.pid);
    }
    for ((env, epoch), pids) in &writers {
        assert_eq!(pids.len(), 1, "{env} epoch {epoch} had writers {pids:?}");
    }
    let mut journaled: BTreeMap<(String, i64), BTreeSet<String>> = BTreeMap::new();
    for e in journal(pusher.path(), &url) {
        journaled
            .entry((
                e["environment"].as_str().unwrap().to_string(),
                e["epoch"].as_i64().unwrap(),
            ))
            .or_default()
            .insert(e["replica"].as_str().unwrap().to_string());
    }
    for ((env, epoch), who) in &journaled {
        assert_eq!(who.len(), 1, "{env} epoch {epoch} was journaled by {who:?}");
    }
    // What a platform that honours fencing tokens accepts (each environment's highest token so
    // far) applies each pair's versions in the order of the commits, ending at the last.
    let mut highest: BTreeMap<String, i64> = BTreeMap::new();
    let mut accepted: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for x in &log {
        let top = highest.entry(x.environment.clone()).or_insert(0);
        if x.epoch < *top {
            continue;
        }
        *top = x.epoch;
        accepted
            .entry((x.agent.clone(), x.environment.clone()))
            .or_default()
            .push(x.version.clone());
    }
    for (pair, versions) in &accepted {
        let Some(declared) = order.get(pair) else {
            assert!(
                versions.iter().all(|v| v == "1.0.0"),
                "{pair:?}: {versions:?}"
            );
            continue;
        };
        let position = |v: &String| {
            if v == "1.0.0" {
                Some(0)
            } else {
                declared.iter().position(|d| d == v).map(|p| p + 1)
            }
        };
        let positions: Vec<usize> = versions
            .iter()
            .map(|v| position(v).unwrap_or_else(|| panic!("{pair:?}: {v} was never declared")))
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] <= w[1]),
            "{pair:?} applied out of order: {versions:?} (declared {declared:?}, seed {seed})"
        );
        assert_eq!(versions.last(), declared.last(), "{pair:?}");
    }
}

#[test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run with --include-ignored"]
fn two_serve_replicas_show_the_same_states_and_honour_each_others_sign_outs() {
    use std::io::Read;
    let pg = Cluster::start();
    let url = pg.url();
    let repo = three_environments();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("signing.pem");
    let key = key.to_str().unwrap();
    let generated = repo.ledgit(&["keys", "generate", "--out", key, "--add"]);
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    repo.commit("Add a key", T0 + 30);
    let issued = repo.ledgit(&["token", "issue", "alpha", "staging", "--key", key]);
    assert_eq!(issued.code, 0, "{}", issued.stderr);
    let token = issued.stdout.trim().to_string();
    repo.commit("Record the token", T0 + 60);
    let run = repo.ledgit(&["reconcile", "--state", &url, "--exec", "true"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let secret = "operator secret, long enough";
    let env = [("LEDGIT_UI_SECRET", secret)];
    let args = ["--state", url.as_str(), "--proposals"];
    let one = crate::common::server::Server::start(&repo, &args, &env);
    let two = crate::common::server::Server::start(&repo, &args, &env);
    let cells = |s: &crate::common::server::Server| {
        let (status, body) = s.get("/v1/agents", None);
        assert_eq!(status, 200);
        body["agents"][0]["cells"].clone()
    };
    assert_eq!(cells(&one), cells(&two));
    assert!(
        cells(&one)
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["sync"] == "Synced"),
        "{}",
        cells(&one)
    );
    // What runs beside what is declared, and who applied it.
    let cell = &cells(&one)[1];
    assert_eq!(cell["applied_version"], "1.0.0", "{cell}");
    assert!(
        cell["applied_by"].as_str().unwrap().contains("(pid "),
        "{cell}"
    );
    let (_, page) = two.get("/v1/agents/alpha", None);
    let observed = &page["environments"][0]["observed"];
    assert_eq!(observed["sync"], "Synced", "{page}");
    assert_eq!(observed["applied_version"], "1.0.0");
    // A token seen by one replica is seen, a moment later, on the other's page too.
    let last_seen = |s: &crate::common::server::Server| {
        let (_, tokens) = s.get("/v1/agents/alpha/tokens", None);
        tokens["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|d| d["tokens"].as_array().unwrap().clone())
            .map(|t| t["last_seen"].clone())
            .next()
            .unwrap_or_default()
    };
    assert!(last_seen(&two).is_null());
    let (status, me) = one.get("/v1/whoami", Some(&token));
    assert_eq!(status, 200, "{me}");
    wait_for(
        "the other replica to know the token was seen",
        Duration::from_secs(10),
        || last_seen(&two).is_string(),
    );
    let (_, leases) = one.get("/v1/leases", None);
    assert_eq!(leases["leases"].as_array().unwrap().len(), 3, "{leases}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let page = |base: &str, cookie: &str| {
        let mut text = String::new();
        agent
            .get(format!("{base}/"))
            .header("Cookie", cookie)
            .call()
            .unwrap()
            .into_body()
            .into_reader()
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let mut metrics = String::new();
    agent
        .get(format!("{}/metrics", one.base))
        .call()
        .unwrap()
        .into_body()
        .into_reader()
        .read_to_string(&mut metrics)
        .unwrap();
    // The one-shot reconcile released its leases when it ended: none is held now.
    assert!(
        metrics.contains("ledgit_lease_held{environment=\"staging\"} 0"),
        "{metrics}"
    );
    let cookie = one.sign_in(secret);
    assert!(
        page(&two.base, &cookie).contains("Sign out"),
        "one secret, one session"
    );
    let home = page(&one.base, &cookie);
    let csrf = home
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let out = agent
        .post(format!("{}/signout", one.base))
        .header("Cookie", &cookie)
        .header("Origin", &one.base)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(format!("csrf={csrf}"))
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    assert!(!page(&one.base, &cookie).contains("Sign out"));
    wait_for(
        "the other replica to refuse the cookie",
        Duration::from_secs(10),
        || !page(&two.base, &cookie).contains("Sign out"),
    );
    one.stop();
    two.stop();
}

#[test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run with --include-ignored"]
fn an_sqlite_store_is_copied_whole_and_a_newer_schema_is_refused() {
    let pg = Cluster::start();
    let url = pg.url();
    let repo = three_environments();
    let tools = tempfile::tempdir().unwrap();
    let cmd = actuator(tools.path(), "never", 0.0);
    // Signed receipts that cannot reach the notes yet (a lock left on the ref): they wait in
    // the journal, and must move with it.
    let key = tools.path().join("r1.pem");
    repo.ledgit(&["keys", "generate", "--out", key.to_str().unwrap()]);
    let lock = repo.path().join(".git/refs/notes/ledgit/applied.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, "").unwrap();
    let run = repo.ledgit(&[
        "reconcile",
        "--exec",
        &cmd,
        "--signing-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("receipts:"), "{}", run.stderr);
    std::fs::remove_file(&lock).unwrap();
    repo.set("alpha", "staging", "1.1.0");
    repo.commit("Update", T0 + 60);
    let failing = repo.ledgit(&["reconcile", "--exec", "false"]);
    assert_eq!(failing.code, 1);
    let sqlite = repo.ledgit(&["journal", "--format", "json"]).json();
    let migrate = |args: &[&str]| {
        let mut all = vec!["state", "migrate", "--from", ".git/ledgit/reconcile.sqlite"];
        all.extend_from_slice(args);
        repo.ledgit(&all)
    };
    let copied = migrate(&["--to", &url, "--format", "json"]);
    assert_eq!(copied.code, 0, "{}", copied.stderr);
    assert_eq!(copied.json()["journal"], 4);
    let shared = repo
        .ledgit(&["journal", "--state", &url, "--format", "json"])
        .json();
    let strip = |v: &serde_json::Value| -> Vec<(String, String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["idempotency_key"].as_str().unwrap().to_string(),
                    e["result"].as_str().unwrap().to_string(),
                    e["started_at"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&shared), strip(&sqlite));
    let status = repo
        .ledgit(&["status", "--state", &url, "--format", "json"])
        .json();
    let staging = status
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["environment"] == "staging")
        .unwrap()
        .clone();
    assert_eq!(staging["sync"], "Failed", "{staging}");
    // A second copy would mix with what is there: refused.
    let again = migrate(&["--to", &url]);
    assert_eq!(again.code, 2);
    assert!(
        again.stderr.contains("already holds state"),
        "{}",
        again.stderr
    );
    // The receipts that waited in the SQLite journal are written from the shared one.
    let first = repo.git(&["rev-list", "--max-parents=0", "HEAD"]);
    let written = repo.ledgit(&[
        "reconcile",
        "--state",
        &url,
        "--exec",
        "true",
        "--signing-key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(written.code, 0, "{}", written.stderr);
    let notes = repo.git(&["notes", "--ref=ledgit/applied", "show", &first]);
    assert_eq!(
        notes.lines().filter(|l| !l.is_empty()).count(),
        3,
        "{notes}"
    );
    // A removal through the shared store: journaled and the applied row gone.
    std::fs::remove_file(repo.path().join("deployments/alpha/development.yaml")).unwrap();
    repo.commit("Remove alpha from development", T0 + 120);
    let pruned = repo.ledgit(&["reconcile", "--state", &url, "--prune", "--exec", "true"]);
    assert_eq!(pruned.code, 0, "{}{}", pruned.stdout, pruned.stderr);
    let last = repo
        .ledgit(&["journal", "--state", &url, "--format", "json"])
        .json();
    let removal: Vec<_> = last
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "remove")
        .collect();
    assert_eq!(removal.len(), 1, "{last}");
    assert_eq!(removal[0]["result"], "applied");
    let status = repo
        .ledgit(&["status", "--state", &url, "--format", "json"])
        .json();
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["environment"] != "development"),
        "{status}"
    );
    // Another repository on the same database sees nothing of this one's (rows are keyed by
    // the root commit).
    let other = TestRepo::new();
    other.set("beta", "staging", "1.0.0");
    other.commit("Another repository", T0 + 7);
    assert!(journal(other.path(), &url).is_empty());
    assert!(leases(other.path(), &url).is_empty());
    let theirs = other
        .ledgit(&["status", "--state", &url, "--format", "json"])
        .json();
    assert_eq!(theirs[0]["sync"], "OutOfSync", "{theirs}");
    // A database migrated by a newer ledgit is refused, not misread.
    pg.psql("INSERT INTO ledgit_schema (version) VALUES (999)");
    let newer = repo.ledgit(&["status", "--state", &url]);
    assert_eq!(newer.code, 2);
    assert!(
        newer.stderr.contains("newer than this ledgit"),
        "{}",
        newer.stderr
    );
}

#[test]
#[ignore = "needs PostgreSQL (apt-get install postgresql) and openssl; run with --include-ignored"]
fn tls_verifies_the_servers_certificate_against_the_ca_given() {
    let (pg, ca) = Cluster::start_tls();
    let repo = three_environments();
    let url = format!(
        "postgres://ledgit@127.0.0.1:{}/postgres?sslmode=require&sslrootcert={}",
        pg.port,
        ca.display()
    );
    let run = repo.ledgit(&["reconcile", "--state", &url, "--exec", "true"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    // The server takes nothing but TLS: the run above was encrypted.
    let plain = format!(
        "postgres://ledgit@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port
    );
    let refused = repo.ledgit(&["status", "--state", &plain]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    // Without the CA, the public roots do not vouch for this server: refused, and said.
    let untrusted = format!(
        "postgres://ledgit@127.0.0.1:{}/postgres?sslmode=require",
        pg.port
    );
    let refused = repo.ledgit(&["status", "--state", &untrusted]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.to_lowercase().contains("certificate"),
        "{}",
        refused.stderr
    );
    // PGSSLROOTCERT names the CA as the URL's sslrootcert does.
    let run = crate::common::ledgit_in(repo.path(), &["status", "--state", &untrusted]);
    assert_eq!(run.code, 2);
    let with_env = crate::common::ledgit_command()
        .current_dir(repo.path())
        .env("PGSSLROOTCERT", &ca)
        .args(["status", "--state", &untrusted, "--format", "json"])
        .output()
        .unwrap();
    assert!(
        with_env.status.success(),
        "{}",
        String::from_utf8_lossy(&with_env.stderr)
    );
}

/// PostgreSQL stopped under `serve`: the declared state is still served, and the outage is
/// said once in the log, by `ledgit_store_up 0`, in `/readyz`'s JSON, by a banner on the
/// pages and by a 503 from `/v1/leases` (not an empty list); when it is back, all of it says
/// so again.
#[test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run with --include-ignored"]
fn a_store_outage_is_said_everywhere_and_the_declared_state_is_still_served() {
    let pg = Cluster::start();
    let url = pg.url();
    let repo = three_environments();
    let run = repo.ledgit(&["reconcile", "--state", &url, "--exec", "true"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let server = crate::common::server::Server::start(&repo, &["--state", url.as_str()], &[]);
    let store_up = |s: &crate::common::server::Server| {
        let (_, metrics) = s.get_text("/metrics", None);
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("ledgit_store_up "))
            .map(|v| v.trim().to_string())
    };
    let (status, ready) = server.get("/readyz", None);
    assert_eq!(
        (status, &ready["store"]["up"]),
        (200, &serde_json::json!(true)),
        "{ready}"
    );
    assert_eq!(store_up(&server).as_deref(), Some("1"));
    assert_eq!(server.get("/v1/leases", None).0, 200);
    pg.stop();
    wait_for("the outage to show", Duration::from_secs(30), || {
        server.get("/readyz", None).1["store"]["up"] == false
    });
    let (status, ready) = server.get("/readyz", None);
    assert_eq!(status, 200, "the declared state is still served: {ready}");
    assert!(
        ready["store"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{ready}"
    );
    assert!(ready["store"]["since"].is_string(), "{ready}");
    assert_eq!(store_up(&server).as_deref(), Some("0"));
    let (status, leases) = server.get("/v1/leases", None);
    assert_eq!(
        (status, &leases["error"]),
        (503, &serde_json::json!("store_unreachable"))
    );
    let (status, page) = server.get_text("/", None);
    assert_eq!(status, 200);
    assert!(page.contains("id=\"store-down\""), "no banner on the page");
    assert_eq!(server.get("/v1/deployments", None).0, 200);
    pg.start_again();
    wait_for("the store to answer again", Duration::from_secs(30), || {
        server.get("/readyz", None).1["store"]["up"] == true
    });
    assert_eq!(store_up(&server).as_deref(), Some("1"));
    assert!(!server.get_text("/", None).1.contains("id=\"store-down\""));
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        log.matches("the reconciler's store is unreachable").count(),
        1,
        "one line per change:\n{log}"
    );
    assert_eq!(
        log.matches("the reconciler's store answers again").count(),
        1,
        "{log}"
    );
}

/// A store `watch` cannot open (a role that does not exist) is tried again after 5s, then
/// 10s, as the message says, not every 250 ms.
#[test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run with --include-ignored"]
fn watch_backs_off_from_a_store_it_cannot_open_as_it_says() {
    use std::io::Read;
    let pg = Cluster::start();
    let url = pg.url().replace("ledgit@", "nobody@");
    let repo = three_environments();
    let mut child = crate::common::ledgit_command()
        .current_dir(repo.path())
        .args([
            "watch",
            "--state",
            &url,
            "--exec",
            "true",
            "--interval",
            "1m",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(8));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait().unwrap();
    let mut said = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    let tries: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("trying again in"))
        .collect();
    assert_eq!(tries.len(), 2, "{said}");
    assert!(tries[0].ends_with("trying again in 5s"), "{said}");
    assert!(tries[1].ends_with("trying again in 10s"), "{said}");
}

/// A replica whose clock runs two hours fast (libfaketime) fails an action: when to retry is
/// set by the database's clock, so a healthy replica retries within seconds, not hours.
#[test]
#[ignore = "needs PostgreSQL and libfaketime (apt-get install postgresql faketime); run with --include-ignored"]
fn a_replica_with_a_fast_clock_does_not_hold_retries_for_the_others() {
    let faketime = crate::common::needs(
        crate::common::program("faketime", &["/usr/bin/faketime"]),
        "libfaketime (apt-get install faketime)",
    );
    let pg = Cluster::start();
    let url = pg.url();
    let repo = three_environments();
    let fast = Command::new(faketime)
        .current_dir(repo.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["-f", "+2h", env!("CARGO_BIN_EXE_ledgit")])
        .args(["reconcile", "--state", &url, "--exec", "false"])
        .output()
        .unwrap();
    assert_eq!(
        fast.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&fast.stderr)
    );
    // The clock really was fast: the journal's start times are two hours ahead.
    let ahead: i64 = pg
        .psql("SELECT max(started_at) - extract(epoch FROM now())::bigint FROM ledgit_journal")
        .trim()
        .parse()
        .unwrap();
    assert!(
        ahead > 7000,
        "libfaketime did not move the clock ({ahead}s)"
    );
    let wait: i64 = pg
        .psql("SELECT max(next_attempt) - extract(epoch FROM now())::bigint FROM ledgit_failures")
        .trim()
        .parse()
        .unwrap();
    assert!(wait <= 5, "the retry waits {wait}s by the database's clock");
    // A replica with a true clock retries now and succeeds.
    let tools = tempfile::tempdir().unwrap();
    let mut healthy = crate::common::ledgit_command()
        .current_dir(repo.path())
        .args(["watch", "--state", &url, "--interval", "1m", "--exec"])
        .arg(actuator(tools.path(), "none", 0.0))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the healthy replica's retries",
        Duration::from_secs(20),
        || pg.psql("SELECT count(*) FROM ledgit_failures").trim() == "0",
    );
    let _ = healthy.kill();
    let _ = healthy.wait();
}

/// The leader fetched and applied 5.0.0, then died; the follower cannot fetch (its remote is
/// gone), so its tip is the older commit. It takes over and holds the environments, saying
/// why, instead of rolling the platform back to 1.0.0 under a higher epoch.
#[test]
#[ignore = "needs PostgreSQL (apt-get install postgresql); run with --include-ignored"]
fn a_follower_with_an_older_fetch_never_rolls_back_what_the_leader_applied() {
    let pg = Cluster::start();
    let url = pg.url();
    let seed = three_environments();
    let remote_dir = seed.bare_clone();
    let remote = remote_dir.path().join("remote.git");
    let leader_repo = TestRepo::clone_of(&remote);
    let follower_repo = TestRepo::clone_of(&remote);
    let tools = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let cmd = actuator(tools.path(), "none", 0.0);
    let fetch = ["--fetch", "origin"];
    let mut a = Replica::start(leader_repo.path(), &url, &cmd, logs.path(), "a", &fetch);
    wait_for(
        "A to apply the first commit",
        Duration::from_secs(30),
        || done(tools.path()).len() >= 3,
    );
    // The follower's remote disappears: every fetch it makes fails from now on.
    follower_repo.git(&["remote", "set-url", "origin", "/nonexistent/remote.git"]);
    let b = Replica::start(follower_repo.path(), &url, &cmd, logs.path(), "b", &fetch);
    // A new version reaches the remote; the leader fetches and applies it.
    seed.set("alpha", "staging", "5.0.0");
    seed.commit("alpha 5.0.0", T0 + 60);
    seed.git(&["push", "-q", remote.to_str().unwrap(), "main"]);
    wait_for("A to apply 5.0.0", Duration::from_secs(30), || {
        done(tools.path()).iter().any(|x| x.version == "5.0.0")
    });
    a.kill();
    let took = wait_until(Duration::from_secs(30), || b.said().contains("held"));
    assert!(
        took,
        "B did not hold:\n{}\nactions: {:?}",
        b.said(),
        actions(tools.path())
    );
    std::thread::sleep(Duration::from_secs(3));
    let rolled_back: Vec<_> = actions(tools.path())
        .into_iter()
        .filter(|x| x.pid == b.pid())
        .collect();
    assert!(
        rolled_back.is_empty(),
        "B acted: {rolled_back:?}\n{}",
        b.said()
    );
    let said = b.said();
    assert!(
        said.contains("staging") && said.contains("--allow-rewind"),
        "{said}"
    );
}
