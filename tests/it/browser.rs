//! The web page in a real browser: Debian's headless Chromium, driven by Playwright
//! (`tests/browser/check.mjs`), over `ledgit serve --proposals` on `ledgit init --example`.
//! The script checks what a person sees (no console error, light and dark, the example's
//! versions, a lane per environment, the keyboard, axe-core, no control without the secret, a
//! POST without the CSRF token refused) and proposes a promotion from the page; this test then
//! checks with git that the proposal is a branch one line away from the tip, and that the tip
//! and the work tree did not move. Screenshots are saved under `target/tmp/screenshots/`.
//!
//! It needs Chromium (`apt-get install chromium`) and the script's packages (`npm ci --prefix
//! tests/browser`), which `.ci/run` installs; a plain `cargo test` lists it as ignored with
//! what it needs, and `cargo test -- --include-ignored` fails without them.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::TestRepo;
use crate::common::server::Server;

const SECRET: &str = "correct horse battery staple";

fn browser_ready() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!("{chromium} is missing (apt-get install chromium)"));
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Err("the script's packages are missing (npm ci --prefix tests/browser)".into());
    }
    Ok(dir)
}

#[test]
#[ignore = "needs Chromium and Playwright (apt-get install chromium; npm ci --prefix tests/browser); run with --include-ignored"]
fn a_person_reads_the_page_and_proposes_a_promotion_in_chromium() {
    let dir = browser_ready()
        .unwrap_or_else(|why| panic!("this test needs {why}; `bash .ci/run` installs it"));
    let repo = TestRepo::empty();
    let init = repo.ledgit(&["init", "--example", "."]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    let tip = repo.git(&["rev-parse", "HEAD"]);
    // The reconciler applies everything but billing-agent in development, which fails.
    let reconcile = repo.ledgit(&[
        "reconcile",
        "--exec",
        "sh -c 'if [ \"$LEDGIT_AGENT/$LEDGIT_ENVIRONMENT\" = billing-agent/development ]; then echo no capacity left in development >&2; exit 3; fi'",
    ]);
    assert_ne!(reconcile.code, 0, "{}", reconcile.stderr);
    let server = Server::start(&repo, &["--proposals"], &[("LEDGIT_UI_SECRET", SECRET)]);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let run = Command::new("node")
        .arg(dir.join("check.mjs"))
        .arg(&server.base)
        .arg(&shots)
        .arg(SECRET)
        .current_dir(&dir)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the browser check failed: {stderr}\n{stdout}"
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["pages"].as_array().unwrap().len(), 6);
    assert!(
        summary["axe"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["serious_or_critical"] == 0 && p["passes"].as_u64().unwrap() > 10),
        "{summary}"
    );
    for name in ["snapshot", "agent", "deployments"] {
        for scheme in ["light", "dark"] {
            let png = shots.join(format!("{name}-{scheme}.png"));
            assert!(
                std::fs::metadata(&png).unwrap().len() > 10_000,
                "{}",
                png.display()
            );
        }
    }
    // The proposal: a branch with one commit on the tip, one line changed.
    let branch = summary["branch"].as_str().unwrap();
    assert!(
        branch.starts_with("ledgit/promote-billing-agent-staging-"),
        "{branch}"
    );
    assert_eq!(repo.git(&["rev-parse", &format!("{branch}^")]), tip);
    let numstat = repo.git(&["diff", "--numstat", &tip, branch]);
    assert_eq!(numstat, "1\t1\tdeployments/billing-agent/staging.yaml");
    // The tracked branch and the work tree did not move.
    assert_eq!(repo.git(&["rev-parse", "HEAD"]), tip);
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    let (code, log) = server.stop();
    assert_eq!(code, 0);
    assert!(!log.contains(SECRET), "the log holds the operator secret");
    assert!(
        !log.contains("ledgit_session="),
        "the log holds a session cookie"
    );
}

/// A free port on the loopback address (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process ended when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs Chromium, Playwright and oidc-provider (apt-get install chromium; npm ci --prefix tests/browser); run with --include-ignored"]
fn a_person_signs_in_with_openid_connect_and_authors_the_proposal() {
    let dir = browser_ready()
        .unwrap_or_else(|why| panic!("this test needs {why}; `bash .ci/run` installs it"));
    let repo = TestRepo::empty();
    let init = repo.ledgit(&["init", "--example", "."]);
    assert_eq!(init.code, 0, "{}", init.stderr);
    let tip = repo.git(&["rev-parse", "HEAD"]);
    let (idp_port, port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let client_secret = "a client secret of the provider's";
    let mut idp = Command::new("node")
        .arg(dir.join("provider.mjs"))
        .arg(idp_port.to_string())
        .arg("ledgit-test")
        .arg(client_secret)
        .arg(format!("{base}/signin/oidc/callback"))
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("node runs");
    let mut ready = String::new();
    let mut out = std::io::BufReader::new(idp.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut ready).unwrap();
    // Its notices go on coming to stdout: read on, or it dies writing them.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let _idp = Killed(idp);
    let issuer = format!("http://127.0.0.1:{idp_port}");
    assert_eq!(ready.trim(), issuer, "the provider did not start");
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(
        &repo,
        &[
            "--listen",
            &listen,
            "--proposals",
            "--oidc-issuer",
            &issuer,
            "--oidc-allowed-group",
            "platform",
        ],
        &[
            ("LEDGIT_OIDC_CLIENT_ID", "ledgit-test"),
            ("LEDGIT_OIDC_CLIENT_SECRET", client_secret),
        ],
    );
    assert_eq!(server.base, base);
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let run = Command::new("node")
        .arg(dir.join("signin.mjs"))
        .arg(&server.base)
        .arg(&shots)
        .current_dir(&dir)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the sign-in failed: {}\n{stdout}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        summary["who"], "Ada Lovelace <ada@example.com>",
        "{summary}"
    );
    assert!(
        summary["refused"]
            .as_str()
            .unwrap()
            .contains("mallory@elsewhere.test may not sign in here"),
        "{summary}"
    );
    // The proposal is authored by the person, committed by the server.
    let branch = summary["branch"].as_str().unwrap();
    assert_eq!(repo.git(&["rev-parse", &format!("{branch}^")]), tip);
    assert_eq!(
        repo.git(&["log", "-1", "--format=%an <%ae>", branch]),
        "Ada Lovelace <ada@example.com>"
    );
    assert_ne!(
        repo.git(&["log", "-1", "--format=%ce", branch]),
        "ada@example.com"
    );
    let (code, log) = server.stop();
    assert_eq!(code, 0);
    assert!(
        log.contains("signed in: Ada Lovelace <ada@example.com>"),
        "{log}"
    );
    assert!(
        !log.contains(client_secret),
        "the log holds the client secret"
    );
    assert!(
        !log.contains("ledgit_oidc="),
        "the log holds the flow cookie"
    );
}

/// Runs `pages.mjs` over `base` (each `name=path`); its summary.
fn read_pages(dir: &Path, base: &str, pages: &[&str]) -> serde_json::Value {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let run = Command::new("node")
        .arg(dir.join("pages.mjs"))
        .arg(base)
        .arg(&shots)
        .args(pages)
        .current_dir(dir)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the pages failed in the browser: {}\n{stdout}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(
        summary["pages"].as_array().unwrap().len(),
        pages.len() * 4,
        "{summary}"
    );
    summary
}

#[test]
#[ignore = "needs Chromium and Playwright (apt-get install chromium; npm ci --prefix tests/browser); run with --include-ignored"]
fn two_thousand_agents_read_well_in_chromium_light_dark_and_on_a_phone() {
    let dir = browser_ready()
        .unwrap_or_else(|why| panic!("this test needs {why}; `bash .ci/run` installs it"));
    let repo = crate::common::team_repo();
    let server = Server::start_in(repo, &[], &[]);
    let (status, overview) = server.get("/v1/agents", None);
    assert_eq!(status, 200);
    assert_eq!(overview["total_agents"], 2000);
    let summary = read_pages(
        &dir,
        &server.base,
        &[
            "team-snapshot=/",
            "team-page-3-by-change=/?sort=changed&page=3",
            "team-drift=/?state=drift&q=AGENT-01",
            "team-agent=/agents/agent-0001",
            "team-tokens=/agents/agent-0001/deployments",
        ],
    );
    for p in summary["pages"].as_array().unwrap() {
        assert!(p["bytes"].as_u64().unwrap() < 100_000, "{p}");
    }
    let (code, _) = server.stop();
    assert_eq!(code, 0);
}
