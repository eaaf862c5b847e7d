//! `ledgit token`: issue, verify, inspect and revoke deployment tokens.

use std::io::{Read, Write};
use std::path::PathBuf;

use ledgit::git::repo::short;
use ledgit::model::Deployment;
use ledgit::model::config::Config;
use ledgit::model::ledger;
use ledgit::model::revocations;
use ledgit::support::when;
use ledgit::token::{self, SigningKey, Verifier, workflow};

use super::command_error::{CliError, CliResult, Outcome};
use super::context::Context;
use super::context::current;
use super::render::{self, BOLD, GREEN, RED, TextOrJson, YELLOW};

/// Issue, verify, inspect and revoke deployment tokens.
///
/// A deployment token is a JWT signed with Ed25519 (alg EdDSA) and scoped to one record: one
/// agent in one environment. It stays valid while that record exists at the tip of the tracked
/// branch with the same generation, its key is listed in ledgit.yaml, it has not expired and
/// its id (jti) is not in revocations.yaml. Updating the version keeps it valid.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Issue(IssueArgs),
    Verify(VerifyArgs),
    Inspect(InspectArgs),
    Revoke(RevokeArgs),
    List(ListArgs),
}

/// Sign a token for one record and print it (alone) on stdout.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit token issue support-bot production --key ~/.config/ledgit/signing.pem --ttl 30d
  LEDGIT_SIGNING_KEY=/run/secrets/ledgit.pem ledgit token issue support-bot staging")]
pub struct IssueArgs {
    agent: String,
    environment: String,

    /// The private key (PKCS#8, as written by `ledgit keys generate`).
    #[arg(
        long,
        env = "LEDGIT_SIGNING_KEY",
        value_name = "PATH",
        hide_env_values = true
    )]
    key: PathBuf,

    /// Lifetime, such as 30d or 12h (default: no expiry).
    #[arg(long, value_name = "DURATION", value_parser = super::render::seconds_arg)]
    ttl: Option<i64>,

    /// The branch or commit whose tip the token is tied to (default HEAD).
    #[arg(long, value_name = "REV")]
    rev: Option<String>,

    /// The audience the token is for (the `aud` claim); `ledgit serve --audience AUD` then
    /// admits it, and a server with another audience refuses it.
    #[arg(long, value_name = "AUD")]
    audience: Option<String>,

    /// A name for the token in the ledger (what it is for: "ci deploy", "gateway").
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// Do not record the token in tokens.yaml (the ledger is written whenever there is a work
    /// tree).
    #[arg(long)]
    no_ledger: bool,
}

/// List the tokens of the ledger (tokens.yaml) with each one's status.
///
/// The status is judged against the tip of the branch (HEAD, or --rev): active, expired,
/// revoked (its id is in revocations.yaml), stale (its record was deleted or re-created since)
/// or key-removed (its key is no longer in ledgit.yaml). The ledger is read from the work tree
/// when there is one (tokens just issued are listed before they are committed), else from the
/// commit.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit token list
  ledgit token list support-bot production --format json")]
pub struct ListArgs {
    /// Only this agent's tokens.
    agent: Option<String>,
    /// Only this environment's (with AGENT).
    environment: Option<String>,

    /// Judge the statuses at this branch or commit (default HEAD).
    #[arg(long, value_name = "REV")]
    rev: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

/// Verify a token: signature, algorithm, key, expiry, record identity and revocation.
///
/// Exit 0 when valid, 1 when not (with the precise reason), 2 when it could not run.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit token verify \"$TOKEN\"
  printf %s \"$TOKEN\" | ledgit token verify --format json")]
pub struct VerifyArgs {
    /// The token; `-` or nothing reads it from standard input.
    token: Option<String>,

    /// The branch or commit to verify against (default HEAD).
    #[arg(long, value_name = "REV")]
    rev: Option<String>,

    /// Require the token to be issued for this audience (as `ledgit serve --audience` does).
    #[arg(long, value_name = "AUD")]
    audience: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

/// Decode a token's header and claims WITHOUT verifying them.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  ledgit token inspect \"$TOKEN\"")]
pub struct InspectArgs {
    /// The token; `-` or nothing reads it from standard input.
    token: Option<String>,
}

/// Revoke a token by its id (jti): adds it to revocations.yaml in the work tree.
///
/// Commit the change and merge it like any other: `ledgit token verify` reads the revocation
/// list from the tip of the tracked branch.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  ledgit token revoke 3f2a9c0d5b7e41a8b1c2d3e4f5a6b7c8 --reason \"leaked in a build log\""
)]
pub struct RevokeArgs {
    /// The token id (the jti claim; `ledgit token inspect` shows it).
    jti: String,

    /// Why (kept in the file for the audit).
    #[arg(long, value_name = "REASON")]
    reason: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    match args.command {
        Command::Issue(a) => issue(ctx, a),
        Command::Verify(a) => verify(ctx, a),
        Command::Inspect(a) => inspect(a),
        Command::Revoke(a) => revoke(ctx, a),
        Command::List(a) => list(ctx, a),
    }
}

/// The token from the argument or standard input, read with a bound.
fn read_token(arg: Option<String>) -> Result<String, CliError> {
    match arg.as_deref() {
        Some("-") | None => {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(token::MAX_TOKEN_LEN as u64 + 1)
                .read_to_end(&mut buf)
                .map_err(|e| {
                    CliError::new(
                        format!("reading standard input: {e}"),
                        "pass the token as an argument",
                    )
                })?;
            Ok(String::from_utf8_lossy(&buf).trim().to_string())
        }
        Some(t) => Ok(t.to_string()),
    }
}

fn issue(ctx: &Context, args: IssueArgs) -> CliResult {
    let key_path = ctx.dir.join(&args.key);
    let bytes = std::fs::read(&key_path).map_err(|e| {
        CliError::new(
            format!("{}: {e}", key_path.display()),
            "pass --key PATH or set LEDGIT_SIGNING_KEY to the private key file",
        )
    })?;
    let key = SigningKey::from_bytes(&bytes)?;
    let (config, rows) = current(ctx, args.rev.as_deref())?;
    let issued = workflow::issue_for(
        &key,
        &config,
        &rows,
        workflow::Request {
            agent: &args.agent,
            environment: &args.environment,
            ttl: args.ttl,
            audience: args.audience,
        },
        chrono::Utc::now().timestamp(),
    )?;
    let claims = &issued.claims;
    let expiry = claims.exp.map_or("no expiry".to_string(), |e| {
        format!("expires {}", when::rfc3339(e))
    });
    eprintln!(
        "issued token {} for {} (generation {}, key {}, {expiry})",
        claims.jti,
        claims.sub,
        short(claims.generation.parse().unwrap_or(git2::Oid::ZERO_SHA1)),
        issued.kid
    );
    let mut out = render::plain_stdout();
    writeln!(out, "{}", issued.token)?;
    out.flush()?;
    let repo = ctx.repo()?;
    if let (Some(root), false) = (repo.workdir(), args.no_ledger) {
        workflow::record(root, &issued, args.name, workflow::issued_by(&repo.git)).map_err(
            |e| {
                CliError::new(
                    format!("{e} (the token above is valid but not in the ledger)"),
                    e.hint()
                        .map(|h| format!("{h}, or issue with --no-ledger"))
                        .unwrap_or_else(|| "issue with --no-ledger".into()),
                )
            },
        )?;
        eprintln!(
            "recorded in {}; commit it so that the inventory lives in git",
            ledger::FILE_NAME
        );
    }
    Ok(Outcome::Clean)
}

/// One row of `token list`.
#[derive(serde::Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    entry: &'a ledger::Entry,
    status: token::Status,
}

fn list(ctx: &Context, args: ListArgs) -> CliResult {
    let repo = ctx.repo()?;
    let tip = super::context::tip_of(ctx, args.rev.as_deref())?;
    let (_, verifier) =
        ledgit::git::load::verifier(repo, tip, &mut super::context::progress_bar())?;
    let book = match (repo.workdir(), &args.rev, tip) {
        (Some(root), None, _) => {
            ledgit::support::fsutil::read_optional(&root.join(ledger::FILE_NAME))
                .map_err(|e| {
                    CliError::new(
                        format!("{}: {e}", ledger::FILE_NAME),
                        "check the file's permissions",
                    )
                })?
                .map(|text| ledger::read(ledger::FILE_NAME, &text))
                .unwrap_or_default()
        }
        (_, _, Some(commit)) => ledgit::git::load::ledger(repo, commit)?,
        (_, _, None) => ledger::Ledger::default(),
    };
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<Listed> = book
        .entries
        .iter()
        .filter(|e| args.agent.as_ref().is_none_or(|a| *a == e.agent))
        .filter(|e| {
            args.environment
                .as_ref()
                .is_none_or(|x| *x == e.environment)
        })
        .map(|entry| Listed {
            entry,
            status: token::status(entry, &verifier, now),
        })
        .collect();
    let mut out = render::stdout();
    if args.format == TextOrJson::Json {
        render::json(&mut out, &rows)?;
    } else if rows.is_empty() {
        writeln!(
            out,
            "no tokens in {}{}",
            ledger::FILE_NAME,
            if book.findings.is_empty() {
                ""
            } else {
                " that read whole (`ledgit validate` shows its findings)"
            }
        )?;
    } else {
        let mut table = vec![vec![
            "TOKEN".to_string(),
            "DEPLOYMENT".into(),
            "NAME".into(),
            "STATUS".into(),
            "EXPIRES".into(),
            "ISSUED".into(),
        ]];
        for r in &rows {
            let e = r.entry;
            table.push(vec![
                e.jti.chars().take(12).collect(),
                format!("{}/{}", e.agent, e.environment),
                e.name.clone().unwrap_or_else(|| "-".into()),
                r.status.as_str().into(),
                e.expires_at
                    .map_or("never".into(), |x| when::relative(x, now)),
                format!("{} by {}", when::rfc3339(e.issued_at), e.issued_by),
            ]);
        }
        render::table(&mut out, &table)?;
    }
    Ok(Outcome::Clean)
}

/// Everything a verification needs, read from one commit (see [`ledgit::git::load::verifier`]).
pub fn verifier(
    ctx: &Context,
    rev: Option<&str>,
) -> Result<(Config, Vec<Deployment>, Verifier), CliError> {
    let tip = super::context::tip_of(ctx, rev)?;
    let (current, verifier) =
        ledgit::git::load::verifier(ctx.repo()?, tip, &mut super::context::progress_bar())?;
    Ok((current.config, current.rows, verifier))
}

fn verify(ctx: &Context, args: VerifyArgs) -> CliResult {
    let token = read_token(args.token)?;
    let (_, _, verifier) = verifier(ctx, args.rev.as_deref())?;
    let verifier = verifier.require_audience(args.audience);
    let now = chrono::Utc::now().timestamp();
    let result = verifier.verify(&token, now);
    let mut out = render::stdout();
    let (valid, reason, claims, version) = match &result {
        Ok(v) => (true, None, Some(&v.claims), Some(v.version.as_str())),
        Err(e) => (false, Some(&e.reason), e.claims.as_deref(), None),
    };
    if args.format == TextOrJson::Json {
        render::json(
            &mut out,
            &serde_json::json!({
                "valid": valid,
                "reason": reason.map(|r| r.to_string()),
                "code": reason.map(|r| r.code()),
                "agent": claims.map(|c| &c.agent),
                "environment": claims.map(|c| &c.environment),
                "version": version,
                "generation": claims.map(|c| &c.generation),
                "jti": claims.map(|c| &c.jti),
                "expires_at": claims.and_then(|c| c.exp).map(when::rfc3339),
            }),
        )?;
    } else {
        match &result {
            Ok(v) => writeln!(
                out,
                "{GREEN}valid{GREEN:#}: {BOLD}{}{BOLD:#} version {} (generation {}, token {}, {})",
                v.claims.sub,
                v.version,
                &v.claims.generation[..12.min(v.claims.generation.len())],
                v.claims.jti,
                v.claims.exp.map_or("no expiry".to_string(), |e| format!(
                    "expires {}",
                    when::rfc3339(e)
                ))
            )?,
            Err(e) => {
                let which = e
                    .claims
                    .as_ref()
                    .map(|c| format!(" (token {})", c.jti))
                    .unwrap_or_default();
                writeln!(out, "{RED}invalid{RED:#}: {}{which}", e.reason)?
            }
        }
    }
    Ok(if valid {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

fn inspect(args: InspectArgs) -> CliResult {
    let token = read_token(args.token)?;
    let decoded = token::inspect(&token).map_err(|e| {
        CliError::new(
            e.to_string(),
            "pass a token as printed by `ledgit token issue`",
        )
    })?;
    anstream::eprintln!(
        "{YELLOW}note{YELLOW:#}: decoded only; nothing here is verified (use `ledgit token verify`)"
    );
    render::json(
        &mut render::plain_stdout(),
        &serde_json::json!({"verified": false, "header": decoded.header, "claims": decoded.claims}),
    )?;
    Ok(Outcome::Clean)
}

fn revoke(ctx: &Context, args: RevokeArgs) -> CliResult {
    let repo = ctx.repo()?;
    let root = repo.require_workdir()?;
    let now = chrono::Utc::now().timestamp();
    let mut out = render::stdout();
    match workflow::revoke(&root, &args.jti, args.reason, now)? {
        workflow::Revocation::Already => {
            writeln!(out, "token {} is already revoked", args.jti)?;
        }
        workflow::Revocation::Revoked => writeln!(
            out,
            "{GREEN}revoked{GREEN:#} token {} in {}; commit it and merge it: verification reads the list at the tip of the branch",
            args.jti,
            revocations::FILE_NAME
        )?,
    }
    Ok(Outcome::Clean)
}
