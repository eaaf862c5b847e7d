//! The page's controls: sign-in (the operator secret, OpenID Connect, or a proxy's word), and
//! proposals (promote, set, roll
//! back, revoke) previewed as a diff with the policy's verdict, then committed on a new branch
//! and pushed where asked. Every POST passes [`signed_in_post`] before its body is read (the
//! page takes proposals, this server's origin, a signed-in session), then [`check_csrf`].

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::review::proposal::{Preview, Request};

use super::super::answer::{ApiError, read_body};
use super::super::session::{self, Session};
use super::super::state::{Served, Shared};
use super::frame::{
    Detour, PageResult, ProposeHtml, ProposedHtml, Retry, SigninHtml, Visitor, chrome, detour,
    html, message_page, message_page_with, served_or_page, status_words, visitor,
};

pub(super) async fn signin_page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if shared.ui_keys.is_none() {
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
        failed: None,
        mode: sign_in_mode(&shared),
    };
    html(StatusCode::OK, page.render())
}

/// How the sign-in page asks: `secret`, `oidc:<issuer>` or `proxy`.
fn sign_in_mode(shared: &Shared) -> String {
    match (&shared.oidc, shared.ui_keys.as_ref().map(|k| &k.auth)) {
        (Some(c), _) => format!("oidc:{}", c.issuer()),
        (None, Some(session::Auth::Proxy { .. })) => "proxy".into(),
        _ => "secret".into(),
    }
}

/// `/signin/oidc`: off to the provider, with the flow's cookie.
pub(super) async fn oidc_start(State(shared): State<Arc<Shared>>) -> Response {
    if shared.ui_keys.is_none() || shared.oidc.is_none() {
        return refused(&shared, "this server does not sign in with OpenID Connect");
    }
    let worker = shared.clone();
    let started = tokio::task::spawn_blocking(move || {
        let now = chrono::Utc::now().timestamp();
        match (&worker.oidc, &worker.ui_keys) {
            (Some(c), Some(k)) => c.start(k, worker.secure(), now).map_err(|e| e.to_string()),
            _ => Err("no provider".to_string()),
        }
    })
    .await
    .unwrap_or_else(|_| Err("the sign-in failed".into()));
    match started {
        Ok((location, cookie)) => {
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
            r.headers_mut().insert(header::SET_COOKIE, cookie);
            r
        }
        Err(said) => signin_failed(&shared, StatusCode::BAD_GATEWAY, said),
    }
}

/// `/signin/oidc/callback`: back from the provider; a session for the person it names. Only
/// an answer that fails verification counts against the sign-in budget: a server without
/// OpenID Connect, the provider's `error=`, an expired or foreign flow guessed nothing.
pub(super) async fn oidc_callback(
    State(shared): State<Arc<Shared>>,
    client: super::super::limits::Client,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if shared.oidc.is_none() || shared.ui_keys.is_none() {
        return signin_failed(
            &shared,
            StatusCode::NOT_FOUND,
            "this server does not sign in with OpenID Connect".into(),
        );
    }
    let now = chrono::Utc::now().timestamp();
    if let Some(r) = shared.failures.signin.refuse(client.0, now) {
        return super::super::answer::closing(r);
    }
    let Ok(q) = serde_urlencoded::from_str::<super::super::oidc::CallbackQuery>(
        query.as_deref().unwrap_or(""),
    ) else {
        return signin_failed(
            &shared,
            StatusCode::BAD_REQUEST,
            "the provider's answer does not read".into(),
        );
    };
    let worker = shared.clone();
    let finished = tokio::task::spawn_blocking(move || match (&worker.oidc, &worker.ui_keys) {
        (Some(c), Some(k)) => Some(c.finish(k, &headers, &q, now)),
        _ => None,
    })
    .await
    .ok()
    .flatten();
    let (person, keys) = match (finished, &shared.ui_keys) {
        (Some(Ok(p)), Some(k)) => (p, k),
        (Some(Err(e)), _) => {
            if e.is_guess() {
                shared.failures.signin.count(client.0, now);
            }
            return signin_failed(&shared, StatusCode::FORBIDDEN, e.to_string());
        }
        _ => {
            return signin_failed(
                &shared,
                StatusCode::INTERNAL_SERVER_ERROR,
                "the sign-in failed".into(),
            );
        }
    };
    shared.options.log.line(&format!(
        "signed in: {} <{}> (OpenID Connect)",
        person.name, person.email
    ));
    let cookie = match keys.sign_in_as(Some(person.clone()), now) {
        Ok((_, cookie)) => cookie,
        Err(e) => return signin_failed(&shared, StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    // The session cookie is SameSite=Strict, and this page is the end of a navigation from
    // the provider's site: the browser would not send it on a redirect, so the page moves on
    // by itself, from this origin.
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"0;url=/\"><title>Signed in · ledgit</title></head><body><p>Signed in as {}. <a href=\"/\">Continue</a></p></body></html>",
        super::super::answer::shown(&person.email)
    );
    let mut r = html(StatusCode::OK, Ok(page));
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r.headers_mut()
        .append(header::SET_COOKIE, super::super::oidc::end_flow());
    r
}

fn signin_failed(shared: &Shared, status: StatusCode, said: String) -> Response {
    message_page(
        shared,
        status,
        "Not signed in",
        said,
        "try again from the sign-in page; if it goes on, ask whoever runs the identity provider",
    )
}

#[derive(Deserialize)]
struct SigninForm {
    secret: String,
}

pub(super) async fn signin(
    State(shared): State<Arc<Shared>>,
    client: super::super::limits::Client,
    headers: HeaderMap,
    body: axum::body::Body,
) -> PageResult {
    let Some(keys) = &shared.ui_keys else {
        return Ok(refused(&shared, "this server does not take proposals"));
    };
    if !session::same_origin(&headers, &shared.origins) {
        return Ok(refused(
            &shared,
            "the form was not sent from this server's page",
        ));
    }
    let now = chrono::Utc::now().timestamp();
    if let Some(r) = shared.failures.signin.refuse(client.0, now) {
        return Ok(super::super::answer::closing(r));
    }
    let form: SigninForm = read_form(body).await.map_err(|e| detour(&shared, e))?;
    if !keys.is_secret(&form.secret) {
        shared.failures.signin.count(client.0, now);
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
            failed: Some("That is not the secret."),
            mode: sign_in_mode(&shared),
        };
        return Ok(html(StatusCode::UNAUTHORIZED, page.render()));
    }
    let cookie = match keys.sign_in(now) {
        Ok((_, cookie)) => cookie,
        Err(e) => {
            return Ok(signin_failed(
                &shared,
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
            ));
        }
    };
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(r)
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

pub(super) async fn signout(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> PageResult {
    let (keys, session) = signed_in_post(&shared, &headers)?;
    let form: CsrfForm = read_form(body).await.map_err(|e| detour(&shared, e))?;
    check_csrf(&shared, keys, &session, form.csrf.as_deref())?;
    if !session.by_proxy {
        keys.end(&session, chrono::Utc::now().timestamp());
    }
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    r.headers_mut().insert(header::SET_COOKIE, keys.sign_out());
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
/// What a form's post must pass before its body is read: the page takes proposals, the form
/// comes from this server's origin, and its sender is signed in. Each is cheap, so a client
/// that fails one is answered before it can hold the connection with a slow body.
fn signed_in_post<'s>(
    shared: &'s Shared,
    headers: &HeaderMap,
) -> Result<(&'s session::Keys, Session), Detour> {
    let Some(keys) = &shared.ui_keys else {
        return Err(refusal(shared, "this server does not take proposals"));
    };
    if !session::same_origin(headers, &shared.origins) {
        return Err(refusal(
            shared,
            "the form was not sent from this server's page",
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let Some(s) = keys.session(headers, now) else {
        return Err(refusal(shared, "sign in first"));
    };
    Ok((keys, s))
}

/// The form's CSRF token, once its body is read.
fn check_csrf(
    shared: &Shared,
    keys: &session::Keys,
    session: &Session,
    csrf: Option<&str>,
) -> Result<(), Detour> {
    if !csrf.is_some_and(|t| keys.csrf_ok(session, t)) {
        return Err(refusal(shared, "the form's CSRF token is missing or wrong"));
    }
    Ok(())
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

impl ProposeForm {
    /// The form again, with what the person typed (a version, a reason), for an error page.
    fn retry(&self, agent: &str) -> Option<Retry> {
        let action = format!("/agents/{}/propose", percent(agent));
        let keep = |name: &str, v: &Option<String>| v.clone().map(|v| (name.to_string(), v));
        match self.action.as_deref() {
            Some("set") => Some(Retry {
                action,
                hidden: [
                    keep("action", &self.action),
                    keep("environment", &self.environment),
                ]
                .into_iter()
                .flatten()
                .collect(),
                field: "version".into(),
                label: "Version".into(),
                value: self.version.clone().unwrap_or_default(),
            }),
            Some("revoke") => Some(Retry {
                action,
                hidden: [keep("action", &self.action), keep("jti", &self.jti)]
                    .into_iter()
                    .flatten()
                    .collect(),
                field: "reason".into(),
                label: "Reason".into(),
                value: self.reason.clone().unwrap_or_default(),
            }),
            _ => None,
        }
    }

    /// An error page for this form, that keeps what the person typed.
    fn detour(&self, shared: &Shared, agent: &str, e: ApiError) -> Detour {
        let (status, message) = e.parts();
        message_page_with(
            shared,
            status,
            status_words(status),
            message,
            "",
            self.retry(agent),
        )
        .into()
    }
}

/// A path segment with everything but unreserved characters percent-encoded.
fn percent(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize, Default)]
struct ProposeForm {
    action: Option<String>,
    environment: Option<String>,
    version: Option<String>,
    jti: Option<String>,
    reason: Option<String>,
    csrf: Option<String>,
    /// The fingerprint of the preview the person saw ([`Preview::fingerprint`]).
    expect: Option<String>,
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
                reason: self
                    .reason
                    .as_deref()
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_string),
            }),
            _ => Err(missing("action (promote, set or revoke)")),
        }
    }

    /// The hidden fields that carry the request, and the preview it was shown as, to the POST.
    fn fields(&self, preview: &Preview) -> Vec<(&'static str, String)> {
        [
            ("action", &self.action),
            ("environment", &self.environment),
            ("version", &self.version),
            ("jti", &self.jti),
            ("reason", &self.reason),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .chain([("expect", preview.fingerprint())])
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
        let repo = crate::git::repo::Repo::open(&repo_path)?;
        let now = chrono::Utc::now().timestamp();
        crate::review::proposal::preview(&repo, served.commit, &served.history, &request, now)
            .map_err(ApiError::from)
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

pub(super) async fn propose_page(
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
    let request = form
        .request(&agent)
        .map_err(|e| form.detour(&shared, &agent, e))?;
    let preview = plan(&shared, served.clone(), request.clone())
        .await
        .map_err(|e| form.detour(&shared, &agent, e))?;
    let status = if preview.refused {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let page = propose_html(&shared, &served, &v, agent, &form, &request, preview, false);
    Ok(html(status, page.render()))
}

/// The preview page of `request`; `stale` when it replaces the preview the person saw.
#[allow(clippy::too_many_arguments)]
fn propose_html(
    shared: &Shared,
    served: &Served,
    visitor: &Visitor,
    agent: String,
    form: &ProposeForm,
    request: &Request,
    preview: Preview,
    stale: bool,
) -> ProposeHtml {
    let now = chrono::Utc::now().timestamp();
    ProposeHtml {
        chrome: chrome(
            shared,
            Some(served),
            visitor,
            preview.title.clone(),
            None,
            now,
        ),
        fields: form.fields(&preview),
        is_revoke: matches!(request, Request::Revoke { .. }),
        reason: form.reason.clone().unwrap_or_default(),
        open: identical(shared, &agent, &preview),
        agent,
        stale,
        preview,
    }
}

/// An open proposal that makes the same change as `preview` (the same subject), with the link
/// to follow: its pull request where the server knows how to link one, else its branch.
fn identical(shared: &Shared, agent: &str, preview: &Preview) -> Option<(String, String)> {
    let proposals = shared.proposals.load();
    let open = proposals.iter().find(|p| p.subject == preview.title)?;
    let link = open
        .link
        .clone()
        .unwrap_or_else(|| format!("/agents/{agent}#proposals"));
    Some((open.branch.clone(), link))
}

pub(super) async fn propose_create(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> PageResult {
    let (keys, session) = signed_in_post(&shared, &headers)?;
    let form: ProposeForm = read_form(body).await.map_err(|e| detour(&shared, e))?;
    check_csrf(&shared, keys, &session, form.csrf.as_deref())?;
    let served = served_or_page(&shared)?;
    let request = form
        .request(&agent)
        .map_err(|e| form.detour(&shared, &agent, e))?;
    let preview = plan(&shared, served.clone(), request.clone())
        .await
        .map_err(|e| form.detour(&shared, &agent, e))?;
    // The branch moved since the preview, or the request plans to another change: commit
    // nothing, and show the change as it would be now.
    if form.expect.as_deref() != Some(preview.fingerprint().as_str()) {
        let v = Visitor {
            session: Some(session),
        };
        let page = propose_html(&shared, &served, &v, agent, &form, &request, preview, true);
        return Ok(html(StatusCode::CONFLICT, page.render()));
    }
    let by = session
        .who
        .as_ref()
        .map_or_else(|| "operator".to_string(), |p| p.email.clone());
    if let Some((branch, link)) = identical(&shared, &agent, &preview) {
        // The person's own proposal, made a moment ago (a second click): it was created.
        if shared.created.get(&branch).is_some_and(|c| c.by == by) {
            return Ok(see_other(&proposal_href(&agent, &branch, true)));
        }
        return Ok(message_page(
            &shared,
            StatusCode::CONFLICT,
            "Already proposed",
            format!("{branch} proposes the same change and is still open: {link}"),
            "review or merge that one; nothing was created",
        ));
    }
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
    let worker = shared.clone();
    let who = session.who.clone();
    let created = tokio::task::spawn_blocking(move || create(&worker, &preview, &request, who))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "creating the proposal failed (a defect in ledgit)",
            )
        })
        .and_then(|r| r.map_err(ApiError::from));
    let (branch, commit, title, pull_request) = match created {
        Ok(x) => x,
        Err(e) => {
            let (status, said) = e.parts();
            shared
                .options
                .log
                .line(&format!("ledgit serve: a proposal was not created: {said}"));
            return Ok(message_page(
                &shared,
                status,
                "Not created",
                said,
                "nothing was written to the tracked branch",
            ));
        }
    };
    let pushing = shared.options.push.clone();
    shared.created.put(
        &branch,
        super::super::state::Creation {
            agent: agent.clone(),
            by,
            commit,
            title,
            push: pushing.as_ref().map(|_| None),
            pull_request,
        },
    );
    // The push can take seconds: it goes on after the answer, and the proposal's page says
    // how it went.
    if let Some(remote) = pushing {
        let worker = shared.clone();
        let branch = branch.clone();
        tokio::task::spawn_blocking(move || {
            let said = crate::git::repo::Repo::open(&worker.options.repo)
                .map(|repo| push(&repo, &remote, &branch))
                .unwrap_or_else(|e| format!("the repository did not open to push: {e}"));
            if let Some(mut c) = worker.created.get(&branch) {
                c.push = Some(Some(said));
                worker.created.put(&branch, c);
            }
            worker.ask_refresh(false);
        });
    }
    shared.ask_refresh(false);
    Ok(see_other(&proposal_href(&agent, &branch, false)))
}

/// A redirect after a post (303: the browser asks for the new page with GET).
fn see_other(location: &str) -> Response {
    match axum::http::HeaderValue::from_str(location) {
        Ok(v) => (StatusCode::SEE_OTHER, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The address of the page of proposal `branch` of `agent`.
fn proposal_href(agent: &str, branch: &str, again: bool) -> String {
    format!(
        "/agents/{}/proposed?branch={}{}",
        percent(agent),
        percent(branch),
        if again { "&again=1" } else { "" }
    )
}

#[derive(Deserialize)]
struct ProposedQuery {
    branch: String,
    again: Option<String>,
}

/// `/agents/{agent}/proposed?branch=…`: a proposal this replica created, and its push (the
/// page looks again every two seconds while the push is under way).
pub(super) async fn proposed_page(
    State(shared): State<Arc<Shared>>,
    Path(agent): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> PageResult {
    let q: ProposedQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| detour(&shared, ApiError::bad_query(e)))?;
    let now = chrono::Utc::now().timestamp();
    let v = visitor(&shared, &headers, now);
    let Some(c) = shared.created.get(&q.branch).filter(|c| c.agent == agent) else {
        return Ok(message_page(
            &shared,
            StatusCode::NOT_FOUND,
            status_words(StatusCode::NOT_FOUND),
            format!(
                "{} was not proposed on this server (or the server restarted since).",
                q.branch
            ),
            "the agent's page lists its open proposals",
        ));
    };
    let served = shared.served.load_full();
    let page = ProposedHtml {
        chrome: chrome(
            &shared,
            served.as_deref(),
            &v,
            "Proposal created",
            None,
            now,
        ),
        agent,
        branch: q.branch,
        commit: c.commit,
        title: c.title,
        pushing: matches!(c.push, Some(None)),
        pushed: c.push.flatten(),
        pull_request: c.pull_request,
        again: q.again.is_some(),
    };
    Ok(html(StatusCode::OK, page.render()))
}

type Created = (String, String, String, Option<String>);

/// Commits the proposal on its branch and finds its pull request link (the push comes after).
/// The open proposals are read again at once, so the next page lists it.
/// The signed-in person authors the commit; the server's git identity commits it (and authors
/// it too when the person is not known: the operator secret names no one).
fn create(
    shared: &Shared,
    preview: &Preview,
    request: &Request,
    who: Option<session::Person>,
) -> crate::Result<Created> {
    let options = &shared.options;
    let repo = crate::git::repo::Repo::open(&options.repo)?;
    let now = chrono::Utc::now().timestamp();
    let branch = request.branch_name(now);
    let committer = repo
        .git
        .signature()
        .or_else(|_| git2::Signature::now("ledgit serve", "ledgit@localhost"))
        .map_err(|e| crate::Error::git("making the proposal's committer", e))?;
    let author = match &who {
        Some(p) => git2::Signature::now(&p.name, &p.email)
            .map_err(|e| crate::Error::git("making the proposal's author", e))?,
        None => committer.clone(),
    };
    let commit = crate::review::proposal::create(&repo, preview, &branch, &author, &committer)?;
    if let Ok(base) = git2::Oid::from_str(&preview.base) {
        shared
            .proposals
            .store(Arc::new(super::super::state::open_proposals(
                &repo, base, options,
            )));
    }
    let remote_url = options
        .push
        .as_deref()
        .and_then(|r| repo.git.find_remote(r).ok())
        .and_then(|r| r.url().ok().map(str::to_string));
    let pull_request = crate::review::proposal::pull_request_url(
        options.pull_request_url.as_deref(),
        remote_url.as_deref(),
        &options.branch,
        &branch,
    );
    Ok((
        branch,
        commit.to_string(),
        preview.title.clone(),
        pull_request,
    ))
}

/// Pushes the proposal's branch (`Repo::push`: the user's git, bounded, never prompting), and
/// says on the page how it went: a failed push is news for the reader, not an error, since the
/// branch exists here either way.
fn push(repo: &crate::git::repo::Repo, remote: &str, branch: &str) -> String {
    use crate::git::repo::GitFailure;
    match repo.push(remote, branch) {
        Ok(()) => format!("Pushed to {remote}."),
        Err(failure) => match failure {
            GitFailure::Spawn(e) => format!("cannot run git to push: {e}"),
            GitFailure::Exit(_, said) => format!(
                "the branch {branch} was created here but git could not push it to {remote}: {said}"
            ),
            GitFailure::TimedOut => format!(
                "the branch {branch} was created here but pushing it to {remote} took over a minute"
            ),
            GitFailure::Wait(e) => format!(
                "the branch {branch} was created here but waiting for git to push it failed: {e}"
            ),
        },
    }
}
