//! Leadership of environments among replicas sharing a PostgreSQL store. A keeper thread takes
//! and renews one lease per wanted environment every third of the lease's time to live, on its
//! own connection, so a long action never delays a renewal. The reconciler starts an action
//! only while its lease is valid by the local clock, which ends a fifth of the TTL before the
//! lease can expire in the database: a leader that cannot renew (a lost network, a paused
//! process) stops starting actions before any follower can take over. A follower asks again
//! just after the holder's lease would expire, so takeover comes within the TTL of the last
//! renewal, plus a moment.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::reconcile::state::model::Replica;
use crate::reconcile::state::postgres::{Acquired, Store};

/// A change of leadership, for the front end to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// This replica leads the environment from this epoch on.
    Leading { environment: String, epoch: i64 },
    /// Another replica leads it now.
    Following { environment: String },
    /// The lease could not be renewed (the database is unreachable, say).
    Trouble { message: String },
}

#[derive(Clone, Copy)]
struct Held {
    epoch: i64,
    /// Until when actions may start under this lease.
    valid_until: Instant,
}

struct Inner {
    ttl: Duration,
    held: Mutex<HashMap<String, Held>>,
    wanted: Mutex<Vec<String>>,
    events: Mutex<Vec<Event>>,
    stop: AtomicBool,
    wake: Condvar,
    sleeping: Mutex<()>,
}

/// The leases this replica holds, kept by a background thread.
pub struct Leases {
    inner: Arc<Inner>,
    keeper: Option<JoinHandle<()>>,
}

impl Leases {
    /// Opens the keeper's connection, asks once for every wanted environment (so the first pass
    /// already knows what it leads), then keeps them in the background.
    pub fn start(
        url: &str,
        repository: &str,
        replica: &Replica,
        ttl: Duration,
        wanted: Vec<String>,
    ) -> Result<Leases> {
        let mut store = Store::open(url, repository, replica.clone())?;
        let inner = Arc::new(Inner {
            ttl,
            held: Mutex::default(),
            wanted: Mutex::new(wanted),
            events: Mutex::default(),
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
            sleeping: Mutex::default(),
        });
        // A database that cannot be asked at all is said at once, not as lapsing leases.
        let (first_wait, trouble) = round(&inner, &mut store);
        if let Some(e) = trouble {
            return Err(e);
        }
        let keeper = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("ledgit-leases".into())
                .spawn(move || keep(&inner, &mut store, first_wait))
                .map_err(|e| crate::Error::io("the lease keeper thread", e))?
        };
        Ok(Leases {
            inner,
            keeper: Some(keeper),
        })
    }

    /// Sets the environments to lead (the tracked branch's, narrowed by `--environment`).
    pub fn want(&self, environments: Vec<String>) {
        if let Ok(mut w) = self.inner.wanted.lock()
            && *w != environments
        {
            *w = environments;
            self.inner.wake.notify_all();
        }
    }

    /// The epoch under which an action in `environment` may start now, if this replica leads it.
    pub fn epoch(&self, environment: &str) -> Option<i64> {
        let held = self.inner.held.lock().ok()?;
        held.get(environment)
            .filter(|h| Instant::now() < h.valid_until)
            .map(|h| h.epoch)
    }

    /// The environments this replica leads now, with their epochs, by name.
    pub fn led(&self) -> Vec<(String, i64)> {
        let now = Instant::now();
        let mut led: Vec<(String, i64)> = self
            .inner
            .held
            .lock()
            .map(|h| {
                h.iter()
                    .filter(|(_, h)| now < h.valid_until)
                    .map(|(e, h)| (e.clone(), h.epoch))
                    .collect()
            })
            .unwrap_or_default();
        led.sort();
        led
    }

    /// A write was fenced: another replica leads `environment`. Stop acting there at once.
    pub fn lost(&self, environment: &str) {
        forget(&self.inner, environment);
        self.inner.wake.notify_all();
    }

    /// The changes of leadership since the last call.
    pub fn events(&self) -> Vec<Event> {
        self.inner
            .events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default()
    }

    /// Stops the keeper and gives the leases up, so followers take over at once.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.wake.notify_all();
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Drops the lease on `environment`, saying so if this replica held it.
fn forget(inner: &Inner, environment: &str) {
    let held = inner
        .held
        .lock()
        .map(|mut h| h.remove(environment).is_some())
        .unwrap_or(false);
    if held {
        push(
            inner,
            Event::Following {
                environment: environment.to_string(),
            },
        );
    }
}

fn push(inner: &Inner, event: Event) {
    if let Ok(mut e) = inner.events.lock() {
        e.push(event);
    }
}

/// The keeper's loop: a round, then a sleep until the next renewal or a follower's next chance.
fn keep(inner: &Inner, store: &mut Store, first_wait: Duration) {
    let mut wait = first_wait;
    loop {
        if let Ok(guard) = inner.sleeping.lock() {
            let _ = inner
                .wake
                .wait_timeout_while(guard, wait, |_| !inner.stop.load(Ordering::SeqCst));
        }
        if inner.stop.load(Ordering::SeqCst) {
            break;
        }
        let (next, trouble) = round(inner, store);
        if let Some(e) = trouble {
            push(
                inner,
                Event::Trouble {
                    message: e.to_string(),
                },
            );
        }
        wait = next;
    }
    let _ = store.release();
}

/// Asks for every wanted lease once; returns how long to sleep before the next round, and the
/// last error if some lease could not be asked for.
fn round(inner: &Inner, store: &mut Store) -> (Duration, Option<crate::Error>) {
    let renew_every = inner.ttl / 3;
    let margin = inner.ttl / 5;
    let wanted = inner.wanted.lock().map(|w| w.clone()).unwrap_or_default();
    let mut next = renew_every;
    let mut trouble = None;
    for environment in &wanted {
        let sent = Instant::now();
        match store.acquire(environment, inner.ttl) {
            Ok(Acquired::Held { epoch, .. }) => {
                let before = inner.held.lock().ok().and_then(|mut h| {
                    h.insert(
                        environment.clone(),
                        Held {
                            epoch,
                            valid_until: sent + inner.ttl - margin,
                        },
                    )
                });
                if before.is_none_or(|b| b.epoch != epoch) {
                    push(
                        inner,
                        Event::Leading {
                            environment: environment.clone(),
                            epoch,
                        },
                    );
                }
            }
            Ok(Acquired::Other { expires_in }) => {
                forget(inner, environment);
                next = next.min(expires_in + Duration::from_millis(50));
            }
            // What is held stays until its local validity ends: then no action starts.
            Err(e) => trouble = Some(e),
        }
    }
    if let Ok(mut h) = inner.held.lock() {
        h.retain(|e, _| wanted.contains(e));
    }
    if trouble.is_some() {
        // Try again soon: the lease may still be saved before it lapses.
        next = next.min(Duration::from_secs(1));
    }
    (next, trouble)
}
