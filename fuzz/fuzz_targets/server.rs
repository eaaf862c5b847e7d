//! The server's request handling, in process, over the example repository: any method, path,
//! query, headers and body. No request makes a handler fail (a panic is answered 500 by the
//! server's panic layer, so a 500 fails the target), every answer of a JSON route is JSON, no
//! page is larger than 100 KB, and no request without a session writes anything: the tracked
//! branch and the proposals' branches stay as they were.
//!
//! The input is an HTTP request in a loose text form: `METHOD PATH?QUERY` on the first line,
//! `name: value` header lines, an empty line, the body. Inputs that do not form a request are
//! skipped.
#![no_main]

use std::sync::OnceLock;

use ledgit::server;
use ledgit::server::deps::{axum, tokio, tower::ServiceExt};
use libfuzzer_sys::fuzz_target;

struct World {
    _dir: tempfile::TempDir,
    repo: std::path::PathBuf,
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    refs: Vec<(String, git2::Oid)>,
}

fn refs(repo: &std::path::Path) -> Vec<(String, git2::Oid)> {
    let git = git2::Repository::open(repo).unwrap();
    let mut out: Vec<(String, git2::Oid)> = git
        .references()
        .unwrap()
        .flatten()
        .filter_map(|r| Some((r.name().ok()?.to_string(), r.target()?)))
        .collect();
    out.sort();
    out
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("deployments");
        ledgit::git::init::init(&repo, true, 1_800_000_000).unwrap();
        let branch = ledgit::git::repo::Repo::open(&repo)
            .unwrap()
            .current_branch()
            .unwrap();
        let options = server::Options {
            repo: repo.clone(),
            listen: "127.0.0.1:0".parse().unwrap(),
            tracked: format!("refs/heads/{branch}"),
            branch,
            fetch: None,
            interval: std::time::Duration::from_secs(3600),
            audience: None,
            public_url: "http://ledgit.example".into(),
            hook_secret: Some(b"hook".to_vec()),
            gitlab_token: Some(b"gitlab".to_vec()),
            introspection_client_id: None,
            introspection_secret: Some(b"introspection".to_vec()),
            quiet: true,
            proposals: true,
            ui_secret: Some(b"operator".to_vec()),
            oidc: None,
            auth_proxy: None,
            trusted_proxies: Vec::new(),
            max_connections: ledgit::server::MAX_CONNECTIONS,
            push: None,
            pull_request_url: None,
            state: None,
            log: Default::default(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let router = runtime.block_on(server::app(options)).router;
        World {
            refs: refs(&repo),
            _dir: dir,
            repo,
            runtime,
            router,
        }
    })
}

/// The request the input describes, if it describes one.
fn request(data: &[u8]) -> Option<axum::http::Request<axum::body::Body>> {
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or((data, &[][..]), |i| (&data[..i], &data[i + 2..]));
    let head = std::str::from_utf8(split.0).ok()?;
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    let mut builder = axum::http::Request::builder()
        .method(axum::http::Method::from_bytes(method.as_bytes()).ok()?)
        .uri(target);
    for line in lines.take(16) {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(name.trim(), value.trim());
    }
    builder.body(axum::body::Body::from(split.1.to_vec())).ok()
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let Some(request) = request(data) else {
        return;
    };
    let path = request.uri().path().to_string();
    let head = request.method() == axum::http::Method::HEAD;
    let (status, content_type, body) = w.runtime.block_on(async {
        let response = w.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let gzip = response
            .headers()
            .get(axum::http::header::CONTENT_ENCODING)
            .is_some();
        let body = axum::body::to_bytes(response.into_body(), 4 << 20)
            .await
            .unwrap();
        (status, content_type, if gzip { None } else { Some(body) })
    });
    assert_ne!(status.as_u16(), 500, "{path}: a handler failed");
    if let Some(body) = body {
        // A HEAD answer has the headers of its GET and no body (RFC 9110, 9.3.2); so do 204
        // and 304.
        if head || status.as_u16() == 204 || status.as_u16() == 304 {
            assert!(body.is_empty(), "{path}: a {status} answer with a body");
        } else if content_type == "application/json" {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
                "{path}: not JSON"
            );
        }
        if content_type.starts_with("text/html") {
            assert!(body.len() < 100 * 1024, "{path}: a page of {} bytes", body.len());
        }
    }
    assert_eq!(refs(&w.repo), w.refs, "a request wrote a ref");
});
