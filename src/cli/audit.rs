//! `ledgit audit`: what ran where at a time according to the signed receipts, beside what the
//! branch declared then, with findings for receipts that do not hold and for declared versions
//! no receipt shows applied. Also the loading of the checked receipts that `receipts verify`
//! and `history --applied` share.

use std::io::Write;

use ledgit::git::history::History;
use ledgit::receipt::audit::{self, Status};
use ledgit::receipt::{Receipt, cache, notes};
use ledgit::support::when;

use super::command_error::{CliError, CliResult, Outcome};
use super::context::{Context, load};
use super::render::{self, BOLD, DIM, GREEN, RED, TextOrJson, YELLOW};

/// Say what ran where at a time, according to the signed apply receipts.
///
/// Reads every receipt under refs/notes/ledgit/applied, verifies each against the reconciler
/// keys ledgit.yaml lists at the receipt's commit, and sets what they say ran at --at (the
/// newest valid receipt of each agent and environment applied at or before it) beside what the
/// branch declared then. Flags receipts that do not verify, come from an unknown or removed key
/// or for an environment their key may not apply, were moved to another commit or claim a
/// version the record did not declare; and versions declared for longer than --grace that no
/// receipt shows applied.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit audit --at 2026-03-03T12:00:00Z --environment production
  ledgit audit --format json > audit.json
  git fetch origin refs/notes/ledgit/applied:refs/notes/ledgit/applied   get the receipts first

Exit codes: 0 every receipt holds and every declared version was applied, 1 findings, 2 could
not run.")]
pub struct Args {
    /// The time to audit (RFC 3339, a date, or a duration ago such as 7d; default: now).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,

    /// Only this environment.
    #[arg(long, visible_alias = "env", value_name = "ENV")]
    environment: Option<String>,

    /// A version declared for less than this long is pending, not a finding.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = super::render::seconds_arg)]
    grace: i64,

    /// The branch or commit whose declarations to read (default: HEAD).
    #[arg(long, value_name = "REV")]
    rev: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

/// Every receipt of the repository, checked (the version check against `history`), in
/// applied order (none without notes).
pub fn receipts(ctx: &Context, history: &History) -> Result<Vec<Receipt>, CliError> {
    let repo = ctx.repo()?;
    Ok(match notes::tip(&repo.git)? {
        Some(tip) => cache::receipts(&repo.git, tip, Some(history))?,
        None => Vec::new(),
    })
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let now = chrono::Utc::now();
    let at = match &args.at {
        Some(t) => when::parse_time(t, now)?.timestamp(),
        None => now.timestamp(),
    };
    let grace = args.grace;
    let loaded = load(ctx, args.rev.as_deref())?;
    if let Some(env) = &args.environment
        && loaded.config.environment(env).is_none()
    {
        return Err(loaded.config.unknown_environment(env).into());
    }
    let receipts = receipts(ctx, &loaded.history)?;
    let mut report = audit::audit(
        &loaded.history,
        &receipts,
        &loaded.config,
        at,
        args.environment.as_deref(),
        grace,
    );
    ledgit::finding::sort(&mut report.findings);
    let failed = ledgit::finding::has_errors(&report.findings);
    let mut out = render::stdout();
    if args.format == TextOrJson::Json {
        render::json(&mut out, &report)?;
        return Ok(Outcome::from_findings(failed));
    }
    writeln!(
        out,
        "{BOLD}Audit at {}{BOLD:#} {DIM}({} receipt{} applied by then, {} valid){DIM:#}\n",
        report.at,
        report.receipts,
        if report.receipts == 1 { "" } else { "s" },
        report.valid
    )?;
    if loaded.config.reconcilers.is_empty() {
        writeln!(
            out,
            "{YELLOW}note{YELLOW:#}: ledgit.yaml lists no reconcilers; add one with `ledgit keys generate --reconciler ID`\n"
        )?;
    }
    let mut rows = vec![vec![
        "AGENT".to_string(),
        "ENVIRONMENT".into(),
        "DECLARED".into(),
        "RUNNING (RECEIPTS)".into(),
        "APPLIED".into(),
        "BY".into(),
        "STATUS".into(),
    ]];
    for r in &report.rows {
        let status = match r.status {
            Status::Applied => format!("{GREEN}applied{GREEN:#}"),
            Status::Pending => format!("{YELLOW}pending{YELLOW:#}"),
            Status::NotApplied => format!("{RED}not applied{RED:#}"),
            Status::Unsigned => format!("{DIM}no reconciler signs here{DIM:#}"),
            Status::Undeclared => format!("{YELLOW}running, not declared{YELLOW:#}"),
        };
        rows.push(vec![
            r.agent.clone(),
            r.environment.clone(),
            r.declared.clone().unwrap_or_else(|| "-".into()),
            r.running.clone().unwrap_or_else(|| "-".into()),
            r.applied_at.clone().unwrap_or_else(|| "-".into()),
            r.reconciler.clone().unwrap_or_else(|| "-".into()),
            status,
        ]);
    }
    render::table(&mut out, &rows)?;
    writeln!(out)?;
    for f in &report.findings {
        render::finding_text(&mut out, f)?;
    }
    writeln!(out, "{}", render::tally(&report.findings))?;
    Ok(Outcome::from_findings(failed))
}
