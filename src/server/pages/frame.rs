//! What every page is framed with: the chrome around its content (title, commit, the
//! visitor's sign-in), the templates and their helpers, HTML answers with the headers every
//! page carries, and the detour a page takes to an error page. The pages' handlers and the
//! controls both frame their pages here.

use std::sync::Arc;

use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::review::proposal::Preview;
use crate::view::{self, AgentPage, DeploymentTokens, Overview};

use super::super::answer::ApiError;
use super::super::session::Session;
use super::super::state::{Served, Shared};

pub(super) const STYLE: &str = include_str!("../static/style.css");
pub(super) const FAVICON: &str = include_str!("../static/favicon.svg");

/// What every page shows around its content.
pub struct Chrome {
    title: String,
    version: &'static str,
    commit: String,
    commit_short: String,
    branch: String,
    json: Option<String>,
    signed_in: bool,
    /// Who signed in, as the header names them; whether they can sign out here (not when a
    /// proxy signs them in).
    who: Option<String>,
    can_sign_out: bool,
    proposals: bool,
    csrf: String,
    now: i64,
    /// While the reconciler's store cannot be read: since when, and why.
    store_down: Option<(String, String)>,
}

/// Formatting helpers the templates call (`self.ago(t)`, `self.short(id)`).
pub(super) trait Helpers {
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

    /// When a retry is due, to the second: `in 25s`, or `due` once the time has come (an
    /// RFC 3339 time; anything else as it is).
    fn due(&self, rfc3339: impl AsRef<str>) -> String {
        let t = rfc3339.as_ref();
        match chrono::DateTime::parse_from_rfc3339(t) {
            Ok(at) => match at.timestamp() - self.now() {
                left if left > 0 => {
                    format!("in {}", crate::support::when::format_duration_short(left))
                }
                _ => "due".to_string(),
            },
            Err(_) => t.to_string(),
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
pub(super) trait Secs {
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
        pub(super) struct $name {
            pub(super) chrome: Chrome,
            $(pub(super) $field: $ty,)*
        }
        impl Helpers for $name {
            fn now(&self) -> i64 {
                self.chrome.now
            }
        }
    };
}

/// The snapshot's page (by hand, not [`page!`]: it borrows the snapshot).
#[derive(Template)]
#[template(path = "overview.html")]
pub(super) struct OverviewHtml<'a> {
    pub(super) chrome: Chrome,
    pub(super) overview: Overview<'a>,
    pub(super) prev: Option<String>,
    pub(super) next: Option<String>,
    pub(super) sort_link: String,
    pub(super) sorted_by_change: bool,
    pub(super) at_suffix: String,
    pub(super) state: String,
    pub(super) at: Option<String>,
    pub(super) at_input: String,
    pub(super) filter: String,
    pub(super) sync_known: bool,
    pub(super) leases: Vec<crate::reconcile::state::Lease>,
    pub(super) proposals: Arc<Vec<super::super::state::Proposal>>,
}

impl Helpers for OverviewHtml<'_> {
    fn now(&self) -> i64 {
        self.chrome.now
    }
}
/// A sync state as people say it.
fn sync_label(state: &str) -> &'static str {
    match state {
        "Synced" => "synced",
        "Failed" => "failed",
        "Pending" => "applying",
        _ => "out of sync",
    }
}

impl OverviewHtml<'_> {
    fn state_options(&self) -> [view::StateFilter; 5] {
        view::StateFilter::ALL
    }

    fn sync_label(&self, state: &str) -> &'static str {
        sync_label(state)
    }

    /// What a cell's sync badge means, for its tooltip (short when all is well: the page has a
    /// hundred of them).
    fn sync_words(&self, c: &view::Cell) -> std::borrow::Cow<'static, str> {
        use crate::reconcile::state::SyncState;
        let mut words = match c.sync {
            Some(SyncState::Synced) => return "applied".into(),
            Some(SyncState::Pending) => format!("{} is being applied", c.version),
            Some(SyncState::Failed) => format!("applying {} failed", c.version),
            _ => format!("{} is not applied yet", c.version),
        };
        let mut add = |part: String| {
            if !words.is_empty() {
                words.push_str("; ");
            }
            words.push_str(&part);
        };
        match &c.applied_version {
            Some(a) if *a != c.version => add(format!("{a} runs")),
            None => add("nothing applied yet".into()),
            _ => {}
        }
        if let Some(by) = &c.applied_by {
            add(format!("applied by {by}"));
        }
        if let Some(e) = &c.last_error {
            let attempts = c.attempts.unwrap_or(1);
            add(format!(
                "{attempts} attempt{} failed, last{}: {e}",
                if attempts == 1 { "" } else { "s" },
                c.error_at
                    .map(|t| format!(" {}", self.human(t)))
                    .unwrap_or_default()
            ));
        }
        words.into()
    }
}

page!(AgentHtml, "agent.html" {
    page: AgentPage,
    timeline: String,
    controls: bool,
    proposals: Vec<super::super::state::Proposal>,
    at_suffix: String,
});

impl AgentHtml {
    fn sync_label(&self, state: &str) -> &'static str {
        sync_label(state)
    }
}
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
    reason: String,
    stale: bool,
    open: Option<(String, String)>,
});
page!(ProposedHtml, "proposed.html" {
    agent: String,
    branch: String,
    commit: String,
    title: String,
    pushing: bool,
    pushed: Option<String>,
    pull_request: Option<String>,
    again: bool,
});
page!(SigninHtml, "signin.html" { failed: Option<&'static str>, mode: String });
page!(MessageHtml, "message.html" { heading: String, message: Vec<Piece>, hint: String, retry: Option<Retry> });

/// A piece of a message: text, or an address shown as a link.
pub(super) enum Piece {
    Text(String),
    Link(String),
}

/// Splits `text` into text and `http(s)://` addresses (up to the next white space, less a
/// closing punctuation mark), so a message that names a pull request links it.
pub(super) fn pieces(text: &str) -> Vec<Piece> {
    let next = |s: &str| {
        [s.find("https://"), s.find("http://")]
            .into_iter()
            .flatten()
            .min()
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = next(rest) {
        let end = rest[at..]
            .find(char::is_whitespace)
            .map_or(rest.len(), |e| at + e);
        let url = rest[at..end].trim_end_matches(['.', ',', ';', ':', ')', '!', '?']);
        if at > 0 {
            out.push(Piece::Text(rest[..at].to_string()));
        }
        out.push(Piece::Link(url.to_string()));
        rest = &rest[at + url.len()..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_string()));
    }
    out
}

/// What the person typed, offered again under an error so that nothing they wrote is lost:
/// a form to `action` with their value in its one text field and the rest hidden.
pub(super) struct Retry {
    pub(super) action: String,
    pub(super) hidden: Vec<(String, String)>,
    pub(super) field: String,
    pub(super) label: String,
    pub(super) value: String,
}

tokio::task_local! {
    /// The signed-in visitor of the page request being answered, set by the pages' session
    /// layer, so that an error page keeps the header of the person who asked.
    pub(super) static VISITOR: Option<Session>;
}

/// The visitor of the request being answered (none outside a page request).
fn current_visitor() -> Visitor {
    Visitor {
        session: VISITOR.try_with(Clone::clone).ok().flatten(),
    }
}

/// The words a page says for an error status: what happened, not the protocol's name.
pub(super) fn status_words(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request does not read",
        401 | 403 => "Not allowed",
        404 => "Not found",
        408 => "The request took too long",
        409 => "Something changed meanwhile",
        413 => "The request is too large",
        422 => "That cannot be done as asked",
        429 => "Too many attempts",
        500 => "ledgit failed",
        502 | 504 => "The identity provider did not answer",
        503 => "Not available right now",
        _ => "Not done",
    }
}

/// An HTML answer with the headers every page carries.
pub(super) fn html(status: StatusCode, body: Result<String, askama::Error>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(_) => {
            return super::super::answer::error(
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
pub(super) struct Visitor {
    pub(super) session: Option<Session>,
}

pub(super) fn visitor(shared: &Shared, headers: &HeaderMap, now: i64) -> Visitor {
    Visitor {
        session: shared
            .ui_keys
            .as_ref()
            .and_then(|k| k.session(headers, now)),
    }
}

pub(super) fn chrome(
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
        who: visitor
            .session
            .as_ref()
            .and_then(|s| s.who.as_ref())
            .map(|p| p.shown()),
        can_sign_out: visitor.session.as_ref().is_some_and(|s| !s.by_proxy),
        proposals: shared.ui_keys.is_some(),
        csrf: match (&visitor.session, &shared.ui_keys) {
            (Some(s), Some(k)) => k.csrf(s),
            _ => String::new(),
        },
        now,
        store_down: {
            let h = shared.store_health();
            h.down
                .map(|why| (crate::support::when::rfc3339(h.since), why))
        },
    }
}

/// An error as a page.
pub(super) fn message_page(
    shared: &Shared,
    status: StatusCode,
    heading: &str,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Response {
    message_page_with(shared, status, heading, message, hint, None)
}

/// An error as a page, with the form the person filled in offered again.
pub(super) fn message_page_with(
    shared: &Shared,
    status: StatusCode,
    heading: &str,
    message: impl Into<String>,
    hint: impl Into<String>,
    retry: Option<Retry>,
) -> Response {
    let now = chrono::Utc::now().timestamp();
    let served = shared.served.load_full();
    let v = current_visitor();
    let page = MessageHtml {
        chrome: chrome(shared, served.as_deref(), &v, heading, None, now),
        heading: heading.into(),
        message: pieces(&message.into()),
        hint: hint.into(),
        retry,
    };
    html(status, page.render())
}

pub(super) fn page_error(shared: &Shared, e: ApiError) -> Response {
    let (status, message) = e.parts();
    message_page(shared, status, status_words(status), message, "")
}

/// A page that answers instead of the one asked for: an error or a refusal, already rendered
/// (boxed: a response is large).
pub(super) struct Detour(Box<Response>);

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
pub(super) type PageResult = Result<Response, Detour>;

pub(super) fn detour(shared: &Shared, e: ApiError) -> Detour {
    page_error(shared, e).into()
}

pub(super) fn served_or_page(shared: &Shared) -> Result<Arc<Served>, Detour> {
    super::super::state::served(shared).map_err(|e| detour(shared, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(p: &[Piece]) -> String {
        p.iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Link(u) => format!("<{u}>"),
            })
            .collect()
    }

    #[test]
    fn addresses_in_a_message_become_links() {
        assert_eq!(
            shown(&pieces(
                "ledgit/x proposes the same change: https://git.example/pr/4."
            )),
            "ledgit/x proposes the same change: <https://git.example/pr/4>."
        );
        assert_eq!(
            shown(&pieces("see http://a.test/x and https://b.test/y), then")),
            "see <http://a.test/x> and <https://b.test/y>), then"
        );
        assert_eq!(shown(&pieces("no address")), "no address");
        assert!(pieces("").is_empty());
    }

    #[test]
    fn error_pages_speak_in_words() {
        for code in [400u16, 404, 409, 422] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_ne!(status_words(status), status.canonical_reason().unwrap());
        }
    }
}
