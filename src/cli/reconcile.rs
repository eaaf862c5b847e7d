//! `ledgit reconcile`, `ledgit watch` and `ledgit journal`: apply the tracked branch to the
//! platform through an actuator, once or continuously, and show the apply journal.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ledgit::git::repo::{Repo, short};
use ledgit::receipt::Writer;
use ledgit::reconcile::actuator::Actuator;
use ledgit::reconcile::lease::{self, Leases};
use ledgit::reconcile::pass::{self, Pass, repository_id};
use ledgit::reconcile::state::{self, JournalResult, Location, Replica, Store};
use ledgit::reconcile::{Attempt, Plan, RefWatcher};
use ledgit::support::when;
use ledgit::token::SigningKey;

use super::command_error::{CliError, CliResult, Outcome};
use super::context::Context;
use super::context::{Current, current_full};
use super::render::{self, BOLD, DIM, GREEN, RED, TextOrJson, YELLOW};

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
    #[arg(long, value_name = "DURATION", default_value = "15s")]
    lease_ttl: String,

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
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    timeout: String,

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
    #[arg(long, value_name = "DURATION", default_value = "3m")]
    interval: String,

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

fn duration(text: &str, what: &str) -> Result<Duration, CliError> {
    when::parse_duration(text)
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s as u64))
        .ok_or_else(|| {
            CliError::new(
                format!("{what} `{text}` is not a duration"),
                "write a duration such as 30s, 5m or 1h",
            )
        })
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

/// The pass's options from the command line.
fn options(common: &Common, respect_backoff: bool) -> Result<pass::Options, CliError> {
    Ok(pass::Options {
        environments: common.environments.clone(),
        prune: common.prune,
        timeout: duration(&common.timeout, "--timeout")?,
        respect_backoff,
        allow_rewind: common.allow_rewind,
    })
}

/// The environments a replica asks to lead: `--environment`, else every one of the config.
fn wanted(common: &Common, current: &Current) -> Vec<String> {
    if common.environments.is_empty() {
        current
            .config
            .environments
            .iter()
            .map(|e| e.name.clone())
            .collect()
    } else {
        common.environments.clone()
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

/// Starts the lease keeper when the store is shared.
fn leases(
    location: &Location,
    common: &Common,
    current: &Current,
    replica: &Replica,
) -> Result<Option<Leases>, CliError> {
    let Location::Postgres(url) = location else {
        return Ok(None);
    };
    let ttl = duration(&common.lease_ttl, "--lease-ttl")?;
    if ttl < Duration::from_secs(3) {
        return Err(CliError::new(
            format!("--lease-ttl {} is too short", common.lease_ttl),
            "give leases at least 3s (renewals run every third of it)",
        ));
    }
    Ok(Some(Leases::start(
        url,
        &repository_id(current),
        replica,
        ttl,
        wanted(common, current),
    )?))
}

/// Says the changes of leadership since the last time.
fn print_lease_events(leases: Option<&Leases>) {
    if let Some(leases) = leases {
        print_events(&leases.events());
    }
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

/// Plans (and unless dry-run, applies) one pass at the tip `current` was read at.
#[allow(clippy::too_many_arguments)]
fn run_pass(
    ctx: &Context,
    current: &Current,
    common: &Common,
    store: Option<&mut Store>,
    actuator: Option<&Actuator>,
    leases: Option<&Leases>,
    stop: &AtomicBool,
    respect_backoff: bool,
    receipts: Option<&mut Writer>,
) -> Result<Pass, CliError> {
    let repo = ctx.repo()?;
    let location = location(repo, common.state.as_deref(), ctx);
    let options = options(common, respect_backoff)?;
    let text = common.format == TextOrJson::Text;
    let mut store = store;
    let plan = pass::plan(
        repo,
        current,
        &location,
        &options,
        store.as_deref_mut(),
        leases,
    )?;
    // A follower's empty passes are not news.
    if text
        && (leases.is_none()
            || !plan.actions.is_empty()
            || !plan.findings.is_empty()
            || !plan.held.is_empty())
    {
        print_plan(&mut render::stdout(), &plan)?;
    }
    let (Some(store), Some(actuator), false) = (store, actuator, common.dry_run) else {
        return Ok(Pass {
            plan,
            ..Pass::default()
        });
    };
    let mut receipts = receipts;
    if let Some(w) = receipts.as_deref_mut()
        && w.identify(&current.config).is_none()
        && !plan.actions.is_empty()
    {
        anstream::eprintln!(
            "{YELLOW}warning{YELLOW:#}: the signing key ({}) is not listed under `reconcilers:` in ledgit.yaml: its receipts will not verify",
            w.public_key()
        );
    }
    let p = pass::apply(
        store,
        actuator,
        plan,
        options.timeout,
        leases,
        stop,
        receipts,
        |a| {
            if text {
                let _ = print_attempt(&mut render::stdout(), a);
            }
        },
    )?;
    if let Some(e) = &p.receipt_error {
        anstream::eprintln!(
            "{YELLOW}warning{YELLOW:#}: receipts: {e}; they stay in the journal and are written at the next pass"
        );
    }
    for env in &p.deposed {
        anstream::eprintln!(
            "{YELLOW}deposed{YELLOW:#}: another replica leads {env} now; its remaining actions are left to it"
        );
    }
    Ok(p)
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

fn json_pass(out: &mut dyn Write, p: &Pass, pretty: bool) -> std::io::Result<()> {
    if pretty {
        render::json(out, p)
    } else {
        serde_json::to_writer(&mut *out, p)?;
        writeln!(out)
    }
}

fn outcome(p: &Pass) -> Outcome {
    Outcome::from_findings(p.failed())
}

pub fn reconcile(ctx: &Context, args: ReconcileArgs) -> CliResult {
    let common = &args.common;
    let actuator = actuator(common)?;
    duration(&common.timeout, "--timeout")?;
    let repo = ctx.repo()?;
    let name = repo.tracked_ref(common.rev.as_deref(), None);
    let Some(tip) = repo.resolve_tracked(&name) else {
        return Err(CliError::new(
            format!("`{name}` does not name a commit"),
            "commit the records first, or pass --rev",
        ));
    };
    let current = current_full(ctx, Some(&tip.to_string()))?;
    let location = location(repo, common.state.as_deref(), ctx);
    let replica = Replica::this_process();
    let mut store = if common.dry_run {
        None
    } else {
        Some(Store::open(&location, &repository_id(&current), &replica)?)
    };
    let leases = if common.dry_run {
        None
    } else {
        leases(&location, common, &current, &replica)?
    };
    print_lease_events(leases.as_ref());
    let mut receipts = writer(ctx, common)?;
    let stop = AtomicBool::new(false);
    let mut out = render::stdout();
    let p = run_pass(
        ctx,
        &current,
        common,
        store.as_mut(),
        actuator.as_ref(),
        leases.as_ref(),
        &stop,
        false,
        receipts.as_mut(),
    )?;
    if let Some(leases) = leases {
        let wanted = wanted(common, &current);
        let led: Vec<String> = leases.led().into_iter().map(|(e, _)| e).collect();
        for env in wanted.iter().filter(|e| !led.contains(e)) {
            anstream::eprintln!(
                "{YELLOW}note{YELLOW:#}: {env} is led by another replica; `ledgit leases` shows which"
            );
        }
        leases.stop();
    }
    if common.format == TextOrJson::Json {
        json_pass(&mut out, &p, true)?;
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
    duration(&common.timeout, "--timeout")?;
    let interval = duration(&args.interval, "--interval")?;
    let repo = ctx.repo()?;
    let name = repo.tracked_ref(common.rev.as_deref(), args.fetch.as_deref());
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)).map_err(|e| {
            CliError::new(
                format!("cannot handle signals: {e}"),
                "run ledgit in a normal process",
            )
        })?;
    }
    let watcher = RefWatcher::new(repo.git.commondir())?;
    let mut receipts = writer(ctx, common)?;
    let fetch = |remote: &str| {
        if let Err(e) = repo.fetch(remote) {
            anstream::eprintln!("{YELLOW}warning{YELLOW:#}: {e}; using what is here");
        }
    };
    // When `git fetch` last ran: every --interval, whatever else happened in between (a ref
    // that moved locally, a pass that failed), the remote is asked again.
    let mut last_fetch: Option<Instant> = None;
    let mut store: Option<Store> = None;
    let mut leases: Option<Leases> = None;
    let replica = Replica::this_process();
    let location = location(repo, common.state.as_deref(), ctx);
    let mut last_tip: Option<git2::Oid> = None;
    let mut last_sync = Instant::now();
    let mut retry_at: Option<Instant> = None;
    // An unreachable store or lease table: nothing is tried before `held_until`, and each
    // failure in a row doubles the wait (5s, 10s, ... 1m), as the message says.
    let mut held_until: Option<Instant> = None;
    let mut store_wait = STORE_RETRY;
    let mut out = render::stdout();
    writeln!(
        out,
        "{BOLD}watching{BOLD:#} {name} (resync every {})",
        args.interval
    )?;
    while !stop.load(Ordering::SeqCst) {
        // A lease just taken is work to do now: the leader before may have left some.
        let events = leases.as_ref().map(|l| l.events()).unwrap_or_default();
        let took_over = events
            .iter()
            .any(|e| matches!(e, lease::Event::Leading { .. }));
        print_events(&events);
        // A new leader fetches before its first pass: the leader before may have applied
        // commits this replica has not seen.
        if let Some(remote) = &args.fetch
            && (took_over || last_fetch.is_none_or(|t| t.elapsed() >= interval))
        {
            fetch(remote);
            last_fetch = Some(Instant::now());
        }
        let repo = ctx.repo()?;
        let tip = repo.resolve_tracked(&name);
        let due = took_over
            || last_sync.elapsed() >= interval
            || retry_at.is_some_and(|t| Instant::now() >= t);
        let held = held_until.is_some_and(|t| Instant::now() < t);
        if let Some(tip) = tip
            && (Some(tip) != last_tip || due)
            && !held
        {
            let current = current_full(ctx, Some(&tip.to_string()));
            if let (Ok(current), None, false) = (&current, &store, common.dry_run) {
                match Store::open(&location, &repository_id(current), &replica) {
                    Ok(s) => {
                        store = Some(s);
                        store_wait = STORE_RETRY;
                    }
                    // One machine's store is this process's or another's: that is final. A
                    // shared one may be restarting: try again.
                    Err(e) if !location.is_shared() => return Err(e.into()),
                    Err(e) => {
                        anstream::eprintln!(
                            "{RED}error{RED:#}: {e}; trying again in {}s",
                            store_wait.as_secs()
                        );
                        held_until = Some(Instant::now() + store_wait);
                        store_wait = (store_wait * 2).min(STORE_RETRY_MAX);
                        continue;
                    }
                }
            }
            if let (Ok(current), Some(_), None) = (&current, &store, &leases) {
                match self::leases(&location, common, current, &replica) {
                    Ok(l) => {
                        leases = l;
                        store_wait = STORE_RETRY;
                        print_lease_events(leases.as_ref());
                    }
                    Err(e) => {
                        anstream::eprintln!(
                            "{RED}error{RED:#}: {}; trying again in {}s",
                            e.message,
                            store_wait.as_secs()
                        );
                        held_until = Some(Instant::now() + store_wait);
                        store_wait = (store_wait * 2).min(STORE_RETRY_MAX);
                        continue;
                    }
                }
            }
            if let (Ok(current), Some(l)) = (&current, &leases) {
                l.want(wanted(common, current));
            }
            let passed = current.and_then(|current| {
                run_pass(
                    ctx,
                    &current,
                    common,
                    store.as_mut(),
                    actuator.as_ref(),
                    leases.as_ref(),
                    &stop,
                    true,
                    receipts.as_mut(),
                )
            });
            match passed {
                Ok(p) => {
                    if common.format == TextOrJson::Json {
                        json_pass(&mut out, &p, false)?;
                    }
                    last_tip = Some(tip);
                    last_sync = Instant::now();
                    retry_at = next_retry(store.as_mut());
                    // Held behind what the store says ran: fetch again and plan again soon.
                    if !p.plan.held.is_empty() {
                        last_fetch = None;
                        let soon = Instant::now() + STORE_RETRY;
                        retry_at = Some(retry_at.map_or(soon, |t| t.min(soon)));
                    }
                }
                Err(e) => {
                    anstream::eprintln!("{RED}error{RED:#}: {}", e.message);
                    last_tip = Some(tip);
                    retry_at = Some(Instant::now() + Duration::from_secs(5));
                }
            }
        }
        // Sleep until the ref moves, a retry or a resync is due, checking for a signal often.
        let mut wait = interval.saturating_sub(last_sync.elapsed());
        if let Some(t) = retry_at {
            wait = wait.min(t.saturating_duration_since(Instant::now()));
        }
        if let Some(t) = last_fetch {
            wait = wait.min(interval.saturating_sub(t.elapsed()));
        }
        if let Some(t) = held_until {
            wait = wait.max(t.saturating_duration_since(Instant::now()));
        }
        watcher.wait(wait.min(Duration::from_millis(250)));
    }
    // The action in flight has finished: followers may take over at once.
    if let Some(l) = leases {
        l.stop();
    }
    writeln!(out, "stopped")?;
    Ok(Outcome::Clean)
}

/// The first wait after the store or the lease table could not be reached.
const STORE_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between two tries to reach them.
const STORE_RETRY_MAX: Duration = Duration::from_secs(60);

/// When the earliest failed action may be retried.
fn next_retry(store: Option<&mut Store>) -> Option<Instant> {
    let store = store?;
    let failures = store.failures().ok()?;
    let next = failures.iter().map(|f| f.next_attempt).min()?;
    // By the store's clock, as the retry times were written.
    let now = store.now().ok()?;
    let wait = (next - now).max(0) as u64;
    Some(Instant::now() + Duration::from_secs(wait))
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
