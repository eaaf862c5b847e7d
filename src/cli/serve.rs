//! `ledgit serve`: the arguments of the server; the server itself is `ledgit::server`.

use std::time::Duration;

use super::command_error::{CliError, CliResult, Outcome};
use super::context::Context;

/// Serve the tracked branch to agents' SDKs, gateways, git hosts and dashboards over HTTP.
///
/// Answers from the tip of the tracked branch (the checked-out branch, or --rev), reloaded
/// within milliseconds when its ref moves (a commit, a merge, a fetch) and every --interval;
/// with --fetch, also fetched from REMOTE every interval and on every verified push webhook.
/// A tip whose ledgit.yaml is invalid is not served: the last good state stays, and /readyz,
/// /metrics and the log say why. SIGTERM (or Ctrl-C) drains the requests in flight and exits 0.
///
/// Routes: /v1/whoami, /oauth2/introspect, /v1/authz, /v1/deployments, /v1/history,
/// /v1/agents, /.well-known/jwks.json, /.well-known/oauth-authorization-server,
/// /v1/hooks/{github,gitlab,generic}, /healthz, /readyz, /metrics, and /openapi.json, which
/// describes them all; and the web page for people: / (the snapshot), /agents/AGENT (its page,
/// timeline and history), /agents/AGENT/deployments (its tokens).
///
/// With --proposals, a signed-in visitor gets controls on the page: promote, set a version,
/// roll back, revoke a token. Each shows the exact diff and the policy's verdict first, then
/// becomes a branch `ledgit/...` with one commit authored by that person (the tracked branch
/// and the work tree are never touched), pushed with --push REMOTE, with a link to open its
/// pull request. Visitors sign in one of three ways: the operator secret (LEDGIT_UI_SECRET;
/// the commit is then authored by the server's git identity); OpenID Connect (--oidc-issuer,
/// with LEDGIT_OIDC_CLIENT_ID and LEDGIT_OIDC_CLIENT_SECRET, and who may sign in by
/// --oidc-allowed-domain or --oidc-allowed-group); or a proxy in front that signs people in and
/// names them in a header (--auth-proxy-header, believed only from --trusted-proxy).
///
/// Secrets come from the environment, never from arguments, each at least 16 bytes:
/// LEDGIT_HOOK_SECRET signs GitHub and generic webhooks, LEDGIT_GITLAB_TOKEN is GitLab's token
/// (a different value: GitLab sends it in clear), LEDGIT_INTROSPECTION_SECRET authenticates
/// callers of /oauth2/introspect (as a bearer token, or with HTTP Basic and the client id in
/// LEDGIT_INTROSPECTION_CLIENT_ID), LEDGIT_UI_SECRET signs people in to the page. Without them
/// those routes refuse every request. An address that fails a secret 10 times in a minute is
/// answered 429 until its minute is over.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit serve
  ledgit serve --listen 0.0.0.0:8080 --fetch origin --interval 1m --audience gateway
  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/v1/whoami
  LEDGIT_UI_SECRET=... ledgit serve --proposals --push origin
  LEDGIT_OIDC_CLIENT_ID=ledgit LEDGIT_OIDC_CLIENT_SECRET=... ledgit serve --proposals \\
    --public-url https://ledgit.example.com --oidc-issuer https://id.example.com \\
    --oidc-allowed-domain example.com
  ledgit serve --proposals --auth-proxy-header X-Forwarded-Email --trusted-proxy 127.0.0.1")]
pub struct Args {
    /// The address to listen on (loopback unless you say otherwise).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,

    /// The branch to serve (default: the checked-out branch).
    #[arg(long, value_name = "BRANCH")]
    rev: Option<String>,

    /// Fetch REMOTE every --interval and on verified pushes, and serve REMOTE's branch.
    #[arg(long, value_name = "REMOTE")]
    fetch: Option<String>,

    /// How often to fetch (with --fetch) and to re-check the branch in any case.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = super::render::duration_arg)]
    interval: Duration,

    /// Accept only tokens issued for this audience (`ledgit token issue --audience AUD`).
    #[arg(long, value_name = "AUD")]
    audience: Option<String>,

    /// The URL clients reach this server at, for the OAuth metadata and, when https, the
    /// session cookie's Secure flag (default: from --listen).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,

    /// The reconciler's state store to show sync states, applied versions and leases from: a
    /// path (default: under the repository's git directory) or a postgres:// URL shared by the
    /// replicas (`reconcile --help` says how it is completed from PG* variables).
    #[arg(
        long,
        value_name = "PATH|URL",
        env = "LEDGIT_STATE",
        hide_env_values = true
    )]
    state: Option<String>,

    /// No access log on stderr.
    #[arg(long)]
    quiet: bool,

    /// Let signed-in visitors of the web page propose changes (needs a way to sign in:
    /// LEDGIT_UI_SECRET, --oidc-issuer or --auth-proxy-header).
    #[arg(long)]
    proposals: bool,

    /// Sign visitors in with this OpenID Provider (authorization code with PKCE); the client
    /// comes from LEDGIT_OIDC_CLIENT_ID and LEDGIT_OIDC_CLIENT_SECRET, and its redirect URI is
    /// PUBLIC_URL/signin/oidc/callback.
    #[arg(long, value_name = "URL", requires = "proposals")]
    oidc_issuer: Option<String>,

    /// With --oidc-issuer: people whose verified address is in DOMAIN may sign in (repeat it).
    #[arg(long, value_name = "DOMAIN", requires = "oidc_issuer")]
    oidc_allowed_domain: Vec<String>,

    /// With --oidc-issuer: members of GROUP (in the groups claim) may sign in (repeat it).
    #[arg(long, value_name = "GROUP", requires = "oidc_issuer")]
    oidc_allowed_group: Vec<String>,

    /// The claim that lists a person's groups.
    #[arg(
        long,
        value_name = "CLAIM",
        default_value = "groups",
        requires = "oidc_issuer"
    )]
    oidc_groups_claim: String,

    /// A proxy in front signs people in and names them (an email address) in this header, as
    /// oauth2-proxy's X-Forwarded-Email; believed only from --trusted-proxy addresses.
    #[arg(long, value_name = "HEADER", requires_all = ["proposals", "trusted_proxy"])]
    auth_proxy_header: Option<String>,

    /// The addresses (or CIDR blocks) of proxies in front (repeat it): their X-Forwarded-For
    /// names the client whose failed secrets are counted, and --auth-proxy-header is believed
    /// only from them.
    #[arg(long, value_name = "CIDR")]
    trusted_proxy: Vec<ledgit::server::Cidr>,

    /// The most connections held open at once; when full, the connection furthest behind on
    /// its client (idle, or a body that stalls) is closed to make room for a new one.
    #[arg(long, value_name = "N", default_value_t = ledgit::server::MAX_CONNECTIONS, value_parser = clap::value_parser!(usize))]
    max_connections: usize,

    /// Push each proposal's branch to REMOTE with your git (its credentials and config).
    #[arg(long, value_name = "REMOTE", requires = "proposals")]
    push: Option<String>,

    /// The host's address for pull requests: the link to open a proposal's ({branch} and {base}
    /// are replaced), from which the page also links merged ones by number (GitHub's
    /// /compare/ and GitLab's /-/merge_requests/new are understood; or write {number}). Default:
    /// GitHub's, when the --push remote is on GitHub.
    #[arg(long, value_name = "TEMPLATE")]
    pull_request_url: Option<String>,
}

fn secret(name: &str) -> Option<Vec<u8>> {
    std::env::var_os(name)
        .map(|v| v.into_encoded_bytes())
        .filter(|v| !v.is_empty())
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let ui_secret = secret("LEDGIT_UI_SECRET");
    if args.proposals
        && ui_secret.is_none()
        && args.oidc_issuer.is_none()
        && args.auth_proxy_header.is_none()
    {
        return Err(CliError::new(
            "--proposals needs a way to sign in: the operator secret in LEDGIT_UI_SECRET, --oidc-issuer, or --auth-proxy-header",
            "set LEDGIT_UI_SECRET to a long random string (visitors sign in with it)",
        ));
    }
    let oidc = match args.oidc_issuer {
        None => None,
        Some(issuer) => {
            let client_id = std::env::var("LEDGIT_OIDC_CLIENT_ID")
                .ok()
                .filter(|v| !v.is_empty());
            let client_secret = secret("LEDGIT_OIDC_CLIENT_SECRET");
            let (Some(client_id), Some(client_secret)) = (client_id, client_secret) else {
                return Err(CliError::new(
                    "--oidc-issuer needs the client's id and secret in LEDGIT_OIDC_CLIENT_ID and LEDGIT_OIDC_CLIENT_SECRET",
                    "register ledgit with the provider as a confidential client whose redirect URI is PUBLIC_URL/signin/oidc/callback",
                ));
            };
            Some(ledgit::server::OidcOptions {
                issuer,
                client_id,
                client_secret,
                allowed_domains: args.oidc_allowed_domain,
                allowed_groups: args.oidc_allowed_group,
                groups_claim: args.oidc_groups_claim,
            })
        }
    };
    let auth_proxy = match args.auth_proxy_header {
        None => None,
        Some(h) => Some(
            ledgit::server::deps::axum::http::HeaderName::try_from(h.as_str()).map_err(|_| {
                CliError::new(
                    format!("--auth-proxy-header `{h}` is not a header name"),
                    "write it as the proxy sends it, e.g. X-Forwarded-Email",
                )
            })?,
        ),
    };
    let repo = ctx.repo()?;
    let tracked = repo.tracked_ref(args.rev.as_deref(), args.fetch.as_deref());
    let branch = match &args.rev {
        Some(r) => r.trim_start_matches("refs/heads/").to_string(),
        None => repo.current_branch().unwrap_or_else(|| "HEAD".into()),
    };
    let path = repo
        .workdir()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| repo.git.path().to_path_buf());
    let options = ledgit::server::Options {
        repo: path,
        listen: args.listen,
        tracked,
        branch,
        fetch: args.fetch,
        interval: args.interval,
        audience: args.audience,
        public_url: args
            .public_url
            .unwrap_or_else(|| format!("http://{}", args.listen)),
        hook_secret: secret("LEDGIT_HOOK_SECRET"),
        gitlab_token: secret("LEDGIT_GITLAB_TOKEN"),
        introspection_secret: secret("LEDGIT_INTROSPECTION_SECRET"),
        introspection_client_id: std::env::var("LEDGIT_INTROSPECTION_CLIENT_ID")
            .ok()
            .filter(|v| !v.is_empty()),
        quiet: args.quiet,
        proposals: args.proposals,
        ui_secret,
        oidc,
        auth_proxy,
        trusted_proxies: args.trusted_proxy,
        max_connections: args.max_connections,
        push: args.push,
        pull_request_url: args.pull_request_url,
        state: args
            .state
            .as_deref()
            .map(|s| ledgit::reconcile::state::Location::parse(s, &ctx.dir)),
        log: ledgit::server::Log::new(|line| eprintln!("{line}")),
    };
    ledgit::server::run(options).map_err(|e| CliError::new(e.to_string(), e.hint()))?;
    Ok(Outcome::Clean)
}
