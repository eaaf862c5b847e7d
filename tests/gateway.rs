//! A real gateway in front of `ledgit serve`: nginx with `auth_request`, configured as the
//! README shows, admits only production tokens of one agent and passes the agent's identity
//! to the upstream in headers (never the token). nginx comes from the system's packages
//! (`.ci/run` installs it); without it the test says so and passes, unless
//! `LEDGIT_TEST_NGINX=required`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{T0, TestRepo};

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
fn nginx_auth_request_admits_production_tokens_of_one_agent() {
    let Some(nginx) = nginx() else {
        assert_ne!(
            std::env::var("LEDGIT_TEST_NGINX").as_deref(),
            Ok("required"),
            "nginx is required (apt-get install nginx)"
        );
        eprintln!("skipped: nginx is not installed (apt-get install nginx)");
        return;
    };
    let repo = TestRepo::empty();
    assert_eq!(repo.ledgit(&["init", "--example", "."]).code, 0);
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k.pem");
    assert_eq!(
        repo.ledgit(&["keys", "generate", "--out", key.to_str().unwrap(), "--add"])
            .code,
        0
    );
    repo.commit("Add a key", T0 + 30 * common::DAY);
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
        Command::new(env!("CARGO_BIN_EXE_ledgit"))
            .current_dir(repo.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
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
        block = include_str!("../examples/nginx-auth-request.conf")
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
