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
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::view::{self, AgentPage, DeploymentTokens};

use super::answer::{Answer, ApiError, json};
use super::state::{Served, Shared};

mod controls;
mod frame;
mod timeline;

use controls::{
    oidc_callback, oidc_start, propose_create, propose_page, proposed_page, signin, signin_page,
    signout,
};
use frame::*;
use timeline::{timeline_list, timeline_svg};

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
        .route("/agents/{agent}/proposed", get(proposed_page))
        .route("/signin", get(signin_page).post(signin))
        .route("/signin/oidc", get(oidc_start))
        .route(super::oidc::CALLBACK, get(oidc_callback))
        .route("/signout", axum::routing::post(signout))
        .route("/v1/agents", get(overview_json))
        .route("/v1/agents/{agent}", get(agent_json))
        .route("/v1/agents/{agent}/tokens", get(tokens_json))
        .route("/v1/agents/{agent}/receipts", get(receipts_json))
        .route("/static/style.css", get(stylesheet))
        .route("/static/favicon.svg", get(favicon))
        .route_layer(axum::middleware::from_fn_with_state(shared, keep_session))
}

/// The page for an address that names nothing, for a browser (`Accept: text/html`); `None`
/// for other clients, which get the JSON error.
pub(super) async fn not_found(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let wants_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"));
    if !wants_html {
        return None;
    }
    let now = chrono::Utc::now().timestamp();
    let session = shared
        .ui_keys
        .as_ref()
        .and_then(|keys| keys.session(headers, now));
    let page = async {
        message_page(
            shared,
            StatusCode::NOT_FOUND,
            status_words(StatusCode::NOT_FOUND),
            "There is no page at this address.",
            "the list of all deployments links every agent's page",
        )
    };
    Some(frame::VISITOR.scope(session, page).await)
}

/// Records a signed-in visitor's visit in the session cookie (at most once a minute), so that
/// a session ends after a while without visits, not while it is used.
async fn keep_session(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let now = chrono::Utc::now().timestamp();
    let session = shared
        .ui_keys
        .as_ref()
        .and_then(|keys| keys.session(request.headers(), now));
    let renewal = shared
        .ui_keys
        .as_ref()
        .zip(session.as_ref())
        .and_then(|(keys, s)| keys.renew(s, now));
    let mut response = frame::VISITOR.scope(session, next.run(request)).await;
    if let Some(cookie) = renewal
        && !response.headers().contains_key(header::SET_COOKIE)
    {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

#[derive(Deserialize, Default)]
struct OverviewQuery {
    at: Option<String>,
    q: Option<String>,
    after: Option<String>,
    state: Option<String>,
    sort: Option<String>,
    page: Option<String>,
}

impl OverviewQuery {
    /// The snapshot's address with this query's filter, order and time, on `page` (from 1),
    /// sorted by `sort` when given.
    fn href(&self, page: usize, sort: Option<&str>) -> String {
        let mut params: Vec<(&str, String)> = Vec::new();
        for (k, v) in [("q", &self.q), ("state", &self.state), ("at", &self.at)] {
            if let Some(v) = v.as_deref().filter(|s| !s.is_empty()) {
                params.push((k, v.to_string()));
            }
        }
        match sort.or(self.sort.as_deref()).filter(|s| *s != "agent") {
            Some(s) if !s.is_empty() => params.push(("sort", s.to_string())),
            _ => {}
        }
        if page > 1 {
            params.push(("page", page.to_string()));
        }
        match serde_urlencoded::to_string(&params).unwrap_or_default() {
            q if q.is_empty() => "/".into(),
            q => format!("/?{q}"),
        }
    }
}

/// A query parameter that names one of a few words; empty is none.
fn word<T: serde::de::DeserializeOwned>(
    value: Option<&str>,
    name: &str,
) -> Result<Option<T>, ApiError> {
    match value.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => serde_json::from_value(serde_json::Value::String(v.to_string()))
            .map(Some)
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!(
                        "`{}` is not a {name} this page knows",
                        super::answer::shown(v)
                    ),
                )
            }),
    }
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

/// What the snapshot is made from for one request: its query, the time it is at (`None` for
/// now), the rows then with their sync states and digest, the agents open proposals change.
/// The snapshot borrows from it ([`Inputs::overview`]).
struct Inputs {
    q: OverviewQuery,
    at: Option<i64>,
    page: usize,
    past: Option<Vec<crate::model::Deployment>>,
    sync: Option<Arc<Vec<crate::reconcile::state::Sync>>>,
    digest: Arc<view::Digest>,
    pending: std::collections::HashSet<String>,
}

impl Inputs {
    async fn read(
        shared: &Shared,
        served: &Served,
        query: Option<&str>,
    ) -> Result<Inputs, ApiError> {
        let q: OverviewQuery =
            serde_urlencoded::from_str(query.unwrap_or("")).map_err(ApiError::bad_query)?;
        let at = super::answer::form_at(q.at.as_deref())?;
        let page = match q.page.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => 1,
            Some(p) => p.parse::<usize>().ok().filter(|p| *p >= 1).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "`page` is a page number from 1",
                )
            })?,
        };
        // Checked now: a bad word is a 400 before anything is read.
        word::<view::StateFilter>(q.state.as_deref(), "state")?;
        word::<view::Sort>(q.sort.as_deref(), "sort")?;
        let (past, sync, digest) = match at {
            Some(t) => {
                // The reconciler's states describe the platform now, not a past snapshot.
                let past = served.history.snapshot(served.history.position_at(t));
                let digest = Arc::new(view::Digest::new(&served.config, &past, None));
                (Some(past), None, digest)
            }
            None => {
                let sync = shared.sync_states(served).await;
                let digest = shared.digest(served, sync.as_ref());
                (None, sync, digest)
            }
        };
        let pending = shared
            .proposals
            .load()
            .iter()
            .flat_map(|p| p.touches.iter().map(|(a, _)| a.clone()))
            .collect();
        Ok(Inputs {
            q,
            at,
            page,
            past,
            sync,
            digest,
            pending,
        })
    }

    /// The snapshot the query asks for.
    fn overview<'a>(&'a self, served: &'a Served) -> view::Overview<'a> {
        let selection = view::Selection {
            name: self.q.q.as_deref().map(str::trim).filter(|s| !s.is_empty()),
            state: word(self.q.state.as_deref(), "state").ok().flatten(),
            sort: word(self.q.sort.as_deref(), "sort")
                .ok()
                .flatten()
                .unwrap_or_default(),
            after: self.q.after.as_deref().filter(|s| !s.is_empty()),
            page: self.page,
            pending: Some(&self.pending),
            all: false,
        };
        view::overview(
            self.past.as_deref().unwrap_or(&served.rows),
            self.sync.as_deref().map(Vec::as_slice),
            &self.digest,
            &selection,
        )
    }
}

async fn overview_page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> PageResult {
    let served = served_or_page(&shared)?;
    let now = chrono::Utc::now().timestamp();
    let inputs = Inputs::read(&shared, &served, query.as_deref())
        .await
        .map_err(|e| detour(&shared, e))?;
    // A query that reads, with a relative time: to its permalink.
    if let Some(location) = permalink("/", query.as_deref()) {
        return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response());
    }
    let overview = inputs.overview(&served);
    let (at, q, sync_known) = (inputs.at, &inputs.q, inputs.sync.is_some());
    let v = visitor(&shared, &headers, now);
    let json_href = match query.as_deref().filter(|q| !q.is_empty()) {
        Some(q) => format!("/v1/agents?{q}"),
        None => "/v1/agents".into(),
    };
    // The pages' links keep the filter, the order and the time.
    let prev = (overview.page > 1).then(|| q.href(overview.page - 1, None));
    let next = (overview.page < overview.pages).then(|| q.href(overview.page + 1, None));
    let sorted_by_change = q.sort.as_deref() == Some("changed");
    let sort_link = q.href(1, Some(if sorted_by_change { "agent" } else { "changed" }));
    let at_suffix =
        q.at.as_deref()
            .filter(|s| !s.is_empty())
            .map(|a| {
                format!(
                    "?{}",
                    serde_urlencoded::to_string([("at", a)]).unwrap_or_default()
                )
            })
            .unwrap_or_default();
    let page = OverviewHtml {
        chrome: chrome(
            &shared,
            Some(&served),
            &v,
            "Deployments",
            Some(json_href),
            now,
        ),
        prev,
        next,
        sort_link,
        sorted_by_change,
        at_suffix,
        state: q.state.clone().unwrap_or_default(),
        overview,
        at: at.map(crate::support::when::rfc3339),
        at_input: q.at.clone().unwrap_or_default(),
        filter: q.q.clone().unwrap_or_default(),
        sync_known,
        leases: match at {
            None => {
                let mut leases = shared
                    .observed(&served)
                    .await
                    .map(|v| v.leases.clone())
                    .unwrap_or_default();
                // In promotion order, as the columns.
                leases.sort_by_key(|l| {
                    served
                        .config
                        .environment_index(&l.environment)
                        .unwrap_or(usize::MAX)
                });
                leases
            }
            Some(_) => Vec::new(),
        },
        proposals: shared.proposals.load_full(),
    };
    // A page of a hundred agents is some 100 KB: written into one buffer of that size, not
    // one that doubles as it grows.
    let mut out = String::with_capacity(128 * 1024);
    let rendered = page.render_into(&mut out).map(|()| out);
    Ok(html(StatusCode::OK, rendered))
}

async fn overview_json(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Answer {
    /// The snapshot as JSON, serialized straight from the view (not through a `Value` tree).
    #[derive(serde::Serialize)]
    struct Json<'a> {
        commit: String,
        at: Option<String>,
        environments: &'a [String],
        total_agents: usize,
        matching_agents: usize,
        first: usize,
        page: usize,
        pages: usize,
        next_after: Option<&'a str>,
        agents: &'a [view::Row<'a>],
        proposals: &'a [super::state::Proposal],
    }
    let served = super::state::served(&shared)?;
    let inputs = Inputs::read(&shared, &served, query.as_deref()).await?;
    let overview = inputs.overview(&served);
    let at = inputs.at;
    let proposals = shared.proposals.load();
    Ok(json(
        StatusCode::OK,
        &Json {
            commit: served.commit.to_string(),
            at: at.map(crate::support::when::rfc3339),
            environments: overview.environments,
            total_agents: overview.total_agents,
            matching_agents: overview.matching_agents,
            first: overview.first,
            page: overview.page,
            pages: overview.pages,
            next_after: overview.next_after,
            agents: &overview.agents,
            proposals: &proposals,
        },
    ))
}

#[derive(Deserialize, Default)]
struct AgentQuery {
    before: Option<String>,
    at: Option<String>,
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
    let at = super::answer::form_at(q.at.as_deref())?;
    let (as_of, past) = match at {
        None => (view::AsOf::now(now), None),
        Some(t) => {
            let position = served.history.position_at(t);
            (
                view::AsOf {
                    time: t,
                    position,
                    past: true,
                },
                Some(served.history.snapshot(position)),
            )
        }
    };
    view::agent_page(
        &served.config,
        &served.history,
        &served.agents,
        past.as_deref().unwrap_or(&served.rows),
        agent,
        before,
        as_of,
    )
    .ok_or_else(|| no_agent(agent))
}

/// Fills who made and who merged each environment's change, and the pull request's link (from
/// the repository, once per commit).
async fn people(shared: &Arc<Shared>, page: &mut view::AgentPage) {
    let mut missing: Vec<view::CommitView> = Vec::new();
    for env in &mut page.environments {
        let Some(c) = env.changed_by.as_mut() else {
            continue;
        };
        c.pull_request_url = c.pull_request.and_then(|n| shared.pull_request_link(n));
        match shared.people.get(&c.id) {
            Some((author, merged_by)) => {
                c.author = author;
                c.merged_by = merged_by;
            }
            None if !missing.iter().any(|m| m.id == c.id) => missing.push(c.clone()),
            None => {}
        }
    }
    if missing.is_empty() {
        return;
    }
    let worker = shared.clone();
    let filled = tokio::task::spawn_blocking(move || {
        if let Ok(repo) = git2::Repository::open(&worker.options.repo) {
            for c in &mut missing {
                c.people(&repo);
                worker
                    .people
                    .put(&c.id, (c.author.clone(), c.merged_by.clone()));
            }
        }
        missing
    })
    .await;
    for c in filled.into_iter().flatten() {
        for env in &mut page.environments {
            if let Some(mine) = env.changed_by.as_mut().filter(|m| m.id == c.id) {
                mine.author = c.author.clone();
                mine.merged_by = c.merged_by.clone();
            }
        }
    }
}

fn no_agent(agent: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "agent `{}` has no record and no history",
            super::answer::shown(agent)
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
    let mut page = agent_of(&served, &agent, query.as_deref()).map_err(|e| detour(&shared, e))?;
    if let Some(location) = permalink(&format!("/agents/{agent}"), query.as_deref()) {
        return Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response());
    }
    if page.at.is_none() {
        observe(&shared, &served, &mut page).await;
    }
    people(&shared, &mut page).await;
    let v = visitor(&shared, &headers, now);
    // The past is read, not changed.
    let controls = v.session.is_some() && page.at.is_none();
    let json_href = format!("/v1/agents/{agent}");
    let timeline = format!("{}{}", timeline_svg(&page), timeline_list(&page));
    let proposals = shared
        .proposals
        .load()
        .iter()
        .filter(|p| p.touches_agent(&agent))
        .cloned()
        .collect();
    let at_suffix = page
        .at
        .as_deref()
        .map(|a| {
            format!(
                "?{}",
                serde_urlencoded::to_string([("at", a)]).unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let out = AgentHtml {
        chrome: chrome(
            &shared,
            Some(&served),
            &v,
            agent.clone(),
            Some(json_href),
            now,
        ),
        proposals,
        at_suffix,
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
    let served = super::state::served(&shared)?;
    let mut page = agent_of(&served, &agent, query.as_deref())?;
    if page.at.is_none() {
        observe(&shared, &served, &mut page).await;
    }
    people(&shared, &mut page).await;
    Ok(json(StatusCode::OK, &page))
}

/// Puts what the reconciler's store says runs, and what the signed receipts say was applied,
/// beside each environment's record.
async fn observe(shared: &Shared, served: &Arc<Served>, page: &mut view::AgentPage) {
    if let Some(receipts) = shared.receipts(served).await {
        for env in &mut page.environments {
            let expected = served
                .config
                .reconcilers
                .iter()
                .any(|r| r.may_apply(&env.environment));
            let Some(record) = &env.record else { continue };
            let applied = git2::Oid::from_str(&record.updated_commit)
                .ok()
                .and_then(|c| receipts.index.position(c))
                .and_then(|from| {
                    receipts.index.applied(
                        &receipts.list,
                        &page.agent,
                        &env.environment,
                        Some(&record.version),
                        from,
                        u32::MAX,
                        record.updated_time,
                    )
                });
            if applied.is_some() || expected {
                env.receipt = Some(view::ReceiptView { applied, expected });
            }
        }
    }
    observe_store(shared, served, page).await;
}

/// The receipts of one agent (`/v1/agents/{agent}/receipts`): every receipt that names it, in
/// applied order, each with its verdict, its DSSE envelope as the note holds it (to verify
/// without ledgit) and the statement the envelope carries.
async fn receipts_json(State(shared): State<Arc<Shared>>, Path(agent): Path<String>) -> Answer {
    let served = super::state::served(&shared)?;
    let known = served.rows.iter().any(|d| d.agent == agent) || served.agents.contains(&agent);
    // Receipts that cannot be read are not an empty list.
    let Some(receipts) = shared.receipts(&served).await else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "receipts_unreadable",
            "the receipts cannot be read now; the server's log says why",
        ));
    };
    let receipts = Some(receipts);
    let notes_tip = receipts.as_ref().and_then(|r| r.notes);
    let mine: Vec<crate::receipt::Receipt> = receipts
        .iter()
        .flat_map(|r| r.list.iter())
        .filter(|r| r.claim.as_ref().is_some_and(|c| c.agent == agent))
        .cloned()
        .collect();
    if !known && mine.is_empty() {
        return Err(no_agent(&agent));
    }
    let path = shared.options.repo.clone();
    let list = tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open(&path).ok();
        let mut notes: std::collections::HashMap<git2::Oid, Vec<(u32, String)>> =
            std::collections::HashMap::new();
        mine.iter()
            .map(|r| {
                let line = repo.as_ref().zip(notes_tip).and_then(|(repo, tip)| {
                    let lines = notes.entry(r.commit).or_insert_with(|| {
                        crate::receipt::notes::numbered_lines_at(repo, tip, r.commit)
                            .unwrap_or_default()
                    });
                    lines.iter().find(|(n, _)| *n == r.line).map(|(_, l)| l.clone())
                });
                let envelope = line
                    .as_deref()
                    .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok());
                let statement = line
                    .as_deref()
                    .and_then(|l| crate::receipt::Envelope::parse(l).ok())
                    .and_then(|e| e.statement().ok());
                serde_json::json!({
                    "commit": r.commit.to_string(),
                    "line": r.line,
                    "valid": r.is_valid(),
                    "problem": r.problem.as_ref().map(|p| serde_json::json!({"code": p.code, "message": p.message})),
                    "keyid": r.keyid,
                    "applied_at": crate::support::when::rfc3339(r.applied_time),
                    "envelope": envelope,
                    "statement": statement,
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "agent": agent,
            "commit": served.commit.to_string(),
            "notes_ref": crate::receipt::NOTES_REF,
            "notes": notes_tip.map(|n| n.to_string()),
            "receipts": list,
        }),
    ))
}

/// Puts what the reconciler's store says runs beside each environment's record.
async fn observe_store(shared: &Shared, served: &Served, page: &mut view::AgentPage) {
    let Some(states) = shared.sync_states(served).await else {
        return;
    };
    let agent = page.agent.clone();
    page.observe(|env| {
        served
            .position(&agent, env)
            .and_then(|i| states.get(i))
            .cloned()
    });
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
        &served.revocations,
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
    let served = super::state::served(&shared)?;
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
