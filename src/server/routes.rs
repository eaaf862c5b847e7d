//! The routes of `ledgit serve` (SPEC "The server") and their handlers. Every answer is JSON
//! (except `/metrics`); every error is `{"error": code, "message": text}` with the status that
//! says what went wrong. Handlers read the served state once and answer from it alone.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Deserialize;

use crate::model::Deployment;
use crate::token::{Invalid, Reason, Verified};

use super::answer::{
    Answer, ApiError, at_param, closing, error, json, read_body, shown, time_param,
};
use super::hooks;
use super::state::served;
use super::state::{Served, Shared};

/// How long one request may take, body included.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The most events one page of `/v1/history` holds.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/whoami", get(whoami))
        .route("/oauth2/introspect", post(introspect))
        .route("/oauth2/token", post(token_endpoint))
        .route("/v1/authz", any(authz))
        .route("/v1/authz/{*path}", any(authz))
        .route("/v1/deployments", get(deployments))
        .route("/v1/deployments/{agent}", get(deployments_of_agent))
        .route("/v1/deployments/{agent}/{environment}", get(deployment))
        .route("/v1/history", get(history))
        .route("/v1/leases", get(leases))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/v1/hooks/{provider}", post(hooks::receive))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(super::pages::router(shared.clone()))
        .route_layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .route_layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .route_layer(axum::middleware::from_fn(name_route))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(shared.clone(), access))
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(shared)
}

/// A defect in a handler: a 500 for that request, the server goes on.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "ledgit failed on this request (a defect in ledgit: please report it)",
    )
}

async fn not_found(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(page) = super::pages::not_found(&shared, &headers).await {
        return page;
    }
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; /openapi.json lists the routes",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not answer that method; /openapi.json lists the routes",
    )
}

/// What the access log says of the token a request presented (never the token).
#[derive(Clone)]
pub struct TokenSeen(pub String);

/// The route template that answered a request, as the OpenAPI document names it
/// (`/v1/deployments/{agent}`): metrics and the log name routes, never raw paths (which a
/// client chooses, and which could hold anything). Taken from axum's own [`MatchedPath`], so
/// there is no second route table to keep.
///
/// [`MatchedPath`]: axum::extract::MatchedPath
#[derive(Clone, Copy, Debug)]
pub struct RouteName(pub &'static str);

/// The template's name, made once per route and kept for the process: the router's routes are
/// a fixed set, so every request after the first of its route names it without allocating.
fn route_name(matched: &str) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{OnceLock, RwLock};
    static NAMES: OnceLock<RwLock<HashMap<String, &'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    if let Some(name) = names.read().ok().and_then(|n| n.get(matched).copied()) {
        return name;
    }
    let mut names = names.write().unwrap_or_else(|p| p.into_inner());
    names.entry(matched.to_string()).or_insert_with(|| {
        // axum writes a wildcard `{*path}`; OpenAPI writes `{path}`.
        Box::leak(matched.replace("{*", "{").into_boxed_str())
    })
}

/// Marks an answer with the template of the route that gave it.
async fn name_route(matched: axum::extract::MatchedPath, req: Request, next: Next) -> Response {
    let name = route_name(matched.as_str());
    let mut response = next.run(req).await;
    response.extensions_mut().insert(RouteName(name));
    response
}

/// The access log and the request metrics: route, status, duration and, for token routes,
/// the token's id and deployment. Nothing from the headers or the query is written.
async fn access(State(shared): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let peer = req
        .extensions()
        .get::<super::limits::ClientAddr>()
        .map(|c| c.0.ip());
    if let Some(keys) = &shared.ui_keys {
        super::session::strip_untrusted(&keys.auth, req.headers_mut(), peer);
    }
    if let Some(peer) = peer
        && !shared.options.trusted_proxies.is_empty()
    {
        let client =
            super::limits::client_behind(peer, req.headers(), &shared.options.trusted_proxies);
        req.extensions_mut()
            .insert(super::limits::CountedAs(client));
    }
    let method = req.method().clone();
    let mut response = next.run(req).await;
    protect(&shared, response.headers_mut());
    let route = response
        .extensions()
        .get::<RouteName>()
        .map_or("unmatched", |r| r.0);
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    shared
        .metrics
        .requests
        .get_or_create(&super::metrics::RequestLabels { route, status })
        .inc();
    shared
        .metrics
        .latency
        .get_or_create(&super::metrics::RouteLabel { route })
        .observe(elapsed.as_secs_f64());
    if !shared.options.quiet {
        let token = response
            .extensions()
            .get::<TokenSeen>()
            .map(|t| format!(" {}", t.0))
            .unwrap_or_default();
        super::options::log!(
            shared.options.log,
            "{} {method} {route} {status} {:.2}ms{token}",
            crate::support::when::rfc3339(chrono::Utc::now().timestamp()),
            elapsed.as_secs_f64() * 1000.0
        );
    }
    response
}

/// Headers every answer carries: `nosniff` (a browser never guesses a JSON answer to be a
/// page or a script), and behind an https public URL `Strict-Transport-Security`, so a browser
/// that came once never speaks plain http to this server again.
fn protect(shared: &Shared, headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if shared.secure() {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
}

/// The request's one `Authorization` header, if it has one. Two are refused (400): which of
/// them a proxy in front checked and which one ledgit would read is anyone's guess.
pub fn authorization(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut all = headers.get_all(header::AUTHORIZATION).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request has more than one Authorization header",
        ));
    }
    Ok(first.and_then(|v| v.to_str().ok()))
}

/// The credentials of an `Authorization` value in `scheme` (`Bearer`, `Basic`), if it is one.
fn credentials<'a>(value: Option<&'a str>, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value?.split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// The bearer token of a request, if it presents one (400 for two `Authorization` headers).
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    Ok(credentials(authorization(headers)?, "bearer"))
}

/// The client id and secret of HTTP Basic client authentication (RFC 6749, 2.3.1: each
/// form-encoded, then joined by `:` and base64-encoded).
fn basic_client(value: Option<&str>) -> Option<(String, String)> {
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials(value, "basic")?)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let form = |s: &str| -> Option<String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
        pairs.into_iter().next().map(|(_, v)| v)
    };
    Some((form(id)?, form(secret)?))
}

/// Verifies a token against the served state, counting the result.
fn verify(shared: &Shared, served: &Served, token: &str) -> Result<Verified, Invalid> {
    let now = chrono::Utc::now().timestamp();
    let result = served
        .signatures
        .verify(&served.verifier, token)
        .and_then(|signed| served.verifier.check_claims(signed, now));
    shared
        .metrics
        .verified(result.as_ref().map(|_| ()).map_err(|e| &e.reason));
    if let Ok(v) = &result {
        shared.seen(v.claims.jti.as_str(), now);
    }
    result
}

/// The log's words for a token.
fn seen(result: &Result<Verified, Invalid>) -> TokenSeen {
    TokenSeen(match result {
        Ok(v) => format!(
            "token={} deployment={}/{}",
            v.claims.jti, v.claims.agent, v.claims.environment
        ),
        Err(e) => match &e.claims {
            Some(c) => format!(
                "token={} deployment={}/{} invalid={}",
                c.jti,
                c.agent,
                c.environment,
                e.reason.code()
            ),
            None => format!("invalid={}", e.reason.code()),
        },
    })
}

/// RFC 6750's answer to a missing or invalid token.
fn unauthorized(reason: &Reason) -> Response {
    let challenge = match reason {
        // No credentials: no error code (RFC 6750, 3.1).
        Reason::Missing => "Bearer realm=\"ledgit\"".to_string(),
        _ => format!(
            "Bearer realm=\"ledgit\", error=\"invalid_token\", error_description=\"{}\"",
            quoted(&reason.to_string())
        ),
    };
    let mut response = json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({
            "error": if matches!(reason, Reason::Missing) { "missing_token" } else { "invalid_token" },
            "code": reason.code(),
            "message": reason.to_string(),
        }),
    );
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Text fit for a quoted header parameter: printable ASCII without `"` and `\`.
fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' => c,
            _ => '?',
        })
        .collect()
}

fn token_result(
    shared: &Shared,
    served: &Served,
    headers: &HeaderMap,
) -> Result<Result<Verified, Invalid>, ApiError> {
    Ok(match bearer(headers)? {
        Some(token) => verify(shared, served, token),
        None => {
            shared.metrics.verified(Err(&Reason::Missing));
            Err(Invalid {
                reason: Reason::Missing,
                claims: None,
            })
        }
    })
}

async fn whoami(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Answer {
    let served = served(&shared)?;
    let result = token_result(&shared, &served, &headers)?;
    let seen = seen(&result);
    let mut response = match &result {
        Ok(v) => {
            let record = served.deployment(&v.claims.agent, &v.claims.environment);
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "agent": v.claims.agent,
                    "environment": v.claims.environment,
                    "version": v.version,
                    "generation": v.claims.generation,
                    "path": record.map_or(v.claims.path.as_str(), |d| d.path.as_str()),
                    "since": record.map(|d| d.updated_at.as_str()),
                    "commit": served.commit.to_string(),
                    "token": {
                        "id": v.claims.jti,
                        "key": v.kid,
                        "issued_at": crate::support::when::rfc3339(v.claims.iat),
                        "expires_at": v.claims.exp.map(crate::support::when::rfc3339),
                        "audience": v.claims.aud,
                    },
                }),
            )
        }
        Err(e) => unauthorized(&e.reason),
    };
    response.extensions_mut().insert(seen);
    Ok(no_store(response))
}

/// Answers that depend on a token are never cached by intermediaries.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
struct IntrospectForm {
    token: Option<String>,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// RFC 7662: the caller (a gateway) authenticates with the introspection secret, as a bearer
/// token or with HTTP Basic client authentication (`client_secret_basic`, what OAuth libraries
/// send by default; the client id must be `LEDGIT_INTROSPECTION_CLIENT_ID` when that is set);
/// the answer is the token's claims with `active: true`, or exactly `{"active": false}`.
async fn introspect(
    State(shared): State<Arc<Shared>>,
    client: super::limits::Client,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let Some(secret) = &shared.options.introspection_secret else {
        return Ok(closing(error(
            StatusCode::UNAUTHORIZED,
            "introspection_disabled",
            "introspection is disabled: start the server with LEDGIT_INTROSPECTION_SECRET set",
        )));
    };
    let now = chrono::Utc::now().timestamp();
    if let Some(r) = shared.failures.introspection.refuse(client.0, now) {
        return Ok(closing(r));
    }
    let value = authorization(&headers)?;
    let authenticated = match (credentials(value, "bearer"), basic_client(value)) {
        (Some(caller), _) => crate::support::hmac::same_secret(secret, caller.as_bytes()),
        (None, Some((id, given))) => {
            let id_ok = shared
                .options
                .introspection_client_id
                .as_deref()
                .is_none_or(|expected| {
                    crate::support::hmac::same_secret(expected.as_bytes(), id.as_bytes())
                });
            // Both compared, whatever the first says: the time taken tells nothing.
            crate::support::hmac::same_secret(secret, given.as_bytes()) & id_ok
        }
        (None, None) => false,
    };
    if !authenticated {
        shared.failures.introspection.count(client.0, now);
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "authenticate with the introspection secret: Authorization: Bearer <secret>, or HTTP Basic with the client id and the secret",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Basic realm=\"ledgit-introspection\", Bearer realm=\"ledgit-introspection\"",
            ),
        );
        return Ok(closing(r));
    }
    let bytes = read_body(body, 64 * 1024).await?;
    let form: IntrospectForm = match serde_urlencoded::from_bytes(&bytes) {
        Ok(f) => f,
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the body is not a form (application/x-www-form-urlencoded): {e}"),
            ));
        }
    };
    let Some(token) = form.token.filter(|t| !t.is_empty()) else {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the form has no `token` parameter",
        ));
    };
    let served = served(&shared)?;
    let result = verify(&shared, &served, &token);
    let seen = seen(&result);
    let mut response = match result {
        Ok(v) => {
            let mut claims = serde_json::to_value(&v.claims).unwrap_or_default();
            if let Some(map) = claims.as_object_mut() {
                map.insert("active".into(), true.into());
                map.insert("token_type".into(), "Bearer".into());
                map.insert("kid".into(), v.kid.into());
                map.insert("version".into(), v.version.into());
            }
            json(StatusCode::OK, &claims)
        }
        Err(_) => json(StatusCode::OK, &serde_json::json!({"active": false})),
    };
    response.extensions_mut().insert(seen);
    Ok(no_store(response))
}

#[derive(Deserialize)]
struct Scope {
    agent: Option<String>,
    environment: Option<String>,
}

/// Forward authentication (nginx `auth_request`, Traefik ForwardAuth, Envoy `ext_authz`): 200
/// with the deployment in headers, 401 without a valid token, 403 for a valid token outside
/// the scope `?agent=&environment=` asks for.
async fn authz(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Answer {
    let scope: Scope = match serde_urlencoded::from_str(query.as_deref().unwrap_or("")) {
        Ok(s) => s,
        Err(e) => return Err(ApiError::bad_query(e)),
    };
    let served = served(&shared)?;
    let result = token_result(&shared, &served, &headers)?;
    let seen = seen(&result);
    let mut response = match &result {
        Err(e) => unauthorized(&e.reason),
        Ok(v) => {
            let outside = scope.agent.as_ref().is_some_and(|a| *a != v.claims.agent)
                || scope
                    .environment
                    .as_ref()
                    .is_some_and(|e| *e != v.claims.environment);
            if outside {
                error(
                    StatusCode::FORBIDDEN,
                    "outside_scope",
                    format!(
                        "the token is for {}/{}, outside what this route admits",
                        v.claims.agent, v.claims.environment
                    ),
                )
            } else {
                let mut r = json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "agent": v.claims.agent,
                        "environment": v.claims.environment,
                        "version": v.version,
                        "token_id": v.claims.jti,
                    }),
                );
                for (name, value) in [
                    ("x-ledgit-agent", &v.claims.agent),
                    ("x-ledgit-environment", &v.claims.environment),
                    ("x-ledgit-version", &v.version),
                    ("x-ledgit-token-id", &v.claims.jti),
                ] {
                    if let Ok(value) = HeaderValue::from_str(value) {
                        r.headers_mut().insert(name, value);
                    }
                }
                r
            }
        }
    };
    response.extensions_mut().insert(seen);
    Ok(no_store(response))
}

#[derive(Deserialize)]
struct AtQuery {
    at: Option<String>,
}

/// The snapshot the request asks for: now, or at `?at=`.
fn snapshot(served: &Served, query: Option<&str>) -> Result<Option<Vec<Deployment>>, ApiError> {
    let q: AtQuery =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(ApiError::bad_query)?;
    match q.at {
        None => Ok(None),
        Some(at) => {
            let t = at_param(&at)?.time.timestamp();
            let h = &served.history;
            Ok(Some(h.snapshot(h.position_at(t))))
        }
    }
}

fn tagged(served: &Served, mut response: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&served.etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// Whether `If-None-Match` names the served commit's entity tag.
fn not_modified(served: &Served, headers: &HeaderMap) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == served.etag || t.trim() == "*")
        })
}

/// Whether the client accepts gzip: `Accept-Encoding` names it (or `*`) without `q=0`.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

async fn deployments(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Answer {
    let served = served(&shared)?;
    if let Some(rows) = snapshot(&served, query.as_deref())? {
        return Ok(tagged(&served, json(StatusCode::OK, &rows)));
    }
    if not_modified(&served, &headers) {
        return Ok(tagged(&served, StatusCode::NOT_MODIFIED.into_response()));
    }
    // The current snapshot was serialized (and compressed) once, at load: every answer shares
    // those bytes.
    let gzip = accepts_gzip(&headers);
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        if gzip {
            served.deployments_gzip.clone()
        } else {
            served.deployments_json.clone()
        },
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Ok(tagged(&served, response))
}

async fn deployments_of_agent(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let served = served(&shared)?;
    let rows = snapshot(&served, query.as_deref())?.unwrap_or_else(|| served.rows.clone());
    let of: Vec<&Deployment> = rows.iter().filter(|d| d.agent == agent).collect();
    if of.is_empty() {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("agent `{}` has no record", shown(&agent)),
        ));
    }
    Ok(tagged(&served, json(StatusCode::OK, &of)))
}

async fn deployment(
    State(shared): State<Arc<Shared>>,
    Path((agent, environment)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Answer {
    let served = served(&shared)?;
    let found = match snapshot(&served, query.as_deref())? {
        Some(rows) => rows
            .into_iter()
            .find(|d| d.agent == agent && d.environment == environment),
        None => served.deployment(&agent, &environment).cloned(),
    };
    Ok(match found {
        Some(d) => tagged(&served, json(StatusCode::OK, &d)),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no record of `{}` in `{}`",
                shown(&agent),
                shown(&environment)
            ),
        ),
    })
}

#[derive(Deserialize)]
struct HistoryQuery {
    agent: Option<String>,
    environment: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The events, oldest first, a page at a time: `cursor` is where the next page starts (the
/// `Link` header with `rel="next"` gives the whole URL). The entity tag is the served commit:
/// an unchanged branch answers `304 Not Modified` to `If-None-Match`.
async fn history(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Answer {
    let served = served(&shared)?;
    let q: HistoryQuery = match serde_urlencoded::from_str(query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return Err(ApiError::bad_query(e)),
    };
    let since = q
        .since
        .as_deref()
        .map(|t| time_param("since", t))
        .transpose()?;
    let until = q
        .until
        .as_deref()
        .map(|t| time_param("until", t))
        .transpose()?;
    // A relative bound (`7d`) moves with the clock: the answer is not a function of the
    // commit, so it carries no entity tag and is never answered from one.
    let fixed = !since.iter().chain(until.iter()).any(|t| t.relative);
    let since = since.map(|t| t.time.timestamp());
    let until = until.map(|t| t.time.timestamp());
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => DEFAULT_PAGE,
        Some(Ok(n)) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "invalid_limit",
                format!("`limit` is a number from 1 to {MAX_PAGE}"),
            ));
        }
    };
    let start = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match decode_cursor(c) {
            Some(n) => n,
            None => {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_cursor",
                    "`cursor` is not one this server gave (take it from the Link header)",
                ));
            }
        },
    };
    if fixed && not_modified(&served, &headers) {
        return Ok(tagged(&served, StatusCode::NOT_MODIFIED.into_response()));
    }
    let h = &served.history;
    let filter = crate::git::history::EventFilter {
        agent: q.agent.as_deref(),
        environment: q.environment.as_deref(),
        since,
        until,
    };
    let wanted = |e: &&crate::git::history::Event| h.keeps(&filter, e);
    let mut page = Vec::with_capacity(limit.min(h.events().len()));
    let mut next = None;
    for (i, e) in h.events().iter().enumerate().skip(start) {
        if !wanted(&e) {
            continue;
        }
        if page.len() == limit {
            next = Some(i);
            break;
        }
        page.push(e);
    }
    let mut body = Vec::new();
    let _ = crate::view::json::write_json(&mut body, h, &page);
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(n) = next {
        let cursor = encode_cursor(n);
        let mut params: Vec<(String, String)> = Vec::new();
        for (k, v) in [
            ("agent", &q.agent),
            ("environment", &q.environment),
            ("since", &q.since),
            ("until", &q.until),
        ] {
            if let Some(v) = v {
                params.push((k.into(), v.clone()));
            }
        }
        params.push(("limit".into(), limit.to_string()));
        params.push(("cursor".into(), cursor.clone()));
        let link = format!(
            "</v1/history?{}>; rel=\"next\"",
            serde_urlencoded::to_string(&params).unwrap_or_default()
        );
        for (name, value) in [("link", link), ("x-next-cursor", cursor)] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
    }
    Ok(if fixed {
        tagged(&served, response)
    } else {
        response
    })
}

/// Cursors are positions in the event list, opaque to clients.
fn encode_cursor(position: usize) -> String {
    format!("e{position:x}")
}

fn decode_cursor(text: &str) -> Option<usize> {
    let hex = text.strip_prefix('e')?;
    if hex.is_empty() || hex.len() > 12 {
        return None;
    }
    usize::from_str_radix(hex, 16).ok()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Answer {
    let served = served(&shared)?;
    let mut r = json(StatusCode::OK, &crate::token::jwks(&served.config));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(r)
}

/// RFC 8414 metadata: where verifiers find the keys and gateways the introspection endpoint.
/// The issuer is the one ledgit.yaml names (the `iss` of the tokens issued since), else the
/// server's public URL. ledgit grants no token over HTTP (`ledgit token issue` does): the token
/// endpoint refuses every grant, and no grant type is offered.
async fn metadata(State(shared): State<Arc<Shared>>) -> Answer {
    let served = served(&shared)?;
    let base = shared.options.public_url.trim_end_matches('/');
    let issuer = served.config.issuer.as_deref().unwrap_or(base);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "token_endpoint": format!("{base}/oauth2/token"),
            "introspection_endpoint": format!("{base}/oauth2/introspect"),
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
            "response_types_supported": ["none"],
            "grant_types_supported": [],
            "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
            "service_documentation": format!("{base}/openapi.json"),
        }),
    ))
}

/// The token endpoint RFC 8414 names: ledgit grants no token over HTTP, so every request is
/// answered as RFC 6749 (5.2) answers a grant the server does not support.
async fn token_endpoint() -> Response {
    no_store(json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({
            "error": "unsupported_grant_type",
            "error_description": "ledgit grants no token over HTTP: deployment tokens are issued with `ledgit token issue`",
        }),
    ))
}

/// Who leads each environment, from the reconciler's store (cached for a second).
async fn leases(State(shared): State<Arc<Shared>>) -> Answer {
    let served = served(&shared)?;
    let view = shared.observed(&served).await;
    // An unreachable store is not an empty one: nobody can say who leads.
    if let Some(reason) = shared.store_health().down {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unreachable",
            format!("the reconciler's store cannot be read: {reason}"),
        ));
    }
    let leases = view.as_ref().map(|v| v.leases.as_slice()).unwrap_or(&[]);
    Ok(no_store(json(
        StatusCode::OK,
        &serde_json::json!({ "leases": leases }),
    )))
}

async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let health = shared.health();
    let served = shared.served.load_full();
    if let Some(s) = &served {
        shared.observed(s).await;
    }
    let commit = served.as_ref().map(|s| s.commit.to_string());
    // The declared state is served without the store: ready, and the store's state said.
    let ready = served.is_some() && health.failing.is_none();
    let store = shared.store_health();
    json(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &serde_json::json!({
            "ready": ready,
            "commit": commit,
            "reason": health.failing,
            "store": {
                "up": store.down.is_none(),
                "since": (store.since > 0).then(|| crate::support::when::rfc3339(store.since)),
                "reason": store.down,
            },
        }),
    )
}

/// The metrics: OpenMetrics to a scraper that asks for it (`Accept:
/// application/openmetrics-text`), Prometheus' text format 0.0.4 to everyone else.
async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    // Leadership, per environment of the served config (a small, known set of labels).
    if let Some(served) = shared.served.load_full() {
        let view = shared.observed(&served).await;
        for env in &served.config.environments {
            let held = view
                .as_ref()
                .is_some_and(|v| v.leases.iter().any(|l| l.environment == env.name && l.live));
            shared
                .metrics
                .lease_held
                .get_or_create(&super::metrics::EnvironmentLabel {
                    environment: env.name.clone(),
                })
                .set(i64::from(held));
        }
    }
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.openmetrics(),
        )
    } else {
        (
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.prometheus(),
        )
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

async fn openapi(State(shared): State<Arc<Shared>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        shared.openapi.clone(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_others() {
        for n in [0, 1, 99, 123_456] {
            assert_eq!(decode_cursor(&encode_cursor(n)), Some(n));
        }
        for bad in ["", "e", "x1", "e-1", "eZZ", "e1234567890123"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn gzip_is_used_where_accepted() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&h)
        };
        assert!(with("gzip"));
        assert!(with("br, gzip;q=0.5, deflate"));
        assert!(with("*"));
        assert!(!with("gzip;q=0"));
        assert!(!with("gzip; q=0.000"));
        assert!(!with("identity"));
        assert!(!with("gzipx"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn header_parameters_are_quoted_safely() {
        assert_eq!(quoted("a \"b\" \\ é\n"), "a ?b? ? ??");
    }
}
