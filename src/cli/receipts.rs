//! `ledgit receipts`: verify every signed apply receipt in the repository, or show the receipts
//! of one commit.

use std::io::Write;

use ledgit::receipt::audit;

use super::command_error::{CliResult, Outcome};
use super::context::{Context, load};
use super::render::{self, BOLD, DIM, GREEN, RED, TextOrJson};

/// Verify or show the signed apply receipts (git notes under refs/notes/ledgit/applied).
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Verify(VerifyArgs),
    Show(ShowArgs),
}

/// Verify every receipt, and that every declared version has one.
///
/// Each receipt must verify with the key ledgit.yaml lists under `reconcilers:` at the commit
/// it is attached to, for an environment that key may apply, name that commit, and claim the
/// version and content the record had there. Versions declared at the tip for longer than
/// --grace must have a receipt. Exits 1 on any finding.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit receipts verify
  ledgit receipts verify --format json
  git fetch origin refs/notes/ledgit/applied:refs/notes/ledgit/applied && ledgit receipts verify")]
pub struct VerifyArgs {
    /// A version declared at the tip for less than this long is pending, not a finding.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = super::render::seconds_arg)]
    grace: i64,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

/// Show the receipts of one commit, decoded, with the verdict on each.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  ledgit receipts show HEAD\n  ledgit receipts show 3f2a9c1 --format json"
)]
pub struct ShowArgs {
    /// The commit (default: HEAD).
    #[arg(value_name = "REV")]
    rev: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    match args.command {
        Command::Verify(a) => verify(ctx, a),
        Command::Show(a) => show(ctx, a),
    }
}

#[derive(serde::Serialize)]
struct Verified {
    receipts: usize,
    valid: usize,
    findings: Vec<ledgit::finding::Finding>,
}

fn verify(ctx: &Context, args: VerifyArgs) -> CliResult {
    let grace = args.grace;
    let loaded = load(ctx, None)?;
    let receipts = super::audit::receipts(ctx, &loaded.history)?;
    let now = chrono::Utc::now().timestamp();
    // Every receipt, whenever applied; and the declarations of now.
    let mut findings: Vec<_> = receipts.iter().filter_map(|r| r.finding()).collect();
    findings.extend(
        audit::audit(&loaded.history, &receipts, &loaded.config, now, None, grace)
            .findings
            .into_iter()
            .filter(|f| f.code == ledgit::finding::Code::DeclaredNotApplied),
    );
    ledgit::finding::sort(&mut findings);
    let failed = ledgit::finding::has_errors(&findings);
    let verified = Verified {
        receipts: receipts.len(),
        valid: receipts.iter().filter(|r| r.is_valid()).count(),
        findings,
    };
    let mut out = render::stdout();
    if args.format == TextOrJson::Json {
        render::json(&mut out, &verified)?;
        return Ok(Outcome::from_findings(failed));
    }
    for f in &verified.findings {
        render::finding_text(&mut out, f)?;
    }
    let (style, word) = if failed {
        (RED, "FAILED")
    } else {
        (GREEN, "ok")
    };
    writeln!(
        out,
        "{style}{word}{style:#}: {} receipt{}, {} valid; {}",
        verified.receipts,
        if verified.receipts == 1 { "" } else { "s" },
        verified.valid,
        render::tally(&verified.findings)
    )?;
    Ok(Outcome::from_findings(failed))
}

#[derive(serde::Serialize)]
struct Shown<'a> {
    line: u32,
    valid: bool,
    problem: Option<String>,
    keyid: &'a str,
    statement: Option<&'a ledgit::receipt::Statement>,
}

fn show(ctx: &Context, args: ShowArgs) -> CliResult {
    let repo = ctx.repo()?;
    let commit = repo.resolve_or_head(args.rev.as_deref())?;
    let receipts = ledgit::receipt::check::on_commit(&repo.git, commit)?;
    let shown: Vec<Shown> = receipts
        .iter()
        .map(|(r, statement)| Shown {
            line: r.line,
            valid: r.is_valid(),
            problem: r
                .problem
                .as_ref()
                .map(|p| format!("{}: {}", p.code, p.message)),
            keyid: &r.keyid,
            statement: statement.as_ref(),
        })
        .collect();
    let mut out = render::stdout();
    if args.format == TextOrJson::Json {
        render::json(&mut out, &shown)?;
        return Ok(Outcome::from_findings(shown.iter().any(|s| !s.valid)));
    }
    if shown.is_empty() {
        writeln!(out, "no receipts on {commit}")?;
    }
    for s in &shown {
        match s.statement {
            Some(st) => {
                let p = &st.predicate;
                writeln!(
                    out,
                    "{BOLD}{} {}/{} {}{BOLD:#} applied {} by {} on {} {DIM}({} ms, {}, key {}){DIM:#}",
                    p.action,
                    p.agent,
                    p.environment,
                    p.version.as_deref().unwrap_or(""),
                    p.applied_at,
                    p.reconciler,
                    p.host,
                    p.duration_ms,
                    p.actuator,
                    s.keyid
                )?;
            }
            None => writeln!(out, "{BOLD}line {}{BOLD:#}: unreadable", s.line)?,
        }
        match &s.problem {
            None => writeln!(out, "  {GREEN}signed, valid{GREEN:#}")?,
            Some(p) => writeln!(out, "  {RED}invalid{RED:#}: {p}")?,
        }
    }
    Ok(Outcome::from_findings(shown.iter().any(|s| !s.valid)))
}
