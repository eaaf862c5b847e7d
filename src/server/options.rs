//! What `ledgit serve` is asked to do ([`Options`]), the checks on it before the server
//! starts, and where its log lines go ([`Log`], and the `log!` macro every module writes with).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Writes one line to the server's log sink, formatted as `format!` does.
macro_rules! log {
    ($log:expr, $($arg:tt)*) => {
        $log.line(&format!($($arg)*))
    };
}
pub(crate) use log;

/// Where the server's log lines go, one line at a time (never a token, a secret or a cookie):
/// the `ledgit` binary writes them to stderr; an embedder chooses.
#[derive(Clone)]
pub struct Log(Arc<dyn Fn(&str) + Send + Sync>);

impl Log {
    /// A sink that hands every line to `write`.
    pub fn new(write: impl Fn(&str) + Send + Sync + 'static) -> Log {
        Log(Arc::new(write))
    }

    /// A sink that drops every line.
    pub fn discard() -> Log {
        Log::new(|_| {})
    }

    /// Writes one line.
    pub fn line(&self, text: &str) {
        (self.0)(text)
    }
}

impl Default for Log {
    fn default() -> Log {
        Log::discard()
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Log")
    }
}

/// What `ledgit serve` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The repository (its work tree or git directory).
    pub repo: PathBuf,
    pub listen: SocketAddr,
    /// The ref served (`refs/heads/main`, or `refs/remotes/origin/main` with `fetch`).
    pub tracked: String,
    /// The branch's short name, as pushes name it (`refs/heads/<branch>`).
    pub branch: String,
    /// The remote to fetch from on the interval and on verified pushes.
    pub fetch: Option<String>,
    /// How often to fetch (with `fetch`) and to check the ref in any case.
    pub interval: Duration,
    /// Tokens must carry this `aud`.
    pub audience: Option<String>,
    /// The server's URL as clients reach it (for the RFC 8414 metadata).
    pub public_url: String,
    /// The HMAC key of GitHub's and generic webhook deliveries.
    pub hook_secret: Option<Vec<u8>>,
    /// The token GitLab sends in clear (`X-Gitlab-Token`): never the HMAC key too.
    pub gitlab_token: Option<Vec<u8>>,
    pub introspection_secret: Option<Vec<u8>>,
    /// The client id callers of `/oauth2/introspect` give with HTTP Basic (any, when unset).
    pub introspection_client_id: Option<String>,
    /// No access log (benchmarks).
    pub quiet: bool,
    /// The web page's controls make proposals (with `ui_secret`).
    pub proposals: bool,
    /// The operator secret that signs visitors in to the controls (with another sign-in, it
    /// only keys the cookies and CSRF tokens, the same on every replica).
    pub ui_secret: Option<Vec<u8>>,
    /// Visitors sign in with an OpenID Provider.
    pub oidc: Option<OidcOptions>,
    /// Visitors are signed in by a proxy in front, which names them in this header (believed
    /// only from `trusted_proxies`).
    pub auth_proxy: Option<axum::http::HeaderName>,
    /// Proxies in front whose `X-Forwarded-For` names the client: failed secrets are counted
    /// by the address it names, not the proxy's, and `auth_proxy`'s header is believed from
    /// them only.
    pub trusted_proxies: Vec<super::session::Cidr>,
    /// The most connections held open at once ([`super::MAX_CONNECTIONS`] by default).
    pub max_connections: usize,
    /// The remote proposals are pushed to, with the user's git.
    pub push: Option<String>,
    /// The pull request link's template (`{branch}`, `{base}`).
    pub pull_request_url: Option<String>,
    /// The reconciler's state store to show sync states from (default: the SQLite file under
    /// the repository's git directory). A shared (PostgreSQL) store shows what every replica
    /// applied, and its leases.
    pub state: Option<crate::reconcile::state::Location>,
    /// Where log lines go.
    pub log: Log,
}

/// OpenID Connect sign-in (authorization code with PKCE).
#[derive(Debug, Clone)]
pub struct OidcOptions {
    /// The provider's issuer URL (its discovery document is at
    /// `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Vec<u8>,
    /// Who may sign in: an address in one of these domains, or a member of one of these
    /// groups (at least one of the two lists is given).
    pub allowed_domains: Vec<String>,
    pub allowed_groups: Vec<String>,
    /// The claim that lists a person's groups (`groups`).
    pub groups_claim: String,
}

/// The shortest secret the server accepts, in bytes: shorter ones can be guessed.
pub const MIN_SECRET: usize = 16;

impl Options {
    /// Refuses secrets that are too short to resist guessing, a GitLab token that is also the
    /// HMAC key of the other webhooks (GitLab sends its token in clear), and a pull request
    /// link that is not http(s) (`javascript:` on a page people click).
    pub fn check(&self) -> Result<(), StartError> {
        for (secret, variable) in [
            (&self.ui_secret, "LEDGIT_UI_SECRET"),
            (&self.introspection_secret, "LEDGIT_INTROSPECTION_SECRET"),
            (&self.hook_secret, "LEDGIT_HOOK_SECRET"),
            (&self.gitlab_token, "LEDGIT_GITLAB_TOKEN"),
        ] {
            if let Some(s) = secret
                && s.len() < MIN_SECRET
            {
                return Err(StartError::ShortSecret {
                    variable,
                    length: s.len(),
                });
            }
        }
        if let Some(template) = &self.pull_request_url {
            let lower = template.to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://")) {
                return Err(StartError::PullRequestUrl(template.clone()));
            }
        }
        if let Some(o) = &self.oidc {
            let lower = o.issuer.to_ascii_lowercase();
            let loopback = ["http://localhost", "http://127.0.0.1", "http://[::1]"]
                .iter()
                .any(|p| {
                    lower
                        .strip_prefix(p)
                        .is_some_and(|r| r.is_empty() || r.starts_with([':', '/']))
                });
            if !(lower.starts_with("https://") || loopback) {
                return Err(StartError::OidcIssuer(o.issuer.clone()));
            }
            if o.allowed_domains.is_empty() && o.allowed_groups.is_empty() {
                return Err(StartError::OidcAnyone);
            }
        }
        if self.oidc.is_some() && self.auth_proxy.is_some() {
            return Err(StartError::TwoSignIns);
        }
        if self.gitlab_token.is_some() && self.gitlab_token == self.hook_secret {
            return Err(StartError::GitlabTokenIsHookSecret);
        }
        // A shared store's URL that cannot even be read is said now, not as pages without sync
        // states later.
        if let Some(crate::reconcile::state::Location::Postgres(url)) = &self.state
            && let Err(e) = crate::reconcile::state::pgconfig::connector(
                url,
                &crate::reconcile::state::pgconfig::ProcessEnv,
            )
        {
            return Err(StartError::State(e.to_string()));
        }
        Ok(())
    }
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A secret shorter than [`MIN_SECRET`] bytes.
    #[error("{variable} is {length} bytes long; a secret needs at least {MIN_SECRET}")]
    ShortSecret {
        variable: &'static str,
        length: usize,
    },
    /// `--pull-request-url` is not http(s) (`javascript:` on a page people click).
    #[error(
        "--pull-request-url `{0}` is not an http(s) address: the page links it for people to follow"
    )]
    PullRequestUrl(String),
    /// GitLab's token is also the HMAC key of the other webhooks, and GitLab sends it in clear.
    #[error(
        "LEDGIT_GITLAB_TOKEN is LEDGIT_HOOK_SECRET: GitLab sends its token in clear, so it must not also sign the other webhooks"
    )]
    GitlabTokenIsHookSecret,
    /// The OpenID issuer is not https (nor http on this machine).
    #[error("--oidc-issuer `{0}` is not an https address")]
    OidcIssuer(String),
    /// OpenID sign-in with no rule of who may sign in.
    #[error("--oidc-issuer needs --oidc-allowed-domain or --oidc-allowed-group: who may sign in")]
    OidcAnyone,
    /// Both OpenID Connect and a proxy's header.
    #[error("--oidc-issuer and --auth-proxy-header are two ways to sign in: choose one")]
    TwoSignIns,
    /// `--state` names a PostgreSQL store whose URL does not read.
    #[error("--state: {0}")]
    State(String),
    /// The listening address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The process could not set up what serving needs (the runtime, signal handlers).
    #[error("cannot {what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl StartError {
    /// What the operator can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            StartError::ShortSecret { .. } => "make one with `openssl rand -hex 24`",
            StartError::State(_) => {
                "write it as postgres://USER@HOST:PORT/DATABASE?sslmode=require (PG* variables fill in the rest)"
            }
            StartError::PullRequestUrl(_) => {
                "give the host's address, e.g. https://github.com/org/deployments/compare/{base}...{branch}"
            }
            StartError::GitlabTokenIsHookSecret => "give LEDGIT_GITLAB_TOKEN a value of its own",
            StartError::OidcIssuer(_) => {
                "the provider's address must be https (http only for a provider on this machine)"
            }
            StartError::OidcAnyone => {
                "a provider signs in anyone it knows; say which domains (--oidc-allowed-domain example.com) or groups may propose"
            }
            StartError::TwoSignIns => "keep the one your team uses",
            StartError::Listen { .. } => {
                "pick another --listen address, or stop what holds this one"
            }
            StartError::Setup { .. } => "check the process's limits and permissions",
        }
    }
}
