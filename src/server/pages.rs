//! The web page (SPEC "The server", people's routes): the deployment snapshot at `/`, an
//! agent's page, its deployments tab, each with a JSON twin under `/v1/agents`, and the
//! controls that turn a promotion, a version, a rollback or a revocation into a proposal (a
//! branch with one commit, never a write to the tracked branch). Pages are rendered on the
//! server from askama templates compiled into the binary and work without JavaScript; the
//! data comes from `ledgit::view`, shared with the JSON twins.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use ledgit::proposal::{Preview, Request};
use ledgit::view::{self, AgentPage, DeploymentTokens, Overview};

use super::routes::{ApiError, json, read_body};
use super::session::{self, Session};
use super::state::{Served, Shared};

/// The page routes and their JSON twins.
pub fn router() -> Router<Arc<Shared>> {
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
}

const STYLE: &str = include_str!("static/style.css");
const FAVICON: &str = include_str!("static/favicon.svg");

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
        ledgit::when::relative(t.secs(), self.now())
    }

    fn time(&self, t: impl Secs) -> String {
        ledgit::when::rfc3339(t.secs())
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
            format!("in {}", ledgit::when::format_duration_short(s.max(60)))
        } else {
            format!("{} ago", ledgit::when::format_duration_short((-s).max(60)))
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
        struct $name<'a> {
            chrome: Chrome,
            $($field: $ty,)*
            #[allow(dead_code)]
            _life: std::marker::PhantomData<&'a ()>,
        }
        impl Helpers for $name<'_> {
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
    proposals: &'a [(String, String)],
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
            .filter(|_| shared.options.proposals)
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
        proposals: shared.options.proposals && shared.ui_keys.is_some(),
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
        _life: std::marker::PhantomData,
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

/// The snapshot the overview shows, and the time it is at (`None` for now).
fn overview_of(
    served: &Served,
    query: Option<&str>,
) -> Result<(Overview, Option<i64>, OverviewQuery, bool), ApiError> {
    let q: OverviewQuery =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(ApiError::bad_query)?;
    let at =
        q.at.as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|t| super::routes::time_param("at", t))
            .transpose()?;
    let past;
    let rows: &[ledgit::history::Deployment] = match at {
        Some(t) => {
            past = served.history.snapshot(served.history.position_at(t));
            &past
        }
        None => &served.rows,
    };
    // The reconciler's states describe the platform now, not a past snapshot.
    let sync = match (at, served.root, &served.store) {
        (None, Some(root), Some(store)) if store.exists() => {
            ledgit::state::view(store, &root.to_string())
                .ok()
                .flatten()
                .map(|v| v.sync_states(rows))
        }
        _ => None,
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
    let served = served_or_page(&shared)?;
    let now = chrono::Utc::now().timestamp();
    let (overview, at, q, sync_known) =
        overview_of(&served, query.as_deref()).map_err(|e| detour(&shared, e))?;
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
        at: at.map(ledgit::when::rfc3339),
        at_input: q.at.unwrap_or_default(),
        filter: q.q.unwrap_or_default(),
        sync_known,
        proposals: &served.proposals,
        _life: std::marker::PhantomData,
    };
    Ok(html(StatusCode::OK, page.render()))
}

async fn overview_json(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let served = match super::routes::served(&shared) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match overview_of(&served, query.as_deref()) {
        Ok((overview, at, _, _)) => json(
            StatusCode::OK,
            &serde_json::json!({
                "commit": served.commit.to_string(),
                "at": at.map(ledgit::when::rfc3339),
                "environments": overview.environments,
                "total_agents": overview.total_agents,
                "matching_agents": overview.matching_agents,
                "next_after": overview.next_after,
                "agents": overview.agents,
                "proposals": served.proposals.iter().map(|(b, s)| serde_json::json!({"branch": b, "subject": s})).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => e.into_response(),
    }
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
        _life: std::marker::PhantomData,
    };
    Ok(html(StatusCode::OK, out.render()))
}

async fn agent_json(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let served = match super::routes::served(&shared) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match agent_of(&served, &agent, query.as_deref()) {
        Ok(p) => json(StatusCode::OK, &p),
        Err(e) => e.into_response(),
    }
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
    let judge = ledgit::ledger::Judge::new(&served.config, &served.rows, &served.revoked);
    Ok(view::deployment_tokens(
        &served.config,
        &judge,
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
        _life: std::marker::PhantomData,
    };
    Ok(html(StatusCode::OK, out.render()))
}

async fn tokens_json(State(shared): State<Arc<Shared>>, Path(agent): Path<String>) -> Response {
    let served = match super::routes::served(&shared) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    match tokens_of(&shared, &served, &agent) {
        Ok(d) => json(
            StatusCode::OK,
            &serde_json::json!({"agent": agent, "commit": served.commit.to_string(), "deployments": d}),
        ),
        Err(e) => e.into_response(),
    }
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        STYLE,
    )
        .into_response()
}

async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON,
    )
        .into_response()
}

/// Text fit for SVG and HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The timeline, drawn on the server: one lane per environment, one bar per stay of a version,
/// its exact times in the bar's tooltip (`<title>`).
fn timeline_svg(page: &AgentPage) -> String {
    const WIDTH: f64 = 1000.0;
    const LABEL: f64 = 110.0;
    const LANE: f64 = 34.0;
    const TOP: f64 = 8.0;
    let lanes = page.timeline.len().max(1) as f64;
    let height = TOP + lanes * LANE + 24.0;
    let (start, end) = (
        page.timeline_start,
        page.timeline_end.max(page.timeline_start + 1),
    );
    let span = (end - start) as f64;
    let x = |t: i64| LABEL + (t - start) as f64 / span * (WIDTH - LABEL - 10.0);
    // A stable colour per version, from a small palette readable in both themes.
    // Light tints under dark text: readable in both themes.
    const PALETTE: [&str; 8] = [
        "#a6cee3", "#fdbf6f", "#b2df8a", "#cab2d6", "#fbe38a", "#fb9a99", "#8dd3c7", "#d9c3a5",
    ];
    let colour = |v: &str| {
        let h = v
            .bytes()
            .fold(5381u32, |h, b| h.wrapping_mul(33) ^ u32::from(b));
        PALETTE[h as usize % PALETTE.len()]
    };
    let mut svg = format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-labelledby=\"timeline-title\" xmlns=\"http://www.w3.org/2000/svg\"><title id=\"timeline-title\">Versions of {} in each environment from {} to {}</title>",
        esc(&page.agent),
        ledgit::when::rfc3339(start),
        ledgit::when::rfc3339(end)
    );
    for (i, lane) in page.timeline.iter().enumerate() {
        let y = TOP + i as f64 * LANE;
        svg.push_str(&format!(
            "<g class=\"lane\" data-environment=\"{env}\"><text x=\"4\" y=\"{ty}\">{env}</text><line class=\"grid\" x1=\"{LABEL}\" x2=\"{WIDTH}\" y1=\"{gy}\" y2=\"{gy}\"/>",
            env = esc(&lane.environment),
            ty = y + LANE / 2.0 + 4.0,
            gy = y + LANE - 2.0,
        ));
        for s in &lane.spans {
            let x0 = x(s.start);
            let x1 = x(s.end.unwrap_or(end)).max(x0 + 2.0);
            let until = s.end.map_or("now".to_string(), ledgit::when::rfc3339);
            svg.push_str(&format!(
                "<g><rect class=\"span{cur}\" x=\"{x0:.1}\" y=\"{ry}\" width=\"{w:.1}\" height=\"{h}\" rx=\"3\" fill=\"{c}\"><title>{v} in {env}: {from} to {until}</title></rect>",
                cur = if s.end.is_none() { " current" } else { "" },
                ry = y + 4.0,
                w = x1 - x0,
                h = LANE - 10.0,
                c = colour(&s.version),
                v = esc(&s.version),
                env = esc(&lane.environment),
                from = ledgit::when::rfc3339(s.start),
            ));
            if x1 - x0 > 8.0 * s.version.len() as f64 {
                svg.push_str(&format!(
                    "<text class=\"label\" x=\"{tx:.1}\" y=\"{ty}\" aria-hidden=\"true\">{v}</text>",
                    tx = x0 + 4.0,
                    ty = y + LANE / 2.0 + 3.0,
                    v = esc(&s.version),
                ));
            }
            svg.push_str("</g>");
        }
        svg.push_str("</g>");
    }
    let axis_y = TOP + lanes * LANE + 16.0;
    for (t, anchor) in [(start, "start"), (end, "end")] {
        svg.push_str(&format!(
            "<text class=\"axis\" x=\"{:.1}\" y=\"{axis_y}\" text-anchor=\"{anchor}\">{}</text>",
            if anchor == "start" {
                LABEL
            } else {
                WIDTH - 4.0
            },
            &ledgit::when::rfc3339(t)[..10],
        ));
    }
    svg.push_str("</svg>");
    svg
}

// ---- Sign-in ----

async fn signin_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !(shared.options.proposals && shared.ui_keys.is_some()) {
        return message_page(
            &shared,
            StatusCode::NOT_FOUND,
            "No sign-in here",
            "This server does not take proposals.",
            "start it with `ledgit serve --proposals` and LEDGIT_UI_SECRET set",
        );
    }
    let now = chrono::Utc::now().timestamp();
    let served = shared.served.load_full();
    let v = visitor(&shared, &headers, now);
    let page = SigninHtml {
        chrome: chrome(&shared, served.as_deref(), &v, "Sign in", None, now),
        failed: false,
        _life: std::marker::PhantomData,
    };
    html(StatusCode::OK, page.render())
}

#[derive(Deserialize)]
struct SigninForm {
    secret: String,
}

async fn signin(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> PageResult {
    let Some(keys) = shared.ui_keys.as_ref().filter(|_| shared.options.proposals) else {
        return Ok(refused(&shared, "this server does not take proposals"));
    };
    if !session::same_origin(&headers) {
        return Ok(refused(
            &shared,
            "the form was not sent from this server's page",
        ));
    }
    let form: SigninForm = read_form(body).await.map_err(|e| detour(&shared, e))?;
    let now = chrono::Utc::now().timestamp();
    if !keys.is_secret(&form.secret) {
        let served = shared.served.load_full();
        let page = SigninHtml {
            chrome: chrome(
                &shared,
                served.as_deref(),
                &Visitor { session: None },
                "Sign in",
                None,
                now,
            ),
            failed: true,
            _life: std::marker::PhantomData,
        };
        return Ok(html(StatusCode::UNAUTHORIZED, page.render()));
    }
    let secure = shared.options.public_url.starts_with("https://");
    let (_, cookie) = keys.sign_in(now, secure);
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(r)
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn signout(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> PageResult {
    let form: CsrfForm = read_form(body).await.map_err(|e| detour(&shared, e))?;
    check_post(&shared, &headers, form.csrf.as_deref())?;
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session::sign_out());
    Ok(r)
}

fn refused(shared: &Shared, why: &str) -> Response {
    message_page(
        shared,
        StatusCode::FORBIDDEN,
        "Refused",
        why,
        "sign in from this server's page, then use its buttons",
    )
}

fn refusal(shared: &Shared, why: &str) -> Detour {
    refused(shared, why).into()
}

/// Every POST that changes something: from this server's page (Origin), by a signed-in
/// visitor (cookie), with the session's CSRF token.
fn check_post(shared: &Shared, headers: &HeaderMap, csrf: Option<&str>) -> Result<Session, Detour> {
    let Some(keys) = shared.ui_keys.as_ref().filter(|_| shared.options.proposals) else {
        return Err(refusal(shared, "this server does not take proposals"));
    };
    if !session::same_origin(headers) {
        return Err(refusal(
            shared,
            "the form was not sent from this server's page",
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let Some(s) = keys.session(headers, now) else {
        return Err(refusal(shared, "sign in first"));
    };
    if !csrf.is_some_and(|t| keys.csrf_ok(&s, t)) {
        return Err(refusal(shared, "the form's CSRF token is missing or wrong"));
    }
    Ok(s)
}

async fn read_form<T: serde::de::DeserializeOwned>(body: axum::body::Body) -> Result<T, ApiError> {
    let bytes = read_body(body, 16 * 1024).await?;
    serde_urlencoded::from_bytes(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the form is not one this page sends: {e}"),
        )
    })
}

// ---- Proposals ----

#[derive(Deserialize, Default)]
struct ProposeForm {
    action: Option<String>,
    environment: Option<String>,
    version: Option<String>,
    jti: Option<String>,
    reason: Option<String>,
    csrf: Option<String>,
}

impl ProposeForm {
    fn request(&self, agent: &str) -> Result<Request, ApiError> {
        let missing = |what: &str| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the proposal names no {what}"),
            )
        };
        let environment = || {
            self.environment
                .clone()
                .ok_or_else(|| missing("environment"))
        };
        match self.action.as_deref() {
            Some("promote") => Ok(Request::Promote {
                agent: agent.to_string(),
                to: environment()?,
            }),
            Some("set") => Ok(Request::Set {
                agent: agent.to_string(),
                environment: environment()?,
                version: self
                    .version
                    .clone()
                    .map(|v| v.trim().to_string())
                    .ok_or_else(|| missing("version"))?,
            }),
            Some("revoke") => Ok(Request::Revoke {
                jti: self.jti.clone().ok_or_else(|| missing("token"))?,
                reason: self.reason.clone(),
            }),
            _ => Err(missing("action (promote, set or revoke)")),
        }
    }

    /// The hidden fields that carry the request to the POST.
    fn fields(&self) -> Vec<(&'static str, String)> {
        [
            ("action", &self.action),
            ("environment", &self.environment),
            ("version", &self.version),
            ("jti", &self.jti),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

/// Plans a request on a blocking thread (it reads the repository).
async fn plan(
    shared: &Arc<Shared>,
    served: Arc<Served>,
    request: Request,
) -> Result<Preview, ApiError> {
    let repo_path = shared.options.repo.clone();
    tokio::task::spawn_blocking(move || {
        let repo = ledgit::repo::Repo::open(&repo_path).map_err(unprocessable)?;
        let now = chrono::Utc::now().timestamp();
        ledgit::proposal::preview(&repo, served.commit, &served.history, &request, now)
            .map_err(unprocessable)
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "planning failed",
        )
    })?
}

fn unprocessable(e: ledgit::Error) -> ApiError {
    let message = match e.hint() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    };
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_proposable", message)
}

async fn propose_page(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> PageResult {
    let now = chrono::Utc::now().timestamp();
    let v = visitor(&shared, &headers, now);
    if v.session.is_none() {
        return Ok(refused(
            &shared,
            "proposals need a signed-in visitor on a server started with --proposals",
        ));
    }
    let served = served_or_page(&shared)?;
    let form: ProposeForm = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| detour(&shared, ApiError::bad_query(e)))?;
    let request = form.request(&agent).map_err(|e| detour(&shared, e))?;
    let preview = plan(&shared, served.clone(), request.clone())
        .await
        .map_err(|e| detour(&shared, e))?;
    let status = if preview.refused {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let page = ProposeHtml {
        chrome: chrome(&shared, Some(&served), &v, preview.title.clone(), None, now),
        agent,
        fields: form.fields(),
        is_revoke: matches!(request, Request::Revoke { .. }),
        preview,
        _life: std::marker::PhantomData,
    };
    Ok(html(status, page.render()))
}

async fn propose_create(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> PageResult {
    let form: ProposeForm = read_form(body).await.map_err(|e| detour(&shared, e))?;
    let session = check_post(&shared, &headers, form.csrf.as_deref())?;
    let served = served_or_page(&shared)?;
    let request = form.request(&agent).map_err(|e| detour(&shared, e))?;
    let preview = plan(&shared, served.clone(), request.clone())
        .await
        .map_err(|e| detour(&shared, e))?;
    if preview.refused {
        return Ok(message_page(
            &shared,
            StatusCode::CONFLICT,
            "Refused by the policy",
            preview
                .findings
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            "the page shows the findings before a proposal is made",
        ));
    }
    let options = shared.options.clone();
    let created = tokio::task::spawn_blocking(move || create(&options, &preview, &request))
        .await
        .map_err(|_| "creating the proposal failed".to_string())
        .and_then(|r| r);
    let (branch, commit, title, pushed, pull_request) = match created {
        Ok(x) => x,
        Err(e) => {
            return Ok(message_page(
                &shared,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Not created",
                e,
                "nothing was written to the tracked branch",
            ));
        }
    };
    shared.ask_refresh(false);
    let now = chrono::Utc::now().timestamp();
    let v = Visitor {
        session: Some(session),
    };
    let page = ProposedHtml {
        chrome: chrome(&shared, Some(&served), &v, "Proposal created", None, now),
        agent,
        branch,
        commit,
        title,
        pushed,
        pull_request,
        _life: std::marker::PhantomData,
    };
    Ok(html(StatusCode::CREATED, page.render()))
}

type Created = (String, String, String, Option<String>, Option<String>);

/// Commits the proposal on its branch, pushes it where asked, and finds its pull request link.
fn create(
    options: &super::Options,
    preview: &Preview,
    request: &Request,
) -> Result<Created, String> {
    let repo = ledgit::repo::Repo::open(&options.repo).map_err(|e| e.to_string())?;
    let now = chrono::Utc::now().timestamp();
    let branch = request.branch_name(now);
    let author = repo
        .git
        .signature()
        .or_else(|_| git2::Signature::now("ledgit serve", "ledgit@localhost"))
        .map_err(|e| e.message().to_string())?;
    let commit =
        ledgit::proposal::create(&repo, preview, &branch, &author).map_err(|e| e.to_string())?;
    // The branch exists here either way: a failed push is said on the page, not an error.
    let pushed = options
        .push
        .as_ref()
        .map(|remote| push(&options.repo, remote, &branch).unwrap_or_else(|e| e));
    let remote_url = options
        .push
        .as_deref()
        .and_then(|r| repo.git.find_remote(r).ok())
        .and_then(|r| r.url().ok().map(str::to_string));
    let pull_request = ledgit::proposal::pull_request_url(
        options.pull_request_url.as_deref(),
        remote_url.as_deref(),
        &options.branch,
        &branch,
    );
    Ok((
        branch,
        commit.to_string(),
        preview.title.clone(),
        pushed,
        pull_request,
    ))
}

/// `git push REMOTE refs/heads/B:refs/heads/B` with the user's git (their credentials and
/// config), bounded to a minute, never prompting.
fn push(repo: &std::path::Path, remote: &str, branch: &str) -> Result<String, String> {
    let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
    let mut child = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["push", "--quiet", remote, &refspec])
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git to push: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                return Ok(format!("Pushed to {remote}."));
            }
            Ok(Some(_)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.by_ref().take(4096).read_to_string(&mut err);
                }
                return Err(format!(
                    "the branch {branch} was created here but git could not push it to {remote}: {}",
                    err.trim()
                ));
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the branch {branch} was created here but pushing it to {remote} took over a minute"
                ));
            }
        }
    }
}
