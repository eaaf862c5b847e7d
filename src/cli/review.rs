//! `ledgit diff` and `ledgit check`: what a pull request changes in terms of deployments, with
//! history's context, and the CI gate that applies the promotion policy to it.

use std::io::{self, Write};

use ledgit::finding::{self, Finding};
use ledgit::git::history::Action;
use ledgit::git::repo::short;
use ledgit::review::change::{self, Review};
use ledgit::review::policy::Change;
use ledgit::review::settings::SettingChange;
use ledgit::support::when;

use super::command_error::{CliError, CliResult, Outcome};
use super::context::Context;
use super::context::{load, progress_bar, warn};
use super::render::{self, BOLD, DIM, GREEN, RED, YELLOW};

/// Show what a change of the repository means in deployments.
///
/// Compares the records of two commits by (agent, environment): deployed, updated (marked as a
/// downgrade where semantic versions go down) or removed. For each change it adds what the
/// history of BASE says: for a promotion, since when the version has run in the upstream
/// environment and whether the soak is met; for a rollback, when that version last ran there.
///
/// With --env SRC..DST, shows where two environments differ today: what `ledgit promote --all
/// --from SRC --to DST` would change, with how long each SRC version has run.
///
/// Only agents whose record files differ between BASE and HEAD are compared. Without a history
/// index, BASE's history is read for those agents only and no index is written.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit diff origin/main..HEAD
  ledgit diff origin/main..HEAD --format markdown >> \"$GITHUB_STEP_SUMMARY\"
  ledgit diff --env staging..production")]
pub struct DiffArgs {
    /// BASE..HEAD (a single REV means REV..HEAD).
    #[arg(
        value_name = "BASE..HEAD",
        required_unless_present = "env",
        conflicts_with = "env"
    )]
    range: Option<String>,

    /// SRC..DST: compare two environments at the tip instead.
    #[arg(long, value_name = "SRC..DST")]
    env: Option<String>,

    /// With --env: the commit to read (default HEAD).
    #[arg(long, value_name = "REV", requires = "env")]
    rev: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    format: DiffFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DiffFormat {
    Text,
    Json,
    Markdown,
}

/// Gate a pull request: validate HEAD and apply the promotion policy to each change.
///
/// Validates HEAD's records, then checks every deployment change between BASE and HEAD:
/// promote_from (the version ran in the upstream environment, on BASE's history, or earlier in
/// the same change when no soak is set), soak (it ran there at least that long, measured to
/// --now), downgrades (allowed only as a rollback to a version that ran there before), and no
/// private key in any commit of the change. Each finding names the file and line of the version.
///
/// Overrides are annotations on the record, reviewed with the change, and reported as warnings:
/// ledgit.dev/skip-soak, ledgit.dev/skip-promotion, ledgit.dev/allow-downgrade, each with the
/// reason as its value.
///
/// Without a history index (a fresh CI clone), BASE's history is read for the agents whose
/// records the change touches only, and no index is written; with one, the index is used.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit check --base origin/main
  ledgit check --base origin/main --format github
  ledgit check --base origin/main --format markdown >> \"$GITHUB_STEP_SUMMARY\"

Exit codes: 0 the change passes, 1 it has findings, 2 could not run.")]
pub struct CheckArgs {
    /// The branch the pull request goes into.
    #[arg(long, value_name = "REV")]
    base: String,

    /// The pull request's head (default HEAD).
    #[arg(long, value_name = "REV", default_value = "HEAD")]
    head: String,

    /// The time soak is measured to (default: now).
    #[arg(long, value_name = "TIME")]
    now: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    format: CheckFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CheckFormat {
    Text,
    Json,
    Github,
    Markdown,
}

/// The records a history knows at its tip, as records (for diffing against a tree).
/// Parses `A..B`, `A..` and `A` (meaning `A..HEAD`).
fn split_range(range: &str) -> (String, String) {
    match range.split_once("..") {
        Some((a, b)) => {
            let b = b.trim_start_matches('.');
            (
                a.to_string(),
                if b.is_empty() {
                    "HEAD".into()
                } else {
                    b.to_string()
                },
            )
        }
        None => (range.to_string(), "HEAD".into()),
    }
}

/// Reviews BASE..HEAD through the library, saying on stderr what a reader should know: that
/// base is not an ancestor, and the caveats of base's history.
fn review(ctx: &Context, base_rev: &str, head_rev: &str, now: i64) -> Result<Review, CliError> {
    let repo = ctx.repo()?;
    let base = repo.resolve(base_rev)?;
    let head = repo.resolve(head_rev)?;
    let r = change::review(repo, base, head, now, &mut progress_bar())?;
    if !r.base_is_ancestor {
        anstream::eprintln!(
            "{YELLOW}note{YELLOW:#}: {base_rev} is not an ancestor of {head_rev}; comparing the two states as they are"
        );
    }
    if let Some(h) = &r.base_history {
        warn(h);
    }
    Ok(r)
}

pub fn diff(ctx: &Context, args: DiffArgs) -> CliResult {
    let now = chrono::Utc::now().timestamp();
    let (changes, settings) = match (&args.env, &args.range) {
        (Some(envs), _) => (env_diff(ctx, envs, args.rev.as_deref(), now)?, Vec::new()),
        (None, Some(range)) => {
            let (base, head) = split_range(range);
            let r = review(ctx, &base, &head, now)?;
            (r.changes, r.settings)
        }
        (None, None) => unreachable!("clap requires a range or --env"),
    };
    let mut out = render::stdout();
    match args.format {
        // The array of deployment changes, as before; settings changes are in `check`'s JSON.
        DiffFormat::Json => render::json(&mut out, &changes)?,
        DiffFormat::Markdown => {
            changes_markdown(&mut out, &changes)?;
            settings_markdown(&mut out, &settings)?;
        }
        DiffFormat::Text => {
            print_changes(&mut out, &changes)?;
            print_settings(&mut out, &settings)?;
        }
    }
    Ok(Outcome::Clean)
}

/// What promoting every agent from SRC to DST would change, at the tip.
fn env_diff(
    ctx: &Context,
    envs: &str,
    rev: Option<&str>,
    now: i64,
) -> Result<Vec<Change>, CliError> {
    let (src, dst) = envs.split_once("..").ok_or_else(|| {
        CliError::new(
            format!("`{envs}` is not SRC..DST"),
            "write the two environments as staging..production",
        )
    })?;
    let loaded = load(ctx, rev)?;
    Ok(change::between_environments(
        &loaded.config,
        &loaded.history,
        src,
        dst,
        now,
    )?)
}

fn change_words(c: &Change) -> String {
    let v = c.version.as_deref().unwrap_or("");
    let p = c.previous_version.as_deref().unwrap_or("");
    match c.action {
        Action::Deployed => format!("+ {v}"),
        Action::Removed => format!("- {p}"),
        _ if c.downgrade => format!("{p} -> {v} (downgrade)"),
        _ => format!("{p} -> {v}"),
    }
}

/// The changes as aligned lines with their context, for people.
pub fn print_changes(out: &mut dyn Write, changes: &[Change]) -> io::Result<()> {
    if changes.is_empty() {
        return writeln!(out, "no deployment changes");
    }
    let wa = changes.iter().map(|c| c.agent.len()).max().unwrap_or(0);
    let we = changes
        .iter()
        .map(|c| c.environment.len())
        .max()
        .unwrap_or(0);
    let wc = changes
        .iter()
        .map(|c| change_words(c).len())
        .max()
        .unwrap_or(0);
    for c in changes {
        let words = change_words(c);
        let style = match c.action {
            Action::Deployed => GREEN,
            Action::Removed => RED,
            _ if c.downgrade => YELLOW,
            _ => BOLD,
        };
        let pad = " ".repeat(wc - words.len());
        writeln!(
            out,
            "{:wa$}  {:we$}  {style}{words}{style:#}{pad}  {DIM}{}{DIM:#}",
            c.agent,
            c.environment,
            c.context()
        )?;
    }
    Ok(())
}

/// The settings changes as aligned lines (nothing when there are none).
pub fn print_settings(out: &mut dyn Write, settings: &[SettingChange]) -> io::Result<()> {
    let wf = settings.iter().map(|c| c.file.len()).max().unwrap_or(0);
    let ws = settings.iter().map(|c| c.subject.len()).max().unwrap_or(0);
    for c in settings {
        writeln!(
            out,
            "{:wf$}  {BOLD}{:ws$}{BOLD:#}  {}",
            c.file, c.subject, c.detail
        )?;
    }
    Ok(())
}

fn settings_markdown(out: &mut dyn Write, settings: &[SettingChange]) -> io::Result<()> {
    if settings.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n| File | Subject | Change |")?;
    writeln!(out, "| --- | --- | --- |")?;
    for c in settings {
        writeln!(
            out,
            "| `{}` | `{}` | {} |",
            c.file,
            c.subject,
            c.detail.replace('|', "\\|")
        )?;
    }
    Ok(())
}

fn changes_markdown(out: &mut dyn Write, changes: &[Change]) -> io::Result<()> {
    if changes.is_empty() {
        return writeln!(out, "No deployment changes.");
    }
    writeln!(out, "| Agent | Environment | Change | Context |")?;
    writeln!(out, "| --- | --- | --- | --- |")?;
    for c in changes {
        let v = c.version.as_deref().unwrap_or("");
        let p = c.previous_version.as_deref().unwrap_or("");
        let change = match c.action {
            Action::Deployed => format!("deployed `{v}`"),
            Action::Removed => format!("removed (was `{p}`)"),
            _ if c.downgrade => format!("`{p}` → `{v}` ⚠️ downgrade"),
            _ => format!("`{p}` → `{v}`"),
        };
        writeln!(
            out,
            "| {} | {} | {change} | {} |",
            c.agent,
            c.environment,
            c.context().replace('|', "\\|")
        )?;
    }
    Ok(())
}

pub fn check(ctx: &Context, args: CheckArgs) -> CliResult {
    let now = match &args.now {
        Some(t) => when::parse_time(t, chrono::Utc::now())?.timestamp(),
        None => chrono::Utc::now().timestamp(),
    };
    let r = review(ctx, &args.base, &args.head, now)?;
    let findings = change::check(ctx.repo()?, &r)?;
    let mut out = render::stdout();
    match args.format {
        CheckFormat::Json => {
            #[derive(serde::Serialize)]
            struct Json<'a> {
                base: String,
                head: String,
                changes: &'a [Change],
                settings: &'a [SettingChange],
                findings: &'a [Finding],
            }
            render::json(
                &mut out,
                &Json {
                    base: r.base.to_string(),
                    head: r.head.to_string(),
                    changes: &r.changes,
                    settings: &r.settings,
                    findings: &findings,
                },
            )?;
        }
        CheckFormat::Github => {
            for f in &findings {
                render::finding_github(&mut out, f)?;
            }
        }
        CheckFormat::Markdown => {
            let verdict = if finding::has_errors(&findings) {
                "❌ ledgit check failed"
            } else {
                "✅ ledgit check passed"
            };
            writeln!(out, "### {verdict}\n")?;
            writeln!(
                out,
                "Base `{}`, head `{}`: {}.\n",
                short(r.base),
                short(r.head),
                render::tally(&findings)
            )?;
            changes_markdown(&mut out, &r.changes)?;
            settings_markdown(&mut out, &r.settings)?;
            if !findings.is_empty() {
                writeln!(out)?;
                for f in &findings {
                    writeln!(
                        out,
                        "- **{}** `{}` {}:{}: {} ({})",
                        f.severity, f.code, f.path, f.line, f.message, f.hint
                    )?;
                }
            }
        }
        CheckFormat::Text => {
            print_changes(&mut out, &r.changes)?;
            print_settings(&mut out, &r.settings)?;
            writeln!(out)?;
            for f in &findings {
                render::finding_text(&mut out, f)?;
            }
            let n = r.changes.len() + r.settings.len();
            writeln!(
                out,
                "{n} change{} checked: {}",
                if n == 1 { "" } else { "s" },
                render::tally(&findings)
            )?;
        }
    }
    Ok(Outcome::from_findings(finding::has_errors(&findings)))
}
