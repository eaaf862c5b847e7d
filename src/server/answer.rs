//! The answers every handler gives: JSON bodies, errors as `{"error": code, "message": ...}`
//! ([`ApiError`]), request bodies read within a bound, the query's time parameters, and the
//! escaping of text that came from a request. Routes, webhooks, pages and limits all answer
//! through here, and it uses none of them.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The accepted forms of a time parameter, for error messages.
const TIME_FORMS: &str =
    "RFC 3339 (2026-03-03T12:00:00Z), a date (2026-03-03, UTC), or a duration ago (7d, 12h)";

/// The largest request body read (webhook payloads, introspection forms).
pub const MAX_BODY: usize = 1 << 20;

/// A JSON answer.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// An error answer: `{"error": code, "message": message}`.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    json(
        status,
        &serde_json::json!({"error": code, "message": message.into()}),
    )
}

/// An error on its way to becoming an answer (see [`error`]).
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_query(e: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.to_string())
    }
}

impl ApiError {
    /// The status and the message.
    pub fn parts(self) -> (StatusCode, String) {
        (self.status, self.message)
    }
}

impl From<crate::Error> for ApiError {
    /// The one mapping from the library's errors to answers: the caller's input is 422, what
    /// does not exist 404, a conflict 409, a part that cannot be used now (git, the store, the
    /// disk) 503, a defect 500. The message carries the hint.
    fn from(e: crate::Error) -> Self {
        use crate::error::Kind;
        let (status, code) = match e.kind() {
            Kind::Input => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
            Kind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Kind::Conflict => (StatusCode::CONFLICT, "conflict"),
            Kind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Kind::Defect => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        };
        let message = match e.hint() {
            Some(h) => format!("{e} ({h})"),
            None => e.to_string(),
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.message)
    }
}

/// An answer given before the request's body was read: the connection closes after it (the
/// unread body cannot be told from the next request), and the answer says so.
pub fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Client text in a message: escaped and cut short.
pub fn shown(text: &str) -> String {
    text.chars().take(64).flat_map(char::escape_debug).collect()
}

/// A handler's answer, or the error it becomes.
pub type Answer = Result<Response, ApiError>;

/// How long a request's body may take to arrive, whole: a client that sends its body a byte
/// at a time holds a connection for this long at most, not the request's own time limit.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a body of at most `limit` bytes within [`BODY_TIMEOUT`], or answers 413 (too large,
/// or cut short) or 408 (too slow).
pub async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    // A body announced larger than the limit (`Content-Length`) is refused before a byte of it
    // is read: the client cannot hold the connection on a promise.
    let announced = axum::body::HttpBody::size_hint(&body).lower();
    if announced > limit as u64 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is announced as {announced} bytes, more than {limit}"),
        ));
    }
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes (or was cut short)"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_too_slow",
            format!("the body did not arrive within {}s", BODY_TIMEOUT.as_secs()),
        )),
    }
}

/// Parses a time parameter, or answers 400 naming the accepted forms.
pub fn time_param(name: &str, value: &str) -> Result<crate::support::when::TimeArg, ApiError> {
    crate::support::when::parse_time_arg(value, chrono::Utc::now()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_time",
            format!("`{name}` is not a time; use {TIME_FORMS}"),
        )
    })
}

/// Parses `?at=`, the time of a snapshot: a time to come is refused (what will be declared
/// then is not known yet; answering with today's state would mislabel it).
pub fn at_param(value: &str) -> Result<crate::support::when::TimeArg, ApiError> {
    let at = time_param("at", value)?;
    if at.time > chrono::Utc::now() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_time",
            format!(
                "`at` is {}, a time to come: the snapshot is known up to now",
                crate::support::when::rfc3339(at.time.timestamp())
            ),
        ));
    }
    Ok(at)
}

/// `?at=` from a page's form, in seconds: an empty field (as a form sends it) is no time.
pub fn form_at(value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .filter(|s| !s.trim().is_empty())
        .map(at_param)
        .transpose()
        .map(|t| t.map(|t| t.time.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of library error answers with its status, whatever the route.
    #[test]
    fn library_errors_map_to_their_status() {
        let git = || git2::Error::from_str("object not found");
        let table: Vec<(crate::Error, StatusCode)> = vec![
            (
                crate::Error::invalid("bad version", "use 1.4.2"),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                crate::Error::RevisionNotFound { rev: "nope".into() },
                StatusCode::NOT_FOUND,
            ),
            (
                crate::Error::Fenced {
                    environment: "production".into(),
                    epoch: 3,
                },
                StatusCode::CONFLICT,
            ),
            (
                crate::Error::Git {
                    context: "reading a tree".into(),
                    source: git(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                crate::Error::Io {
                    path: "/repo/.git".into(),
                    source: std::io::Error::other("disk full"),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                crate::Error::StoreRefused {
                    location: "postgres://db".into(),
                    message: "newer schema".into(),
                    hint: "upgrade".into(),
                },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                crate::Error::Internal {
                    what: "a thread panicked".into(),
                },
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in table {
            let shown = e.to_string();
            let answer = ApiError::from(e).into_response();
            assert_eq!(answer.status(), status, "{shown}");
        }
        let (status, message) =
            ApiError::from(crate::Error::invalid("bad version", "use 1.4.2")).parts();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(message, "bad version (use 1.4.2)");
    }
}
