//! Webhook receivers: a git host announces a push, and a verified push to the tracked branch
//! asks the refresher for a refresh (with a fetch first when the server fetches). GitHub signs
//! with `X-Hub-Signature-256`, GitLab sends a shared token in `X-Gitlab-Token`, anything else
//! signs with `X-Signature: sha256=<hex>`; all are checked in constant time against
//! `LEDGIT_HOOK_SECRET`. A delivery that does not verify is refused and never refreshes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::answer::{MAX_BODY, closing, error, json, read_body};
use super::metrics::HookLabels;
use super::state::Shared;

/// The git hosts a delivery can come from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Provider {
    GitHub,
    GitLab,
    Generic,
}

impl Provider {
    fn from_path(name: &str) -> Option<Provider> {
        match name {
            "github" => Some(Provider::GitHub),
            "gitlab" => Some(Provider::GitLab),
            "generic" => Some(Provider::Generic),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Generic => "generic",
        }
    }
}

use crate::support::hmac::{same_secret, signature_ok};

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

pub async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(provider): Path<String>,
    client: super::limits::Client,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(provider) = Provider::from_path(&provider) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "webhooks are received at /v1/hooks/github, /v1/hooks/gitlab and /v1/hooks/generic",
        );
    };
    let count = |result: &'static str| {
        shared
            .metrics
            .hooks
            .get_or_create(&HookLabels {
                provider: provider.label(),
                result,
            })
            .inc();
    };
    // GitLab sends its token in clear: it is a secret of its own, never the HMAC key of the
    // other routes (whoever reads one delivery in transit could sign the others').
    let (secret, variable) = match provider {
        Provider::GitLab => (&shared.options.gitlab_token, "LEDGIT_GITLAB_TOKEN"),
        _ => (&shared.options.hook_secret, "LEDGIT_HOOK_SECRET"),
    };
    let Some(secret) = secret else {
        count("disabled");
        return closing(error(
            StatusCode::UNAUTHORIZED,
            "webhooks_disabled",
            format!(
                "{} webhooks are disabled: start the server with {variable} set",
                provider.label()
            ),
        ));
    };
    let now = chrono::Utc::now().timestamp();
    if let Some(r) = shared.failures.hooks.refuse(client.0, now) {
        count("limited");
        return closing(r);
    }
    let refused = || {
        count("bad_signature");
        shared.failures.hooks.count(client.0, now);
        error(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            format!("the delivery's signature does not verify with {variable}"),
        )
    };
    // GitLab's token is in a header: checked before the body is read, so a client without it
    // cannot hold the connection with a slow body.
    if provider == Provider::GitLab
        && !same_secret(secret, header(&headers, "x-gitlab-token").as_bytes())
    {
        return closing(refused());
    }
    let body = match read_body(body, MAX_BODY).await {
        Ok(b) => b,
        Err(r) => {
            count("too_large");
            return closing(r.into_response());
        }
    };
    let verified = match provider {
        Provider::GitHub => signature_ok(secret, &body, header(&headers, "x-hub-signature-256")),
        Provider::GitLab => true,
        Provider::Generic => signature_ok(secret, &body, header(&headers, "x-signature")),
    };
    if !verified {
        return refused();
    }
    let event = match provider {
        Provider::GitHub => header(&headers, "x-github-event"),
        Provider::GitLab => header(&headers, "x-gitlab-event"),
        Provider::Generic => "push",
    };
    if provider == Provider::GitHub && event == "ping" {
        count("ping");
        return json(
            StatusCode::OK,
            &serde_json::json!({"refresh": false, "reason": "ping"}),
        );
    }
    let is_push = match provider {
        Provider::GitHub => event == "push",
        Provider::GitLab => event == "Push Hook",
        Provider::Generic => true,
    };
    if !is_push {
        count("ignored");
        return json(
            StatusCode::OK,
            &serde_json::json!({"refresh": false, "reason": "not a push event"}),
        );
    }
    let payload: serde_json::Value = if body.is_empty() && provider == Provider::Generic {
        serde_json::Value::Null
    } else {
        match serde_json::from_slice(&json_payload(&headers, &body)) {
            Ok(v) => v,
            Err(e) => {
                count("invalid");
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_payload",
                    format!("the payload is not JSON: {e}"),
                );
            }
        }
    };
    let tracked = format!("refs/heads/{}", shared.options.branch);
    let pushed = payload.get("ref").and_then(|r| r.as_str());
    // A generic delivery without a ref announces "something changed".
    if pushed.is_some_and(|r| r != tracked) {
        count("other_ref");
        return json(
            StatusCode::OK,
            &serde_json::json!({"refresh": false, "reason": format!("the push is not to {tracked}")}),
        );
    }
    count("refresh");
    shared.ask_refresh(true);
    json(StatusCode::ACCEPTED, &serde_json::json!({"refresh": true}))
}

/// The JSON of a delivery: the body, or for GitHub's form-encoded deliveries
/// (`application/x-www-form-urlencoded`) its `payload` field. The signature is over the body
/// as sent, either way.
fn json_payload<'b>(headers: &HeaderMap, body: &'b [u8]) -> std::borrow::Cow<'b, [u8]> {
    let form = header(headers, "content-type")
        .split(';')
        .next()
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return body.into();
    }
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()
        .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "payload"))
        .map_or(body.into(), |(_, v)| v.into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoded_deliveries_carry_their_json_in_payload() {
        let mut h = HeaderMap::new();
        let body = b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D";
        assert_eq!(&*json_payload(&h, body), &body[..]);
        h.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        assert_eq!(&*json_payload(&h, body), br#"{"ref":"refs/heads/main"}"#);
        assert_eq!(&*json_payload(&h, b"other=1"), b"other=1");
    }
}
