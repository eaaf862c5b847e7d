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

use super::metrics::HookLabels;
use super::routes::{MAX_BODY, error, json, read_body};
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

/// Whether `given` is `secret`, compared in constant time (an HMAC of each under a key drawn
/// at random, compared with ring's constant-time check).
pub fn same_secret(secret: &[u8], given: &[u8]) -> bool {
    use ring::rand::SecureRandom;
    let mut k = [0u8; 32];
    if ring::rand::SystemRandom::new().fill(&mut k).is_err() {
        return false;
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &k);
    let tag = ring::hmac::sign(&key, secret);
    ring::hmac::verify(&key, given, tag.as_ref()).is_ok()
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`.
pub fn signature_ok(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, body, &tag).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

pub async fn receive(
    State(shared): State<Arc<Shared>>,
    Path(provider): Path<String>,
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
    let Some(secret) = &shared.options.hook_secret else {
        count("disabled");
        return error(
            StatusCode::UNAUTHORIZED,
            "webhooks_disabled",
            "webhooks are disabled: start the server with LEDGIT_HOOK_SECRET set",
        );
    };
    let body = match read_body(body, MAX_BODY).await {
        Ok(b) => b,
        Err(r) => {
            count("too_large");
            return r.into_response();
        }
    };
    let verified = match provider {
        Provider::GitHub => signature_ok(secret, &body, header(&headers, "x-hub-signature-256")),
        Provider::GitLab => same_secret(secret, header(&headers, "x-gitlab-token").as_bytes()),
        Provider::Generic => signature_ok(secret, &body, header(&headers, "x-signature")),
    };
    if !verified {
        count("bad_signature");
        return error(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "the delivery's signature does not verify with LEDGIT_HOOK_SECRET",
        );
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
        match serde_json::from_slice(&body) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_signature_scheme() {
        // From GitHub's documentation of X-Hub-Signature-256.
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            header
        ));
        assert!(!signature_ok(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            header
        ));
        assert!(!signature_ok(b"another secret", b"Hello, World!", header));
        for bad in [
            "",
            "sha256=",
            "sha1=757107ea",
            "sha256=zz",
            &header.to_uppercase(),
        ] {
            assert!(!signature_ok(
                b"It's a Secret to Everybody",
                b"Hello, World!",
                bad
            ));
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
        assert!(!same_secret(b"s3cret", b"s3cret!"));
        assert!(!same_secret(b"s3cret", b""));
    }
}
