//! `ledgit serve` end to end: the real binary on an ephemeral port over a real repository,
//! following commits, agreeing with `token verify`, keeping secrets out of its log, and
//! draining on SIGTERM.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::common::server::Server;
use crate::common::{T0, TestRepo, wait_for};

/// An example repository with a signing key listed and committed; returns it and the key path.
fn example() -> (TestRepo, tempfile::TempDir, std::path::PathBuf) {
    let repo = TestRepo::empty();
    let init = repo.ledgit(&["init", "--example", "."]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("signing.pem");
    let generated = repo.ledgit(&["keys", "generate", "--out", key.to_str().unwrap(), "--add"]);
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    repo.commit("Add a signing key", T0 + 30 * crate::common::DAY);
    (repo, keys, key)
}

fn issue(repo: &TestRepo, key: &std::path::Path, agent: &str, env: &str) -> String {
    let run = repo.ledgit(&["token", "issue", agent, env, "--key", key.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout.trim().to_string()
}

#[test]
fn serves_follows_commits_agrees_with_token_verify_and_drains() {
    let (repo, _keys, key) = example();
    let token = issue(&repo, &key, "support-bot", "production");
    let doomed = issue(&repo, &key, "support-bot", "staging");
    let server = Server::start(
        &repo,
        &[],
        &[("LEDGIT_HOOK_SECRET", "hook-secret-value-of-24b")],
    );
    let (status, me) = server.get("/v1/whoami", Some(&token));
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["agent"], "support-bot");
    let (status, _) = server.get("/readyz", None);
    assert_eq!(status, 200);
    // A commit to the tracked branch is served without anyone asking.
    repo.ledgit(&["set", "support-bot", "production", "7.7.7", "--force"]);
    repo.commit("production 7.7.7", T0 + 31 * crate::common::DAY);
    wait_for("the new version", Duration::from_secs(20), || {
        server.get("/v1/whoami", Some(&token)).1["version"] == "7.7.7"
    });
    // A revoked token: the server and `token verify` give the same reason.
    let jti = repo.ledgit(&["token", "inspect", &doomed]).json()["claims"]["jti"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(repo.ledgit(&["token", "revoke", &jti]).code, 0);
    repo.commit("Revoke", T0 + 32 * crate::common::DAY);
    wait_for("the revocation", Duration::from_secs(20), || {
        server.get("/v1/whoami", Some(&doomed)).0 == 401
    });
    let (_, answer) = server.get("/v1/whoami", Some(&doomed));
    let verify = repo.ledgit(&["token", "verify", &doomed, "--format", "json"]);
    assert_eq!(verify.code, 1);
    assert_eq!(verify.json()["code"], answer["code"]);
    assert_eq!(answer["code"], "revoked");
    // SIGTERM: drained, exit 0, and no token or secret in any log line.
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("ledgit serve: stopped"), "{log}");
    assert!(log.contains("GET /v1/whoami 200"), "{log}");
    for secret in [token.as_str(), doomed.as_str(), "hook-secret-value-of-24b"] {
        assert!(!log.contains(secret), "a secret is in the log:\n{log}");
        // Nor any long piece of a token (a signature, a header).
        for part in secret.split('.').filter(|p| p.len() > 20) {
            assert!(!log.contains(part), "part of a token is in the log:\n{log}");
        }
    }
}

/// The server follows a remote with --fetch: a push announced by a verified webhook is
/// served without waiting for the interval.
#[test]
fn a_verified_push_webhook_fetches_and_serves_the_push() {
    let (seed, _keys, _key) = example();
    let remote = seed.bare_clone();
    let url = remote.path().join("remote.git");
    let served = TestRepo::clone_of(&url);
    let pusher = TestRepo::clone_of(&url);
    let server = Server::start(
        &served,
        &["--fetch", "origin", "--interval", "1h"],
        &[("LEDGIT_HOOK_SECRET", "s3cret-at-least-16-bytes")],
    );
    let version =
        || server.get("/v1/deployments/support-bot/production", None).1["version"].clone();
    assert_ne!(version(), "8.8.8");
    pusher.ledgit(&["set", "support-bot", "production", "8.8.8", "--force"]);
    pusher.commit("production 8.8.8", T0 + 40 * crate::common::DAY);
    pusher.git(&["push", "-q", "origin", "HEAD"]);
    let branch = pusher.git(&["rev-parse", "--abbrev-ref", "HEAD"]);
    let body = format!(r#"{{"ref":"refs/heads/{branch}"}}"#);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let wrong = agent
        .post(format!("{}/v1/hooks/generic", server.base))
        .header("X-Signature", "sha256=0000")
        .send(body.as_bytes())
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    std::thread::sleep(Duration::from_millis(500));
    assert_ne!(version(), "8.8.8", "an unverified delivery refreshed");
    let right = agent
        .post(format!("{}/v1/hooks/generic", server.base))
        .header(
            "X-Signature",
            &ledgit::reconcile::actuator::signature(b"s3cret-at-least-16-bytes", body.as_bytes()),
        )
        .send(body.as_bytes())
        .unwrap();
    assert_eq!(right.status().as_u16(), 202);
    wait_for("the pushed version", Duration::from_secs(20), || {
        version() == "8.8.8"
    });
    // A flood of deliveries (one captured delivery replayed): at most one refresh, and so one
    // fetch, a second, whatever arrives.
    let refreshes = || -> u64 {
        let mut text = String::new();
        agent
            .get(format!("{}/metrics", server.base))
            .call()
            .unwrap()
            .into_body()
            .into_reader()
            .read_to_string(&mut text)
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("ledgit_refreshes_total "))
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = refreshes();
    let flood = Instant::now();
    let signature =
        ledgit::reconcile::actuator::signature(b"s3cret-at-least-16-bytes", body.as_bytes());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..25 {
                    let r = agent
                        .post(format!("{}/v1/hooks/generic", server.base))
                        .header("X-Signature", &signature)
                        .send(body.as_bytes())
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 202);
                }
            });
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    let ran = refreshes() - before;
    let seconds = flood.elapsed().as_secs() + 1;
    // Each fetch may move a remote-tracking ref, which the ref watcher follows with one
    // refresh of its own: at most two a second.
    assert!(
        (1..=2 * seconds).contains(&ran),
        "100 deliveries in {seconds}s ran {ran} refreshes"
    );
    let (code, _) = server.stop();
    assert_eq!(code, 0);
}

/// A client that never finishes its headers is disconnected (10 s), and holds nobody up.
#[test]
fn a_slow_client_is_cut_off_and_others_are_served_meanwhile() {
    use std::io::Write;
    let (repo, _keys, _key) = example();
    let server = Server::start(&repo, &[], &[]);
    let address = server.base.trim_start_matches("http://").to_string();
    // From before the connection: the server's clock for it cannot have started earlier.
    let start = Instant::now();
    let mut slow = std::net::TcpStream::connect(&address).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert_eq!(server.get("/healthz", None).0, 200);
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = slow.read(&mut buf).unwrap_or(0);
    let waited = start.elapsed();
    assert_eq!(
        n, 0,
        "the server answered a request it never fully received"
    );
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(25),
        "cut off after {waited:?}"
    );
    let (code, _) = server.stop();
    assert_eq!(code, 0);
}

/// A proposal made over HTTP with `--push`: the branch reaches the remote with the user's git,
/// the page links the pull request from the template, and the tracked branch does not move.
#[test]
fn a_proposal_is_pushed_and_linked_and_the_page_shows_sync_states() {
    let (repo, _keys, _key) = example();
    let remote_dir = repo.bare_clone();
    let remote = remote_dir.path().join("remote.git");
    repo.git(&["remote", "add", "origin", remote.to_str().unwrap()]);
    // The reconciler applies everything once: the snapshot's cells say Synced.
    let applied = repo.ledgit(&["reconcile", "--exec", "true"]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let server = Server::start(
        &repo,
        &[
            "--proposals",
            "--push",
            "origin",
            "--pull-request-url",
            "https://git.example/deploys/compare/{base}...{branch}",
        ],
        &[("LEDGIT_UI_SECRET", "operator secret, long enough")],
    );
    let (status, overview) = server.get("/v1/agents", None);
    assert_eq!(status, 200);
    let cells: Vec<&serde_json::Value> = overview["agents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["cells"].as_array().unwrap())
        .filter(|c| !c.is_null())
        .collect();
    assert_eq!(cells.len(), 9);
    assert!(cells.iter().all(|c| c["sync"] == "Synced"), "{overview}");
    let tip = repo.git(&["rev-parse", "HEAD"]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let host = server.base.trim_start_matches("http://").to_string();
    let read = |r: ureq::http::Response<ureq::Body>| {
        let mut text = String::new();
        r.into_body()
            .into_reader()
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let cookie = server.sign_in("operator secret, long enough");
    let preview = read(
        agent
            .get(format!(
                "{}/agents/support-bot/propose?action=set&environment=production&version=1.4.0",
                server.base
            ))
            .header("Cookie", &cookie)
            .call()
            .unwrap(),
    );
    let hidden = |name: &str| {
        preview
            .split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_string()
    };
    let (csrf, expect) = (hidden("csrf"), hidden("expect"));
    let created = agent
        .post(format!("{}/agents/support-bot/propose", server.base))
        .header("Cookie", &cookie)
        .header("Origin", &server.base)
        .header("Host", &host)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send(format!(
            "csrf={csrf}&expect={expect}&action=set&environment=production&version=1.4.0"
        ))
        .unwrap();
    // Answered at once with the proposal's page, which looks again while the push runs.
    let status = created.status().as_u16();
    let location = created
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(status, 303, "{}", read(created));
    let mut page = String::new();
    for _ in 0..300 {
        let shown = agent
            .get(format!("{}{location}", server.base))
            .header("Cookie", &cookie)
            .header("Host", &host)
            .call()
            .unwrap();
        page = read(shown);
        if !page.contains("id=\"pushing\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let branch = page
        .split("<code id=\"branch\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_string();
    assert!(
        branch.starts_with("ledgit/set-support-bot-production-"),
        "{branch}"
    );
    assert!(page.contains("Pushed to origin."), "{page}");
    let base = repo.git(&["rev-parse", "--abbrev-ref", "HEAD"]);
    assert!(
        page.contains(&format!(
            "href=\"https://git.example/deploys/compare/{base}...{branch}\""
        )),
        "{page}"
    );
    // The remote has the branch, one commit on the tip; the tip itself did not move.
    let pushed =
        crate::common::ledgit_in(&remote, &["history", "--rev", &branch, "--format", "json"]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    let events = pushed.json();
    let last = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (
            last["agent"].as_str(),
            last["environment"].as_str(),
            last["version"].as_str()
        ),
        (Some("support-bot"), Some("production"), Some("1.4.0"))
    );
    assert_eq!(repo.git(&["rev-parse", "HEAD"]), tip);
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    let (code, log) = server.stop();
    assert_eq!(code, 0);
    assert!(!log.contains("operator secret") && !log.contains("ledgit_session="));
}

/// Raises this process's limit on open files (each test connection is one).
fn raise_descriptor_limit() {
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Connections that only hold a socket (never send a request) from `clients` addresses of the
/// loopback range, `per_client` each; what the server kept open.
fn idle_connections(
    server: &std::net::SocketAddr,
    clients: std::ops::RangeInclusive<u8>,
    per_client: usize,
) -> Vec<std::net::TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut open = Vec::new();
        for c in clients {
            for _ in 0..per_client {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket
                    .bind(format!("127.0.0.{c}:0").parse().unwrap())
                    .unwrap();
                if let Ok(stream) = socket.connect(*server).await {
                    open.push(stream.into_std().unwrap());
                }
            }
        }
        open
    })
}

/// Whether the server has closed a connection (a read sees the end, or a reset), without
/// waiting: an open connection has nothing to read yet.
fn closed(stream: &mut std::net::TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// 5,000 connections that hold a socket and send nothing, from one address and from many: a
/// new client's liveness probe and token check are still answered, because one address is
/// held to its share and a full server closes idle connections to make room.
#[test]
fn idle_connections_never_keep_a_new_client_waiting() {
    raise_descriptor_limit();
    let (repo, _keys, key) = example();
    let token = issue(&repo, &key, "support-bot", "production");
    let server = Server::start(&repo, &["--quiet"], &[]);
    let addr: std::net::SocketAddr = server.base.trim_start_matches("http://").parse().unwrap();
    // One address: past its share, its connections are closed at once.
    let mut one = idle_connections(&addr, 2..=2, 1_500);
    std::thread::sleep(Duration::from_millis(500));
    let cut = one.iter_mut().map(closed).filter(|c| *c).count();
    assert_eq!(cut, 1_500 - 1_024, "connections from one address closed");
    drop(one);
    // Many addresses, 5,000 connections in all: the server stays within its bound by closing
    // the idlest ones.
    let many = idle_connections(&addr, 3..=7, 1_000);
    assert!(many.len() >= 4_000, "{} connected", many.len());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    for _ in 0..20 {
        let health = agent.get(format!("{}/healthz", server.base)).call();
        assert_eq!(health.map(|r| r.status().as_u16()).ok(), Some(200));
        let whoami = agent
            .get(format!("{}/v1/whoami", server.base))
            .header("Authorization", &format!("Bearer {token}"))
            .call();
        assert_eq!(whoami.map(|r| r.status().as_u16()).ok(), Some(200));
    }
    drop(many);
    let (code, log) = server.stop();
    assert_eq!(code, 0, "{log}");
}

/// What runs beside what is declared, and who changed it: a change merged by pull request whose
/// apply failed shows on the agent page, its JSON twin and the snapshot (the error, its time and
/// attempts; the version that still runs; the staging gate saying development's version is not
/// applied), with the change's author, the merger and the pull request's link; `?at=` shows the
/// page as it was.
#[test]
fn a_failed_apply_shows_what_runs_who_changed_it_and_the_past() {
    let repo = TestRepo::empty();
    assert_eq!(repo.ledgit(&["init", "--example", "."]).code, 0);
    let applied = repo.ledgit(&["reconcile", "--exec", "true"]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let before_merge = crate::common::when(now - 60);
    let main = repo.git(&["branch", "--show-current"]);
    repo.git(&["checkout", "-q", "-b", "bump"]);
    repo.set("billing-agent", "development", "2.1.1");
    let date = format!("@{} +0000", now - 30);
    let out = std::process::Command::new("git")
        .current_dir(repo.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Grace Hopper")
        .env("GIT_AUTHOR_EMAIL", "grace@example.com")
        .env("GIT_COMMITTER_NAME", "Grace Hopper")
        .env("GIT_COMMITTER_EMAIL", "grace@example.com")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .args([
            "commit",
            "-qam",
            "Bump billing-agent to 2.1.1 in development",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    repo.git(&["checkout", "-q", &main]);
    repo.git_at(
        now - 20,
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge pull request #42 from acme/bump",
            "bump",
        ],
    );
    let failed = repo.ledgit(&[
        "reconcile",
        "--exec",
        "sh -c 'echo no capacity left in development >&2; exit 3'",
    ]);
    assert_ne!(failed.code, 0, "{}", failed.stderr);
    let server = Server::start(
        &repo,
        &[
            "--pull-request-url",
            "https://git.example/deploys/compare/{base}...{branch}",
        ],
        &[],
    );
    let (status, page) = server.get("/v1/agents/billing-agent", None);
    assert_eq!(status, 200, "{page}");
    let env = |name: &str| {
        page["environments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["environment"] == name)
            .unwrap()
            .clone()
    };
    let dev = env("development");
    assert_eq!(dev["record"]["version"], "2.1.1");
    assert_eq!(dev["observed"]["sync"], "Failed", "{dev}");
    assert_eq!(dev["observed"]["applied_version"], "2.1.0-rc.1");
    assert_eq!(dev["observed"]["attempts"], 1);
    assert!(dev["observed"]["error_at"].as_str().is_some(), "{dev}");
    assert!(dev["observed"]["next_attempt"].as_str().is_some(), "{dev}");
    assert!(
        dev["observed"]["last_error"]
            .as_str()
            .unwrap()
            .contains("3"),
        "{dev}"
    );
    assert_eq!(dev["changed_by"]["author"], "Grace Hopper");
    assert_eq!(dev["changed_by"]["merged_by"], "Ada Lovelace");
    assert_eq!(dev["changed_by"]["pull_request"], 42);
    assert_eq!(
        dev["changed_by"]["pull_request_url"],
        "https://git.example/deploys/pull/42"
    );
    let staging = env("staging");
    assert_eq!(
        staging["upstream_not_applied"],
        "2.1.1 is declared in development but not applied: 2.1.0-rc.1 still runs, the last of 1 attempt failed",
        "{staging}"
    );
    assert_eq!(
        staging["verdict"],
        "eligible by the records; 2.1.1 is declared in development but not applied: 2.1.0-rc.1 still runs, the last of 1 attempt failed",
        "{staging}"
    );
    // The page says the same.
    let (status, html) = server.get_text("/agents/billing-agent", None);
    assert_eq!(status, 200);
    for said in [
        "<strong>runs <span class=\"version\">2.1.0-rc.1</span></strong>, declared 2.1.1",
        "1 attempt failed, last <time",
        "; next try <time datetime=\"",
        "Grace Hopper<span class=\"muted\">, merged by Ada Lovelace</span>",
        "<a href=\"https://git.example/deploys/pull/42\">pull request #42</a>",
        "2.1.1 is declared in development but not applied",
    ] {
        assert!(html.contains(said), "the agent page lacks {said}:\n{html}");
    }
    // The retry is said as time left, or due: not a time to the minute a person must compare.
    let next = html.split("; next try <time").nth(1).unwrap();
    let said = next.split('>').nth(1).unwrap().split('<').next().unwrap();
    assert!(said == "due" || said.starts_with("in "), "next try {said}");
    // The snapshot: only billing-agent has a failed apply; its badge says why and links the card.
    let (_, failed_only) = server.get("/v1/agents?state=failed", None);
    let agents = failed_only["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{failed_only}");
    assert_eq!(agents[0]["agent"], "billing-agent");
    let cell = &agents[0]["cells"][0];
    assert_eq!(
        (cell["sync"].as_str(), cell["attempts"].as_u64()),
        (Some("Failed"), Some(1))
    );
    assert!(cell["error_at"].as_str().is_some(), "{cell}");
    let (_, html) = server.get_text("/?state=failed", None);
    assert!(
        html.contains("<a class=\"badge sync-Failed\" href=\"/agents/billing-agent#env-development\" title=\"applying 2.1.1 failed; 2.1.0-rc.1 runs;"),
        "{html}"
    );
    let (status, _) = server.get_text("/?state=sideways", None);
    assert_eq!(status, 400);
    // As it was before the merge: the old version, no error, no controls, and the links keep it.
    let (status, past) = server.get_text(&format!("/agents/billing-agent?at={before_merge}"), None);
    assert_eq!(status, 200);
    assert!(past.contains("id=\"as-of\""), "{past}");
    assert!(
        past.contains("<p class=\"version big\" title=\"2.1.0-rc.1\">"),
        "{past}"
    );
    assert!(!past.contains("Last error"), "{past}");
    let (_, past_json) = server.get(&format!("/v1/agents/billing-agent?at={before_merge}"), None);
    assert_eq!(
        past_json["environments"][0]["record"]["version"],
        "2.1.0-rc.1"
    );
    assert!(past_json["environments"][0].get("observed").is_none());
    let (_, snapshot) = server.get_text(&format!("/?at={before_merge}"), None);
    assert!(
        snapshot.contains(&format!(
            "href=\"/agents/billing-agent?at={}\"",
            before_merge.replace(':', "%3A")
        )),
        "{snapshot}"
    );
    let (code, _) = server.stop();
    assert_eq!(code, 0);
}

/// A client whose request reaches the server: `GET /healthz` on a new connection from
/// 127.0.0.1, answered 200 within five seconds.
fn healthz_answers(address: &str) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(address) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: ledgit\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

/// Slow bodies from five addresses fill the connection table (a webhook route reads its body
/// before it can check the signature): a sixth address is answered throughout, because a
/// full server closes the connection furthest behind on its client, never the new one.
#[test]
fn a_flood_of_slow_bodies_never_turns_a_new_client_away() {
    let (repo, _keys, _key) = example();
    let server = Server::start(
        &repo,
        &["--max-connections", "64", "--quiet"],
        &[("LEDGIT_HOOK_SECRET", "hook secret of the flood test")],
    );
    let address = server.base.trim_start_matches("http://").to_string();
    let port = address.rsplit(':').next().unwrap().to_string();
    let flood = std::process::Command::new("python3")
        .arg(crate::common::project_root().join("bench/flood.py"))
        .args([
            "--port",
            &port,
            "--addresses",
            "5",
            "--per-address",
            "16",
            "--seconds",
            "12",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The table fills (5 x 16 > 64), then a client from another address asks, again and again.
    std::thread::sleep(Duration::from_secs(2));
    let mut failed = 0;
    let mut asked = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        asked += 1;
        if !healthz_answers(&address) {
            failed += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = flood.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let opened: usize = said
        .trim()
        .strip_prefix("opened ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(opened > 64, "the flood did not fill the table: {said}");
    assert_eq!(
        failed, 0,
        "{failed} of {asked} requests failed during the flood"
    );
    let (code, _) = server.stop();
    assert_eq!(code, 0);
}

/// `ledgit status --format json` and `/v1/agents` read the same computed snapshot: on the
/// 2,000-agent repository, with one environment reconciled, every record of the one is the
/// cell of the other, with the same version, commit, sync state and applied version, and the
/// columns are the same environments in the same order as the text table's.
#[test]
fn status_and_the_agents_api_agree_row_for_row_on_two_thousand_agents() {
    let repo = crate::common::team_repo();
    let store = tempfile::tempdir().unwrap();
    let state = store.path().join("state.sqlite");
    let state = state.to_str().unwrap();
    let applied = crate::common::ledgit_in(
        repo,
        &[
            "reconcile",
            "--exec",
            "true",
            "--environment",
            "staging",
            "--state",
            state,
        ],
    );
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let status = crate::common::ledgit_in(repo, &["status", "--format", "json", "--state", state]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let records = status.json();
    let records = records.as_array().unwrap();
    let server = Server::start_in(repo, &["--state", state, "--quiet"], &[]);
    let mut cells = Vec::new();
    let mut environments = serde_json::Value::Null;
    for page in 1.. {
        let (code, body) = server.get(&format!("/v1/agents?page={page}"), None);
        assert_eq!(code, 200, "{body}");
        environments = body["environments"].clone();
        for agent in body["agents"].as_array().unwrap() {
            for (i, cell) in agent["cells"].as_array().unwrap().iter().enumerate() {
                if !cell.is_null() {
                    cells.push((
                        agent["agent"].clone(),
                        environments[i].clone(),
                        cell.clone(),
                    ));
                }
            }
        }
        if page >= body["pages"].as_u64().unwrap() {
            break;
        }
    }
    assert_eq!(records.len(), cells.len());
    assert!(records.len() >= 6_000, "{}", records.len());
    // The records are sorted by agent and environment name, the cells by agent and column.
    let by_pair: std::collections::BTreeMap<(String, String), &serde_json::Value> = records
        .iter()
        .map(|r| {
            let key = (
                r["agent"].as_str().unwrap(),
                r["environment"].as_str().unwrap(),
            );
            ((key.0.to_string(), key.1.to_string()), r)
        })
        .collect();
    assert_eq!(by_pair.len(), records.len());
    for (agent, environment, cell) in &cells {
        let key = (
            agent.as_str().unwrap().to_string(),
            environment.as_str().unwrap().to_string(),
        );
        let record = by_pair[&key];
        for (r, c) in [
            ("version", "version"),
            ("updated_commit", "commit"),
            ("path", "path"),
            ("sync", "sync"),
        ] {
            assert_eq!(record[r], cell[c], "{agent} {environment}: {r}");
        }
        assert_eq!(
            record["applied_version"],
            cell.get("applied_version").cloned().unwrap_or_default(),
            "{agent} {environment}"
        );
    }
    // The text table's columns are the API's, in its order.
    let table = crate::common::ledgit_in(repo, &["status", "--state", state]);
    let header: Vec<String> = table
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(str::to_lowercase)
        .collect();
    let api: Vec<String> = environments
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(header, api);
    let (code, _) = server.stop();
    assert_eq!(code, 0);
}

/// A body announced larger than the route takes is refused at once (413), before a byte of it
/// is read: the client cannot hold the connection by promising a large body.
#[test]
fn a_body_announced_too_large_is_refused_unread() {
    use std::io::Write;
    let (repo, _keys, _key) = example();
    let server = Server::start(
        &repo,
        &["--quiet"],
        &[("LEDGIT_HOOK_SECRET", "hook secret of the size test")],
    );
    let address = server.base.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&address).unwrap();
    s.write_all(
        b"POST /v1/hooks/generic HTTP/1.1\r\nHost: ledgit\r\nContent-Type: application/json\r\nX-Signature: sha256=00\r\nContent-Length: 16777216\r\n\r\n{",
    )
    .unwrap();
    // Well under the body's own time limit (10 s): the answer does not wait for the body.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = [0u8; 64];
    let n = s
        .read(&mut answer)
        .expect("an answer before the body's time limit");
    let head = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let (code, _) = server.stop();
    assert_eq!(code, 0);
}

/// Environments a record names that ledgit.yaml does not declare are columns of `ledgit status`
/// in the order `/v1/agents` gives them (before, status ordered them by first appearance and
/// the page by name).
#[test]
fn undeclared_environments_are_ordered_alike_by_status_and_the_api() {
    let repo = TestRepo::new();
    repo.set("alpha", "zeta", "1.0.0");
    repo.set("beta", "eta", "1.0.0");
    repo.set("beta", "production", "1.0.0");
    repo.commit("Records in environments nobody declared", T0);
    let table = repo.ledgit(&["status"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let header: Vec<String> = table
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(str::to_lowercase)
        .collect();
    let server = Server::start(&repo, &["--quiet"], &[]);
    let (code, body) = server.get("/v1/agents", None);
    assert_eq!(code, 200, "{body}");
    let api: Vec<String> = body["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    assert_eq!(api, ["development", "staging", "production", "eta", "zeta"]);
    assert_eq!(header, api);
    let (code, _) = server.stop();
    assert_eq!(code, 0);
}
