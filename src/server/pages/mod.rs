//! The web page (SPEC "The server", people's routes): the deployment snapshot at `/`, an
//! agent's page, its deployments tab, each with a JSON twin under `/v1/agents`, and the
//! controls that turn a promotion, a version, a rollback or a revocation into a proposal (a
//! branch with one commit, never a write to the tracked branch). Pages are rendered on the
//! server from askama templates compiled into the binary and work without JavaScript; the
//! data comes from `crate::view`, shared with the JSON twins.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::review::proposal::Preview;
use crate::view::{self, AgentPage, DeploymentTokens, Overview};

use super::routes::{Answer, ApiError, json};
use super::session::Session;
use super::state::{Served, Shared};

mod controls;
mod timeline;

use controls::{propose_create, propose_page, signin, signin_page, signout};
use timeline::timeline_svg;

/// The page routes and their JSON twins.
pub fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(overview_page))
        .route("/agents/{agent}", get(agent_page))
        .route("/agents/{agent}/deployments", get(tokens_page))
        .route(
            "/agents/{agent}/propose",
            get(propose_page).post(propose_create),
        )
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", axum::routing::post(signout))
        .route("/v1/agents", get(overview_json))
        .route("/v1/agents/{agent}", get(agent_json))
        .route("/v1/agents/{agent}/tokens", get(tokens_json))
        .route("/static/style.css", get(stylesheet))
        .route("/static/favicon.svg", get(favicon))
        .route_layer(axum::middleware::from_fn_with_state(shared, keep_session))
}

/// Records a signed-in visitor's visit in the session cookie (at most once a minute), so that
/// a session ends after a while without visits, not while it is used.
async fn keep_session(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let now = chrono::Utc::now().timestamp();
    let renewal = shared.ui_keys.as_ref().and_then(|keys| {
        let session = keys.session(request.headers(), now)?;
        keys.renew(&session, now)
    });
    let mut response = next.run(request).await;
    if let Some(cookie) = renewal
        && !response.headers().contains_key(header::SET_COOKIE)
    {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

const STYLE: &str = include_str!("../static/style.css");
const FAVICON: &str = include_str!("../static/favicon.svg");

/// What every page shows around its content.
pub struct Chrome {
    title: String,
    version: &'static str,
    commit: String,
    commit_short: String,
    branch: String,
    json: Option<String>,
    signed_in: bool,
    proposals: bool,
    csrf: String,
    now: i64,
}

/// Formatting helpers the templates call (`self.ago(t)`, `self.short(id)`).
trait Helpers {
    fn now(&self) -> i64;

    /// "3 days ago", "in 2 months".
    fn ago(&self, t: impl Secs) -> String {
        crate::support::when::relative(t.secs(), self.now())
    }

    fn time(&self, t: impl Secs) -> String {
        crate::support::when::rfc3339(t.secs())
    }

    /// How many stays of an environment the timeline shows at most.
    fn spans(&self) -> usize {
        view::TIMELINE_SPANS
    }

    /// An RFC 3339 time as people read it: `2026-03-03 12:00 UTC`.
    fn human(&self, rfc3339: impl AsRef<str>) -> String {
        let t = rfc3339.as_ref();
        match (t.get(..10), t.get(11..16)) {
            (Some(d), Some(hm)) => format!("{d} {hm} UTC"),
            _ => t.to_string(),
        }
    }

    /// Time left, to the minute: `in 9d23h`, or how long ago it ran out.
    fn countdown(&self, left: impl Secs) -> String {
        let s = left.secs();
        if s > 0 {
            format!(
                "in {}",
                crate::support::when::format_duration_short(s.max(60))
            )
        } else {
            format!(
                "{} ago",
                crate::support::when::format_duration_short((-s).max(60))
            )
        }
    }

    /// The first 12 characters of an id.
    fn short(&self, id: impl AsRef<str>) -> String {
        id.as_ref().chars().take(12).collect()
    }

    fn diff_class(&self, line: impl AsRef<str>) -> &'static str {
        let l = line.as_ref();
        if l.starts_with("+++") || l.starts_with("---") || l.starts_with("diff") {
            "meta"
        } else if l.starts_with('+') {
            "add"
        } else if l.starts_with('-') {
            "del"
        } else if l.starts_with("@@") {
            "hunk"
        } else {
            "ctx"
        }
    }
}

/// Seconds, however a template holds them.
trait Secs {
    fn secs(&self) -> i64;
}
impl Secs for i64 {
    fn secs(&self) -> i64 {
        *self
    }
}
impl<T: Secs> Secs for &T {
    fn secs(&self) -> i64 {
        (*self).secs()
    }
}

macro_rules! page {
    ($name:ident, $path:literal { $($field:ident: $ty:ty),* $(,)? }) => {
        #[derive(Template)]
        #[template(path = $path)]
        struct $name {
            chrome: Chrome,
            $($field: $ty,)*
        }
        impl Helpers for $name {
            fn now(&self) -> i64 {
                self.chrome.now
            }
        }
    };
}

page!(OverviewHtml, "overview.html" {
    overview: Overview,
    next: Option<String>,
    at: Option<String>,
    at_input: String,
    filter: String,
    sync_known: bool,
    proposals: Arc<Vec<super::state::Proposal>>,
});
page!(AgentHtml, "agent.html" { page: AgentPage, timeline: String, controls: bool });
page!(TokensHtml, "deployments.html" {
    agent: String,
    deployments: Vec<DeploymentTokens>,
    controls: bool,
});
page!(ProposeHtml, "propose.html" {
    agent: String,
    preview: Preview,
    fields: Vec<(&'static str, String)>,
    is_revoke: bool,
    stale: bool,
    open: Option<(String, String)>,
});
page!(ProposedHtml, "proposed.html" {
    agent: String,
    branch: String,
    commit: String,
    title: String,
    pushed: Option<String>,
    pull_request: Option<String>,
});
page!(SigninHtml, "signin.html" { failed: bool });
page!(MessageHtml, "message.html" { heading: String, message: String, hint: String });

/// An HTML answer with the headers every page carries.
fn html(status: StatusCode, body: Result<String, askama::Error>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(_) => {
            return super::routes::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the page could not be rendered (a defect in ledgit: please report it)",
            );
        }
    };
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

/// Who is asking: their session (when proposals are on and they signed in).
struct Visitor {
    session: Option<Session>,
}

fn visitor(shared: &Shared, headers: &HeaderMap, now: i64) -> Visitor {
    Visitor {
        session: shared
            .ui_keys
            .as_ref()
            .and_then(|k| k.session(headers, now)),
    }
}

fn chrome(
    shared: &Shared,
    served: Option<&Served>,
    visitor: &Visitor,
    title: impl Into<String>,
    json: Option<String>,
    now: i64,
) -> Chrome {
    let commit = served.map(|s| s.commit.to_string()).unwrap_or_default();
    Chrome {
        title: title.into(),
        version: env!("CARGO_PKG_VERSION"),
        commit_short: commit.chars().take(12).collect(),
        commit,
        branch: shared.options.branch.clone(),
        json,
        signed_in: visitor.session.is_some(),
        proposals: shared.ui_keys.is_some(),
        csrf: match (&visitor.session, &shared.ui_keys) {
            (Some(s), Some(k)) => k.csrf(s),
            _ => String::new(),
        },
        now,
    }
}

/// An error as a page.
fn message_page(
    shared: &Shared,
    status: StatusCode,
    heading: &str,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Response {
    let now = chrono::Utc::now().timestamp();
    let served = shared.served.load_full();
    let v = Visitor { session: None };
    let page = MessageHtml {
        chrome: chrome(shared, served.as_deref(), &v, heading, None, now),
        heading: heading.into(),
        message: message.into(),
        hint: hint.into(),
    };
    html(status, page.render())
}

fn page_error(shared: &Shared, e: ApiError) -> Response {
    let (status, message) = e.parts();
    let heading = status.canonical_reason().unwrap_or("Error");
    message_page(shared, status, heading, message, "")
}

/// A page that answers instead of the one asked for: an error or a refusal, already rendered
/// (boxed: a response is large).
struct Detour(Box<Response>);

impl IntoResponse for Detour {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<Response> for Detour {
    fn from(r: Response) -> Self {
        Detour(Box::new(r))
    }
}

/// What a page handler answers: its page, or the page that says why not.
type PageResult = Result<Response, Detour>;

fn detour(shared: &Shared, e: ApiError) -> Detour {
    page_error(shared, e).into()
}

fn served_or_page(shared: &Shared) -> Result<Arc<Served>, Detour> {
    super::routes::served(shared).map_err(|e| detour(shared, e))
}

#[derive(Deserialize, Default)]
struct OverviewQuery {
    at: Option<String>,
    q: Option<String>,
    after: Option<String>,
}

/// Where a page asked with a relative `?at=` (`7d`) is found at the absolute time it means
/// now, so that the address in the browser is a permalink; `None` when it is one already.
fn permalink(path: &str, query: Option<&str>) -> Option<String> {
    let mut params: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    let (_, at) = params.iter_mut().find(|(k, _)| k == "at")?;
    let parsed = crate::support::when::parse_time_arg(at, chrono::Utc::now()).ok()?;
    if !parsed.relative {
        return None;
    }
    *at = crate::support::when::rfc3339(parsed.time.timestamp());
    Some(format!(
        "{path}?{}",
        serde_urlencoded::to_string(&params).ok()?
    ))
}

/// The snapshot the overview shows, and the time it is at (`None` for now).
async fn overview_of(
    shared: &Shared,
    served: &Served,
    query: Option<&str>,
) -> Result<(Overview, Option<i64>, OverviewQuery, bool), ApiError> {
    let q: OverviewQuery =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(ApiError::bad_query)?;
    let at =
        q.at.as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(super::routes::at_param)
            .transpose()?
            .map(|t| t.time.timestamp());
    let past;
    let rows: &[crate::model::Deployment] = match at {
        Some(t) => {
            past = served.history.snapshot(served.history.position_at(t));
            &past
        }
        None => &served.rows,
    };
    // The reconciler's states describe the platform now, not a past snapshot.
    let sync = match at {
        None => shared.observed(served).await.map(|v| v.sync_states(rows)),
        Some(_) => None,
    };
    let filter = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let after = q.after.as_deref().filter(|s| !s.is_empty());
    let overview = view::overview(&served.config, rows, sync.as_deref(), filter, after);
    Ok((overview, at, q, sync.is_some()))
}

async fn overview_page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> PageResult {
    if let Some(location) = permalink("/", query.as_deref()) {
        return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response());
    }
    let served = served_or_page(&shared)?;
    let now = chrono::Utc::now().timestamp();
    let (overview, at, q, sync_known) = overview_of(&shared, &served, query.as_deref())
        .await
        .map_err(|e| detour(&shared, e))?;
    let v = visitor(&shared, &headers, now);
    let json_href = match query.as_deref().filter(|q| !q.is_empty()) {
        Some(q) => format!("/v1/agents?{q}"),
        None => "/v1/agents".into(),
    };
    // The next page's link keeps the filter and the time.
    let next = overview.next_after.as_ref().map(|a| {
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(q) = q.q.as_deref().filter(|s| !s.is_empty()) {
            params.push(("q", q));
        }
        if let Some(at) = q.at.as_deref().filter(|s| !s.is_empty()) {
            params.push(("at", at));
        }
        params.push(("after", a));
        format!(
            "/?{}",
            serde_urlencoded::to_string(&params).unwrap_or_default()
        )
    });
    let page = OverviewHtml {
        chrome: chrome(
            &shared,
            Some(&served),
            &v,
            "Deployments",
            Some(json_href),
            now,
        ),
        next,
        overview,
        at: at.map(crate::support::when::rfc3339),
        at_input: q.at.unwrap_or_default(),
        filter: q.q.unwrap_or_default(),
        sync_known,
        proposals: shared.proposals.load_full(),
    };
    Ok(html(StatusCode::OK, page.render()))
}

async fn overview_json(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Answer {
    let served = super::routes::served(&shared)?;
    let (overview, at, _, _) = overview_of(&shared, &served, query.as_deref()).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "commit": served.commit.to_string(),
            "at": at.map(crate::support::when::rfc3339),
            "environments": overview.environments,
            "total_agents": overview.total_agents,
            "matching_agents": overview.matching_agents,
            "next_after": overview.next_after,
            "agents": overview.agents,
            "proposals": shared.proposals.load().iter().map(|(b, s)| serde_json::json!({"branch": b, "subject": s})).collect::<Vec<_>>(),
        }),
    ))
}

#[derive(Deserialize, Default)]
struct AgentQuery {
    before: Option<String>,
}

fn agent_of(served: &Served, agent: &str, query: Option<&str>) -> Result<AgentPage, ApiError> {
    let q: AgentQuery =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(ApiError::bad_query)?;
    let before = match q.before.as_deref() {
        None => None,
        Some(b) => Some(b.parse::<u32>().map(|n| n as usize).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "`before` is not one this server gave (follow the page's link to older events)",
            )
        })?),
    };
    let now = chrono::Utc::now().timestamp();
    view::agent_page(
        &served.config,
        &served.history,
        &served.agents,
        &served.rows,
        agent,
        before,
        now,
    )
    .ok_or_else(|| no_agent(agent))
}

fn no_agent(agent: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "agent `{}` has no record and no history",
            super::routes::shown(agent)
        ),
    )
}

async fn agent_page(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> PageResult {
    let served = served_or_page(&shared)?;
    let now = chrono::Utc::now().timestamp();
    let page = agent_of(&served, &agent, query.as_deref()).map_err(|e| detour(&shared, e))?;
    let v = visitor(&shared, &headers, now);
    let controls = v.session.is_some();
    let json_href = format!("/v1/agents/{agent}");
    let timeline = timeline_svg(&page);
    let out = AgentHtml {
        chrome: chrome(
            &shared,
            Some(&served),
            &v,
            agent.clone(),
            Some(json_href),
            now,
        ),
        page,
        timeline,
        controls,
    };
    Ok(html(StatusCode::OK, out.render()))
}

async fn agent_json(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let served = super::routes::served(&shared)?;
    Ok(json(
        StatusCode::OK,
        &agent_of(&served, &agent, query.as_deref())?,
    ))
}

fn tokens_of(
    shared: &Shared,
    served: &Served,
    agent: &str,
) -> Result<Vec<DeploymentTokens>, ApiError> {
    let known = served.rows.iter().any(|d| d.agent == agent)
        || served.ledger.iter().any(|e| e.agent == agent);
    if !known {
        return Err(no_agent(agent));
    }
    Ok(view::deployment_tokens(
        &served.config,
        &served.verifier,
        &served.rows,
        &served.ledger,
        agent,
        &|jti| shared.last_seen.get(jti),
        chrono::Utc::now().timestamp(),
    ))
}

async fn tokens_page(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let served = served_or_page(&shared)?;
    let now = chrono::Utc::now().timestamp();
    let deployments = tokens_of(&shared, &served, &agent).map_err(|e| detour(&shared, e))?;
    let v = visitor(&shared, &headers, now);
    let controls = v.session.is_some();
    let out = TokensHtml {
        chrome: chrome(
            &shared,
            Some(&served),
            &v,
            format!("{agent}: tokens"),
            Some(format!("/v1/agents/{agent}/tokens")),
            now,
        ),
        agent,
        deployments,
        controls,
    };
    Ok(html(StatusCode::OK, out.render()))
}

async fn tokens_json(State(shared): State<Arc<Shared>>, Path(agent): Path<String>) -> Answer {
    let served = super::routes::served(&shared)?;
    let deployments = tokens_of(&shared, &served, &agent)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"agent": agent, "commit": served.commit.to_string(), "deployments": deployments}),
    ))
}

/// A file compiled into the binary, cached by browsers for a day.
fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", STYLE)
}

async fn favicon() -> Response {
    static_file("image/svg+xml", FAVICON)
}
