//! Limits on guessing secrets: each client address may fail a secret (the operator secret at
//! sign-in, the introspection secret, a webhook's signature) a few times a minute; past that it
//! is answered `429 Too Many Requests` with `Retry-After` until its minute is over, whatever it
//! sends. Addresses are counted in a bounded map (an IPv6 client by its /64), so no client can
//! make it grow.

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

/// The address failures are counted under: an IPv6 client by its /64 (one host holds many).
fn key(ip: IpAddr) -> IpAddr {
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
        let (start, count) = self.0.get(&key(ip))?;
        let left = start + WINDOW - now;
        (count >= ALLOWED && left > 0).then_some(left)
    }

    /// Counts one failure of `ip`.
    pub fn failed(&self, ip: IpAddr, now: i64) {
        self.0.update(&key(ip), |current| match current {
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

/// The client address of a request, when the listener gave one (a handler's argument).
pub struct Client(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Client(
            parts.extensions.get::<ClientAddr>().map(|c| c.0.ip()),
        ))
    }
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
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }
}
