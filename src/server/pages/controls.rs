//! The page's controls: sign-in (the operator secret, OpenID Connect, or a proxy's word), and
//! proposals (promote, set, roll
//! back, revoke) previewed as a diff with the policy's verdict, then committed on a new branch
//! and pushed where asked. Every POST passes [`check_post`]: this server's origin, a signed-in
//! session, the session's CSRF token.

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
    Detour, PageResult, ProposeHtml, ProposedHtml, SigninHtml, Visitor, chrome, detour, html,
    message_page, served_or_page, visitor,
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

/// `/signin/oidc/callback`: back from the provider; a session for the person it names.
pub(super) async fn oidc_callback(
    State(shared): State<Arc<Shared>>,
    client: super::super::limits::Client,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let now = chrono::Utc::now().timestamp();
    if let Some(r) = shared.failures.refuse(client.0, now) {
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
        (Some(c), Some(k)) => c.finish(k, &headers, &q, now).map_err(|e| e.to_string()),
        _ => Err("this server does not sign in with OpenID Connect".to_string()),
    })
    .await
    .unwrap_or_else(|_| Err("the sign-in failed".into()));
    let (person, keys) = match (finished, &shared.ui_keys) {
        (Ok(p), Some(k)) => (p, k),
        (Err(said), _) => {
            shared.failures.count(client.0, now);
            return signin_failed(&shared, StatusCode::FORBIDDEN, said);
        }
        (Ok(_), None) => return refused(&shared, "this server does not take proposals"),
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
    if let Some(r) = shared.failures.refuse(client.0, now) {
        return Ok(super::super::answer::closing(r));
    }
    let form: SigninForm = read_form(body).await.map_err(|e| detour(&shared, e))?;
    if !keys.is_secret(&form.secret) {
        shared.failures.count(client.0, now);
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
    let form: CsrfForm = read_form(body).await.map_err(|e| detour(&shared, e))?;
    let session = check_post(&shared, &headers, form.csrf.as_deref())?;
    if let Some(keys) = &shared.ui_keys
        && !session.by_proxy
    {
        keys.end(&session, chrono::Utc::now().timestamp());
    }
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
        let repo = crate::git::repo::Repo::open(&repo_path).map_err(unprocessable)?;
        let now = chrono::Utc::now().timestamp();
        crate::review::proposal::preview(&repo, served.commit, &served.history, &request, now)
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

fn unprocessable(e: crate::Error) -> ApiError {
    let message = match e.hint() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    };
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_proposable", message)
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
    let request = form.request(&agent).map_err(|e| detour(&shared, e))?;
    let preview = plan(&shared, served.clone(), request.clone())
        .await
        .map_err(|e| detour(&shared, e))?;
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
    let form: ProposeForm = read_form(body).await.map_err(|e| detour(&shared, e))?;
    let session = check_post(&shared, &headers, form.csrf.as_deref())?;
    let served = served_or_page(&shared)?;
    let request = form.request(&agent).map_err(|e| detour(&shared, e))?;
    let preview = plan(&shared, served.clone(), request.clone())
        .await
        .map_err(|e| detour(&shared, e))?;
    // The branch moved since the preview, or the request plans to another change: commit
    // nothing, and show the change as it would be now.
    if form.expect.as_deref() != Some(preview.fingerprint().as_str()) {
        let v = Visitor {
            session: Some(session),
        };
        let page = propose_html(&shared, &served, &v, agent, &form, &request, preview, true);
        return Ok(html(StatusCode::CONFLICT, page.render()));
    }
    if let Some((branch, link)) = identical(&shared, &agent, &preview) {
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
        .map_err(|_| "creating the proposal failed".to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let (branch, commit, title, pushed, pull_request) = match created {
        Ok(x) => x,
        Err(said) => {
            return Ok(message_page(
                &shared,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Not created",
                said,
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
    };
    Ok(html(StatusCode::CREATED, page.render()))
}

type Created = (String, String, String, Option<String>, Option<String>);

/// Commits the proposal on its branch, pushes it where asked, and finds its pull request link.
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
    // The branch exists here either way: a failed push is said on the page, not an error.
    let pushed = options
        .push
        .as_ref()
        .map(|remote| push(&repo, remote, &branch));
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
        pushed,
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
