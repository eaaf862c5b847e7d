//! `ledgit reconcile`, `ledgit watch` and `ledgit journal`: apply the tracked branch to the
//! platform through an actuator, once or continuously, and show the apply journal.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ledgit::git::repo::{Repo, short};
use ledgit::receipt::Writer;
use ledgit::reconcile::actuator::Actuator;
use ledgit::reconcile::controller::{Event, Follow, Reconciler, Settings};
use ledgit::reconcile::lease;
use ledgit::reconcile::pass::{self, Pass, repository_id};
use ledgit::reconcile::state::{self, JournalResult, Location};
use ledgit::reconcile::{Attempt, Plan};
use ledgit::token::SigningKey;

use super::command_error::{CliError, CliResult, Outcome};
use super::context::Context;
use super::context::current_full;
use super::render::{self, BOLD, DIM, GREEN, RED, TextOrJson, YELLOW, duration_arg};

/// Options shared by `reconcile` and `watch`.
#[derive(clap::Args)]
pub struct Common {
    /// Run CMD once per action (split into words; no shell unless you write `sh -c '...'`).
    /// The action is in LEDGIT_ACTION, LEDGIT_AGENT, LEDGIT_ENVIRONMENT, LEDGIT_VERSION,
    /// LEDGIT_PREVIOUS_VERSION, LEDGIT_COMMIT, LEDGIT_GENERATION, LEDGIT_IDEMPOTENCY_KEY.
    /// Exit 0 means applied.
    #[arg(long, value_name = "CMD", conflicts_with = "webhook")]
    exec: Option<String>,

    /// POST each action as JSON to URL, signed with HMAC-SHA256 of the body in
    /// X-Ledgit-Signature (secret from LEDGIT_WEBHOOK_SECRET). 2xx means applied.
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,

    /// Only these environments (repeatable).
    #[arg(long = "environment", visible_alias = "env", value_name = "ENV")]
    environments: Vec<String>,

    /// The branch to track (default: the checked-out branch).
    #[arg(long, value_name = "REV")]
    rev: Option<String>,

    /// The state store: a path to an SQLite file (default: under the repository's git
    /// directory), or postgres://USER@HOST/DB for replicas that share it (libpq's PG*
    /// variables and ~/.pgpass fill in what the URL leaves out).
    #[arg(
        long,
        value_name = "PATH|URL",
        env = "LEDGIT_STATE",
        hide_env_values = true
    )]
    state: Option<String>,

    /// With a shared store: how long an environment's lease lives without renewal (renewed
    /// every third of it). A follower takes over this long after its leader stops.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = duration_arg)]
    lease_ttl: Duration,

    /// Sign a receipt for every applied action with this reconciler key (PKCS#8, from `ledgit
    /// keys generate --reconciler ID`) and attach it to the applied commit as a git note under
    /// refs/notes/ledgit/applied. Without it, no receipts are written.
    #[arg(
        long,
        value_name = "PATH",
        env = "LEDGIT_RECONCILER_KEY",
        hide_env_values = true
    )]
    signing_key: Option<std::path::PathBuf>,

    /// Push the receipts' notes to REMOTE after each pass (a rejected push fetches the
    /// remote's receipts, merges them and pushes again).
    #[arg(long, value_name = "REMOTE", requires = "signing_key")]
    push_receipts: Option<String>,

    /// Also run removals (otherwise removed records are reported out of sync).
    #[arg(long)]
    prune: bool,

    /// Print the plan and apply nothing.
    #[arg(long)]
    dry_run: bool,

    /// Plan even where the tip does not contain the commit last applied in an environment (a
    /// branch rewritten on purpose). Without it such an environment is held: an older fetch
    /// must never roll the platform back.
    #[arg(long)]
    allow_rewind: bool,

    /// How long one action may take before it is killed and recorded as failed.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration_arg)]
    timeout: Duration,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

/// Apply the tracked branch to the platform, once.
///
/// Compares the records at the tip of the tracked branch with what the state store says was
/// applied, and runs the difference through the actuator: deploy, update, and (with --prune)
/// remove. Every attempt is journaled (`ledgit journal`). An action is recorded as applied only
/// after the actuator succeeded; if ledgit dies in between, the action runs again on the next
/// pass (at-least-once: actuators get LEDGIT_IDEMPOTENCY_KEY to recognise a repeat). A record
/// that does not validate at the tip is left alone and reported; the others still apply.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit reconcile --exec ./deploy.sh --dry-run
  ledgit reconcile --exec 'kubectl-apply-agent --agent \"$LEDGIT_AGENT\"' --environment production
  LEDGIT_WEBHOOK_SECRET=... ledgit reconcile --webhook https://platform.example/hooks/ledgit --prune

Exit codes: 0 every action applied, 1 some failed (the others still ran) or a record does not
validate, 2 could not run (including: another reconciler holds the state store).")]
pub struct ReconcileArgs {
    #[command(flatten)]
    common: Common,
}

/// Reconcile continuously: as soon as the tracked branch moves, and every --interval.
///
/// Watches the git directory for the branch's ref to move (a commit, a merge, a fetch, `git
/// pack-refs`), reconciles within milliseconds, and resyncs every --interval. Failed actions are
/// retried with exponential backoff (1 s, 2 s, 4 s, ... up to 5 min). SIGINT or SIGTERM
/// finishes the action in flight, then exits cleanly.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit watch --exec ./deploy.sh
  ledgit watch --webhook https://platform.example/hooks/ledgit --fetch origin --interval 1m")]
pub struct WatchArgs {
    #[command(flatten)]
    common: Common,

    /// Resync (and fetch) at least this often.
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = duration_arg)]
    interval: Duration,

    /// Run `git fetch REMOTE` every interval and track REMOTE's branch.
    #[arg(long, value_name = "REMOTE")]
    fetch: Option<String>,
}

/// Show the apply journal: every attempt, with time, action, commit, result and duration.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  ledgit journal\n  ledgit journal --limit 500 --format json")]
pub struct JournalArgs {
    /// The state store: a path, or a postgres:// URL (see `reconcile --help`).
    #[arg(
        long,
        value_name = "PATH|URL",
        env = "LEDGIT_STATE",
        hide_env_values = true
    )]
    state: Option<String>,

    /// How many of the newest attempts.
    #[arg(long, value_name = "N", default_value_t = 50)]
    limit: usize,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

fn actuator(common: &Common) -> Result<Option<Actuator>, CliError> {
    match (&common.exec, &common.webhook) {
        (Some(cmd), _) => Ok(Some(Actuator::exec(cmd)?)),
        (None, Some(url)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(CliError::new(
                    format!("`{url}` is not an http(s) URL"),
                    "pass --webhook https://...",
                ));
            }
            let secret = std::env::var("LEDGIT_WEBHOOK_SECRET")
                .ok()
                .map(String::into_bytes);
            if secret.is_none() {
                eprintln!(
                    "warning: LEDGIT_WEBHOOK_SECRET is not set; webhook requests are not signed"
                );
            }
            Ok(Some(Actuator::Webhook {
                url: url.clone(),
                secret,
            }))
        }
        (None, None) if common.dry_run => Ok(None),
        (None, None) => Err(CliError::new(
            "no actuator",
            "pass --exec CMD or --webhook URL (or --dry-run to see the plan)",
        )),
    }
}

/// The state store: `--state` (a path relative to `-C`, or a URL), or the default file under
/// the git directory.
pub(super) fn location(repo: &Repo, state: Option<&str>, ctx: &Context) -> Location {
    match state {
        Some(s) => Location::parse(s, &ctx.dir),
        None => Location::Sqlite(state::default_path(repo.git.commondir())),
    }
}

/// The reconciler's settings from the command line.
fn settings(ctx: &Context, repo: &Repo, common: &Common) -> Settings {
    Settings {
        location: location(repo, common.state.as_deref(), ctx),
        pass: pass::Options {
            environments: common.environments.clone(),
            prune: common.prune,
            timeout: common.timeout,
            respect_backoff: false,
            allow_rewind: common.allow_rewind,
        },
        lease_ttl: common.lease_ttl,
        dry_run: common.dry_run,
    }
}

/// The receipt writer of `--signing-key`, or a note that no receipts are written.
fn writer(ctx: &Context, common: &Common) -> Result<Option<Writer>, CliError> {
    if common.dry_run {
        return Ok(None);
    }
    let Some(path) = &common.signing_key else {
        anstream::eprintln!(
            "{DIM}note: no --signing-key: applied actions get no signed receipts{DIM:#}"
        );
        return Ok(None);
    };
    let path = ctx.dir.join(path);
    let bytes = std::fs::read(&path).map_err(|e| {
        CliError::new(
            format!("cannot read the signing key {}: {e}", path.display()),
            "pass the file written by `ledgit keys generate --reconciler ID`",
        )
    })?;
    let key = SigningKey::from_bytes(&bytes)?;
    let repo = ctx.repo()?;
    Ok(Some(Writer::new(
        repo.git.path(),
        key,
        common.push_receipts.clone(),
    )?))
}

fn print_events(events: &[lease::Event]) {
    let mut err = anstream::stderr().lock();
    for event in events {
        let _ = match event {
            lease::Event::Leading { environment, epoch } => {
                writeln!(err, "{GREEN}leading{GREEN:#} {environment} (epoch {epoch})")
            }
            lease::Event::Following { environment } => writeln!(
                err,
                "{YELLOW}following{YELLOW:#} {environment}: another replica leads it"
            ),
            lease::Event::Trouble { message } => {
                writeln!(
                    err,
                    "{YELLOW}warning{YELLOW:#}: cannot renew leases: {message}"
                )
            }
        };
    }
}

/// Says what the reconciler reports: plans and attempts on stdout in text (each pass as a JSON
/// line in `watch --format json`), the rest on stderr.
fn render(event: Event, format: TextOrJson, json_passes: bool) {
    let text = format == TextOrJson::Text;
    let mut out = render::stdout();
    let _ = match event {
        Event::Watching { tracked, interval } => writeln!(
            out,
            "{BOLD}watching{BOLD:#} {tracked} (resync every {})",
            ledgit::support::when::format_duration(interval.as_secs() as i64)
        ),
        Event::Leases(events) => {
            print_events(events);
            Ok(())
        }
        Event::Planned(plan) if text => print_plan(&mut out, plan),
        Event::Attempted(a) if text => print_attempt(&mut out, a),
        Event::Passed(p) if json_passes && !text => serde_json::to_writer(&mut out, p)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        Event::UnlistedKey { public_key } => {
            anstream::eprintln!(
                "{YELLOW}warning{YELLOW:#}: the signing key ({public_key}) is not listed under `reconcilers:` in ledgit.yaml: its receipts will not verify"
            );
            Ok(())
        }
        Event::ReceiptsWaiting(e) => {
            anstream::eprintln!(
                "{YELLOW}warning{YELLOW:#}: receipts: {e}; they stay in the journal and are written at the next pass"
            );
            Ok(())
        }
        Event::Deposed(env) => {
            anstream::eprintln!(
                "{YELLOW}deposed{YELLOW:#}: another replica leads {env} now; its remaining actions are left to it"
            );
            Ok(())
        }
        Event::FetchFailed(e) => {
            anstream::eprintln!("{YELLOW}warning{YELLOW:#}: {e}; using what is here");
            Ok(())
        }
        Event::StoreUnavailable { error, retry_in } => {
            anstream::eprintln!(
                "{RED}error{RED:#}: {error}; trying again in {}s",
                retry_in.as_secs()
            );
            Ok(())
        }
        Event::PassFailed(e) => {
            anstream::eprintln!("{RED}error{RED:#}: {e}");
            Ok(())
        }
        _ => Ok(()),
    };
}

fn print_plan(out: &mut dyn Write, plan: &Plan) -> std::io::Result<()> {
    for f in &plan.findings {
        render::finding_text(out, f)?;
    }
    let n = plan.actions.len();
    writeln!(
        out,
        "{BOLD}plan at {}{BOLD:#}: {n} action{}{}",
        &plan.commit[..12.min(plan.commit.len())],
        if n == 1 { "" } else { "s" },
        if plan.out_of_sync.is_empty() {
            String::new()
        } else {
            format!(
                ", {} removal(s) out of sync (--prune runs them)",
                plan.out_of_sync.len()
            )
        }
    )?;
    for a in plan.actions.iter().chain(&plan.out_of_sync) {
        let what = match (&a.previous_version, &a.version) {
            (Some(p), Some(v)) => format!("{p} -> {v}"),
            (None, Some(v)) => v.clone(),
            (Some(p), None) => format!("(was {p})"),
            (None, None) => String::new(),
        };
        writeln!(
            out,
            "  {:7} {}/{} {what}",
            a.action.as_str(),
            a.agent,
            a.environment
        )?;
    }
    for h in &plan.held {
        writeln!(
            out,
            "  {YELLOW}held{YELLOW:#}    {}: {} {} was applied there from {}, which {} does not contain; nothing is planned there until the tip does (fetch and wait; a branch rewritten on purpose: --allow-rewind)",
            h.environment,
            h.agent,
            h.version,
            &h.applied_commit[..12.min(h.applied_commit.len())],
            &plan.commit[..12.min(plan.commit.len())],
        )?;
    }
    Ok(())
}

fn print_attempt(out: &mut dyn Write, a: &Attempt) -> std::io::Result<()> {
    let target = format!(
        "{}/{} {}",
        a.action.agent,
        a.action.environment,
        a.action.version.as_deref().unwrap_or("")
    );
    match &a.error {
        None => writeln!(
            out,
            "{GREEN}applied{GREEN:#} {:7} {target} {DIM}({} ms){DIM:#}",
            a.action.action.as_str(),
            a.duration_ms
        ),
        Some(e) => writeln!(
            out,
            "{RED}failed{RED:#}  {:7} {target}: {e} {DIM}({} ms){DIM:#}",
            a.action.action.as_str(),
            a.duration_ms
        ),
    }
}

fn outcome(p: &Pass) -> Outcome {
    Outcome::from_findings(p.failed())
}

pub fn reconcile(ctx: &Context, args: ReconcileArgs) -> CliResult {
    let common = &args.common;
    let actuator = actuator(common)?;
    let repo = ctx.repo()?;
    let name = repo.tracked_ref(common.rev.as_deref(), None);
    let Some(tip) = repo.resolve_tracked(&name) else {
        return Err(CliError::new(
            format!("`{name}` does not name a commit"),
            "commit the records first, or pass --rev",
        ));
    };
    let current = current_full(ctx, Some(&tip.to_string()))?;
    let writer = writer(ctx, common)?;
    let mut reconciler = Reconciler::new(settings(ctx, repo, common), actuator, writer);
    print_events(&reconciler.open(&current)?);
    let stop = AtomicBool::new(false);
    let p = reconciler.pass(repo, &current, &stop, false, &mut |e| {
        render(e, common.format, false)
    })?;
    for env in reconciler.led_elsewhere(&current) {
        anstream::eprintln!(
            "{YELLOW}note{YELLOW:#}: {env} is led by another replica; `ledgit leases` shows which"
        );
    }
    reconciler.stop();
    let mut out = render::stdout();
    if common.format == TextOrJson::Json {
        render::json(&mut out, &p)?;
    } else if !common.dry_run {
        let failed = p.attempts.iter().filter(|a| a.error.is_some()).count();
        write!(
            out,
            "{} applied, {failed} failed",
            p.attempts.len() - failed
        )?;
        match p.receipts {
            Some(n) => writeln!(
                out,
                "; {n} receipt{} signed into {}",
                if n == 1 { "" } else { "s" },
                ledgit::receipt::NOTES_REF
            )?,
            None => writeln!(out)?,
        }
    }
    Ok(outcome(&p))
}

pub fn watch(ctx: &Context, args: WatchArgs) -> CliResult {
    let common = &args.common;
    let actuator = actuator(common)?;
    let repo = ctx.repo()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::SeqCst)).map_err(
            |e| {
                CliError::new(
                    format!("cannot handle signals: {e}"),
                    "run ledgit in a normal process",
                )
            },
        )?;
    }
    let follow = Follow {
        tracked: repo.tracked_ref(common.rev.as_deref(), args.fetch.as_deref()),
        fetch: args.fetch.clone(),
        interval: args.interval,
    };
    let writer = writer(ctx, common)?;
    let mut reconciler = Reconciler::new(settings(ctx, repo, common), actuator, writer);
    reconciler.watch(repo, &follow, &stop, &mut |e| {
        render(e, common.format, true)
    })?;
    writeln!(render::stdout(), "stopped")?;
    Ok(Outcome::Clean)
}

pub fn journal(ctx: &Context, args: JournalArgs) -> CliResult {
    let repo = ctx.repo()?;
    let location = location(repo, args.state.as_deref(), ctx);
    let repository = match repo.head()? {
        Some(_) => repository_id(&current_full(ctx, None)?),
        None => String::new(),
    };
    let entries = state::journal(&location, &repository, args.limit)?;
    let mut out = render::stdout();
    if args.format == TextOrJson::Json {
        render::json(&mut out, &entries)?;
        return Ok(Outcome::Clean);
    }
    if entries.is_empty() {
        writeln!(
            out,
            "the journal is empty (no reconciler has run with {})",
            location.display()
        )?;
    }
    for entry in &entries {
        let a = &entry.action;
        let style = match entry.result {
            JournalResult::Applied => GREEN,
            JournalResult::Failed => RED,
            JournalResult::Running | JournalResult::Interrupted => YELLOW,
        };
        let commit = a
            .commit
            .parse()
            .map(short)
            .unwrap_or_else(|_| a.commit.clone());
        writeln!(
            out,
            "{}  {style}{:11}{style:#} {:7} {}/{} {}  {DIM}{commit}{DIM:#}  {}  {DIM}{}{}{DIM:#}",
            entry.started_at,
            entry.result.as_str(),
            a.action,
            a.agent,
            a.environment,
            a.version.as_deref().unwrap_or(""),
            entry
                .duration_ms
                .map(|d| format!("{d} ms"))
                .unwrap_or_default(),
            entry.replica,
            entry
                .epoch
                .map(|e| format!(" epoch {e}"))
                .unwrap_or_default(),
        )?;
        if entry.result == JournalResult::Failed && !entry.output.is_empty() {
            for line in entry.output.lines().take(5) {
                writeln!(out, "    {DIM}{line}{DIM:#}")?;
            }
        }
    }
    Ok(Outcome::Clean)
}
