//! The served state: everything a request reads, loaded from one commit of the tracked branch
//! (config, keys, revocations, records, history) into one immutable value that a refresh
//! replaces whole. Requests load the current value without locking and keep it for their
//! whole answer, so they never wait for a refresh and never see half of one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::git::history::History;
use crate::git::repo::Repo;
use crate::model::Deployment;
use crate::model::config::Config;
use crate::token::{Signed, Verifier};
use arc_swap::ArcSwapOption;
use git2::Oid;

use super::answer::ApiError;
use super::bounded::Bounded;
use super::metrics::Metrics;
use super::options::Options;
use axum::http::StatusCode;

/// One commit of the tracked branch, ready to answer from.
pub struct Served {
    pub commit: Oid,
    /// The commit's committer time.
    pub commit_time: i64,
    pub config: Config,
    pub history: History,
    /// The deployments at the commit, sorted by agent and environment.
    pub rows: Vec<Deployment>,
    /// Position in `rows` of each (agent, environment).
    by_pair: HashMap<(String, String), usize>,
    pub verifier: Verifier,
    /// `/v1/deployments`, serialized once and shared by every answer (no copy per request).
    pub deployments_json: axum::body::Bytes,
    /// The same, gzip-compressed once, for clients that accept it.
    pub deployments_gzip: axum::body::Bytes,
    /// The strong entity tag of everything derived from this commit.
    pub etag: String,
    /// The token ledger's entries at the commit.
    pub ledger: Vec<crate::model::ledger::Entry>,
    /// The revocation list's entries at the commit (with their reasons and times).
    pub revocations: Vec<crate::model::revocations::Revocation>,
    /// The chain's first commit: the repository's identity for the reconciler's store.
    pub root: Option<Oid>,
    /// Each agent's events, for the agent pages.
    pub agents: crate::view::AgentIndex,
    /// Where the reconciler's store of this repository is, when it has one.
    pub store: std::path::PathBuf,
    /// Signatures verified against this state's keys. It lives and dies with the state, so a
    /// change of keys (any refresh) empties it.
    pub signatures: SignatureCache,
}

impl Served {
    /// Loads `commit` (the tracked ref's, as the refresher resolved it, with its committer time).
    /// Fails when the commit's `ledgit.yaml` is invalid: then the last good state stays.
    pub fn load(
        repo: &Repo,
        commit: Oid,
        commit_time: i64,
        audience: Option<&str>,
    ) -> crate::Result<Served> {
        let loaded = crate::git::load::history(repo, Some(commit), &mut |_| {})?;
        let revocations = crate::git::load::revocation_list(repo, commit)?;
        let revoked = revocations.iter().map(|r| r.jti.clone()).collect();
        let rows = loaded.history.current();
        let root = loaded.history.root();
        let agents = crate::view::AgentIndex::new(&loaded.history);
        let ledger = crate::git::load::ledger(repo, commit)?.entries;
        let verifier = Verifier::new(&loaded.config, &rows, revoked)
            .require_audience(audience.map(str::to_string));
        let by_pair = rows
            .iter()
            .enumerate()
            .map(|(i, d)| ((d.agent.clone(), d.environment.clone()), i))
            .collect();
        // Serialising plain strings and numbers cannot fail; compressing into memory neither.
        let deployments_json = serde_json::to_vec(&rows).unwrap_or_default();
        let deployments_gzip = gzip(&deployments_json).unwrap_or_default();
        Ok(Served {
            commit,
            commit_time,
            config: loaded.config,
            history: loaded.history,
            rows,
            by_pair,
            verifier,
            deployments_json: deployments_json.into(),
            deployments_gzip: deployments_gzip.into(),
            etag: format!("\"{commit}\""),
            ledger,
            revocations,
            root,
            agents,
            store: crate::reconcile::state::default_path(repo.git.commondir()),
            signatures: SignatureCache::default(),
        })
    }

    /// Where the record of a pair is in [`Served::rows`].
    pub fn position(&self, agent: &str, environment: &str) -> Option<usize> {
        self.by_pair
            .get(&(agent.to_string(), environment.to_string()))
            .copied()
    }

    /// The record of a pair at this commit.
    pub fn deployment(&self, agent: &str, environment: &str) -> Option<&Deployment> {
        self.by_pair
            .get(&(agent.to_string(), environment.to_string()))
            .map(|&i| &self.rows[i])
    }
}

/// The keys of the page's sessions, when it takes proposals: from the operator secret (which
/// all replicas share), else the OpenID client secret, else (a proxy signs people in, one
/// replica) a random key.
fn ui_keys(options: &super::options::Options) -> Option<super::session::Keys> {
    use super::session::{Auth, Keys};
    if !options.proposals {
        return None;
    }
    let auth = match (&options.oidc, &options.auth_proxy) {
        (Some(_), _) => Auth::Oidc,
        (None, Some(header)) => Auth::Proxy {
            header: header.clone(),
            trusted: options.trusted_proxies.clone(),
        },
        (None, None) => Auth::Secret,
    };
    let secret = match (&options.ui_secret, &options.oidc, &auth) {
        (Some(s), _, _) => s.clone(),
        (None, Some(o), _) => {
            let mut s = b"ledgit-oidc\n".to_vec();
            s.extend_from_slice(&o.client_secret);
            s
        }
        (None, None, Auth::Proxy { .. }) => {
            use ring::rand::SecureRandom;
            let mut s = vec![0u8; 32];
            ring::rand::SystemRandom::new().fill(&mut s).ok()?;
            s
        }
        (None, None, _) => return None,
    };
    Some(Keys::with_auth(
        secret,
        options.public_url.starts_with("https://"),
        auth,
    ))
}

/// An open proposal: a branch under `refs/heads/ledgit/` the tracked branch does not contain.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Proposal {
    pub branch: String,
    /// Its tip's subject (what it does, in the words ledgit or its author wrote).
    pub subject: String,
    /// Its tip's author and commit time.
    pub author: String,
    pub time: i64,
    /// The records it changes against the tracked branch: (agent, environment).
    pub touches: Vec<(String, String)>,
    /// Where to open or follow its pull request, when the server knows the host.
    pub link: Option<String>,
}

impl Proposal {
    /// Whether it changes a record of `agent`.
    pub fn touches_agent(&self, agent: &str) -> bool {
        self.touches.iter().any(|(a, _)| a == agent)
    }
}

/// The records a branch changes: the files that differ between its tip and where it left the
/// tracked branch, named by the tip's records (or by their path, for one it removes).
fn touched(repo: &Repo, commit: Oid, tip: &git2::Commit, folder: &str) -> Vec<(String, String)> {
    let git = &repo.git;
    let Some(base) = git
        .merge_base(commit, tip.id())
        .ok()
        .and_then(|b| git.find_commit(b).ok())
        .and_then(|c| c.tree().ok())
    else {
        return Vec::new();
    };
    let Ok(tree) = tip.tree() else {
        return Vec::new();
    };
    let mut options = git2::DiffOptions::new();
    options.pathspec(folder);
    let Ok(diff) = git.diff_tree_to_tree(Some(&base), Some(&tree), Some(&mut options)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = diff
        .deltas()
        .filter_map(|d| {
            let path = d.new_file().path().or_else(|| d.old_file().path())?;
            let mut parts = path.iter().rev();
            let environment = std::path::Path::new(parts.next()?)
                .file_stem()?
                .to_str()?
                .to_string();
            let agent = parts.next()?.to_str()?.to_string();
            Some((agent, environment))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The open proposals at `commit`, newest first (at most 50). Read on every refresh (a branch
/// pushed or created moves no tracked ref) and after the page creates one.
/// A proposal this replica created.
#[derive(Clone, Debug)]
pub struct Creation {
    pub agent: String,
    /// Who asked for it: the signed-in person's address, or `operator`.
    pub by: String,
    pub commit: String,
    pub title: String,
    /// The push: not asked (`None`), under way (`Some(None)`), or what it said.
    pub push: Option<Option<String>>,
    pub pull_request: Option<String>,
}

pub fn open_proposals(
    repo: &Repo,
    commit: Oid,
    options: &super::options::Options,
) -> Vec<Proposal> {
    let Ok(refs) = repo.git.references_glob("refs/heads/ledgit/*") else {
        return Vec::new();
    };
    let folder = repo
        .config_at(commit)
        .map(|c| c.deployments.clone())
        .unwrap_or_else(|_| "deployments".into());
    let remote_url = options
        .push
        .as_deref()
        .and_then(|r| repo.git.find_remote(r).ok())
        .and_then(|r| r.url().ok().map(str::to_string));
    let mut out: Vec<Proposal> = refs
        .flatten()
        .filter_map(|r| {
            let name = r.shorthand().ok()?.to_string();
            let tip = r.peel_to_commit().ok()?;
            let merged = tip.id() == commit
                || repo
                    .git
                    .graph_descendant_of(commit, tip.id())
                    .unwrap_or(false);
            if merged {
                return None;
            }
            let author = tip.author();
            Some(Proposal {
                subject: tip.summary().ok().flatten().unwrap_or("").to_string(),
                author: author.name().ok().unwrap_or("").to_string(),
                time: tip.time().seconds(),
                touches: touched(repo, commit, &tip, &folder),
                link: crate::review::proposal::pull_request_url(
                    options.pull_request_url.as_deref(),
                    remote_url.as_deref(),
                    &options.branch,
                    &name,
                ),
                branch: name,
            })
        })
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.time));
    out.truncate(50);
    out
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 8),
        flate2::Compression::default(),
    );
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// How the last refresh went, for `/readyz`, `/metrics` and the log.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Why the last refresh failed, while it is failing.
    pub failing: Option<String>,
    /// The tracked ref's commit and its time, as last seen (it may be ahead of the served one).
    pub branch_tip: Option<(Oid, i64)>,
    pub last_refresh: Option<Instant>,
}

/// When each token last verified here (best effort, in memory, never committed), by token id.
pub type LastSeen = Bounded<String, i64>;

/// What every request and the refresher share.
pub struct Shared {
    pub options: Options,
    pub served: ArcSwapOption<Served>,
    pub health: Mutex<Health>,
    pub metrics: Metrics,
    /// Wakes the refresher; permits do not pile up, so a flood of deliveries coalesces.
    pub refresh: tokio::sync::Notify,
    /// A refresh was asked for that should fetch first (a verified push webhook).
    pub fetch_asked: std::sync::atomic::AtomicBool,
    /// The OpenAPI document, as JSON.
    pub openapi: Vec<u8>,
    pub last_seen: LastSeen,
    /// The keys of the web page's sessions and how visitors sign in: there are some exactly
    /// when the page takes proposals (`--proposals`).
    pub ui_keys: Option<super::session::Keys>,
    /// Each shown commit's change author and merger ([`crate::view::CommitView::people`]): a
    /// commit never changes, so they are read once.
    pub people: super::bounded::Bounded<String, (String, Option<String>)>,
    /// The `--push` remote's URL, once read.
    push_remote_url: std::sync::OnceLock<Option<String>>,
    /// The OpenID Provider visitors sign in with (`--oidc-issuer`).
    pub oidc: Option<super::oidc::Client>,
    /// The open proposals, as last read.
    pub proposals: arc_swap::ArcSwap<Vec<Proposal>>,
    /// The origins this server's pages are served from (the Origin check of every POST).
    pub origins: Vec<String>,
    /// Whether the reconciler's store answered its last read.
    pub store_health: Mutex<StoreHealth>,
    /// Whether the last read of the receipts failed (said once in the log).
    receipts_failing: std::sync::atomic::AtomicBool,
    /// Failed secrets (sign-in, introspection, webhook signatures) per client address.
    pub failures: super::limits::Budgets,
    /// The proposals this replica created, by branch: who made each and how its push goes,
    /// for the proposal's page (a push can take seconds; the page answers at once).
    pub created: super::bounded::Bounded<String, Creation>,
    /// The reconciler's store as last read, and when: pages read it at most once a second,
    /// on a blocking thread, never on the request's own.
    observed: tokio::sync::Mutex<Option<Observed>>,
    /// The sync states of the served rows from the last read of the store: computed once per
    /// read and commit, not once per request.
    states: Mutex<Option<SyncStates>>,
    /// The snapshot's digest of the served rows with the last sync states.
    digest: Mutex<Option<DigestOf>>,
    /// The receipts as last read: read again when the notes ref or the served commit moved,
    /// looked at at most once a second.
    receipts: tokio::sync::Mutex<Option<(Instant, Arc<Receipts>)>>,
    /// The connection to a shared (PostgreSQL) store, used on blocking threads only.
    pub shared_store: Option<Arc<Mutex<crate::reconcile::state::postgres::Reader>>>,
    /// Tokens seen since the last time they were told to the other replicas.
    pub seen_unshared: Mutex<std::collections::HashMap<String, i64>>,
}

/// The sync states of a commit's rows, from one read of the store.
/// A digest, and the commit and sync states it was made of.
type DigestOf = (
    Oid,
    Option<Arc<Vec<crate::reconcile::state::Sync>>>,
    Arc<crate::view::Digest>,
);

struct SyncStates {
    commit: Oid,
    view: Arc<crate::reconcile::state::View>,
    states: Arc<Vec<crate::reconcile::state::Sync>>,
}

/// The checked receipts of the repository, indexed on a served commit's chain.
pub struct Receipts {
    pub notes: Option<Oid>,
    pub commit: Oid,
    pub list: Vec<crate::receipt::Receipt>,
    pub index: crate::receipt::audit::Index,
}

/// Whether the reconciler's store answers: the last read's outcome, and since when.
#[derive(Debug, Clone, Default)]
pub struct StoreHealth {
    /// Why the last read failed, while it fails.
    pub down: Option<String>,
    /// When the store last changed between answering and not (seconds since the epoch).
    pub since: i64,
}

/// One read of the reconciler's store.
struct Observed {
    read_at: Instant,
    store: crate::reconcile::state::Location,
    root: Oid,
    view: Option<Arc<crate::reconcile::state::View>>,
}

/// How long a read of the reconciler's store is shown before it is read again.
const OBSERVED_FOR: std::time::Duration = std::time::Duration::from_secs(1);

impl Shared {
    pub fn new(options: Options) -> Shared {
        Shared {
            served: ArcSwapOption::empty(),
            health: Mutex::new(Health::default()),
            metrics: Metrics::default(),
            refresh: tokio::sync::Notify::new(),
            fetch_asked: std::sync::atomic::AtomicBool::new(false),
            openapi: super::openapi::json(&options.public_url),
            last_seen: LastSeen::default(),
            observed: tokio::sync::Mutex::new(None),
            receipts: tokio::sync::Mutex::new(None),
            states: Mutex::default(),
            digest: Mutex::default(),
            shared_store: match &options.state {
                Some(crate::reconcile::state::Location::Postgres(url)) => {
                    crate::reconcile::state::postgres::Reader::new(url)
                        .ok()
                        .map(|r| Arc::new(Mutex::new(r)))
                }
                _ => None,
            },
            seen_unshared: Mutex::default(),
            proposals: Default::default(),
            failures: super::limits::Budgets::default(),
            created: Default::default(),
            store_health: Mutex::default(),
            receipts_failing: Default::default(),
            ui_keys: ui_keys(&options),
            push_remote_url: Default::default(),
            people: Default::default(),
            oidc: options
                .oidc
                .clone()
                .filter(|_| options.proposals)
                .map(|o| super::oidc::Client::new(o, &options.public_url)),
            origins: super::session::origins(&options.public_url, options.listen),
            options,
        }
    }

    /// The link to pull request `number`, from `--pull-request-url` or the `--push` remote
    /// (read once).
    pub fn pull_request_link(&self, number: u32) -> Option<String> {
        let remote = self.push_remote_url.get_or_init(|| {
            let name = self.options.push.as_deref()?;
            let repo = git2::Repository::open(&self.options.repo).ok()?;
            let remote = repo.find_remote(name).ok()?;
            remote.url().ok().map(str::to_string)
        });
        crate::review::proposal::pull_request_link(
            self.options.pull_request_url.as_deref(),
            remote.as_deref(),
            number,
        )
    }

    /// Whether the server's cookies are for https only.
    pub fn secure(&self) -> bool {
        self.options.public_url.starts_with("https://")
    }

    /// The health as last recorded.
    pub fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// A token was seen now: remembered here, and told to the other replicas by the next
    /// [`share`](super::share) (never on the request's path).
    pub fn seen(&self, jti: &str, now: i64) {
        self.last_seen.put(jti, now);
        if self.shared_store.is_some()
            && let Ok(mut unshared) = self.seen_unshared.lock()
            && unshared.len() < 100_000
        {
            unshared.insert(jti.to_string(), now);
        }
    }

    /// The reconciler's store to read: `--state`, else the served repository's default file.
    pub fn store_of(&self, served: &Served) -> crate::reconcile::state::Location {
        self.options
            .state
            .clone()
            .unwrap_or_else(|| crate::reconcile::state::Location::Sqlite(served.store.clone()))
    }

    /// The sync states of the served commit's rows (see [`Shared::observed`]), computed once
    /// per read of the store.
    pub async fn sync_states(
        &self,
        served: &Served,
    ) -> Option<Arc<Vec<crate::reconcile::state::Sync>>> {
        let view = self.observed(served).await?;
        let mut cache = self.states.lock().ok()?;
        if let Some(c) = cache.as_ref()
            && c.commit == served.commit
            && Arc::ptr_eq(&c.view, &view)
        {
            return Some(c.states.clone());
        }
        let states = Arc::new(view.sync_states(&served.rows));
        *cache = Some(SyncStates {
            commit: served.commit,
            view,
            states: states.clone(),
        });
        Some(states)
    }

    /// The snapshot's digest of the served rows with `sync` (the states [`Shared::sync_states`]
    /// gave): made once per commit and read of the store, shared by the requests.
    pub fn digest(
        &self,
        served: &Served,
        sync: Option<&Arc<Vec<crate::reconcile::state::Sync>>>,
    ) -> Arc<crate::view::Digest> {
        let same = |(commit, states, _): &DigestOf| {
            *commit == served.commit
                && match (states, sync) {
                    (None, None) => true,
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    _ => false,
                }
        };
        if let Ok(cache) = self.digest.lock()
            && let Some(c) = cache.as_ref().filter(|c| same(c))
        {
            return c.2.clone();
        }
        let digest = Arc::new(crate::view::Digest::new(
            &served.config,
            &served.rows,
            sync.map(|s| s.as_slice()),
        ));
        if let Ok(mut cache) = self.digest.lock() {
            *cache = Some((served.commit, sync.cloned(), digest.clone()));
        }
        digest
    }

    /// What the reconciler's store of the served repository says, read at most once a second
    /// on a blocking thread (requests that come meanwhile share the last read); `None` when
    /// there is no store.
    pub async fn observed(&self, served: &Served) -> Option<Arc<crate::reconcile::state::View>> {
        let root = served.root?;
        let store = self.store_of(served);
        let mut cached = self.observed.lock().await;
        if let Some(o) = cached.as_ref()
            && o.read_at.elapsed() < OBSERVED_FOR
            && o.root == root
            && o.store == store
        {
            return o.view.clone();
        }
        let location = store.clone();
        let reader = self.shared_store.clone();
        let read = tokio::task::spawn_blocking(move || match reader {
            // One connection, kept: not a new one every second.
            Some(reader) => match reader.lock() {
                Ok(mut r) => r.view(&root.to_string()).map(Some),
                Err(_) => Ok(None),
            },
            None => crate::reconcile::state::view(&location, &root.to_string()),
        })
        .await
        .unwrap_or(Ok(None));
        self.store_answered(read.as_ref().err().map(ToString::to_string));
        let view = read.ok().flatten().map(Arc::new);
        *cached = Some(Observed {
            read_at: Instant::now(),
            store,
            root,
            view: view.clone(),
        });
        view
    }

    /// Records whether the store answered (`None`) or why not: a change is logged once, the
    /// `ledgit_store_up` gauge follows, and pages and `/readyz` say it.
    fn store_answered(&self, failure: Option<String>) {
        let Ok(mut h) = self.store_health.lock() else {
            return;
        };
        let was_down = h.down.is_some();
        let now = chrono::Utc::now().timestamp();
        match (&failure, was_down) {
            (Some(e), false) => {
                h.since = now;
                super::options::log!(
                    self.options.log,
                    "ledgit serve: the reconciler's store is unreachable, sync states are unknown: {e}"
                );
            }
            (None, true) => {
                h.since = now;
                super::options::log!(
                    self.options.log,
                    "ledgit serve: the reconciler's store answers again"
                );
            }
            _ => {}
        }
        self.metrics.store_up.set(i64::from(failure.is_none()));
        h.down = failure;
    }

    /// The store's health as last read.
    pub fn store_health(&self) -> StoreHealth {
        self.store_health
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// The repository's receipts, checked and indexed on `served`'s chain: read on a blocking
    /// thread when the notes ref or the served commit moved (the ref is looked at at most once
    /// a second); `None` when they cannot be read.
    pub async fn receipts(&self, served: &Arc<Served>) -> Option<Arc<Receipts>> {
        let mut cached = self.receipts.lock().await;
        if let Some((looked_at, r)) = cached.as_ref()
            && r.commit == served.commit
            && looked_at.elapsed() < OBSERVED_FOR
        {
            return Some(r.clone());
        }
        let path = self.options.repo.clone();
        let served = served.clone();
        let previous = cached.as_ref().map(|(_, r)| r.clone());
        let fresh = tokio::task::spawn_blocking(move || -> crate::Result<Arc<Receipts>> {
            let repo = git2::Repository::open(&path)
                .map_err(|e| crate::Error::git("opening the repository", e))?;
            let notes = crate::receipt::notes::tip(&repo)?;
            if let Some(p) = previous
                && p.notes == notes
                && p.commit == served.commit
            {
                return Ok(p);
            }
            let list = match notes {
                Some(tip) => crate::receipt::cache::receipts(&repo, tip, Some(&served.history))?,
                None => Vec::new(),
            };
            let index = crate::receipt::audit::Index::new(&served.history, &list);
            Ok(Arc::new(Receipts {
                notes,
                commit: served.commit,
                list,
                index,
            }))
        })
        .await
        .unwrap_or_else(|_| {
            Err(crate::Error::Internal {
                what: "reading the receipts panicked".into(),
            })
        });
        // A degraded answer is said once, with its cause, and once when it mends.
        let failing = fresh.as_ref().err().map(ToString::to_string);
        let was = self
            .receipts_failing
            .swap(failing.is_some(), std::sync::atomic::Ordering::SeqCst);
        match (&failing, was) {
            (Some(e), false) => super::options::log!(
                self.options.log,
                "ledgit serve: the receipts cannot be read, pages and /v1/agents/{{agent}}/receipts show none: {e}"
            ),
            (None, true) => {
                super::options::log!(self.options.log, "ledgit serve: the receipts read again")
            }
            _ => {}
        }
        let fresh = fresh.ok();
        if let Some(r) = &fresh {
            *cached = Some((Instant::now(), r.clone()));
        }
        fresh
    }

    /// Asks the refresher for a refresh (coalesced with any already asked for).
    pub fn ask_refresh(&self, fetch: bool) {
        if fetch {
            self.fetch_asked
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.refresh.notify_one();
    }
}

/// The served state, or the answer that there is none yet.
pub fn served(shared: &Shared) -> Result<Arc<Served>, ApiError> {
    shared.served.load_full().ok_or_else(|| {
        let reason = shared
            .health()
            .failing
            .unwrap_or_else(|| "the tracked branch is not loaded yet".into());
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", reason)
    })
}

/// Signatures already verified, by SHA-256 of the token: a token presented again skips the
/// Ed25519 check (the claims are still checked against the state on every request).
#[derive(Default)]
pub struct SignatureCache(Bounded<[u8; 32], Signed>);

impl SignatureCache {
    fn key(token: &str) -> [u8; 32] {
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        key
    }

    /// The token's signed claims, from the cache or by verifying the signature now.
    pub fn verify(
        &self,
        verifier: &Verifier,
        token: &str,
    ) -> Result<Signed, crate::token::Invalid> {
        let key = Self::key(token);
        if let Some(hit) = self.0.get(&key) {
            return Ok(hit);
        }
        let signed = verifier.verify_signature(token)?;
        self.0.put(&key, signed.clone());
        Ok(signed)
    }

    /// How many signatures are cached.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
