//! A real gateway in front of `ledgit serve`: nginx with `auth_request`, configured as the
//! README shows, admits only production tokens of one agent and passes the agent's identity
//! to the upstream in headers (never the token); Caddy's `forward_auth` does the same; promtool
//! reads `/metrics`; authlib validates the RFC 8414 metadata and introspects with HTTP Basic
//! client authentication. Each tool comes from the system's packages or PyPI (`.ci/run`
//! installs them); the tests are ignored by a plain `cargo test`, which lists what they need.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{T0, TestRepo};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx() -> Option<String> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_string)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An upstream that answers every request with the request's headers as its body.
fn echo_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                head.len()
            );
        }
    });
    port
}

/// The request's status and body, through the gateway.
fn through(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut request = agent.get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        request = request.header("Authorization", &format!("Bearer {t}"));
    }
    let Ok(response) = request.call() else {
        return (0, String::new());
    };
    let status = response.status().as_u16();
    let mut body = String::new();
    let _ = response.into_body().into_reader().read_to_string(&mut body);
    (status, body)
}

#[test]
#[ignore = "needs nginx (apt-get install nginx); run with --include-ignored"]
fn nginx_auth_request_admits_production_tokens_of_one_agent() {
    let nginx = crate::common::needs(nginx(), "nginx (apt-get install nginx)");
    let repo = TestRepo::empty();
    assert_eq!(repo.ledgit(&["init", "--example", "."]).code, 0);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k.pem");
    assert_eq!(
        repo.ledgit(&["keys", "generate", "--out", key.to_str().unwrap(), "--add"])
            .code,
        0
    );
    repo.commit("Add a key", T0 + 30 * crate::common::DAY);
    let issue = |agent: &str, env: &str| {
        let run = repo.ledgit(&["token", "issue", agent, env, "--key", key.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout.trim().to_string()
    };
    let production = issue("support-bot", "production");
    let staging = issue("support-bot", "staging");
    let other_agent = issue("billing-agent", "production");

    let ledgit_port = free_port();
    let _server = Killed(
        crate::common::ledgit_command()
            .current_dir(repo.path())
            .args([
                "serve",
                "--quiet",
                "--listen",
                &format!("127.0.0.1:{ledgit_port}"),
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let upstream = echo_upstream();
    let gateway_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let config = format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream ledgit {{ server 127.0.0.1:{ledgit_port}; }}
    upstream agent_tools {{ server 127.0.0.1:{upstream}; }}
    server {{
        listen 127.0.0.1:{gateway_port};
{block}
    }}
}}
"#,
        block = include_str!("../../examples/nginx-auth-request.conf")
    );
    std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
    let _nginx = Killed(
        Command::new(&nginx)
            .args(["-c", &format!("{d}/nginx.conf"), "-p", &d.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Both up.
    let start = Instant::now();
    while matches!(through(gateway_port, "/tools/ping", None).0, 0 | 500 | 502) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the gateway did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let (status, upstream_saw) = through(gateway_port, "/tools/search?q=1", Some(&production));
    assert_eq!(status, 200, "{upstream_saw}");
    assert!(
        upstream_saw.contains("x-agent: support-bot\r\n"),
        "{upstream_saw}"
    );
    assert!(
        upstream_saw.contains("x-agent-environment: production\r\n"),
        "{upstream_saw}"
    );
    assert!(upstream_saw.contains("x-agent-version: "), "{upstream_saw}");
    assert!(
        upstream_saw.contains("x-agent-token-id: "),
        "{upstream_saw}"
    );
    assert!(
        !upstream_saw.contains("authorization"),
        "the token went upstream: {upstream_saw}"
    );
    assert!(!upstream_saw.contains(&production.to_ascii_lowercase()));
    for (token, expected) in [
        (Some(staging.as_str()), 403),
        (Some(other_agent.as_str()), 403),
        (Some("not.a.token"), 401),
        (None, 401),
    ] {
        let (status, body) = through(gateway_port, "/tools/search", token);
        assert_eq!(status, expected, "{token:?}: {body}");
        assert!(!body.contains("x-agent"), "{token:?} reached the upstream");
    }
}

/// `init --example` with a key, and tokens issued; the repository and the key's folder.
fn example_with_key() -> (TestRepo, tempfile::TempDir) {
    let repo = TestRepo::empty();
    assert_eq!(repo.ledgit(&["init", "--example", "."]).code, 0);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k.pem");
    assert_eq!(
        repo.ledgit(&["keys", "generate", "--out", key.to_str().unwrap(), "--add"])
            .code,
        0
    );
    repo.commit("Add a key", T0 + 30 * crate::common::DAY);
    (repo, keys)
}

fn issue(repo: &TestRepo, keys: &tempfile::TempDir, agent: &str, env: &str) -> String {
    let key = keys.path().join("k.pem");
    let run = repo.ledgit(&["token", "issue", agent, env, "--key", key.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout.trim().to_string()
}

#[test]
#[ignore = "needs Caddy (apt-get install caddy); run with --include-ignored"]
fn caddy_forward_auth_admits_production_tokens_of_one_agent() {
    let caddy = crate::common::needs(
        crate::common::program("caddy", &["/usr/bin/caddy"]),
        "Caddy (apt-get install caddy)",
    );
    let (repo, keys) = example_with_key();
    let production = issue(&repo, &keys, "support-bot", "production");
    let staging = issue(&repo, &keys, "support-bot", "staging");
    let server = crate::common::server::Server::start(&repo, &["--quiet"], &[]);
    let ledgit = server.base.trim_start_matches("http://").to_string();
    let upstream = echo_upstream();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let block = include_str!("../../examples/caddy-forward-auth.Caddyfile")
        .replace("127.0.0.1:8080", &ledgit)
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{upstream}"));
    let config = format!(
        "{{\n\tadmin off\n\tauto_https off\n}}\nhttp://127.0.0.1:{port} {{\n{block}\n\trespond 404\n}}\n"
    );
    std::fs::write(dir.path().join("Caddyfile"), config).unwrap();
    let _caddy = Killed(
        Command::new(caddy)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(dir.path().join("Caddyfile"))
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while through(port, "/tools/ping", None).0 == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "Caddy did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, upstream_saw) = through(port, "/tools/search?q=1", Some(&production));
    assert_eq!(status, 200, "{upstream_saw}");
    assert!(
        upstream_saw.contains("x-ledgit-agent: support-bot\r\n"),
        "{upstream_saw}"
    );
    assert!(
        upstream_saw.contains("x-ledgit-environment: production\r\n"),
        "{upstream_saw}"
    );
    assert!(!upstream_saw.contains("authorization"), "{upstream_saw}");
    for (token, expected) in [(Some(staging.as_str()), 403), (None, 401)] {
        let (status, body) = through(port, "/tools/search", token);
        assert_eq!(status, expected, "{token:?}: {body}");
        assert!(
            !body.contains("x-ledgit-agent"),
            "{token:?} reached the upstream"
        );
    }
}

#[test]
#[ignore = "needs nginx (apt-get install nginx) and openssl; run with --include-ignored"]
fn the_manuals_tls_nginx_block_passes_nginx_t() {
    let nginx = crate::common::needs(nginx(), "nginx (apt-get install nginx)");
    let chapter = crate::common::project_root().join("docs/src/server.md");
    let chapter = std::fs::read_to_string(&chapter).unwrap();
    let block = chapter
        .split("```nginx\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the manual's server chapter has an nginx block");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=gateway.example"])
        .args([
            "-keyout",
            &format!("{d}/gateway.key"),
            "-out",
            &format!("{d}/gateway.pem"),
        ])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(block.contains("ssl_certificate "), "{block}");
    let block = block
        .replace("/etc/ssl/certs/gateway.pem", &format!("{d}/gateway.pem"))
        .replace("/etc/ssl/private/gateway.key", &format!("{d}/gateway.key"))
        .replace(
            "listen 443 ssl;",
            &format!("listen 127.0.0.1:{} ssl;", free_port()),
        );
    let config = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n{block}}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), config).unwrap();
    let test = Command::new(nginx)
        .args(["-t", "-c", &format!("{d}/nginx.conf"), "-p", &d])
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
}

#[test]
#[ignore = "needs promtool (apt-get install prometheus); run with --include-ignored"]
fn promtool_accepts_the_metrics() {
    let promtool = crate::common::needs(
        crate::common::program("promtool", &["/usr/bin/promtool"]),
        "promtool (apt-get install prometheus)",
    );
    let (repo, keys) = example_with_key();
    let token = issue(&repo, &keys, "support-bot", "production");
    let server = crate::common::server::Server::start(&repo, &["--quiet"], &[]);
    // Some traffic first, so that every family has a series.
    assert_eq!(server.get("/v1/whoami", Some(&token)).0, 200);
    assert_eq!(server.get("/v1/whoami", Some("not.a.token")).0, 401);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut body = String::new();
    agent
        .get(format!("{}/metrics", server.base))
        .call()
        .unwrap()
        .into_body()
        .into_reader()
        .read_to_string(&mut body)
        .unwrap();
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("ledgit_build_info{version=\""), "{body}");
}

#[test]
#[ignore = "needs authlib (pip install authlib requests into bench/.venv); run with --include-ignored"]
fn authlib_validates_the_metadata_and_introspects_with_http_basic() {
    let python = crate::common::needs(
        crate::common::venv_python(),
        "authlib (pip install authlib requests into bench/.venv)",
    );
    let (repo, keys) = example_with_key();
    // The issuer, where the server is reached: tokens carry it, and the metadata names it.
    let config = repo.read("ledgit.yaml");
    repo.write(
        "ledgit.yaml",
        format!("{config}issuer: https://ledgit.example\n"),
    );
    repo.commit("Name the issuer", T0 + 31 * crate::common::DAY);
    let token = issue(&repo, &keys, "support-bot", "production");
    let secret = "introspection-secret-for-authlib";
    let server = crate::common::server::Server::start(
        &repo,
        &["--quiet", "--public-url", "https://ledgit.example"],
        &[
            ("LEDGIT_INTROSPECTION_SECRET", secret),
            ("LEDGIT_INTROSPECTION_CLIENT_ID", "gateway"),
        ],
    );
    let script = r#"
import json, sys, urllib.request
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.integrations.requests_client import OAuth2Session
base, token, secret = sys.argv[1:4]
doc = json.load(urllib.request.urlopen(base + "/.well-known/oauth-authorization-server"))
AuthorizationServerMetadata(doc).validate()
session = OAuth2Session(client_id="gateway", client_secret=secret)
answer = session.introspect_token(base + "/oauth2/introspect", token=token)
wrong = OAuth2Session(client_id="gateway", client_secret="not-the-secret").introspect_token(
    base + "/oauth2/introspect", token=token)
print(json.dumps({"issuer": doc["issuer"], "status": answer.status_code,
                  "body": answer.json(), "wrong": wrong.status_code}))
"#;
    let out = Command::new(python)
        .args(["-c", script, &server.base, &token, secret])
        .env("AUTHLIB_INSECURE_TRANSPORT", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["issuer"], "https://ledgit.example");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"]["active"], true, "{v}");
    assert_eq!(v["body"]["iss"], v["issuer"], "{v}");
    assert_eq!(v["body"]["agent"], "support-bot");
    assert_eq!(v["wrong"], 401);
}

/// A request's status and body, with `curl` from `source` (a loopback address of its own, so
/// that the server sees another client than the proxy).
fn curl(source: &str, url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "--interface",
            source,
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
#[ignore = "needs Caddy (apt-get install caddy); run with --include-ignored"]
fn a_proxy_signs_people_in_and_its_header_is_believed_only_from_it() {
    let caddy = crate::common::needs(
        crate::common::program("caddy", &["/usr/bin/caddy"]),
        "Caddy (apt-get install caddy)",
    );
    let repo = TestRepo::empty();
    assert_eq!(repo.ledgit(&["init", "--example", "."]).code, 0);
    let tip = repo.git(&["rev-parse", "HEAD"]);
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let server = crate::common::server::Server::start(
        &repo,
        &[
            "--proposals",
            "--auth-proxy-header",
            "X-Forwarded-Email",
            "--trusted-proxy",
            "127.0.0.1/32",
            "--public-url",
            &public,
        ],
        &[],
    );
    let ledgit = server.base.trim_start_matches("http://").to_string();
    let hash = Command::new(&caddy)
        .args(["hash-password", "--plaintext", "a password of ada's"])
        .output()
        .unwrap();
    let hash = String::from_utf8(hash.stdout).unwrap().trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let block = include_str!("../../examples/caddy-auth-proxy.Caddyfile")
        .replace("127.0.0.1:8080", &ledgit)
        .replace("HASH", &hash);
    let config =
        format!("{{\n\tadmin off\n\tauto_https off\n}}\nhttp://127.0.0.1:{port} {{\n{block}\n}}\n");
    std::fs::write(dir.path().join("Caddyfile"), config).unwrap();
    let _caddy = Killed(
        Command::new(caddy)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(dir.path().join("Caddyfile"))
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ada = "ada@example.com:a password of ada's";
    let start = Instant::now();
    while curl("127.0.0.1", &format!("{public}/healthz"), &["-u", ada]).0 != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "Caddy did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Through the proxy, signed in as the person the proxy names, even if the client claims
    // another.
    let (status, page) = curl(
        "127.0.0.1",
        &format!("{public}/agents/billing-agent/propose?action=promote&environment=staging"),
        &["-u", ada, "-H", "X-Forwarded-Email: mallory@example.com"],
    );
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"id="who">ada@example.com<"#), "{page}");
    let field = |name: &str| {
        let at = page.find(&format!(r#"name="{name}" value=""#)).unwrap();
        let rest = &page[at + name.len() + 15..];
        rest[..rest.find('"').unwrap()].to_string()
    };
    let form = serde_urlencoded::to_string([
        ("csrf", field("csrf")),
        ("action", "promote".into()),
        ("environment", "staging".into()),
        ("expect", field("expect")),
    ])
    .unwrap();
    // Without the proxy's sign-in, the proxy itself refuses.
    assert_eq!(curl("127.0.0.1", &format!("{public}/"), &[]).0, 401);
    // Straight to ledgit from another address, the header is not believed: no session, no
    // controls, and the POST is refused.
    let direct = format!("{}/agents/billing-agent/propose", server.base);
    let (status, page) = curl(
        "127.0.0.2",
        &format!("{direct}?action=promote&environment=staging"),
        &["-H", "X-Forwarded-Email: ada@example.com"],
    );
    assert_eq!(status, 403, "{page}");
    let (status, _) = curl(
        "127.0.0.2",
        &direct,
        &[
            "-H",
            "X-Forwarded-Email: ada@example.com",
            "-H",
            &format!("Origin: {public}"),
            "--data",
            &form,
        ],
    );
    assert_eq!(status, 403);
    assert!(repo.git(&["branch", "--list", "ledgit/*"]).is_empty());
    // Through the proxy, the proposal is made and authored by the person.
    let (status, created) = curl(
        "127.0.0.1",
        &format!("{public}/agents/billing-agent/propose"),
        &[
            "-u",
            ada,
            "-H",
            &format!("Origin: {public}"),
            "--data",
            &form,
        ],
    );
    // Answered at once with a redirect to the proposal's page; the branch exists already.
    assert_eq!(status, 303, "{created}");
    let branch = repo.git(&["branch", "--list", "--format=%(refname:short)", "ledgit/*"]);
    assert_eq!(repo.git(&["rev-parse", &format!("{branch}^")]), tip);
    assert_eq!(
        repo.git(&["log", "-1", "--format=%an <%ae>", &branch]),
        "ada <ada@example.com>"
    );
}
