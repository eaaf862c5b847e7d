//! Sign-in for the web page's controls: the operator secret (`LEDGIT_UI_SECRET`) exchanged for
//! a session cookie (HMAC-signed, HttpOnly, SameSite=Strict, eight hours), a CSRF token bound
//! to that session in every form, and the Origin check on every POST. Readers need none of it.

use axum::http::{HeaderMap, HeaderValue, header};

/// The session cookie's name.
pub const COOKIE: &str = "ledgit_session";
/// How long a session lasts (eight hours).
pub const LIFETIME: i64 = 8 * 3600;

/// A signed-in visitor's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random, per sign-in; the CSRF token is derived from it.
    nonce: String,
    pub expires: i64,
}

/// The keys derived from the operator secret: one signs cookies, one derives CSRF tokens.
pub struct Keys {
    secret: Vec<u8>,
    cookie: Vec<u8>,
    csrf: Vec<u8>,
}

/// HMAC-SHA256 of `data` under `key`, in hexadecimal.
fn mac(key: &[u8], data: &[u8]) -> String {
    let sig = ledgit::hmac::signature(key, data);
    sig.strip_prefix("sha256=").unwrap_or(&sig).to_string()
}

impl Keys {
    pub fn new(secret: Vec<u8>) -> Keys {
        let derive = |label: &str| mac(&secret, label.as_bytes()).into_bytes();
        Keys {
            cookie: derive("ledgit-ui-cookie"),
            csrf: derive("ledgit-ui-csrf"),
            secret,
        }
    }

    /// Whether `given` is the operator secret (constant time).
    pub fn is_secret(&self, given: &str) -> bool {
        ledgit::hmac::same_secret(&self.secret, given.as_bytes())
    }

    /// A new session from `now`, and its `Set-Cookie` value.
    pub fn sign_in(&self, now: i64, secure: bool) -> (Session, HeaderValue) {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 16];
        let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
        let nonce: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let session = Session {
            nonce,
            expires: now + LIFETIME,
        };
        let body = format!("{}.{}", session.expires, session.nonce);
        let value = format!(
            "{COOKIE}={body}.{}; Path=/; Max-Age={LIFETIME}; HttpOnly; SameSite=Strict{}",
            mac(&self.cookie, body.as_bytes()),
            if secure { "; Secure" } else { "" }
        );
        let header = HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""));
        (session, header)
    }

    /// The session a request's cookie carries, if it is signed by us and not expired.
    pub fn session(&self, headers: &HeaderMap, now: i64) -> Option<Session> {
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(&format!("{COOKIE}="))
                    .map(str::to_string)
            })?;
        let (body, mac) = cookie.rsplit_once('.')?;
        if !ledgit::hmac::signature_ok(&self.cookie, body.as_bytes(), &format!("sha256={mac}")) {
            return None;
        }
        let (expires, nonce) = body.split_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        (expires > now).then(|| Session {
            nonce: nonce.to_string(),
            expires,
        })
    }

    /// The CSRF token of a session (what its forms carry).
    pub fn csrf(&self, session: &Session) -> String {
        mac(&self.csrf, session.nonce.as_bytes())
    }

    /// Whether `token` is the session's CSRF token (constant time).
    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        ledgit::hmac::signature_ok(
            &self.csrf,
            session.nonce.as_bytes(),
            &format!("sha256={token}"),
        )
    }
}

/// The `Set-Cookie` value that ends a session.
pub fn sign_out() -> HeaderValue {
    HeaderValue::from_static("ledgit_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// Whether a POST comes from a page of this server: its `Origin` (or, without one, its
/// `Referer`) names the host the request was sent to.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    let Some(from) = from else {
        return false;
    };
    let rest = from
        .strip_prefix("http://")
        .or_else(|| from.strip_prefix("https://"));
    rest.is_some_and(|r| r.split('/').next() == Some(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn sessions_are_signed_bound_and_expire() {
        let keys = Keys::new(b"operator".to_vec());
        let (session, cookie) = keys.sign_in(1_000, false);
        let value = cookie.to_str().unwrap();
        assert!(value.contains("HttpOnly") && value.contains("SameSite=Strict"));
        let pair = value.split(';').next().unwrap();
        let h = with(header::COOKIE, &format!("other=1; {pair}"));
        assert_eq!(keys.session(&h, 1_001), Some(session.clone()));
        assert_eq!(keys.session(&h, 1_000 + LIFETIME), None);
        // Another secret's server, or a forged expiry, does not accept it.
        assert_eq!(Keys::new(b"other".to_vec()).session(&h, 1_001), None);
        let forged = pair.replacen(&format!("={}", 1_000 + LIFETIME), "=9999999999", 1);
        assert_eq!(keys.session(&with(header::COOKIE, &forged), 1_001), None);
        let csrf = keys.csrf(&session);
        assert!(keys.csrf_ok(&session, &csrf));
        let (other, _) = keys.sign_in(1_000, false);
        assert!(!keys.csrf_ok(&other, &csrf));
        assert!(!keys.csrf_ok(&session, ""));
        assert!(keys.is_secret("operator") && !keys.is_secret("operato"));
    }

    #[test]
    fn posts_must_come_from_this_host() {
        let mut h = with(header::HOST, "127.0.0.1:8080");
        assert!(!same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080.evil.example"),
        );
        assert!(!same_origin(&h));
    }
}
