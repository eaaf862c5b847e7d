//! Limits on guessing secrets: each client address may fail a secret a few times a minute per
//! purpose (the operator secret or an ID token at sign-in, the introspection secret, a
//! webhook's signature or token); past that it is answered `429 Too Many Requests` with
//! `Retry-After` for that purpose until its minute is over. Only a wrong secret or signature
//! counts, never a request that guessed nothing (a sign-in on a server without OpenID
//! Connect, a provider's `error=`, an expired flow), and each purpose keeps its own budget, so
//! failing at one never locks a client out of another. Behind a trusted proxy the client is
//! the address the proxy names. Addresses are counted in a bounded map (an IPv6 client by its
//! /64), so no client can make it grow.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::answer::error;
use super::bounded::Bounded;

/// The client address of a request, as the listener saw it (absent when the router is driven
/// in process).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// Failures a client address may make in one window.
pub const ALLOWED: u32 = 10;
/// The window, in seconds.
pub const WINDOW: i64 = 60;

/// Failed secrets per client address: when its window began and how many failed in it.
#[derive(Default)]
pub struct Failures(Bounded<IpAddr, (i64, u32)>);

/// The address a client is counted under: an IPv6 client by its /64 (one host holds many), an
/// IPv4-mapped one as IPv4.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Failures {
    /// When `ip` has failed too often in its window: how many seconds until it may try again.
    pub fn retry_after(&self, ip: IpAddr, now: i64) -> Option<i64> {
        let (start, count) = self.0.get(&client_key(ip))?;
        let left = start + WINDOW - now;
        (count >= ALLOWED && left > 0).then_some(left)
    }

    /// Counts one failure of `ip`.
    pub fn failed(&self, ip: IpAddr, now: i64) {
        self.0.update(&client_key(ip), |current| match current {
            Some(&(start, count)) if now < start + WINDOW => (start, count.saturating_add(1)),
            _ => (now, 1),
        });
    }

    /// The answer to a client that is over its limit, if `ip` is (and `ip` is known).
    pub fn refuse(&self, ip: Option<IpAddr>, now: i64) -> Option<Response> {
        let left = self.retry_after(ip?, now)?;
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            format!(
                "{ALLOWED} failed attempts from this address within {WINDOW}s: try again in {left}s"
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(left));
        Some(r)
    }

    /// Counts a failure when the address is known.
    pub fn count(&self, ip: Option<IpAddr>, now: i64) {
        if let Some(ip) = ip {
            self.failed(ip, now);
        }
    }
}

/// The failure budgets, one per purpose: failing at one never limits another.
#[derive(Default)]
pub struct Budgets {
    /// The operator secret, and ID tokens that do not verify, at sign-in.
    pub signin: Failures,
    /// The introspection secret.
    pub introspection: Failures,
    /// Webhook signatures and GitLab's token.
    pub hooks: Failures,
}

/// The client address of a request, when the listener gave one (a handler's argument): the
/// peer, or behind a trusted proxy the address it names ([`CountedAs`]).
pub struct Client(pub Option<IpAddr>);

/// The client a request is counted as, when a trusted proxy named it (set by the access
/// layer from `X-Forwarded-For`).
#[derive(Clone, Copy, Debug)]
pub struct CountedAs(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let named = parts.extensions.get::<CountedAs>().map(|c| c.0);
        let peer = parts.extensions.get::<ClientAddr>().map(|c| c.0.ip());
        Ok(Client(named.or(peer)))
    }
}

/// The client behind `peer`: when `peer` is a trusted proxy, the right-most address of
/// `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the address it
/// heard from, so the entries to its left are the client's own word); else `peer`. An entry
/// that does not read stops the walk at the hop that wrote it.
pub fn client_behind(
    peer: IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[super::session::Cidr],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let listed: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in listed.iter().rev() {
        let parsed = entry
            .parse::<IpAddr>()
            .ok()
            .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()));
        let Some(ip) = parsed else { break };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_limited_after_its_allowance_until_its_window_ends() {
        let f = Failures::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        for i in 0..ALLOWED {
            assert_eq!(f.retry_after(ip, 1_000), None, "after {i} failures");
            f.failed(ip, 1_000);
        }
        assert_eq!(f.retry_after(ip, 1_000), Some(WINDOW));
        assert_eq!(f.retry_after(ip, 1_000 + WINDOW - 1), Some(1));
        assert_eq!(f.retry_after(ip, 1_000 + WINDOW), None);
        assert_eq!(f.retry_after(other, 1_000), None);
        // A new window starts from the next failure, at the old one's end: the allowance
        // spent again within it is limited again, counted from its own start.
        f.failed(ip, 1_000 + WINDOW);
        assert_eq!(f.retry_after(ip, 1_000 + WINDOW), None);
        for _ in 1..ALLOWED {
            f.failed(ip, 1_000 + WINDOW);
        }
        assert_eq!(f.retry_after(ip, 1_000 + WINDOW + 40), Some(WINDOW - 40));
        for _ in 0..ALLOWED {
            f.failed(other, 2_000);
        }
        let r = f.refuse(Some(other), 2_010).unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "50");
        assert!(f.refuse(Some(ip), 2_010).is_none());
        assert!(f.refuse(None, 2_010).is_none());
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn behind_a_trusted_proxy_the_client_is_the_address_it_names() {
        use axum::http::HeaderMap;
        let trusted: Vec<super::super::session::Cidr> =
            vec!["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            h
        };
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer is the client, whatever it claims.
        assert_eq!(
            client_behind(stranger, &with(&["192.0.2.1"]), &trusted),
            stranger
        );
        // The right-most untrusted entry: the client cannot push itself further left.
        assert_eq!(
            client_behind(proxy, &with(&["203.0.113.5, 192.0.2.1"]), &trusted),
            ip("192.0.2.1")
        );
        assert_eq!(
            client_behind(
                proxy,
                &with(&["203.0.113.5", "192.0.2.1, 10.0.0.7"]),
                &trusted
            ),
            ip("192.0.2.1")
        );
        // No header: the proxy itself; an entry that does not read: the hop that wrote it.
        assert_eq!(client_behind(proxy, &with(&[]), &trusted), proxy);
        assert_eq!(
            client_behind(proxy, &with(&["192.0.2.1, junk, 10.0.0.7"]), &trusted),
            ip("10.0.0.7")
        );
        assert_eq!(
            client_behind(ip("::1"), &with(&["[2001:db8::1]:4711"]), &trusted),
            ip("2001:db8::1")
        );
        // Nothing trusted: every peer is its own client.
        assert_eq!(client_behind(proxy, &with(&["192.0.2.1"]), &[]), proxy);
    }

    #[test]
    fn budgets_are_kept_apart() {
        let b = Budgets::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..ALLOWED {
            b.signin.failed(ip, 0);
        }
        assert!(b.signin.retry_after(ip, 0).is_some());
        assert!(b.introspection.retry_after(ip, 0).is_none());
        assert!(b.hooks.retry_after(ip, 0).is_none());
    }
}
