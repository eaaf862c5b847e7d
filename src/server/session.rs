//! Sign-in for the web page's controls, one of three ways ([`Auth`]): the operator secret
//! (`LEDGIT_UI_SECRET`), OpenID Connect (`super::oidc`), or a trusted proxy's identity header.
//! The first two end in a session cookie (HMAC-signed, HttpOnly, SameSite=Strict) that carries
//! the signed-in [`Person`]; behind a proxy every request carries the person in a header, which
//! [`strip_untrusted`] removes from any request that does not come from a trusted proxy before
//! a handler sees it. A CSRF token bound to the session is in every form, and the Origin check
//! is on every POST. A cookie session ends after eight hours, after 30 minutes without a visit,
//! or at sign-out: its id is then refused by this server until it would have expired. Readers
//! need none of it.

use crate::support::random::RandomUnavailable;
use axum::http::{HeaderMap, HeaderValue, header};

/// The session cookie's name.
pub const COOKIE: &str = "ledgit_session";
/// The session cookie's name on a server reached over https: the `__Host-` prefix makes the
/// browser refuse it unless it is `Secure`, for `Path=/` and without `Domain`, so neither a
/// sibling host nor a plain-http page on the same host can set or shadow it.
pub const SECURE_COOKIE: &str = "__Host-ledgit_session";
/// How long a session lasts at most (eight hours).
pub const LIFETIME: i64 = 8 * 3600;
/// How long a session lasts without a visit (30 minutes).
pub const IDLE: i64 = 30 * 60;
/// How old a session's last visit may be before a visit renews its cookie.
const RENEW_AFTER: i64 = 60;
/// How an ended session is named where others can read it (the shared store): the hash of its
/// nonce, which the cookie carries but does not let anyone make a cookie from.
fn ended_id(nonce: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, nonce.as_bytes());
    crate::support::hex::encode(digest.as_ref())
}

/// The most ended sessions remembered (each needed a signed-in visitor's sign-out).
const MAX_ENDED: usize = 100_000;

/// Who signed in: the author of the proposals they make.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Person {
    pub name: String,
    pub email: String,
}

impl Person {
    /// A person from what a provider or a proxy says, when it is fit for a commit's author line:
    /// an address with one `@`, no spaces, angle brackets or control characters; a name without
    /// angle brackets or control characters (the address's local part when there is none).
    pub fn new(name: Option<&str>, email: &str) -> Option<Person> {
        let email = email.trim();
        let bad = |c: char| c.is_control() || c == '<' || c == '>';
        let (local, domain) = email.split_once('@')?;
        if email.len() > 254
            || local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || email.chars().any(|c| bad(c) || c.is_whitespace())
        {
            return None;
        }
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty() && n.len() <= 200 && !n.chars().any(bad))
            .unwrap_or(local);
        Some(Person {
            name: name.to_string(),
            email: email.to_string(),
        })
    }

    /// As the page's header names them: as their commits will (`Ada Lovelace
    /// <ada@example.com>`), or only the address when no name was given.
    pub fn shown(&self) -> String {
        match self.email.split_once('@') {
            Some((local, _)) if local == self.name => self.email.clone(),
            _ => format!("{} <{}>", self.name, self.email),
        }
    }

    /// The address's domain, lower case.
    pub fn domain(&self) -> String {
        self.email
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// How visitors sign in.
#[derive(Debug, Clone)]
pub enum Auth {
    /// With the operator secret.
    Secret,
    /// With an OpenID Provider.
    Oidc,
    /// A proxy in front says who it is, in this header, from these addresses only.
    Proxy {
        header: axum::http::HeaderName,
        trusted: Vec<Cidr>,
    },
}

/// An address block (`10.0.0.0/8`, `::1/128`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    ip: std::net::IpAddr,
    prefix: u8,
}

/// Why a `--trusted-proxy` value is not an address block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an address or an address block")]
    Address(String),
    #[error("`{given}`: the prefix length is not 0 to {max}")]
    Prefix { given: String, max: u8 },
}

impl std::str::FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let ip: std::net::IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| CidrError::Address(s.to_string()))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| CidrError::Prefix {
                        given: s.to_string(),
                        max,
                    })?
            }
        };
        Ok(Cidr { ip, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address as its IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let keep = |bits: u32, prefix: u8| -> u128 {
            if prefix == 0 {
                0
            } else {
                (!0u128) << (bits - u32::from(prefix))
            }
        };
        match (self.ip, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let m = keep(32, self.prefix) as u32;
                u32::from(net) & m == u32::from(ip) & m
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let m = keep(128, self.prefix);
                u128::from(net) & m == u128::from(ip) & m
            }
            _ => false,
        }
    }
}

/// Removes the proxy's identity header from a request that does not come from a trusted proxy
/// (or that carries it more than once), so that nothing downstream can believe it.
pub fn strip_untrusted(auth: &Auth, headers: &mut HeaderMap, peer: Option<std::net::IpAddr>) {
    let Auth::Proxy { header, trusted } = auth else {
        return;
    };
    let believed = peer.is_some_and(|ip| trusted.iter().any(|c| c.contains(ip)))
        && headers.get_all(header).iter().count() == 1;
    if !believed {
        headers.remove(header);
    }
}

/// A signed-in visitor's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random, per sign-in; the CSRF token is derived from it.
    nonce: String,
    pub expires: i64,
    /// The last visit the cookie records.
    pub seen: i64,
    /// Who signed in (none with the operator secret: then the server's git identity authors).
    pub who: Option<Person>,
    /// The session comes with each request from a trusted proxy (no cookie, no sign-out here).
    pub by_proxy: bool,
}

/// The keys derived from the server's secret (the operator secret, else the OpenID client
/// secret, else random): one signs cookies, one derives CSRF tokens. And how visitors sign in.
pub struct Keys {
    pub auth: Auth,
    secret: Vec<u8>,
    cookie: Vec<u8>,
    csrf: Vec<u8>,
    /// Sessions ended by sign-out (by the hash of their nonce), with when they would have
    /// expired: here and, with a shared store, on every replica.
    ended: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// Sign-outs not yet told to the other replicas.
    unshared: std::sync::Mutex<Vec<(String, i64)>>,
    secure: bool,
}

/// HMAC-SHA256 of `data` under `key`, in hexadecimal.
fn mac(key: &[u8], data: &[u8]) -> String {
    let sig = crate::support::hmac::signature(key, data);
    sig.strip_prefix("sha256=").unwrap_or(&sig).to_string()
}

impl Keys {
    /// Keys from the operator secret; `secure` cookies for a server reached over https.
    pub fn new(secret: Vec<u8>, secure: bool) -> Keys {
        Keys::with_auth(secret, secure, Auth::Secret)
    }

    /// Keys from `secret` for visitors who sign in by `auth`.
    pub fn with_auth(secret: Vec<u8>, secure: bool, auth: Auth) -> Keys {
        let derive = |label: &str| mac(&secret, label.as_bytes()).into_bytes();
        Keys {
            auth,
            cookie: derive("ledgit-ui-cookie"),
            csrf: derive("ledgit-ui-csrf"),
            secret,
            ended: Default::default(),
            unshared: Default::default(),
            secure,
        }
    }

    /// The session cookie's name: [`SECURE_COOKIE`] over https, else [`COOKIE`].
    pub fn cookie_name(&self) -> &'static str {
        if self.secure { SECURE_COOKIE } else { COOKIE }
    }

    /// The `Set-Cookie` value that ends the session in the browser.
    pub fn sign_out(&self) -> HeaderValue {
        HeaderValue::from_str(&format!(
            "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{}",
            self.cookie_name(),
            if self.secure { "; Secure" } else { "" }
        ))
        .unwrap_or(HeaderValue::from_static(""))
    }

    /// Whether `given` is the operator secret (constant time); never when visitors sign in
    /// another way.
    pub fn is_secret(&self, given: &str) -> bool {
        matches!(self.auth, Auth::Secret)
            && crate::support::hmac::same_secret(&self.secret, given.as_bytes())
    }

    /// HMAC-SHA256 of `data` under a key of its own derived for `label` (the OpenID sign-in's
    /// short-lived cookie).
    pub fn mac(&self, label: &str, data: &[u8]) -> String {
        mac(mac(&self.secret, label.as_bytes()).as_bytes(), data)
    }

    /// A new session from `now`, and its `Set-Cookie` value.
    pub fn sign_in(&self, now: i64) -> Result<(Session, HeaderValue), RandomUnavailable> {
        self.sign_in_as(None, now)
    }

    /// A new session of `who` from `now`, and its `Set-Cookie` value. Its nonce (what sign-out
    /// ends and the CSRF token is made from) is drawn at random; without a random source there
    /// is no session.
    pub fn sign_in_as(
        &self,
        who: Option<Person>,
        now: i64,
    ) -> Result<(Session, HeaderValue), RandomUnavailable> {
        let nonce = crate::support::random::secret_hex::<16>()?;
        let session = Session {
            nonce,
            expires: now + LIFETIME,
            seen: now,
            who,
            by_proxy: false,
        };
        let cookie = self.cookie(&session);
        Ok((session, cookie))
    }

    /// The `Set-Cookie` value that carries `session`.
    fn cookie(&self, session: &Session) -> HeaderValue {
        use base64::Engine;
        let who = session
            .who
            .as_ref()
            .and_then(|p| serde_json::to_vec(p).ok())
            .map(|j| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(j))
            .unwrap_or_default();
        let body = format!(
            "{}.{}.{}.{who}",
            session.expires, session.seen, session.nonce
        );
        let value = format!(
            "{}={body}.{}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            self.cookie_name(),
            mac(&self.cookie, body.as_bytes()),
            (session.expires - session.seen).max(0),
            if self.secure { "; Secure" } else { "" }
        );
        HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""))
    }

    /// The cookie that records a visit at `now`, when the session's last recorded visit is
    /// over a minute old (so that an active visitor's session does not end while idle ones do).
    pub fn renew(&self, session: &Session, now: i64) -> Option<HeaderValue> {
        (!session.by_proxy && now - session.seen >= RENEW_AFTER).then(|| {
            self.cookie(&Session {
                seen: now,
                ..session.clone()
            })
        })
    }

    /// The session a request's cookie carries, if it is signed by us, not expired, not idle
    /// for too long and not signed out.
    /// Behind a trusted proxy, the person its header names (see [`strip_untrusted`]).
    pub fn session(&self, headers: &HeaderMap, now: i64) -> Option<Session> {
        if let Auth::Proxy { header, .. } = &self.auth {
            let email = headers.get(header)?.to_str().ok()?;
            let who = Person::new(None, email)?;
            return Some(Session {
                nonce: ended_id(&format!("proxy\n{}", who.email)),
                expires: now + LIFETIME,
                seen: now,
                who: Some(who),
                by_proxy: true,
            });
        }
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(self.cookie_name())
                    .and_then(|rest| rest.strip_prefix('='))
                    .map(str::to_string)
            })?;
        let (body, mac) = cookie.rsplit_once('.')?;
        if !crate::support::hmac::signature_ok(
            &self.cookie,
            body.as_bytes(),
            &format!("sha256={mac}"),
        ) {
            return None;
        }
        let mut parts = body.splitn(4, '.');
        let expires: i64 = parts.next()?.parse().ok()?;
        let seen: i64 = parts.next()?.parse().ok()?;
        let nonce = parts.next()?;
        let who = match parts.next().filter(|w| !w.is_empty()) {
            None => None,
            Some(w) => {
                use base64::Engine;
                let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(w)
                    .ok()?;
                Some(serde_json::from_slice::<Person>(&json).ok()?)
            }
        };
        let live = expires > now && seen + IDLE > now;
        let ended = self
            .ended
            .lock()
            .map(|e| e.contains_key(&ended_id(nonce)))
            .unwrap_or(true);
        (live && !ended).then(|| Session {
            nonce: nonce.to_string(),
            expires,
            seen,
            who,
            by_proxy: false,
        })
    }

    /// Ends `session`: its cookie is refused from now on, whoever presents it.
    pub fn end(&self, session: &Session, now: i64) {
        let id = ended_id(&session.nonce);
        if let Ok(mut ended) = self.ended.lock() {
            ended.retain(|_, expires| *expires > now);
            if ended.len() < MAX_ENDED {
                ended.insert(id.clone(), session.expires);
            }
        }
        if let Ok(mut unshared) = self.unshared.lock()
            && unshared.len() < MAX_ENDED
        {
            unshared.push((id, session.expires));
        }
    }

    /// The sign-outs to tell the other replicas (taken: each is told once).
    pub fn take_unshared(&self) -> Vec<(String, i64)> {
        self.unshared
            .lock()
            .map(|mut u| std::mem::take(&mut *u))
            .unwrap_or_default()
    }

    /// Sign-outs that could not be told: told next time.
    pub fn requeue(&self, ended: Vec<(String, i64)>) {
        if let Ok(mut unshared) = self.unshared.lock() {
            unshared.extend(ended);
        }
    }

    /// Sign-outs made on other replicas: their sessions are refused here too.
    pub fn merge_ended(&self, ended: Vec<(String, i64)>, now: i64) {
        if let Ok(mut mine) = self.ended.lock() {
            mine.retain(|_, expires| *expires > now);
            for (id, expires) in ended {
                if mine.len() >= MAX_ENDED {
                    break;
                }
                mine.insert(id, expires);
            }
        }
    }

    /// The CSRF token of a session (what its forms carry).
    pub fn csrf(&self, session: &Session) -> String {
        mac(&self.csrf, session.nonce.as_bytes())
    }

    /// Whether `token` is the session's CSRF token (constant time).
    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        crate::support::hmac::signature_ok(
            &self.csrf,
            session.nonce.as_bytes(),
            &format!("sha256={token}"),
        )
    }
}

/// The `Set-Cookie` value that removes the session's cookie from the browser.
/// The origins (`scheme://host[:port]`) this server's pages are served from: its public URL's
/// and its listening address's (with `localhost` for a loopback one). The `Host` header is
/// not one of them: a client chooses it (DNS rebinding).
pub fn origins(public_url: &str, listen: std::net::SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(o) = origin_of(public_url) {
        out.push(o);
    }
    if !listen.ip().is_unspecified() {
        out.push(format!("http://{listen}"));
        if listen.ip().is_loopback() {
            out.push(format!("http://localhost:{}", listen.port()));
        }
    }
    out
}

/// The origin of a URL: scheme, host and port, lower case, without a default port.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let default = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

/// Whether a POST comes from a page of this server: its `Origin` (or, without one, its
/// `Referer`) is one of `origins`, scheme included.
pub fn same_origin(headers: &HeaderMap, origins: &[String]) -> bool {
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    from.and_then(origin_of)
        .is_some_and(|o| origins.contains(&o))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `name=value` a browser sends back for a `Set-Cookie` value.
    fn pair(cookie: &HeaderValue) -> String {
        cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    }

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn a_proxys_header_is_believed_only_from_its_addresses() {
        let auth = Auth::Proxy {
            header: header::HeaderName::from_static("x-forwarded-email"),
            trusted: vec!["10.1.0.0/16".parse().unwrap(), "::1".parse().unwrap()],
        };
        let sent = |peer: &str, values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("x-forwarded-email", HeaderValue::from_str(v).unwrap());
            }
            strip_untrusted(&auth, &mut h, peer.parse().ok());
            h.get("x-forwarded-email")
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            sent("10.1.255.3", &["ada@example.com"]).as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(
            sent("::ffff:10.1.0.1", &["ada@example.com"]).as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(
            sent("::1", &["ada@example.com"]).as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(sent("10.2.0.1", &["ada@example.com"]), None);
        assert_eq!(sent("::2", &["ada@example.com"]), None);
        assert_eq!(sent("not an address", &["ada@example.com"]), None);
        // Twice: which one would the proxy have meant?
        assert_eq!(
            sent("10.1.0.1", &["ada@example.com", "eve@example.com"]),
            None
        );
        let keys = Keys::with_auth(b"operator".to_vec(), false, auth);
        let session = keys
            .session(
                &with(
                    header::HeaderName::from_static("x-forwarded-email"),
                    "ada@example.com",
                ),
                5,
            )
            .unwrap();
        assert!(session.by_proxy && session.who.as_ref().unwrap().email == "ada@example.com");
        // Each request is its own session, good for as long as a signed-in one.
        assert_eq!((session.seen, session.expires), (5, 5 + LIFETIME));
        assert_eq!(keys.renew(&session, 500), None);
        assert!(!keys.is_secret("operator"));
        assert!(keys.session(&HeaderMap::new(), 5).is_none());
    }

    #[test]
    fn blocks_and_people_read_strictly() {
        let c = |s: &str| s.parse::<Cidr>();
        assert!(
            c("0.0.0.0/0")
                .unwrap()
                .contains("203.0.113.9".parse().unwrap())
        );
        assert!(
            !c("192.0.2.0/24")
                .unwrap()
                .contains("192.0.3.1".parse().unwrap())
        );
        assert!(
            c("192.0.2.0/24")
                .unwrap()
                .contains("192.0.2.255".parse().unwrap())
        );
        assert!(
            !c("192.0.2.1")
                .unwrap()
                .contains("192.0.2.2".parse().unwrap())
        );
        assert!(!c("::/0").unwrap().contains("192.0.2.2".parse().unwrap()));
        assert!(
            c("2001:db8::/32")
                .unwrap()
                .contains("2001:db8:ffff::1".parse().unwrap())
        );
        assert!(c("10.0.0.0/33").is_err() && c("::/129").is_err() && c("ten").is_err());
        assert_eq!(Person::new(None, " ada@example.com ").unwrap().name, "ada");
        assert_eq!(
            Person::new(Some("Ada <x>"), "ada@example.com")
                .unwrap()
                .name,
            "ada"
        );
        for bad in [
            "ada",
            "@example.com",
            "ada@",
            "a@b@c",
            "ada <x>@example.com",
            "a da@example.com",
            "ada@exa\nmple.com",
        ] {
            assert!(Person::new(None, bad).is_none(), "{bad}");
        }
        assert_eq!(
            Person::new(None, "ada@Example.COM").unwrap().domain(),
            "example.com"
        );
        assert_eq!(
            Person::new(None, "ada@example.com").unwrap().shown(),
            "ada@example.com"
        );
        assert_eq!(
            Person::new(Some("Ada Lovelace"), "ada@example.com")
                .unwrap()
                .shown(),
            "Ada Lovelace <ada@example.com>"
        );
    }

    #[test]
    fn a_session_carries_who_signed_in() {
        let keys = Keys::new(b"operator".to_vec(), false);
        let ada = Person::new(Some("Ada Lovelace"), "ada@example.com");
        let (session, cookie) = keys.sign_in_as(ada.clone(), 1_000).unwrap();
        let back = keys
            .session(&with(header::COOKIE, &pair(&cookie)), 1_001)
            .unwrap();
        assert_eq!((back.who, back.by_proxy), (ada, false));
        // The person cannot be changed without the key.
        let forged = pair(&cookie).replacen(".eyJ", ".eyK", 1);
        assert_eq!(keys.session(&with(header::COOKIE, &forged), 1_001), None);
        assert_eq!(session.who.unwrap().email, "ada@example.com");
    }

    #[test]
    fn sessions_are_signed_bound_and_expire() {
        let keys = Keys::new(b"operator".to_vec(), false);
        let (session, cookie) = keys.sign_in(1_000).unwrap();
        let value = cookie.to_str().unwrap();
        assert!(value.contains("HttpOnly") && value.contains("SameSite=Strict"));
        assert!(!value.contains("Secure"));
        assert!(
            Keys::new(b"operator".to_vec(), true)
                .sign_in(1_000)
                .unwrap()
                .1
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
        let pair = value.split(';').next().unwrap();
        let h = with(header::COOKIE, &format!("other=1; {pair}"));
        assert_eq!(keys.session(&h, 1_001), Some(session.clone()));
        // Idle for 30 minutes (as the manual says): over.
        assert_eq!(keys.session(&h, 1_000 + 29 * 60), Some(session.clone()));
        assert_eq!(keys.session(&h, 1_000 + IDLE - 1), Some(session.clone()));
        assert_eq!(keys.session(&h, 1_000 + IDLE), None);
        assert_eq!(session.expires, 1_000 + 8 * 3600, "eight hours at most");
        // Another secret's server, or a forged expiry, does not accept it.
        assert_eq!(Keys::new(b"other".to_vec(), false).session(&h, 1_001), None);
        let forged = pair.replacen(&format!("={}", 1_000 + LIFETIME), "=9999999999", 1);
        assert_eq!(keys.session(&with(header::COOKIE, &forged), 1_001), None);
        let csrf = keys.csrf(&session);
        assert!(keys.csrf_ok(&session, &csrf));
        let (other, _) = keys.sign_in(1_000).unwrap();
        assert!(!keys.csrf_ok(&other, &csrf));
        assert!(!keys.csrf_ok(&session, ""));
        assert!(keys.is_secret("operator") && !keys.is_secret("operato"));
    }

    #[test]
    fn a_visit_renews_the_idle_time_but_not_the_lifetime() {
        let keys = Keys::new(b"operator".to_vec(), false);
        let (session, _) = keys.sign_in(1_000).unwrap();
        assert_eq!(keys.renew(&session, 1_030), None);
        let mut now = 1_000;
        let mut current = session.clone();
        // A visit every 20 minutes keeps it alive until its eight hours are up.
        while now + 20 * 60 < 1_000 + LIFETIME {
            now += 20 * 60;
            let cookie = keys.renew(&current, now).unwrap();
            current = keys
                .session(&with(header::COOKIE, &pair(&cookie)), now)
                .unwrap();
            assert_eq!(current.expires, session.expires);
            assert_eq!(current.seen, now);
        }
        let cookie = keys.renew(&current, 1_000 + LIFETIME).unwrap();
        assert_eq!(
            keys.session(&with(header::COOKIE, &pair(&cookie)), 1_000 + LIFETIME),
            None
        );
    }

    #[test]
    fn a_signed_out_session_is_refused_afterwards() {
        let keys = Keys::new(b"operator".to_vec(), false);
        let (session, cookie) = keys.sign_in(1_000).unwrap();
        let (other, other_cookie) = keys.sign_in(1_000).unwrap();
        let h = with(header::COOKIE, &pair(&cookie));
        assert!(keys.session(&h, 1_001).is_some());
        keys.end(&session, 1_001);
        assert_eq!(keys.session(&h, 1_002), None);
        // Others' sessions go on.
        assert_eq!(
            keys.session(&with(header::COOKIE, &pair(&other_cookie)), 1_002),
            Some(other)
        );
    }

    #[test]
    fn sign_outs_are_told_once_kept_until_expiry_and_bounded() {
        let keys = Keys::new(b"operator".to_vec(), false);
        let cookie_of = |c: &HeaderValue| with(header::COOKIE, &pair(c));
        let (a, a_cookie) = keys.sign_in(1_000).unwrap();
        keys.end(&a, 1_001);
        // Told to the other replicas once; what could not be told is told next time.
        let told = keys.take_unshared();
        assert_eq!(told, [(ended_id(&a.nonce), 1_000 + LIFETIME)]);
        assert!(keys.take_unshared().is_empty());
        keys.requeue(told.clone());
        assert_eq!(keys.take_unshared(), told);
        // Another replica's sign-out is honoured here; ones already expired are forgotten.
        let theirs = Keys::new(b"operator".to_vec(), false);
        let (b, b_cookie) = theirs.sign_in(1_000).unwrap();
        assert!(keys.session(&cookie_of(&b_cookie), 1_002).is_some());
        theirs.end(&b, 1_002);
        keys.merge_ended(theirs.take_unshared(), 1_002);
        assert!(keys.session(&cookie_of(&b_cookie), 1_003).is_none());
        assert_eq!(keys.ended.lock().unwrap().len(), 2);
        keys.merge_ended(vec![("old".into(), 1_003)], 1_002);
        assert_eq!(keys.ended.lock().unwrap().len(), 3);
        keys.merge_ended(Vec::new(), 1_003);
        assert_eq!(keys.ended.lock().unwrap().len(), 2, "`old` expired at 1003");
        // A sign-out after a session's expiry forgets those that expired (never the live ones).
        let later = 1_000 + LIFETIME;
        let (c, _) = keys.sign_in(later).unwrap();
        keys.end(&c, later);
        assert_eq!(keys.ended.lock().unwrap().len(), 1);
        assert!(keys.session(&cookie_of(&a_cookie), later).is_none());
        // At most MAX_ENDED remembered, here and in what is to be told.
        let many: Vec<(String, i64)> = (0..MAX_ENDED + 5)
            .map(|i| (format!("id-{i}"), later + 100))
            .collect();
        keys.merge_ended(many, later);
        assert_eq!(keys.ended.lock().unwrap().len(), MAX_ENDED);
        let (d, _) = keys.sign_in(later).unwrap();
        keys.end(&d, later);
        assert_eq!(keys.ended.lock().unwrap().len(), MAX_ENDED);
        assert_eq!(keys.take_unshared().len(), 2, "c's and d's sign-outs");
        keys.requeue(vec![("x".into(), later + 100); MAX_ENDED]);
        keys.end(&d, later);
        assert_eq!(keys.take_unshared().len(), MAX_ENDED);
    }

    #[test]
    fn posts_must_come_from_this_servers_origins() {
        let origins = origins(
            "https://ledgit.example.com/",
            "127.0.0.1:8080".parse().unwrap(),
        );
        assert_eq!(
            origins,
            [
                "https://ledgit.example.com",
                "http://127.0.0.1:8080",
                "http://localhost:8080"
            ]
        );
        let from =
            |name: header::HeaderName, value: &str| same_origin(&with(name, value), &origins);
        assert!(!same_origin(&HeaderMap::new(), &origins));
        assert!(from(header::ORIGIN, "https://ledgit.example.com"));
        assert!(from(header::ORIGIN, "https://LEDGIT.example.com:443"));
        assert!(from(header::ORIGIN, "http://127.0.0.1:8080"));
        assert!(from(header::REFERER, "https://ledgit.example.com/agents/x"));
        // An origin has no user part; a URL that carries one names no origin.
        assert_eq!(origin_of("https://ada@ledgit.example.com/x"), None);
        assert_eq!(origin_of("https:///x"), None);
        // Another scheme, host or port; a look-alike; the Host header is never consulted.
        assert!(!from(header::ORIGIN, "http://ledgit.example.com"));
        assert!(!from(header::ORIGIN, "https://evil.example"));
        assert!(!from(
            header::ORIGIN,
            "https://ledgit.example.com.evil.example"
        ));
        assert!(!from(header::ORIGIN, "http://127.0.0.1:8081"));
        assert!(!from(header::ORIGIN, "null"));
        let mut h = with(header::HOST, "evil.example");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&h, &origins));
        // A server on every address is reached at its public URL only.
        assert_eq!(
            super::origins("http://10.0.0.1:8080", "0.0.0.0:8080".parse().unwrap()),
            ["http://10.0.0.1:8080"]
        );
    }
}
