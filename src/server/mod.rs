//! `ledgit serve`: the second front end beside the command line. It serves the tracked
//! branch's tip to the programs that need it at runtime (agents' SDKs, gateways, git hosts,
//! dashboards) over HTTP: routes and handlers in `routes`, webhook receivers in `hooks`, the
//! served state in `state`, metrics in `metrics`, and here the process around them: the
//! listener with its time limits, the refresher that follows the branch, and the drain on
//! SIGTERM. It uses only the library, never the command line's code.

/// The HTTP stack the router is built on, re-exported for programs that drive [`App`]'s
/// router themselves (the fuzz target does), so that they use the very same versions.
pub mod deps {
    pub use axum;
    pub use tokio;
    pub use tower;
}

mod admission;
mod answer;
mod bounded;
mod hooks;
mod limits;
mod metrics;
mod oidc;
mod openapi;
mod options;
mod pages;
mod routes;
mod session;
mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::time::{Duration, Instant};

pub use limits::{ALLOWED, ClientAddr, WINDOW};
use options::log;
pub use options::{Log, MIN_SECRET, OidcOptions, Options, StartError};
pub use routes::{RouteName, router};
pub use session::Cidr;
pub use state::{Served, Shared};

/// The OpenAPI document served at `/openapi.json`, with `public_url` as its server.
pub fn openapi_json(public_url: &str) -> Vec<u8> {
    openapi::json(public_url)
}

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The least time between two refreshes asked for by webhook deliveries (each may fetch).
const MIN_HOOK_GAP: Duration = Duration::from_secs(1);
/// How long requests in flight may take to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The most connections held open at once by default (`--max-connections`); past it, the
/// connection furthest behind is closed to make room for a new one.
pub const MAX_CONNECTIONS: usize = 4096;

/// Serves until SIGTERM or SIGINT, then drains the requests in flight. Errors are what stops
/// the server from starting (a secret too short, the address is taken, the runtime cannot
/// start).
pub fn run(options: Options) -> Result<(), StartError> {
    options.check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| StartError::Setup {
            what: "start the runtime",
            source,
        })?;
    runtime.block_on(serve(options))
}

/// The routes over the state loaded from the tracked branch: what `serve` listens with, and
/// what a driver in the same process (the fuzz target of the request handling) calls.
pub struct App {
    shared: Arc<Shared>,
    pub router: axum::Router,
}

/// Loads the tracked branch's tip (fetching first with `fetch`) and builds the routes over it.
pub async fn app(options: Options) -> App {
    let shared = Arc::new(Shared::new(options));
    // The first load before the first request: a server that starts is ready, or says why not.
    refresh(&shared, shared.options.fetch.is_some()).await;
    App {
        router: routes::router(shared.clone()),
        shared,
    }
}

async fn serve(mut options: Options) -> Result<(), StartError> {
    raise_descriptor_limit();
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| StartError::Listen {
            address: options.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(|source| StartError::Setup {
        what: "read the listening address",
        source,
    })?;
    // Port 0 asks for any free port: the pages' origin is the port the listener got.
    if options.public_url == format!("http://{}", options.listen) {
        options.public_url = format!("http://{local}");
    }
    options.listen = local;
    let App {
        shared,
        router: app,
    } = app(options).await;
    log!(
        shared.options.log,
        "ledgit serve: listening on http://{local}, serving {} {}",
        shared.options.tracked,
        shared
            .served
            .load()
            .as_ref()
            .map(|s| format!("at {}", crate::git::repo::short(s.commit)))
            .unwrap_or_else(|| "(not loaded yet)".into())
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = spawn_watcher(shared.clone(), stop.clone());
    let refresher = tokio::spawn(refresher(shared.clone()));
    let sharer = tokio::spawn(sharer(shared.clone()));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = admission::Connections::new(shared.options.max_connections);
    let mut signals = Signals::new()?;
    loop {
        let (stream, peer) = tokio::select! {
            _ = signals.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    log!(shared.options.log, "ledgit serve: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // A client over its share is cut at once; a full server closes the connection furthest
        // behind on its client (idle, or a body that stalls) to make room, so a new client is
        // never turned away by connections that only hold a socket (see `admission`).
        let Some(slot) = connections.admit(peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = hyper_util::rt::TokioIo::new(stream);
        let service = connection_service(app.clone(), peer, slot.state.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(64 * 1024)
            .serve_connection(io, service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {},
                // Evicted while idle: dropping the connection closes its socket.
                _ = slot.evicted.notified() => {},
            }
            drop(slot);
        });
    }
    drop(listener);
    log!(
        shared.options.log,
        "ledgit serve: stopping; draining requests in flight"
    );
    stop.store(true, Ordering::SeqCst);
    refresher.abort();
    sharer.abort();
    // What this replica saw last is not lost with it.
    share(&shared).await;
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_ok();
    let _ = watcher.join();
    // The shared store's connection closes here, on a blocking thread: dropped with the
    // state on this runtime's thread, the synchronous client would panic.
    if let Some(reader) = shared.shared_store.clone() {
        let _ = tokio::task::spawn_blocking(move || {
            if let Ok(mut r) = reader.lock() {
                r.close();
            }
        })
        .await;
    }
    if drained {
        log!(shared.options.log, "ledgit serve: stopped");
    } else {
        log!(
            shared.options.log,
            "ledgit serve: stopped after {}s with requests still in flight",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

/// The router as one connection's service: each request carries the client's address, and
/// tells the connection's admission state when its head arrived, when its body is whole and
/// when its answer is ready.
fn connection_service(
    app: axum::Router,
    peer: SocketAddr,
    state: Arc<admission::ConnState>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl std::future::Future<
        Output = Result<axum::response::Response, std::convert::Infallible>,
    > + Send,
> + Clone {
    hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ClientAddr(peer));
        let app = app.clone();
        let guard = InFlight::new(state.clone(), hyper::body::Body::is_end_stream(req.body()));
        let state = state.clone();
        async move {
            let req = req.map(|b| axum::body::Body::new(admission::Progress::new(b, state)));
            let response = tower::ServiceExt::oneshot(app, req).await;
            drop(guard);
            response
        }
    })
}

/// A request in flight on its connection, until dropped.
struct InFlight(Arc<admission::ConnState>);

impl InFlight {
    fn new(state: Arc<admission::ConnState>, body_done: bool) -> Self {
        state.begin(body_done);
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Raises the soft limit on open files to the hard one: every connection is a descriptor, and
/// a server that runs out of them stops accepting anyone.
fn raise_descriptor_limit() {
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// SIGTERM and SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, StartError> {
        use tokio::signal::unix::{SignalKind, signal};
        let err = |source| StartError::Setup {
            what: "handle signals",
            source,
        };
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(err)?,
            int: signal(SignalKind::interrupt()).map_err(err)?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}

/// Watches the git directory on a thread of its own and asks for a refresh when a ref may
/// have moved (a commit, a merge, a fetch), within milliseconds.
fn spawn_watcher(
    shared: Arc<Shared>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let watcher = crate::git::repo::Repo::open(&shared.options.repo)
            .and_then(|repo| crate::reconcile::RefWatcher::new(repo.git.commondir()));
        let watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                log!(
                    shared.options.log,
                    "ledgit serve: {e}; the branch is checked every {}s instead",
                    shared.options.interval.as_secs()
                );
                return;
            }
        };
        while !stop.load(Ordering::SeqCst) {
            if watcher.wait(Duration::from_millis(250)) {
                shared.ask_refresh(false);
            }
        }
    })
}

/// Refreshes when asked (the ref moved, a verified push) and every interval; one refresh at a
/// time, and the requests that come meanwhile coalesce into the next one.
/// How often replicas of `serve` on a shared store tell each other what they saw.
const SHARE_EVERY: Duration = Duration::from_secs(1);

/// With a shared store: once a second, tells the other replicas when tokens were seen and which
/// sessions signed out here, and learns theirs. Never on a request's path.
async fn sharer(shared: Arc<Shared>) {
    if shared.shared_store.is_none() {
        return;
    }
    let mut tick = tokio::time::interval(SHARE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        share(&shared).await;
    }
}

/// One exchange with the shared store (see [`sharer`]). What cannot be told now is told next
/// time.
pub(crate) async fn share(shared: &Arc<Shared>) {
    let (Some(reader), Some(served)) = (shared.shared_store.clone(), shared.served.load_full())
    else {
        return;
    };
    let Some(root) = served.root else { return };
    let seen: Vec<(String, i64)> = shared
        .seen_unshared
        .lock()
        .map(|mut s| std::mem::take(&mut *s).into_iter().collect())
        .unwrap_or_default();
    let ended = shared
        .ui_keys
        .as_ref()
        .map(|k| k.take_unshared())
        .unwrap_or_default();
    let worker = shared.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let Ok(mut reader) = reader.lock() else {
            return;
        };
        let now = chrono::Utc::now().timestamp();
        let repository = root.to_string();
        match reader.share_seen(&repository, &seen, now - 2 * SHARE_EVERY.as_secs() as i64) {
            Ok(theirs) => {
                for (jti, t) in theirs {
                    worker
                        .last_seen
                        .update(&jti, |mine| mine.map_or(t, |m| (*m).max(t)));
                }
            }
            Err(_) => {
                if let Ok(mut s) = worker.seen_unshared.lock() {
                    for (jti, t) in seen {
                        s.entry(jti).or_insert(t);
                    }
                }
            }
        }
        if let Some(keys) = &worker.ui_keys {
            match reader.share_ended(&ended, now) {
                Ok(all) => keys.merge_ended(all, now),
                Err(_) => keys.requeue(ended),
            }
        }
    })
    .await;
}

async fn refresher(shared: Arc<Shared>) {
    let mut last_fetch = Instant::now();
    let mut last_hook = Instant::now() - MIN_HOOK_GAP;
    loop {
        tokio::select! {
            _ = shared.refresh.notified() => {},
            _ = tokio::time::sleep(shared.options.interval) => {},
        }
        let asked = shared.fetch_asked.swap(false, Ordering::SeqCst);
        // A delivery refreshes (and fetches) at most once a second, however many arrive: a
        // replayed one cannot make the server load or fetch in a loop. What arrives meanwhile
        // is served by the refresh at the end of the second. A ref that moved here (the
        // watcher) is refreshed at once.
        if asked {
            let since = last_hook.elapsed();
            if since < MIN_HOOK_GAP {
                tokio::time::sleep(MIN_HOOK_GAP - since).await;
            }
            shared.fetch_asked.store(false, Ordering::SeqCst);
            last_hook = Instant::now();
        }
        let due = last_fetch.elapsed() >= shared.options.interval;
        let fetch = shared.options.fetch.is_some() && (asked || due);
        if fetch {
            last_fetch = Instant::now();
        }
        refresh(&shared, fetch).await;
    }
}

/// Why a refresh left the last good state in place.
#[derive(Debug, thiserror::Error)]
enum RefreshError {
    /// The repository could not be opened, or the tracked commit not loaded.
    #[error(transparent)]
    Load(#[from] crate::Error),
    /// The remote could not be fetched.
    #[error(transparent)]
    Fetch(#[from] crate::git::repo::FetchError),
    /// The tracked ref does not resolve.
    #[error("{0} does not name a commit (yet)")]
    NoCommit(String),
    /// The blocking task ended without an answer.
    #[error("the refresh failed: {0}")]
    Stopped(tokio::task::JoinError),
}

/// One refresh: fetch when asked, then load the tracked ref's commit unless it is served
/// already. A failed load keeps the last good state and says why (log, `/readyz`, metrics).
pub async fn refresh(shared: &Arc<Shared>, fetch: bool) {
    let worker = shared.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<Option<Served>, RefreshError> {
        let o = &worker.options;
        let repo = crate::git::repo::Repo::open(&o.repo)?;
        if fetch && let Some(remote) = &o.fetch {
            repo.fetch(remote)?;
        }
        let tip = repo
            .resolve_tracked(&o.tracked)
            .ok_or_else(|| RefreshError::NoCommit(o.tracked.clone()))?;
        let tip_time = repo
            .git
            .find_commit(tip)
            .map(|c| c.time().seconds())
            .unwrap_or_default();
        if let Ok(mut h) = worker.health.lock() {
            h.branch_tip = Some((tip, tip_time));
        }
        worker
            .proposals
            .store(Arc::new(state::open_proposals(&repo, tip, &worker.options)));
        let current = worker.served.load();
        if current.as_ref().is_some_and(|s| s.commit == tip) {
            return Ok(None);
        }
        Ok(Some(Served::load(
            &repo,
            tip,
            tip_time,
            o.audience.as_deref(),
        )?))
    })
    .await
    .unwrap_or_else(|e| Err(RefreshError::Stopped(e)));
    let metrics = &shared.metrics;
    metrics.refreshes.inc();
    match outcome {
        Ok(loaded) => {
            if let Some(new) = loaded {
                log!(
                    shared.options.log,
                    "ledgit serve: serving {} ({} deployments)",
                    crate::git::repo::short(new.commit),
                    new.rows.len()
                );
                metrics.commit_time.set(new.commit_time);
                shared.served.store(Some(Arc::new(new)));
            }
            if let Ok(mut h) = shared.health.lock() {
                if h.failing.take().is_some() {
                    log!(
                        shared.options.log,
                        "ledgit serve: the tracked branch loads again"
                    );
                }
                h.last_refresh = Some(Instant::now());
            }
            metrics.failing.clear();
        }
        Err(failure) => {
            let reason = failure.to_string();
            metrics.refresh_failures.inc();
            log!(
                shared.options.log,
                "ledgit serve: refresh failed, still serving the last good state: {reason}"
            );
            metrics.failing.clear();
            metrics
                .failing
                .get_or_create(&metrics::ReasonLabel {
                    reason: reason.chars().take(200).collect(),
                })
                .set(1);
            if let Ok(mut h) = shared.health.lock() {
                h.failing = Some(reason);
                h.last_refresh = Some(Instant::now());
            }
        }
    }
    let health = shared.health();
    let served = shared.served.load();
    let lag = match (&health.branch_tip, served.as_ref()) {
        (Some((tip, time)), Some(s)) if *tip != s.commit => (time - s.commit_time).max(0),
        _ => 0,
    };
    metrics.lag.set(lag);
    metrics
        .ready
        .set(i64::from(served.is_some() && health.failing.is_none()));
}
