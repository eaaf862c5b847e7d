//! In-process tests of every route and every error of `ledgit::server` (its router, driven
//! without sockets), on a real repository (the example history plus a key), with each JSON
//! answer checked against the OpenAPI document.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

use ledgit::server::{Served, Shared};
use ledgit::token::{IssueOptions, SigningKey};

use crate::common::example::*;

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

async fn call(shared: &Arc<Shared>, request: Request<Body>) -> Answer {
    let method = request.method().as_str().to_lowercase();
    let response = ledgit::server::router(shared.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let route = response
        .extensions()
        .get::<ledgit::server::RouteName>()
        .map(|r| r.0);
    let mut body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|e| e == "gzip")
    {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)
            .unwrap();
        body = plain;
    }
    let answer = Answer {
        status,
        headers,
        body,
    };
    conforms(&method, route, &answer);
    answer
}

async fn get(shared: &Arc<Shared>, uri: &str) -> Answer {
    call(shared, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn with_token(shared: &Arc<Shared>, uri: &str, token: &str) -> Answer {
    call(
        shared,
        Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// Every answer of a documented route has a documented status, and its JSON body validates
/// against the documented schema.
fn conforms(method: &str, route: Option<&str>, answer: &Answer) {
    let Some(template) = route else {
        return;
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&ledgit::server::openapi_json("http://ledgit.example")).unwrap();
    if answer.status == StatusCode::METHOD_NOT_ALLOWED {
        // Methods a route does not answer are not in the document; the answer is an Error.
        assert!(doc["paths"][template].get(method).is_none());
        assert!(
            serde_json::from_slice::<serde_json::Value>(&answer.body).unwrap()["error"].is_string()
        );
        return;
    }
    let Some(operation) = doc["paths"][template].get(method).or_else(|| {
        // /v1/authz answers every method as it answers GET.
        template
            .starts_with("/v1/authz")
            .then(|| &doc["paths"][template]["get"])
    }) else {
        panic!("{method} {template} is not in the OpenAPI document");
    };
    let status = answer.status.as_str();
    let mut response = operation["responses"]
        .get(status)
        .unwrap_or_else(|| panic!("{method} {template}: status {status} is not documented"));
    if let Some(r) = response["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/responses/");
        response = &doc["components"]["responses"][name];
    }
    let Some(schema) = response["content"]["application/json"].get("schema") else {
        return;
    };
    let mut root = doc.clone();
    root["allOf"] = serde_json::json!([schema]);
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|_| panic!("{method} {template} {status}: the body is not JSON"));
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {template} {status} does not match the document: {errors:?}\n{body}"
    );
}

#[tokio::test]
async fn whoami_answers_with_the_version_at_the_tip() {
    let f = Fixture::new();
    let shared = f.shared();
    let token = f.production_token(&shared);
    let a = with_token(&shared, "/v1/whoami", &token).await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["agent"], "support-bot");
    assert_eq!(v["environment"], "production");
    assert_eq!(v["token"]["key"], "k1");
    assert_eq!(a.header("cache-control"), "no-store");
    let before = v["version"].as_str().unwrap().to_string();
    // The version changes at the tip: the same token now learns the new one.
    let path = "deployments/support-bot/production.yaml";
    let text = std::fs::read_to_string(f.path().join(path)).unwrap();
    let edited = ledgit::model::edit::set_version(path, &text, "9.9.9").unwrap();
    f.write(path, &edited);
    f.commit("production 9.9.9", NOW + 120);
    f.reload(&shared, None);
    let v = with_token(&shared, "/v1/whoami", &token).await.json();
    assert_ne!(before, "9.9.9");
    assert_eq!(v["version"], "9.9.9");
    assert_eq!(v["since"], ledgit::support::when::rfc3339(NOW + 120));
}

/// Every reason a token fails, with the same code `token verify` gives, as a 401 with an RFC
/// 6750 challenge.
#[tokio::test]
async fn every_invalid_token_is_a_401_with_its_reason() {
    let f = Fixture::new();
    let shared = f.shared();
    let good = f.production_token(&shared);
    let served = shared.served.load_full().unwrap();
    let claims = served
        .verifier
        .verify(&good, chrono::Utc::now().timestamp())
        .unwrap()
        .claims;
    let header = |alg: &str, kid: &str| ledgit::token::Header {
        alg: alg.into(),
        typ: Some("JWT".into()),
        kid: kid.into(),
    };
    let (other, _) = SigningKey::generate().unwrap();
    let mut expired = claims.clone();
    expired.exp = Some(1_000);
    expired.iat = 500;
    let mut future = claims.clone();
    future.iat = chrono::Utc::now().timestamp() + 3600;
    let (h, c, _) = {
        let mut parts = good.split('.');
        (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        )
    };
    let none = format!(
        "{}.{c}.",
        base64_url(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#)
    );
    let cases: Vec<(String, &str)> = vec![
        ("not-a-token".into(), "malformed"),
        ("a".repeat(9000), "malformed"),
        (none.clone(), "malformed"),
        (format!("{none}x"), "wrong_algorithm"),
        (
            format!("{h}.{c}.{}", base64_url(&[7u8; 64])),
            "bad_signature",
        ),
        (
            ledgit::token::sign(&other, &header("EdDSA", "k1"), &claims),
            "bad_signature",
        ),
        (
            ledgit::token::sign(&f.key, &header("HS256", "k1"), &claims),
            "wrong_algorithm",
        ),
        (
            ledgit::token::sign(&f.key, &header("EdDSA", "k9"), &claims),
            "unknown_key",
        ),
        (
            ledgit::token::sign(&f.key, &header("EdDSA", "k1"), &expired),
            "expired",
        ),
        (
            ledgit::token::sign(&f.key, &header("EdDSA", "k1"), &future),
            "not_yet_valid",
        ),
    ];
    for (token, code) in &cases {
        let a = with_token(&shared, "/v1/whoami", token).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{code}");
        assert_eq!(a.json()["code"], *code, "{}", a.json());
        let challenge = a.header("www-authenticate");
        assert!(
            challenge.starts_with("Bearer realm=\"ledgit\", error=\"invalid_token\""),
            "{challenge}"
        );
        // The same answer as the library's verifier (what `token verify` prints).
        let direct = served
            .verifier
            .verify(token, chrono::Utc::now().timestamp());
        assert_eq!(direct.unwrap_err().reason.code(), *code);
    }
    let missing = get(&shared, "/v1/whoami").await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.header("www-authenticate"),
        "Bearer realm=\"ledgit\""
    );
    assert_eq!(missing.json()["code"], "missing");
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Revocation, removal and re-creation at the tip invalidate a token at the next refresh.
#[tokio::test]
async fn tokens_follow_their_record_at_the_tip() {
    let f = Fixture::new();
    let shared = f.shared();
    let options = IssueOptions::default();
    let revoked = f.issue(&shared, "support-bot", "production", &options);
    let removed = f.issue(&shared, "billing-agent", "staging", &options);
    let recreated = f.issue(&shared, "support-bot", "staging", &options);
    let jti = shared
        .served
        .load_full()
        .unwrap()
        .verifier
        .verify(&revoked, chrono::Utc::now().timestamp())
        .unwrap()
        .claims
        .jti;
    f.write(
        "revocations.yaml",
        &format!("apiVersion: ledgit/v1\nkind: Revocations\nrevoked:\n  - jti: {jti}\n"),
    );
    std::fs::remove_file(f.path().join("deployments/billing-agent/staging.yaml")).unwrap();
    let staging = f.path().join("deployments/support-bot/staging.yaml");
    let text = std::fs::read_to_string(&staging).unwrap();
    std::fs::remove_file(&staging).unwrap();
    f.commit("revoke, remove, delete", NOW + 120);
    std::fs::write(&staging, text).unwrap();
    f.commit("re-create", NOW + 180);
    f.reload(&shared, None);
    for (token, code) in [
        (&revoked, "revoked"),
        (&removed, "record_removed"),
        (&recreated, "stale_generation"),
    ] {
        let a = with_token(&shared, "/v1/whoami", token).await;
        assert_eq!(
            (a.status, a.json()["code"].as_str().unwrap()),
            (StatusCode::UNAUTHORIZED, code)
        );
    }
}

#[tokio::test]
async fn a_server_with_an_audience_refuses_tokens_for_others() {
    let f = Fixture::new();
    let mut options = f.options();
    options.audience = Some("gateway".into());
    let shared = f.shared_with(options);
    let aimed = f.issue(
        &shared,
        "support-bot",
        "production",
        &IssueOptions {
            ttl: Some(3600),
            audience: Some("gateway".into()),
            issuer: None,
        },
    );
    let plain = f.production_token(&shared);
    assert_eq!(
        with_token(&shared, "/v1/whoami", &aimed).await.status,
        StatusCode::OK
    );
    let a = with_token(&shared, "/v1/whoami", &plain).await;
    assert_eq!(a.json()["code"], "wrong_audience");
}

async fn introspect(shared: &Arc<Shared>, secret: Option<&str>, body: &str) -> Answer {
    let mut request = Request::post("/oauth2/introspect")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(s) = secret {
        request = request.header(header::AUTHORIZATION, format!("Bearer {s}"));
    }
    call(shared, request.body(Body::from(body.to_string())).unwrap()).await
}

#[tokio::test]
async fn introspection_authenticates_the_caller_and_answers_rfc_7662() {
    let f = Fixture::new();
    let shared = f.shared();
    let token = f.production_token(&shared);
    let body = format!("token={token}&token_type_hint=access_token");
    let a = introspect(&shared, Some(INTROSPECTION_SECRET), &body).await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["active"], true);
    assert_eq!(v["agent"], "support-bot");
    assert_eq!(v["sub"], "support-bot/production");
    assert!(v["version"].is_string());
    // Anything invalid is exactly {"active": false}.
    let a = introspect(&shared, Some(INTROSPECTION_SECRET), "token=x.y.z").await;
    assert_eq!(a.body, br#"{"active":false}"#);
    for caller in [None, Some("wrong"), Some("gateway-secret2")] {
        let a = introspect(&shared, caller, &body).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{caller:?}");
        assert!(!String::from_utf8_lossy(&a.body).contains("active"));
    }
    let a = introspect(&shared, Some(INTROSPECTION_SECRET), "token_type_hint=x").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = introspect(
        &shared,
        Some(INTROSPECTION_SECRET),
        &"token=".repeat(20_000),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Without a secret configured, nobody can introspect.
    let mut options = f.options();
    options.introspection_secret = None;
    let closed = f.shared_with(options);
    let a = introspect(&closed, Some(""), &body).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json()["error"], "introspection_disabled");
}

#[tokio::test]
async fn forward_authentication_admits_by_scope() {
    let f = Fixture::new();
    let shared = f.shared();
    let token = f.production_token(&shared);
    let a = with_token(
        &shared,
        "/v1/authz?agent=support-bot&environment=production",
        &token,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-ledgit-agent"), "support-bot");
    assert_eq!(a.header("x-ledgit-environment"), "production");
    assert!(!a.header("x-ledgit-version").is_empty());
    assert_eq!(a.header("x-ledgit-token-id").len(), 32);
    let outside = with_token(&shared, "/v1/authz?environment=staging", &token).await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN);
    let other_agent = with_token(
        &shared,
        "/v1/authz/tools/search?agent=billing-agent",
        &token,
    )
    .await;
    assert_eq!(other_agent.status, StatusCode::FORBIDDEN);
    assert_eq!(
        get(&shared, "/v1/authz").await.status,
        StatusCode::UNAUTHORIZED
    );
    // Envoy's ext_authz sends the original method and path under the prefix.
    let post = call(
        &shared,
        Request::post("/v1/authz/api/v1/tools?environment=production")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(post.status, StatusCode::OK);
}

#[tokio::test]
async fn deployments_now_and_at_a_past_time() {
    let f = Fixture::new();
    let shared = f.shared();
    let a = get(&shared, "/v1/deployments").await;
    assert_eq!(a.status, StatusCode::OK);
    let served = shared.served.load_full().unwrap();
    assert_eq!(a.json(), serde_json::to_value(&served.rows).unwrap());
    assert_eq!(a.header("etag"), served.etag);
    // Before the first commit: nothing ran.
    let early = get(&shared, "/v1/deployments?at=2020-01-01").await;
    assert_eq!(early.json(), serde_json::json!([]));
    let now = ledgit::support::when::rfc3339(chrono::Utc::now().timestamp());
    let past = get(&shared, &format!("/v1/deployments?at={now}")).await;
    assert_eq!(past.json().as_array().unwrap().len(), served.rows.len());
    // A time to come is not answered with today's state under its name.
    let future = get(&shared, "/v1/deployments?at=2999-01-01T00:00:00Z").await;
    assert_eq!(future.status, StatusCode::BAD_REQUEST);
    assert_eq!(future.json()["error"], "invalid_time");
    assert!(
        future.json()["message"]
            .as_str()
            .unwrap()
            .contains("a time to come")
    );
    // Compressed for clients that accept it (the same JSON once decoded), and not sent again
    // while the branch has not moved.
    let gzip = call(
        &shared,
        Request::get("/v1/deployments")
            .header(header::ACCEPT_ENCODING, "br, gzip")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(gzip.header("content-encoding"), "gzip");
    assert_eq!(gzip.header("vary"), "accept-encoding");
    assert_eq!(gzip.json(), a.json());
    let again = call(
        &shared,
        Request::get("/v1/deployments")
            .header(header::IF_NONE_MATCH, &served.etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    let bad = get(&shared, "/v1/deployments?at=yesterday-ish").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["message"].as_str().unwrap().contains("RFC 3339"));
    let agent = get(&shared, "/v1/deployments/support-bot").await;
    assert!(
        agent
            .json()
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["agent"] == "support-bot")
    );
    assert_eq!(
        get(&shared, "/v1/deployments/nobody").await.status,
        StatusCode::NOT_FOUND
    );
    let one = get(&shared, "/v1/deployments/support-bot/production").await;
    assert_eq!(one.json()["environment"], "production");
    assert_eq!(
        get(&shared, "/v1/deployments/support-bot/moon")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&shared, "/v1/deployments/support-bot/production?at=%zz")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn history_pages_add_up_to_the_whole_and_say_not_modified() {
    let f = Fixture::new();
    let shared = f.shared();
    let all = get(&shared, "/v1/history?limit=1000").await;
    let all = all.json();
    let mut pages = Vec::new();
    let mut uri = "/v1/history?limit=2".to_string();
    loop {
        let a = get(&shared, &uri).await;
        assert_eq!(a.status, StatusCode::OK);
        pages.extend(a.json().as_array().unwrap().clone());
        let link = a.header("link").to_string();
        if link.is_empty() {
            break;
        }
        uri = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_string();
    }
    assert_eq!(serde_json::Value::Array(pages), all);
    assert!(all.as_array().unwrap().len() > 4);
    // Filters.
    let prod = get(&shared, "/v1/history?environment=production")
        .await
        .json();
    assert!(
        prod.as_array()
            .unwrap()
            .iter()
            .all(|e| e["environment"] == "production")
    );
    let none = get(&shared, "/v1/history?since=2099-01-01").await.json();
    assert_eq!(none, serde_json::json!([]));
    // Conditional requests.
    let etag = get(&shared, "/v1/history").await.header("etag").to_string();
    let again = call(
        &shared,
        Request::get("/v1/history")
            .header(header::IF_NONE_MATCH, &etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    for bad in [
        "/v1/history?since=soon",
        "/v1/history?until=2026-13-45",
        "/v1/history?limit=0",
        "/v1/history?limit=1001",
        "/v1/history?limit=ten",
        "/v1/history?cursor=zzz",
    ] {
        let a = get(&shared, bad).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn keys_and_metadata_for_offline_verifiers() {
    let f = Fixture::new();
    let shared = f.shared();
    let jwks = get(&shared, "/.well-known/jwks.json").await.json();
    assert_eq!(jwks["keys"][0]["kid"], "k1");
    assert_eq!(jwks["keys"][0]["x"], f.key.public_encoded());
    let meta = get(&shared, "/.well-known/oauth-authorization-server")
        .await
        .json();
    assert_eq!(
        meta["jwks_uri"],
        "http://ledgit.example/.well-known/jwks.json"
    );
    // RFC 8414: the issuer is a URL, the server's public one unless ledgit.yaml names one.
    assert_eq!(meta["issuer"], "http://ledgit.example");
    assert_eq!(meta["token_endpoint"], "http://ledgit.example/oauth2/token");
    assert_eq!(
        meta["response_types_supported"],
        serde_json::json!(["none"])
    );
    let token = call(
        &shared,
        Request::post("/oauth2/token")
            .body(Body::from("grant_type=client_credentials"))
            .unwrap(),
    )
    .await;
    assert_eq!(token.status, StatusCode::BAD_REQUEST);
    assert_eq!(token.json()["error"], "unsupported_grant_type");
}

fn signed(body: &[u8]) -> String {
    ledgit::reconcile::actuator::signature(HOOK_SECRET, body)
}

async fn hook(
    shared: &Arc<Shared>,
    provider: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> Answer {
    let mut request = Request::post(format!("/v1/hooks/{provider}"));
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    call(shared, request.body(Body::from(body.to_vec())).unwrap()).await
}

/// A signed GitHub delivery of `event` with `body`.
async fn github(shared: &Arc<Shared>, event: &str, body: &[u8]) -> Answer {
    hook(
        shared,
        "github",
        &[
            ("x-github-event", event.to_string()),
            ("x-hub-signature-256", signed(body)),
        ],
        body,
    )
    .await
}

fn refresh_asked(shared: &Shared) -> bool {
    shared
        .fetch_asked
        .swap(false, std::sync::atomic::Ordering::SeqCst)
}

#[tokio::test]
async fn webhooks_refresh_only_when_verified_and_for_the_tracked_branch() {
    let f = Fixture::new();
    let shared = f.shared();
    let push = format!(r#"{{"ref":"refs/heads/{}"}}"#, f.branch);
    let push = push.as_bytes();
    let a = github(&shared, "push", push).await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert!(refresh_asked(&shared));
    for (provider, headers) in [
        (
            "github",
            vec![
                ("x-github-event", "push".to_string()),
                ("x-hub-signature-256", signed(b"other")),
            ],
        ),
        ("github", vec![("x-github-event", "push".to_string())]),
        (
            "gitlab",
            vec![
                ("x-gitlab-event", "Push Hook".to_string()),
                ("x-gitlab-token", "wrong".into()),
            ],
        ),
        ("generic", vec![("x-signature", "sha256=00".into())]),
    ] {
        let a = hook(&shared, provider, &headers, push).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{provider} {headers:?}");
        assert!(
            !refresh_asked(&shared),
            "a refused delivery asked for a refresh"
        );
    }
    let gitlab = hook(
        &shared,
        "gitlab",
        &[
            ("x-gitlab-event", "Push Hook".into()),
            ("x-gitlab-token", "gitlab-token-in-clear".into()),
        ],
        push,
    )
    .await;
    assert_eq!(gitlab.status, StatusCode::ACCEPTED);
    assert!(refresh_asked(&shared));
    let generic = hook(&shared, "generic", &[("x-signature", signed(b""))], b"").await;
    assert_eq!(generic.status, StatusCode::ACCEPTED);
    assert!(refresh_asked(&shared));
    // Verified, but nothing to do.
    let other = br#"{"ref":"refs/heads/feature"}"#;
    let a = github(&shared, "push", other).await;
    assert_eq!(
        (a.status, a.json()["refresh"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    let ping = github(&shared, "ping", b"{}").await;
    assert_eq!(ping.status, StatusCode::OK);
    assert!(!refresh_asked(&shared));
    let junk = hook(
        &shared,
        "generic",
        &[("x-signature", signed(b"not json"))],
        b"not json",
    )
    .await;
    assert_eq!(junk.status, StatusCode::BAD_REQUEST);
    let huge = vec![b' '; (1 << 20) + 1];
    let a = hook(&shared, "generic", &[("x-signature", signed(&huge))], &huge).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        hook(&shared, "bitbucket", &[], b"{}").await.status,
        StatusCode::NOT_FOUND
    );
    let mut options = f.options();
    options.hook_secret = None;
    let closed = f.shared_with(options);
    let a = hook(&closed, "generic", &[("x-signature", signed(push))], push).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let metrics = get(&shared, "/metrics").await;
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains(
            r#"ledgit_webhook_deliveries_total{provider="github",result="bad_signature"} 2"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn operations_routes_and_errors_as_json() {
    let f = Fixture::new();
    let shared = f.shared();
    assert_eq!(get(&shared, "/healthz").await.json()["status"], "ok");
    let ready = get(&shared, "/readyz").await;
    assert_eq!(
        (ready.status, ready.json()["ready"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let token = f.production_token(&shared);
    with_token(&shared, "/v1/whoami", &token).await;
    with_token(&shared, "/v1/whoami", "x").await;
    let metrics = get(&shared, "/metrics").await;
    assert!(metrics.header("content-type").starts_with("text/plain"));
    let text = String::from_utf8(metrics.body).unwrap();
    for line in [
        r#"ledgit_token_verifications_total{result="valid"} 1"#,
        r#"ledgit_token_verifications_total{result="malformed"} 1"#,
        r#"ledgit_http_requests_total{route="/v1/whoami",status="200"} 1"#,
        "ledgit_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(!text.contains(&token));
    let doc = get(&shared, "/openapi.json").await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for route in [
        "/v1/whoami",
        "/oauth2/introspect",
        "/v1/authz",
        "/v1/deployments",
        "/v1/history",
        "/.well-known/jwks.json",
        "/v1/hooks/{provider}",
        "/readyz",
        "/metrics",
    ] {
        assert!(doc["paths"].get(route).is_some(), "{route}");
    }
    let missing = get(&shared, "/v2/nothing").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"], "not_found");
    let wrong = call(
        &shared,
        Request::delete("/v1/deployments")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.json()["error"], "method_not_allowed");
}

#[tokio::test]
async fn before_the_first_load_the_server_says_it_is_not_ready() {
    let f = Fixture::new();
    let shared = Arc::new(Shared::new(f.options()));
    for uri in [
        "/v1/deployments",
        "/v1/whoami",
        "/v1/history",
        "/.well-known/jwks.json",
    ] {
        let a = get(&shared, uri).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
    }
    let ready = get(&shared, "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(get(&shared, "/healthz").await.status, StatusCode::OK);
}

/// A tip whose ledgit.yaml is invalid is not served: the last good state stays.
#[tokio::test]
async fn an_invalid_config_at_the_tip_keeps_the_last_good_state() {
    let f = Fixture::new();
    let shared = f.shared();
    let good = shared.served.load_full().unwrap().commit;
    f.write(
        "ledgit.yaml",
        "apiVersion: ledgit/v1\nkind: Config\nenvironments: [\n",
    );
    f.commit("break the config", NOW + 120);
    ledgit::server::refresh(&shared, false).await;
    assert_eq!(shared.served.load_full().unwrap().commit, good);
    let ready = get(&shared, "/readyz").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready.json()["reason"]
            .as_str()
            .unwrap()
            .contains("ledgit.yaml")
    );
    let text = String::from_utf8(get(&shared, "/metrics").await.body).unwrap();
    assert!(text.contains("ledgit_refresh_failing{reason="), "{text}");
    assert!(text.contains("ledgit_ready 0"), "{text}");
    // Requests are still answered from the last good state.
    assert_eq!(get(&shared, "/v1/deployments").await.status, StatusCode::OK);
}

#[test]
fn signatures_are_cached_per_state_and_bounded() {
    let f = Fixture::new();
    let shared = f.shared();
    let served = shared.served.load_full().unwrap();
    let token = f.production_token(&shared);
    for _ in 0..3 {
        served.signatures.verify(&served.verifier, &token).unwrap();
    }
    assert_eq!(served.signatures.len(), 1);
    for _ in 0..20_000 {
        let t = f.issue(&shared, "support-bot", "staging", &IssueOptions::default());
        served.signatures.verify(&served.verifier, &t).unwrap();
    }
    assert!(served.signatures.len() <= 16 * 1024);
    // A refreshed state starts with an empty cache (its keys may differ).
    f.reload(&shared, None);
    assert_eq!(shared.served.load_full().unwrap().signatures.len(), 0);
}

// ---- The web page ----

/// A page's HTML, parsed.
fn page(answer: &Answer) -> scraper::Html {
    assert!(
        answer.header("content-type").starts_with("text/html"),
        "{}",
        answer.header("content-type")
    );
    assert!(
        answer
            .header("content-security-policy")
            .contains("default-src 'none'")
    );
    assert!(answer.body.len() < 100 * 1024, "a page over 100 KB");
    let html = scraper::Html::parse_document(std::str::from_utf8(&answer.body).unwrap());
    assert!(
        html.errors.is_empty(),
        "the page does not parse cleanly: {:?}",
        html.errors
    );
    html
}

fn select<'a>(html: &'a scraper::Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    html.select(&scraper::Selector::parse(css).unwrap())
        .collect()
}

fn text(e: &scraper::ElementRef) -> String {
    e.text()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

async fn with_headers(
    shared: &Arc<Shared>,
    method: &str,
    uri: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Answer {
    let mut r = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    if method == "POST" {
        r = r.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    call(shared, r.body(Body::from(body.to_string())).unwrap()).await
}

const ORIGIN: &str = "http://ledgit.example";

/// Signs in with the operator secret; the session cookie.
async fn sign_in(shared: &Arc<Shared>) -> String {
    let a = with_headers(
        shared,
        "POST",
        "/signin",
        &[("host", "ledgit.example".into()), ("origin", ORIGIN.into())],
        &format!("secret={UI_SECRET}"),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let cookie = a.header("set-cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn the_snapshot_page_shows_every_agent_by_environment_now_and_in_the_past() {
    let f = Fixture::recent();
    let shared = f.shared();
    let html = page(&get(&shared, "/").await);
    let heads: Vec<String> = select(&html, "table.snapshot thead th")
        .iter()
        .map(text)
        .collect();
    assert_eq!(heads, ["Agent", "development", "staging", "production"]);
    let rows = select(&html, "table.snapshot tbody tr");
    let agents: Vec<String> = rows
        .iter()
        .map(|r| text(&select_in(r, "th a")[0]))
        .collect();
    assert_eq!(
        agents,
        [
            "billing-agent",
            "search-assistant",
            "support-bot",
            "triage-bot"
        ]
    );
    let support = text(&rows[2]);
    assert!(support.matches("1.4.1").count() == 3, "{support}");
    // billing-agent runs three versions... two: drift, and staging differs from development.
    assert!(text(&rows[0]).contains("drift") && text(&rows[0]).contains("≠ upstream"));
    // Each form control has a label.
    for input in select(&html, "form input:not([type=hidden]), form select") {
        let id = input.value().attr("id").expect("a control without id");
        assert_eq!(select(&html, &format!("label[for={id}]")).len(), 1, "{id}");
    }
    // The filter, and the past: before support-bot 1.4.1 reached production.
    let filtered = page(&get(&shared, "/?q=bot").await);
    assert_eq!(select(&filtered, "table.snapshot tbody tr").len(), 2);
    let at = f.now - 5 * 86_400;
    let past = page(
        &get(
            &shared,
            &format!("/?at={}", ledgit::support::when::rfc3339(at)),
        )
        .await,
    );
    let support = select(&past, "table.snapshot tbody tr")
        .into_iter()
        .map(|r| text(&r))
        .find(|t| t.starts_with("support-bot"))
        .unwrap();
    assert!(support.contains("1.4.0"), "{support}");
    // The JSON twin says the same.
    let v = get(&shared, "/v1/agents?q=support").await.json();
    assert_eq!(v["agents"][0]["cells"][2]["version"], "1.4.1");
    assert_eq!(v["total_agents"], 4);
    // Readers see no control and no sign-out; a bad time is a page that says why.
    assert!(select(&html, "form[method=post]").is_empty());
    let bad = get(&shared, "/?at=yesterday-ish").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(text(&select(&page(&bad), "main")[0]).contains("RFC 3339"));
}

fn select_in<'a>(e: &scraper::ElementRef<'a>, css: &str) -> Vec<scraper::ElementRef<'a>> {
    e.select(&scraper::Selector::parse(css).unwrap()).collect()
}

#[tokio::test]
async fn the_agent_page_has_a_lane_per_environment_verdicts_and_its_history() {
    let f = Fixture::recent();
    let shared = f.shared();
    let html = page(&get(&shared, "/agents/billing-agent").await);
    let lanes = select(&html, "svg.timeline g.lane");
    let envs: Vec<&str> = lanes
        .iter()
        .map(|g| g.value().attr("data-environment").unwrap())
        .collect();
    assert_eq!(envs, ["development", "staging", "production"]);
    // Each stay's exact times are in its tooltip.
    let tips: Vec<String> = select(&html, "svg.timeline rect title")
        .iter()
        .map(text)
        .collect();
    assert!(
        tips.iter()
            .any(|t| t.starts_with("2.1.0-rc.1 in development: ") && t.ends_with(" to now")),
        "{tips:?}"
    );
    let verdicts: Vec<String> = select(&html, ".env .verdict").iter().map(text).collect();
    assert_eq!(
        verdicts,
        [
            "eligible: 2.1.0-rc.1 runs in development",
            "in step with staging (2.0.0)"
        ]
    );
    let history = select(&html, "table.history tbody tr");
    assert_eq!(history.len(), 4);
    assert!(
        text(&history[0]).contains("2.0.0 → 2.1.0-rc.1"),
        "{}",
        text(&history[0])
    );
    // The JSON twin: gates as data, the soak in seconds.
    let v = get(&shared, "/v1/agents/triage-bot").await.json();
    let production = &v["environments"][2];
    assert_eq!(production["environment"], "production");
    assert!(production["record"].is_null());
    assert_eq!(production["gate"]["from"], "staging");
    assert_eq!(production["gate"]["verdict"], "eligible", "{production}");
    let words = production["verdict"].as_str().unwrap();
    assert!(
        words.starts_with("eligible: 0.9.0 ran 1d2")
            && words.ends_with(" in staging (24h soak met)"),
        "{words}"
    );
    // A version that just entered staging waits for its soak; nothing upstream blocks.
    f.write_record("triage-bot", "staging", "1.0.0");
    f.commit("Deploy triage-bot 1.0.0 to staging", f.now + 60);
    f.reload(&shared, None);
    let v = get(&shared, "/v1/agents/triage-bot").await.json();
    let words = v["environments"][2]["verdict"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        words.starts_with("1.0.0 eligible for production in 2")
            && words.ends_with(": 24h soak in staging"),
        "{words}"
    );
    assert!(v["environments"][2]["gate"]["remaining"].as_i64().unwrap() > 86_400 - 600);
    let v = get(&shared, "/v1/agents/search-assistant").await.json();
    assert_eq!(
        v["environments"][2]["verdict"],
        "blocked: search-assistant has no record in staging"
    );
    assert_eq!(
        get(&shared, "/agents/nobody").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&shared, "/v1/agents/nobody").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&shared, "/agents/support-bot?before=x").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_agent_history_is_paginated_newest_first() {
    let f = Fixture::recent();
    for i in 0..30 {
        f.write_record("support-bot", "development", &format!("1.5.{i}"));
        f.commit(&format!("Deploy 1.5.{i}"), f.now + 120 + i * 60);
    }
    let shared = f.shared();
    let first = get(&shared, "/v1/agents/support-bot").await.json();
    assert_eq!(first["events"], 36);
    assert_eq!(first["history"].as_array().unwrap().len(), 25);
    assert_eq!(first["history"][0]["version"], "1.5.29");
    // Rollback candidates: what ran in development before, newest first, without the current
    // version, at most 20.
    let earlier: Vec<&str> = first["environments"][0]["earlier_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let expected: Vec<String> = (9..29).rev().map(|i| format!("1.5.{i}")).collect();
    assert_eq!(earlier, expected);
    let next = first["next_cursor"].as_u64().unwrap();
    let second = get(&shared, &format!("/v1/agents/support-bot?before={next}"))
        .await
        .json();
    assert_eq!(second["history"].as_array().unwrap().len(), 11);
    assert_eq!(second["history"][0]["version"], "1.5.4");
    assert!(second["next_cursor"].is_null());
    let html = page(&get(&shared, "/agents/support-bot").await);
    let older = select(&html, "a[rel=next]");
    assert_eq!(
        older[0].value().attr("href").unwrap(),
        format!("/agents/support-bot?before={next}#history")
    );
}

#[tokio::test]
async fn the_deployments_tab_lists_each_deployments_tokens_with_status_and_last_use() {
    let f = Fixture::recent();
    let shared = f.shared();
    let token = f.production_token(&shared);
    let jti = ledgit::token::inspect(&token).unwrap().claims["jti"]
        .as_str()
        .unwrap()
        .to_string();
    // The example ledger, plus this token (committed).
    let ledger = std::fs::read_to_string(f.path().join("tokens.yaml")).unwrap();
    let served = shared.served.load_full().unwrap();
    let entry = ledgit::model::ledger::Entry {
        jti: jti.clone(),
        agent: "support-bot".into(),
        environment: "production".into(),
        generation: served
            .deployment("support-bot", "production")
            .unwrap()
            .generation
            .clone(),
        kid: "k1".into(),
        issued_at: f.now,
        expires_at: None,
        name: Some("sdk".into()),
        issued_by: "Ada <ada@example.com>".into(),
        line: 0,
    };
    std::fs::write(
        f.path().join("tokens.yaml"),
        ledgit::model::ledger::append(Some(&ledger), &entry).unwrap(),
    )
    .unwrap();
    f.commit("Record the sdk token", f.now + 120);
    f.reload(&shared, None);
    assert_eq!(
        with_token(&shared, "/v1/whoami", &token).await.status,
        StatusCode::OK
    );
    let html = page(&get(&shared, "/agents/support-bot/deployments").await);
    let production = select(&html, "#env-production table.tokens tbody tr");
    let rows: Vec<String> = production.iter().map(text).collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let sdk = rows.iter().find(|r| r.contains(" sdk ")).unwrap();
    assert!(
        sdk.contains("active") && !sdk.contains("not since start"),
        "{sdk}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("old gateway") && r.contains("key-removed"))
    );
    let staging: Vec<String> = select(&html, "#env-staging table.tokens tbody tr")
        .iter()
        .map(text)
        .collect();
    assert!(staging[0].contains("expires soon"), "{staging:?}");
    assert!(
        !String::from_utf8_lossy(&get(&shared, "/agents/support-bot/deployments").await.body)
            .contains(&token)
    );
    let v = get(&shared, "/v1/agents/billing-agent/tokens").await.json();
    let statuses: Vec<&str> = v["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["tokens"].as_array().unwrap())
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["revoked", "expired"]);
    let revoked = &v["deployments"][1]["tokens"][0]["revocation"];
    assert_eq!(revoked["reason"], "printed in a CI log", "{v}");
    let tab = page(&get(&shared, "/agents/billing-agent/deployments").await);
    let said: Vec<String> = select(&tab, ".revocation").iter().map(text).collect();
    assert!(
        said.len() == 1 && said[0].ends_with(" UTC: printed in a CI log"),
        "{said:?}"
    );
    // Readers get no revoke button.
    assert!(select(&html, "form[action$=propose]").is_empty());
}

#[tokio::test]
async fn proposals_need_a_session_the_csrf_token_and_this_origin() {
    let f = Fixture::recent();
    let shared = f.shared();
    let host = ("host", "ledgit.example".to_string());
    let form = "action=promote&environment=staging";
    // No session: the preview and the POST are refused.
    assert_eq!(
        get(
            &shared,
            "/agents/billing-agent/propose?action=promote&environment=staging"
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let signin = page(&get(&shared, "/signin").await);
    assert_eq!(select(&signin, "label[for=secret]").len(), 1);
    assert_eq!(select(&signin, "input#secret[type=password]").len(), 1);
    let wrong = with_headers(
        &shared,
        "POST",
        "/signin",
        &[host.clone(), ("origin", ORIGIN.into())],
        "secret=guess",
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(text(&select(&page(&wrong), "[role=alert]")[0]).contains("not the secret"));
    assert!(wrong.header("set-cookie").is_empty());
    let cookie = sign_in(&shared).await;
    let signed = [host.clone(), ("cookie", cookie.clone())];
    let html = page(&with_headers(&shared, "GET", "/agents/billing-agent", &signed, "").await);
    assert!(!select(&html, "form[action='/agents/billing-agent/propose']").is_empty());
    let preview = with_headers(
        &shared,
        "GET",
        &format!("/agents/billing-agent/propose?{form}"),
        &signed,
        "",
    )
    .await;
    assert_eq!(preview.status, StatusCode::OK);
    let preview = page(&preview);
    let csrf = select(&preview, "input[name=csrf]")[0]
        .value()
        .attr("value")
        .unwrap()
        .to_string();
    // The form carries what the person saw: the fingerprint of this preview.
    let expect = select(&preview, "input[name=expect]")[0]
        .value()
        .attr("value")
        .unwrap()
        .to_string();
    let form = format!("{form}&expect={expect}");
    let form = form.as_str();
    let diff: Vec<String> = select(&preview, "pre.diff .add, pre.diff .del")
        .iter()
        .map(text)
        .collect();
    assert_eq!(diff, ["-version: 2.0.0", "+version: 2.1.0-rc.1"]);
    let post = |headers: Vec<(&'static str, String)>, body: String| {
        let shared = shared.clone();
        async move {
            with_headers(
                &shared,
                "POST",
                "/agents/billing-agent/propose",
                &headers,
                &body,
            )
            .await
        }
    };
    // Without the CSRF token, with another session's, from another origin: refused.
    assert_eq!(
        post(
            vec![
                host.clone(),
                ("cookie", cookie.clone()),
                ("origin", ORIGIN.into())
            ],
            form.into()
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let other = sign_in(&shared).await;
    assert_eq!(
        post(
            vec![host.clone(), ("cookie", other), ("origin", ORIGIN.into())],
            format!("{form}&csrf={csrf}")
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(
            vec![
                host.clone(),
                ("cookie", cookie.clone()),
                ("origin", "http://evil.example".into())
            ],
            format!("{form}&csrf={csrf}")
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let repo = git2::Repository::open(f.path()).unwrap();
    let tip = repo.refname_to_id(&f.tracked()).unwrap();
    assert!(
        repo.references_glob("refs/heads/ledgit/*")
            .unwrap()
            .next()
            .is_none()
    );
    // With all three: a branch with one commit on the tip, one line changed.
    let created = post(
        vec![
            host.clone(),
            ("cookie", cookie.clone()),
            ("origin", ORIGIN.into()),
        ],
        format!("{form}&csrf={csrf}"),
    )
    .await;
    let created = proposal_page(
        &shared,
        &created,
        &[host.clone(), ("cookie", cookie.clone())],
    )
    .await;
    let branch = text(&select(&page(&created), "#branch")[0]);
    assert!(
        branch.starts_with("ledgit/promote-billing-agent-staging-"),
        "{branch}"
    );
    let commit = repo
        .find_reference(&format!("refs/heads/{branch}"))
        .unwrap()
        .peel_to_commit()
        .unwrap();
    assert_eq!(commit.parent_ids().collect::<Vec<_>>(), [tip]);
    let diff = repo
        .diff_tree_to_tree(
            Some(&repo.find_commit(tip).unwrap().tree().unwrap()),
            Some(&commit.tree().unwrap()),
            None,
        )
        .unwrap();
    let stats = diff.stats().unwrap();
    assert_eq!(
        (stats.files_changed(), stats.insertions(), stats.deletions()),
        (1, 1, 1)
    );
    // The tracked branch and the work tree are untouched.
    assert_eq!(repo.refname_to_id(&f.tracked()).unwrap(), tip);
    assert!(repo.statuses(None).unwrap().is_empty());
    // A second click on the same form finds the person's own new proposal: it was created,
    // nothing new is made.
    let again = post(
        vec![
            host.clone(),
            ("cookie", cookie.clone()),
            ("origin", ORIGIN.into()),
        ],
        format!("{form}&csrf={csrf}"),
    )
    .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert!(again.header("location").ends_with("&again=1"));
    let again = proposal_page(&shared, &again, &[host.clone(), ("cookie", cookie.clone())]).await;
    let again = page(&again);
    assert_eq!(text(&select(&again, "h1")[0]), "Proposal created");
    assert!(!select(&again, "#again").is_empty());
    assert_eq!(text(&select(&again, "#branch")[0]), branch);
    assert_eq!(
        repo.references_glob("refs/heads/ledgit/*").unwrap().count(),
        1
    );
    // The proposal shows as open at once, before the branch moves.
    let v = get(&shared, "/v1/agents").await.json();
    assert_eq!(v["proposals"][0]["branch"], branch.as_str());
    let open: Vec<String> = select(&page(&get(&shared, "/").await), "ul.proposals li code")
        .iter()
        .map(text)
        .collect();
    assert_eq!(open, std::slice::from_ref(&branch));
    // The same change again: the page names the open one and offers no button; a POST
    // creates nothing.
    let again = page(
        &with_headers(
            &shared,
            "GET",
            "/agents/billing-agent/propose?action=promote&environment=staging",
            &signed,
            "",
        )
        .await,
    );
    assert!(text(&select(&again, "#identical")[0]).contains(&branch));
    assert!(select(&again, "form[action='/agents/billing-agent/propose']").is_empty());
    let twice = post(
        vec![
            host.clone(),
            ("cookie", cookie.clone()),
            ("origin", ORIGIN.into()),
        ],
        format!("{form}&csrf={csrf}"),
    )
    .await;
    // The person's own: answered with its page, not made again.
    assert_eq!(twice.status, StatusCode::SEE_OTHER);
    assert!(twice.header("location").contains("again=1"));
    assert!(
        twice
            .header("location")
            .contains(&branch.replace('/', "%2F"))
    );
    assert_eq!(
        repo.references_glob("refs/heads/ledgit/*").unwrap().count(),
        1
    );
}

/// The value of a form's hidden field.
fn hidden(html: &scraper::Html, name: &str) -> String {
    select(html, &format!("input[name={name}]"))[0]
        .value()
        .attr("value")
        .unwrap()
        .to_string()
}

/// The page commits only what the person saw: when the branch moves between the preview and
/// the click, nothing is committed and the new preview is shown.
#[tokio::test]
async fn a_proposal_whose_preview_went_stale_commits_nothing() {
    let f = Fixture::recent();
    let shared = f.shared();
    let cookie = sign_in(&shared).await;
    let host = ("host", "ledgit.example".to_string());
    let signed = [host.clone(), ("cookie", cookie.clone())];
    let url = "/agents/billing-agent/propose?action=promote&environment=staging";
    let preview = page(&with_headers(&shared, "GET", url, &signed, "").await);
    let (csrf, expect) = (hidden(&preview, "csrf"), hidden(&preview, "expect"));
    // Someone moves development on meanwhile: promoting now would deploy another version.
    f.write(
        "deployments/billing-agent/development.yaml",
        "apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: billing-agent\nenvironment: development\nversion: 2.1.1\n",
    );
    f.commit("Deploy billing-agent 2.1.1 to development", f.now + 60);
    f.reload(&shared, None);
    let body = format!("action=promote&environment=staging&csrf={csrf}&expect={expect}");
    let answer = with_headers(
        &shared,
        "POST",
        "/agents/billing-agent/propose",
        &[
            host.clone(),
            ("cookie", cookie.clone()),
            ("origin", ORIGIN.into()),
        ],
        &body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    let html = page(&answer);
    assert!(text(&select(&html, "#stale")[0]).contains("Changed since your preview"));
    let diff: Vec<String> = select(&html, "pre.diff .add").iter().map(text).collect();
    assert_eq!(diff, ["+version: 2.1.1"]);
    let repo = git2::Repository::open(f.path()).unwrap();
    assert_eq!(
        repo.references_glob("refs/heads/ledgit/*").unwrap().count(),
        0
    );
    // Without the fingerprint (an old form, a hand-made POST): the same.
    let bare = with_headers(
        &shared,
        "POST",
        "/agents/billing-agent/propose",
        &[host, ("cookie", cookie), ("origin", ORIGIN.into())],
        &format!("action=promote&environment=staging&csrf={csrf}"),
    )
    .await;
    assert_eq!(bare.status, StatusCode::CONFLICT);
    assert_eq!(
        repo.references_glob("refs/heads/ledgit/*").unwrap().count(),
        0
    );
}

#[tokio::test]
async fn a_change_the_policy_refuses_shows_its_findings_and_no_button() {
    let f = Fixture::recent();
    let shared = f.shared();
    let cookie = sign_in(&shared).await;
    let signed = [("host", "ledgit.example".to_string()), ("cookie", cookie)];
    // 9.9.9 never ran in staging: production refuses it.
    let a = with_headers(
        &shared,
        "GET",
        "/agents/support-bot/propose?action=set&environment=production&version=9.9.9",
        &signed,
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let html = page(&a);
    let findings: Vec<String> = select(&html, ".findings li").iter().map(text).collect();
    assert!(
        findings.iter().any(|f| f.contains("promotion-missing")),
        "{findings:?}"
    );
    assert!(select(&html, "form[method=post] button.primary").is_empty());
    // A rollback to a version that ran there before is allowed, and revocations too.
    let a = with_headers(
        &shared,
        "GET",
        "/agents/support-bot/propose?action=set&environment=production&version=1.4.0",
        &signed,
        "",
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let a = with_headers(
        &shared,
        "GET",
        "/agents/support-bot/propose?action=revoke&jti=7f144d0dfe64f92e7ac908045cb99094",
        &signed,
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let added: Vec<String> = select(&page(&a), "pre.diff .add")
        .iter()
        .map(text)
        .collect();
    assert!(
        added
            .iter()
            .any(|l| l.contains("jti: 7f144d0dfe64f92e7ac908045cb99094")),
        "{added:?}"
    );
    // Without --proposals there is no sign-in at all.
    let mut options = f.options();
    options.proposals = false;
    let closed = f.shared_with(options);
    assert_eq!(get(&closed, "/signin").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_push_that_fails_keeps_the_branch_and_says_why() {
    let f = Fixture::recent();
    let mut options = f.options();
    options.push = Some("nowhere".into());
    let shared = f.shared_with(options);
    let cookie = sign_in(&shared).await;
    let host = ("host", "ledgit.example".to_string());
    let signed = [host.clone(), ("cookie", cookie.clone())];
    let preview = page(
        &with_headers(
            &shared,
            "GET",
            "/agents/billing-agent/propose?action=promote&environment=staging",
            &signed,
            "",
        )
        .await,
    );
    let (csrf, expect) = (hidden(&preview, "csrf"), hidden(&preview, "expect"));
    let created = with_headers(
        &shared,
        "POST",
        "/agents/billing-agent/propose",
        &[
            host.clone(),
            ("cookie", cookie.clone()),
            ("origin", ORIGIN.into()),
        ],
        &format!("action=promote&environment=staging&csrf={csrf}&expect={expect}"),
    )
    .await;
    let created = proposal_page(&shared, &created, &[host, ("cookie", cookie)]).await;
    let html = page(&created);
    let main = text(&select(&html, "main")[0]);
    assert!(main.contains("could not push it to nowhere"), "{main}");
    let branch = text(&select(&html, "#branch")[0]);
    let repo = git2::Repository::open(f.path()).unwrap();
    assert!(repo.find_reference(&format!("refs/heads/{branch}")).is_ok());
}

/// The page a proposal's creation redirected to (303), once its push has ended.
async fn proposal_page(
    shared: &Arc<Shared>,
    created: &Answer,
    headers: &[(&str, String)],
) -> Answer {
    assert_eq!(
        created.status,
        StatusCode::SEE_OTHER,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let location = created.header("location").to_string();
    assert!(location.starts_with("/agents/"), "{location}");
    for _ in 0..600 {
        let shown = with_headers(shared, "GET", &location, headers, "").await;
        assert_eq!(shown.status, StatusCode::OK);
        if !String::from_utf8_lossy(&shown.body).contains("id=\"pushing\"") {
            return shown;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the push did not end within 30s");
}

/// A request from `client`, as the listener marks it.
async fn from_client(
    shared: &Arc<Shared>,
    client: &str,
    method: &str,
    uri: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Answer {
    let mut r = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    if method == "POST"
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        r = r.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let mut request = r.body(Body::from(body.to_string())).unwrap();
    request.extensions_mut().insert(ledgit::server::ClientAddr(
        format!("{client}:40000").parse().unwrap(),
    ));
    call(shared, request).await
}

#[tokio::test]
async fn guessing_a_secret_is_limited_per_client_address() {
    let f = Fixture::new();
    let shared = f.shared();
    let signin = |client: &'static str, secret: &'static str| {
        let shared = shared.clone();
        async move {
            from_client(
                &shared,
                client,
                "POST",
                "/signin",
                &[("origin", ORIGIN.into())],
                &format!("secret={secret}"),
            )
            .await
        }
    };
    for _ in 0..ledgit::server::ALLOWED {
        assert_eq!(
            signin("192.0.2.1", "guess").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // The eleventh try is refused unread, even with the right secret.
    let limited = signin("192.0.2.1", UI_SECRET).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: i64 = limited.header("retry-after").parse().unwrap();
    assert!((1..=ledgit::server::WINDOW).contains(&retry), "{retry}");
    assert_eq!(limited.header("connection"), "close");
    // Another address is not held back.
    assert_eq!(
        signin("192.0.2.2", UI_SECRET).await.status,
        StatusCode::SEE_OTHER
    );
    // Each purpose has its own budget: the right introspection secret from the same address
    // is still answered.
    let introspect = |secret: &'static str| {
        let shared = shared.clone();
        async move {
            from_client(
                &shared,
                "192.0.2.1",
                "POST",
                "/oauth2/introspect",
                &[("authorization", format!("Bearer {secret}"))],
                "token=x",
            )
            .await
            .status
        }
    };
    assert_eq!(introspect(INTROSPECTION_SECRET).await, StatusCode::OK);
    for _ in 0..ledgit::server::ALLOWED {
        assert_eq!(introspect("wrong-secret").await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        introspect(INTROSPECTION_SECRET).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..ledgit::server::ALLOWED {
        let wrong = from_client(
            &shared,
            "192.0.2.3",
            "POST",
            "/v1/hooks/generic",
            &[("x-signature", format!("sha256={}", "0".repeat(64)))],
            "",
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    }
    let hooked = from_client(
        &shared,
        "192.0.2.3",
        "POST",
        "/v1/hooks/generic",
        &[("x-signature", signed(b""))],
        "",
    )
    .await;
    assert_eq!(hooked.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn introspection_takes_http_basic_client_authentication() {
    use base64::Engine;
    let f = Fixture::new();
    let token = f.production_token(&f.shared());
    let basic = |id: &str, secret: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
        )
    };
    for (client_id, id, secret, status) in [
        (None, "anyone", INTROSPECTION_SECRET, StatusCode::OK),
        (
            Some("gateway"),
            "gateway",
            INTROSPECTION_SECRET,
            StatusCode::OK,
        ),
        (
            Some("gateway"),
            "other",
            INTROSPECTION_SECRET,
            StatusCode::UNAUTHORIZED,
        ),
        (None, "anyone", "wrong", StatusCode::UNAUTHORIZED),
    ] {
        let mut options = f.options();
        options.introspection_client_id = client_id.map(str::to_string);
        let shared = f.shared_with(options);
        let a = with_headers(
            &shared,
            "POST",
            "/oauth2/introspect",
            &[("authorization", basic(id, secret))],
            &format!("token={token}"),
        )
        .await;
        assert_eq!(a.status, status, "{client_id:?} {id} {secret}");
        if status == StatusCode::OK {
            assert_eq!(a.json()["active"], true);
        } else {
            // Answered before the body was read: the connection closes, and says so.
            assert_eq!(a.header("connection"), "close");
        }
    }
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let f = Fixture::new();
    let shared = f.shared();
    let token = f.production_token(&shared);
    for uri in ["/v1/whoami", "/v1/authz"] {
        let a = call(
            &shared,
            Request::get(uri)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::AUTHORIZATION, "Bearer other")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
    }
}

#[tokio::test]
async fn a_token_for_an_audience_is_refused_by_a_server_without_one() {
    let f = Fixture::new();
    let shared = f.shared();
    let aimed = f.issue(
        &shared,
        "support-bot",
        "production",
        &IssueOptions {
            ttl: None,
            audience: Some("gateway".into()),
            issuer: None,
        },
    );
    let a = with_token(&shared, "/v1/whoami", &aimed).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json()["code"], "wrong_audience");
}

#[tokio::test]
async fn sign_out_ends_the_session_for_good() {
    let f = Fixture::recent();
    let shared = f.shared();
    let cookie = sign_in(&shared).await;
    let signed = [("cookie", cookie.clone())];
    let url = "/agents/billing-agent/propose?action=promote&environment=staging";
    let preview = with_headers(&shared, "GET", url, &signed, "").await;
    assert_eq!(preview.status, StatusCode::OK);
    let csrf = hidden(&page(&preview), "csrf");
    let out = with_headers(
        &shared,
        "POST",
        "/signout",
        &[("cookie", cookie.clone()), ("origin", ORIGIN.into())],
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    // The same cookie, kept by someone: refused from now on.
    let after = with_headers(&shared, "GET", url, &signed, "").await;
    assert_eq!(after.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_origin_check_ignores_the_host_header() {
    let f = Fixture::new();
    let shared = f.shared();
    // DNS rebinding: a page of evil.example posts to this server under its own name.
    let a = with_headers(
        &shared,
        "POST",
        "/signin",
        &[
            ("host", "evil.example".into()),
            ("origin", "http://evil.example".into()),
        ],
        &format!("secret={UI_SECRET}"),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.header("set-cookie").is_empty());
    // The public URL's scheme counts too.
    let https = with_headers(
        &shared,
        "POST",
        "/signin",
        &[("origin", "https://ledgit.example".into())],
        &format!("secret={UI_SECRET}"),
    )
    .await;
    assert_eq!(https.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn webhook_secrets_are_separate_and_github_forms_are_read() {
    let f = Fixture::new();
    let shared = f.shared();
    let push = br#"{"ref":"refs/heads/main"}"#;
    // The HMAC key does not open the GitLab route, whose token travels in clear.
    let a = hook(
        &shared,
        "gitlab",
        &[
            ("x-gitlab-event", "Push Hook".into()),
            (
                "x-gitlab-token",
                String::from_utf8(HOOK_SECRET.to_vec()).unwrap(),
            ),
        ],
        push,
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // GitHub's form-encoded delivery: the signature covers the form, the JSON is in payload.
    let branch = &f.branch;
    let form = format!(
        "payload={}",
        serde_urlencoded::to_string([("p", format!(r#"{{"ref":"refs/heads/{branch}"}}"#))])
            .unwrap()
            .trim_start_matches("p=")
    );
    let a = hook(
        &shared,
        "github",
        &[
            ("x-github-event", "push".into()),
            ("x-hub-signature-256", signed(form.as_bytes())),
            ("content-type", "application/x-www-form-urlencoded".into()),
        ],
        form.as_bytes(),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    // An upper-case spelling of the right MAC is not accepted.
    let upper = signed(form.as_bytes())
        .to_uppercase()
        .replace("SHA256=", "sha256=");
    let a = hook(
        &shared,
        "github",
        &[
            ("x-github-event", "push".into()),
            ("x-hub-signature-256", upper),
            ("content-type", "application/x-www-form-urlencoded".into()),
        ],
        form.as_bytes(),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn relative_times_are_never_answered_from_an_entity_tag() {
    let f = Fixture::new();
    let shared = f.shared();
    let served = shared.served.load_full().unwrap();
    let ask = |uri: &'static str| {
        let shared = shared.clone();
        let etag = served.etag.clone();
        async move {
            call(
                &shared,
                Request::get(uri)
                    .header(header::IF_NONE_MATCH, etag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
        }
    };
    assert_eq!(ask("/v1/history").await.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        ask("/v1/history?since=2020-01-01").await.status,
        StatusCode::NOT_MODIFIED
    );
    for relative in ["/v1/history?since=7d", "/v1/history?until=1h"] {
        let a = ask(relative).await;
        assert_eq!(a.status, StatusCode::OK, "{relative}");
        assert!(a.header("etag").is_empty(), "{relative}");
    }
    // The page asked for a relative time goes to the absolute one, a permalink.
    let a = get(&shared, "/?at=7d&q=bot").await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let location = a.header("location").to_string();
    let (path, query) = location.split_once('?').unwrap();
    assert_eq!(path, "/");
    let params: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    let at = &params.iter().find(|(k, _)| k == "at").unwrap().1;
    let t = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap()
        .timestamp();
    let expected = chrono::Utc::now().timestamp() - 7 * 86_400;
    assert!((t - expected).abs() < 60, "{at}");
    assert!(params.contains(&("q".into(), "bot".into())));
    assert_eq!(get(&shared, &location).await.status, StatusCode::OK);
    // A time to come is refused on the page too.
    assert_eq!(
        get(&shared, "/?at=2999-01-01").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn a_server_refuses_to_start_with_weak_or_shared_secrets() {
    let f = Fixture::new();
    assert!(f.options().check().is_ok());
    let mut short = f.options();
    short.ui_secret = Some(b"fifteen bytes!!".to_vec());
    assert!(matches!(
        short.check(),
        Err(ledgit::server::StartError::ShortSecret {
            variable: "LEDGIT_UI_SECRET",
            length: 15
        })
    ));
    let mut shared = f.options();
    shared.gitlab_token = shared.hook_secret.clone();
    assert!(matches!(
        shared.check(),
        Err(ledgit::server::StartError::GitlabTokenIsHookSecret)
    ));
    let mut script = f.options();
    script.pull_request_url = Some("javascript:alert(1)//{branch}".into());
    let e = script.check().unwrap_err();
    assert!(matches!(e, ledgit::server::StartError::PullRequestUrl(_)));
    assert!(e.to_string().contains("not an http(s) address"), "{e}");
    let mut store = f.options();
    store.state = Some(ledgit::reconcile::state::Location::Postgres(
        "postgres://db/ledgit?sslmode=sometimes".into(),
    ));
    let e = store.check().unwrap_err();
    assert!(matches!(e, ledgit::server::StartError::State(_)), "{e}");
    assert!(e.to_string().contains("sslmode `sometimes`"), "{e}");
}

#[tokio::test]
async fn the_api_document_names_the_public_url_and_metrics_suit_prometheus() {
    let f = Fixture::new();
    let shared = f.shared();
    let doc = get(&shared, "/openapi.json").await.json();
    assert_eq!(doc["servers"][0]["url"], "http://ledgit.example");
    let text = get(&shared, "/metrics").await;
    assert!(
        text.header("content-type")
            .starts_with("text/plain; version=0.0.4")
    );
    let body = String::from_utf8(text.body.clone()).unwrap();
    assert!(
        body.contains("# TYPE ledgit_http_requests_total counter"),
        "{body}"
    );
    assert!(!body.contains("# EOF"));
    let open = call(
        &shared,
        Request::get("/metrics")
            .header(
                header::ACCEPT,
                "application/openmetrics-text; version=1.0.0",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(
        open.header("content-type")
            .starts_with("application/openmetrics-text")
    );
    assert!(String::from_utf8_lossy(&open.body).ends_with("# EOF\n"));
}

/// A revocation list that is there but not UTF-8 is refused, never read as missing (which
/// would write a new list without every revocation it holds): the server does not serve such a
/// tip, and a revoke planned on it is an error.
#[tokio::test]
async fn a_revoke_over_an_unreadable_revocation_list_is_refused() {
    let f = Fixture::recent();
    let shared = f.shared();
    let good = shared.served.load_full().unwrap().commit;
    std::fs::write(
        f.path().join("revocations.yaml"),
        b"apiVersion: ledgit/v1\nkind: Revocations\nrevoked:\n  - jti: a1\n    reason: \xff\n",
    )
    .unwrap();
    f.commit("A list in another encoding", f.now + 60);
    let repo = ledgit::git::repo::Repo::open(f.path()).unwrap();
    let tip = repo.resolve_tracked(&f.tracked()).unwrap();
    let time = repo.git.find_commit(tip).unwrap().time().seconds();
    let refused = Served::load(&repo, tip, time, None)
        .err()
        .unwrap()
        .to_string();
    assert!(refused.contains("is not UTF-8"), "{refused}");
    assert_eq!(shared.served.load_full().unwrap().commit, good);
    let history = ledgit::git::load::history(&repo, Some(tip), &mut |_| {})
        .unwrap()
        .history;
    let request = ledgit::review::proposal::Request::Revoke {
        jti: "7f144d0dfe64f92e7ac908045cb99094".into(),
        reason: None,
    };
    let e = ledgit::review::proposal::preview(&repo, tip, &history, &request, f.now)
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("revocations.yaml is not UTF-8"),
        "{e}"
    );
}

/// The reconciler's store is read at most once a second, on a blocking thread: requests that
/// come meanwhile share the last read instead of each opening SQLite on the request's thread.
#[tokio::test]
async fn the_reconcilers_store_is_read_at_most_once_a_second() {
    let f = Fixture::new();
    let shared = f.shared();
    let served = shared.served.load_full().unwrap();
    assert!(shared.observed(&served).await.is_none(), "no store yet");
    let root = served.root.unwrap().to_string();
    drop(
        ledgit::reconcile::state::Store::open(
            &ledgit::reconcile::state::Location::Sqlite(served.store.clone()),
            &root,
            &ledgit::reconcile::state::Replica::this_process(),
        )
        .unwrap(),
    );
    // The read without a store is kept for its second too.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let first = shared.observed(&served).await.expect("the store is read");
    let again = shared.observed(&served).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "read twice within a second");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let later = shared.observed(&served).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &later), "never read again");
}

/// Proposals a team can follow: an open one is listed on its agent's page (environment, change,
/// author) and kept by the snapshot's "pending proposals" filter; a revocation's preview shows
/// the reason in the diff, the commit carries it, and a reason changed after the preview is
/// not committed.
#[tokio::test]
async fn open_proposals_are_listed_and_a_revocation_commits_the_reason_it_previewed() {
    let f = Fixture::recent();
    let shared = f.shared();
    let cookie = sign_in(&shared).await;
    let host = ("host", "ledgit.example".to_string());
    let signed = [host.clone(), ("cookie", cookie.clone())];
    let posting = [
        host.clone(),
        ("cookie", cookie.clone()),
        ("origin", ORIGIN.into()),
    ];
    let preview = page(
        &with_headers(
            &shared,
            "GET",
            "/agents/billing-agent/propose?action=promote&environment=staging",
            &signed,
            "",
        )
        .await,
    );
    let context: Vec<String> = select(&preview, "ul.changes .context")
        .iter()
        .map(text)
        .collect();
    assert!(
        context
            .iter()
            .any(|c| c.starts_with("in development since ")),
        "{context:?}"
    );
    let (csrf, expect) = (hidden(&preview, "csrf"), hidden(&preview, "expect"));
    let created = with_headers(
        &shared,
        "POST",
        "/agents/billing-agent/propose",
        &posting,
        &format!("action=promote&environment=staging&csrf={csrf}&expect={expect}"),
    )
    .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER);
    let agent = page(&get(&shared, "/agents/billing-agent").await);
    let listed: Vec<String> = select(&agent, "#proposals + ul.proposals li")
        .iter()
        .map(text)
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0].starts_with("staging Deploy billing-agent 2.1.0-rc.1 to staging by ")
            && listed[0].contains("branch ledgit/promote-billing-agent-staging-"),
        "{listed:?}"
    );
    assert!(
        select(
            &page(&get(&shared, "/agents/support-bot").await),
            "#proposals"
        )
        .is_empty()
    );
    let pending = get(&shared, "/v1/agents?state=proposals").await.json();
    let names: Vec<&str> = pending["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["agent"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["billing-agent"]);
    assert_eq!(
        pending["proposals"][0]["touches"][0],
        serde_json::json!(["billing-agent", "staging"])
    );

    // A revocation with its reason, previewed.
    let jti = "7f144d0dfe64f92e7ac908045cb99094";
    let url = format!("/agents/support-bot/propose?action=revoke&jti={jti}&reason=laptop+stolen");
    let preview = page(&with_headers(&shared, "GET", &url, &signed, "").await);
    let added: Vec<String> = select(&preview, "pre.diff .add").iter().map(text).collect();
    assert!(
        added
            .iter()
            .any(|l| l.contains("reason: \"laptop stolen\"")),
        "{added:?}"
    );
    let (csrf, expect) = (hidden(&preview, "csrf"), hidden(&preview, "expect"));
    assert_eq!(hidden(&preview, "reason"), "laptop stolen");
    // Another reason than the one previewed: nothing is committed.
    let changed = with_headers(
        &shared,
        "POST",
        "/agents/support-bot/propose",
        &posting,
        &format!("action=revoke&jti={jti}&reason=other&csrf={csrf}&expect={expect}"),
    )
    .await;
    assert_eq!(changed.status, StatusCode::CONFLICT);
    let created = with_headers(
        &shared,
        "POST",
        "/agents/support-bot/propose",
        &posting,
        &format!("action=revoke&jti={jti}&reason=laptop+stolen&csrf={csrf}&expect={expect}"),
    )
    .await;
    let created = proposal_page(&shared, &created, &posting).await;
    let branch = text(&select(&page(&created), "#branch")[0]);
    let repo = git2::Repository::open(f.path()).unwrap();
    let commit = repo
        .revparse_single(&format!("refs/heads/{branch}"))
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let message = commit.message().unwrap();
    assert!(message.contains("Reason: laptop stolen"), "{message}");
    let entry = commit
        .tree()
        .unwrap()
        .get_name("revocations.yaml")
        .unwrap()
        .id();
    let list = String::from_utf8(repo.find_blob(entry).unwrap().content().to_vec()).unwrap();
    assert!(list.contains("reason: \"laptop stolen\""), "{list}");
}

/// Every answer says `nosniff`; behind an https public URL every answer carries
/// `Strict-Transport-Security` and the session cookie is `__Host-` prefixed (Secure, Path=/,
/// no Domain), and only that name signs in.
#[tokio::test]
async fn https_answers_carry_hsts_and_a_host_only_session_cookie() {
    let f = Fixture::new();
    let plain = f.shared();
    for path in [
        "/v1/deployments",
        "/healthz",
        "/",
        "/no/such/route",
        "/metrics",
    ] {
        let a = get(&plain, path).await;
        assert_eq!(a.header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(a.header("strict-transport-security"), "", "{path}");
    }
    let mut options = f.options();
    options.public_url = "https://ledgit.example".into();
    let secure = f.shared_with(options);
    for path in ["/v1/deployments", "/", "/no/such/route"] {
        let a = get(&secure, path).await;
        assert_eq!(
            a.header("strict-transport-security"),
            "max-age=31536000",
            "{path}"
        );
        assert_eq!(a.header("x-content-type-options"), "nosniff", "{path}");
    }
    let signed = with_headers(
        &secure,
        "POST",
        "/signin",
        &[
            ("host", "ledgit.example".into()),
            ("origin", "https://ledgit.example".into()),
        ],
        &format!("secret={UI_SECRET}"),
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);
    let cookie = signed.header("set-cookie").to_string();
    assert!(cookie.starts_with("__Host-ledgit_session="), "{cookie}");
    assert!(
        cookie.contains("; Path=/") && cookie.contains("; Secure"),
        "{cookie}"
    );
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let with = |c: String| {
        let secure = secure.clone();
        async move { page(&with_headers(&secure, "GET", "/", &[("cookie", c)], "").await) }
    };
    assert!(!select(&with(pair.clone()).await, "form[action='/signout']").is_empty());
    // The same value under the plain name is no session on an https server.
    let plain_name = pair.replacen("__Host-", "", 1);
    assert!(select(&with(plain_name).await, "form[action='/signout']").is_empty());
}

/// Pages and JSON are gzipped for a client that accepts it, and read back the same.
#[tokio::test]
async fn pages_and_json_are_compressed_when_the_client_accepts_gzip() {
    let f = Fixture::new();
    let shared = f.shared();
    for path in ["/", "/v1/agents", "/v1/deployments", "/agents/support-bot"] {
        let plain = get(&shared, path).await;
        assert_eq!(plain.header("content-encoding"), "", "{path}");
        let zipped = call(
            &shared,
            Request::get(path)
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(zipped.status, StatusCode::OK, "{path}");
        assert_eq!(zipped.header("content-encoding"), "gzip", "{path}");
        // `call` inflates it: the same document.
        if path.starts_with("/v1/") {
            let a: serde_json::Value = serde_json::from_slice(&plain.body).unwrap();
            let b: serde_json::Value = serde_json::from_slice(&zipped.body).unwrap();
            assert_eq!(a, b, "{path}");
        } else {
            assert_eq!(
                select(&page(&plain), "h1")
                    .iter()
                    .map(text)
                    .collect::<Vec<_>>(),
                select(&page(&zipped), "h1")
                    .iter()
                    .map(text)
                    .collect::<Vec<_>>()
            );
        }
    }
}

/// Error pages keep the signed-in header, say what happened in words, keep what the person
/// typed and link addresses; a browser asking for an unknown route gets the HTML 404 page.
#[tokio::test]
async fn error_pages_speak_in_words_and_keep_the_visitor_and_what_they_typed() {
    let f = Fixture::new();
    let shared = f.shared();
    let cookie = sign_in(&shared).await;
    let browser = |uri: &str| {
        let shared = shared.clone();
        let cookie = cookie.clone();
        let uri = uri.to_string();
        async move {
            with_headers(
                &shared,
                "GET",
                &uri,
                &[
                    ("cookie", cookie),
                    ("accept", "text/html,application/xhtml+xml".into()),
                    ("host", "ledgit.example".into()),
                ],
                "",
            )
            .await
        }
    };
    let missing = browser("/no/such/page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let html = page(&missing);
    assert_eq!(text(&select(&html, "h1")[0]), "Not found");
    assert!(!select(&html, "form[action='/signout']").is_empty());
    // A script still gets JSON.
    let json = get(&shared, "/no/such/page").await;
    assert_eq!(json.header("content-type"), "application/json");
    // A version that is not one: the page says so in words, with the form and the value.
    let typed = "not a version";
    let refused = browser(&format!(
        "/agents/support-bot/propose?action=set&environment=production&version={}",
        typed.replace(' ', "%20")
    ))
    .await;
    assert!(refused.status.is_client_error(), "{:?}", refused.status);
    let html = page(&refused);
    let heading = text(&select(&html, "h1")[0]);
    assert_ne!(heading, refused.status.canonical_reason().unwrap());
    assert!(!select(&html, "form[action='/signout']").is_empty());
    let field = &select(&html, "form.retry input[name=version]")[0];
    assert_eq!(field.value().attr("value"), Some(typed));
    let kept: Vec<(String, String)> = select(&html, "form.retry input[type=hidden]")
        .iter()
        .map(|i| {
            (
                i.value().attr("name").unwrap().to_string(),
                i.value().attr("value").unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        kept.contains(&("environment".into(), "production".into())),
        "{kept:?}"
    );
}

/// Behind `--trusted-proxy`, failures are counted by the client the proxy names in
/// `X-Forwarded-For`: one client's guesses do not lock out the others behind the same proxy,
/// and a client cannot move its count by writing the header itself.
#[tokio::test]
async fn behind_a_trusted_proxy_failures_count_by_the_client_it_names() {
    let f = Fixture::new();
    let mut options = f.options();
    options.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    let shared = f.shared_with(options);
    let introspect = |peer: &'static str, forwarded: &'static str, secret: &'static str| {
        let shared = shared.clone();
        async move {
            from_client(
                &shared,
                peer,
                "POST",
                "/oauth2/introspect",
                &[
                    ("authorization", format!("Bearer {secret}")),
                    ("x-forwarded-for", forwarded.to_string()),
                ],
                "token=x",
            )
            .await
            .status
        }
    };
    for _ in 0..ledgit::server::ALLOWED {
        assert_eq!(
            introspect("10.0.0.2", "192.0.2.50", "wrong-secret").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        introspect("10.0.0.2", "192.0.2.50", INTROSPECTION_SECRET).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy is answered.
    assert_eq!(
        introspect("10.0.0.2", "192.0.2.51", INTROSPECTION_SECRET).await,
        StatusCode::OK
    );
    // A client's own entry to the left of what the proxy appended changes nothing.
    assert_eq!(
        introspect("10.0.0.2", "203.0.113.9, 192.0.2.50", INTROSPECTION_SECRET).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // An untrusted peer is counted by its own address, whatever it claims.
    for _ in 0..ledgit::server::ALLOWED {
        introspect("198.51.100.7", "192.0.2.60", "wrong-secret").await;
    }
    assert_eq!(
        introspect("198.51.100.7", "192.0.2.61", INTROSPECTION_SECRET).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        introspect("10.0.0.2", "192.0.2.60", INTROSPECTION_SECRET).await,
        StatusCode::OK
    );
}
