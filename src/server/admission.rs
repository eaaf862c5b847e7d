//! Connection admission: which connections the server holds, and which one goes when it is
//! full. Each connection is idle (between requests), receiving (a request whose body is still
//! arriving) or working (the client has sent everything and waits for the answer), and records
//! when its client last made progress (connected, sent a request's head, sent a piece of body).
//! A full server closes the connection that is furthest behind among those waiting on their
//! client, so a flood of slow bodies or idle sockets never turns a new client away; only when
//! every connection is the server's own work in progress is the new one refused. One client
//! address (an IPv6 client by its /64) holds at most a quarter of the places.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::Notify;

/// No request in flight.
const IDLE: u8 = 0;
/// A request in flight whose body is still arriving.
const RECEIVING: u8 = 1;
/// A request in flight whose client has sent everything: the server's turn.
const WORKING: u8 = 2;

/// What one connection is doing, shared by the table and the connection's requests.
pub struct ConnState {
    phase: AtomicU8,
    /// Milliseconds since the table's epoch at the client's last progress.
    last: AtomicU64,
    epoch: Instant,
}

impl ConnState {
    fn new(epoch: Instant, now: u64) -> ConnState {
        ConnState {
            phase: AtomicU8::new(IDLE),
            last: AtomicU64::new(now),
            epoch,
        }
    }

    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::SeqCst);
    }

    /// A request's head arrived; `body_done` when it has no body to wait for.
    pub fn begin(&self, body_done: bool) {
        self.touch();
        let phase = if body_done { WORKING } else { RECEIVING };
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// The request's body has arrived whole (or ended in an error).
    fn received(&self) {
        self.touch();
        self.phase.store(WORKING, Ordering::SeqCst);
    }

    /// The request is answered: the connection waits for the next one.
    pub fn end(&self) {
        self.touch();
        self.phase.store(IDLE, Ordering::SeqCst);
    }

    /// Whether the connection waits on its client (idle, or a body still arriving).
    fn waits_on_client(&self) -> bool {
        self.phase.load(Ordering::SeqCst) != WORKING
    }
}

/// The connections held open.
pub struct Connections {
    inner: Mutex<Table>,
    max: usize,
    per_client: usize,
    epoch: Instant,
}

#[derive(Default)]
struct Table {
    next: u64,
    open: std::collections::BTreeMap<u64, Entry>,
    per_client: std::collections::HashMap<IpAddr, usize>,
}

struct Entry {
    client: IpAddr,
    state: Arc<ConnState>,
    close: Arc<Notify>,
}

/// One admitted connection; dropping it gives its place back.
pub struct Slot {
    id: u64,
    connections: Arc<Connections>,
    pub state: Arc<ConnState>,
    /// Notified when the connection is closed to make room: drop the connection then.
    pub evicted: Arc<Notify>,
}

impl Connections {
    /// A table of at most `max` connections (at least 1), a quarter of them per client.
    pub fn new(max: usize) -> Arc<Connections> {
        let max = max.max(1);
        Arc::new(Connections {
            inner: Mutex::new(Table::default()),
            max,
            per_client: (max / 4).max(1),
            epoch: Instant::now(),
        })
    }

    /// A place for a new connection from `ip`, or `None` when the client holds its share or
    /// every connection is the server's work in progress.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        self.admit_at(ip, self.epoch.elapsed().as_millis() as u64)
    }

    fn admit_at(self: &Arc<Self>, ip: IpAddr, now: u64) -> Option<Slot> {
        let client = super::limits::client_key(ip);
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if t.per_client.get(&client).copied().unwrap_or(0) >= self.per_client {
            return None;
        }
        if t.open.len() >= self.max {
            // The connection furthest behind among those waiting on their client; the oldest
            // of equals (keys grow with time).
            let behind = t
                .open
                .iter()
                .filter(|(_, e)| e.state.waits_on_client())
                .min_by_key(|(id, e)| (e.state.last.load(Ordering::SeqCst), **id))
                .map(|(id, e)| (*id, e.close.clone()));
            let (id, close) = behind?;
            close.notify_one();
            t.remove(id);
        }
        let id = t.next;
        t.next += 1;
        let state = Arc::new(ConnState::new(self.epoch, now));
        let evicted = Arc::new(Notify::new());
        t.open.insert(
            id,
            Entry {
                client,
                state: state.clone(),
                close: evicted.clone(),
            },
        );
        *t.per_client.entry(client).or_default() += 1;
        Some(Slot {
            id,
            connections: self.clone(),
            state,
            evicted,
        })
    }

    /// How many connections are open.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|t| t.open.len()).unwrap_or(0)
    }
}

impl Table {
    fn remove(&mut self, id: u64) {
        if let Some(e) = self.open.remove(&id)
            && let Some(n) = self.per_client.get_mut(&e.client)
        {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&e.client);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self
            .connections
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        t.remove(self.id);
    }
}

/// A request's body that records its client's progress on the connection: each piece that
/// arrives, and its end (the server's turn from then on).
pub struct Progress {
    inner: hyper::body::Incoming,
    state: Arc<ConnState>,
}

impl Progress {
    pub fn new(inner: hyper::body::Incoming, state: Arc<ConnState>) -> Progress {
        Progress { inner, state }
    }
}

impl hyper::body::Body for Progress {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // A piece is progress; the end (or an error) hands the turn to the server. Readers
        // poll a body until it says it has ended, so the end is always seen.
        match &polled {
            Poll::Ready(Some(Ok(_))) => this.state.touch(),
            Poll::Ready(_) => this.state.received(),
            Poll::Pending => {}
        }
        polled
    }

    /// The announced length, so that a body announced larger than its route takes is refused
    /// before it is read.
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(slot: &Slot, phase: u8, last: u64) {
        slot.state.phase.store(phase, Ordering::SeqCst);
        slot.state.last.store(last, Ordering::SeqCst);
    }

    #[test]
    fn a_full_table_closes_the_connection_furthest_behind_on_its_client() {
        let c = Connections::new(4);
        let a = c.admit_at(ip("192.0.2.1"), 0).unwrap();
        let b = c.admit_at(ip("192.0.2.2"), 0).unwrap();
        let d = c.admit_at(ip("192.0.2.3"), 0).unwrap();
        let e = c.admit_at(ip("192.0.2.4"), 0).unwrap();
        // a: the server works on its request (never closed); b: a body stalled at 5 ms;
        // d: idle since 10 ms; e: a body that moved at 20 ms.
        set(&a, WORKING, 0);
        set(&b, RECEIVING, 5);
        set(&d, IDLE, 10);
        set(&e, RECEIVING, 20);
        let f = c.admit_at(ip("192.0.2.5"), 30).unwrap();
        assert_eq!(c.len(), 4);
        assert!(is_notified(&b.evicted));
        for other in [&a, &d, &e] {
            assert!(!is_notified(&other.evicted));
        }
        drop(b);
        set(&f, WORKING, 30);
        let g = c.admit_at(ip("192.0.2.6"), 40).unwrap();
        assert!(is_notified(&d.evicted));
        drop(d);
        set(&g, WORKING, 40);
        let _h = c.admit_at(ip("192.0.2.7"), 50).unwrap();
        assert!(is_notified(&e.evicted));
        drop(e);
        // Every connection is the server's work: the new client waits its turn elsewhere.
        set(&_h, WORKING, 50);
        assert!(c.admit_at(ip("192.0.2.8"), 60).is_none());
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn of_equals_the_oldest_goes() {
        let c = Connections::new(2);
        let a = c.admit_at(ip("192.0.2.1"), 7).unwrap();
        let b = c.admit_at(ip("192.0.2.2"), 7).unwrap();
        let _n = c.admit_at(ip("192.0.2.3"), 9).unwrap();
        assert!(is_notified(&a.evicted) && !is_notified(&b.evicted));
    }

    #[test]
    fn a_client_holds_a_quarter_counted_by_its_64() {
        let c = Connections::new(8);
        let a1 = c.admit_at(ip("2001:db8:1:2::1"), 0).unwrap();
        let _a2 = c.admit_at(ip("2001:db8:1:2::2"), 0).unwrap();
        assert!(c.admit_at(ip("2001:db8:1:2:ffff::3"), 0).is_none());
        assert!(c.admit_at(ip("2001:db8:1:3::1"), 0).is_some());
        // A place given back is free again.
        drop(a1);
        assert!(c.admit_at(ip("2001:db8:1:2::9"), 0).is_some());
        let v4 = Connections::new(4);
        let _x = v4.admit_at(ip("192.0.2.1"), 0).unwrap();
        assert!(v4.admit_at(ip("192.0.2.1"), 0).is_none());
        assert!(v4.admit_at(ip("::ffff:192.0.2.1"), 0).is_none());
        assert_eq!(v4.len(), 1);
    }

    #[test]
    fn progress_is_timed_by_the_tables_clock() {
        let c = Connections::new(4);
        let slot = c.admit(ip("192.0.2.1")).expect("an empty table admits");
        std::thread::sleep(std::time::Duration::from_millis(20));
        slot.state.touch();
        assert!(slot.state.last.load(Ordering::SeqCst) >= 20);
        // A connection that just made progress is not the one furthest behind.
        let idle = c.admit(ip("192.0.2.2")).unwrap();
        idle.state.last.store(0, Ordering::SeqCst);
        let (_a, _b) = (c.admit(ip("192.0.2.3")), c.admit(ip("192.0.2.4")));
        let _new = c.admit(ip("192.0.2.5")).unwrap();
        assert!(is_notified(&idle.evicted) && !is_notified(&slot.evicted));
    }

    #[test]
    fn phases_follow_a_request() {
        let s = ConnState::new(Instant::now(), 0);
        assert!(s.waits_on_client());
        s.begin(false);
        assert!(s.waits_on_client());
        s.received();
        assert!(!s.waits_on_client());
        s.end();
        assert!(s.waits_on_client());
        s.begin(true);
        assert!(!s.waits_on_client());
    }

    fn is_notified(n: &Notify) -> bool {
        let fut = n.notified();
        let mut fut = std::pin::pin!(fut);
        let waker = std::task::Waker::noop();
        fut.as_mut()
            .poll(&mut std::task::Context::from_waker(waker))
            .is_ready()
    }
}
