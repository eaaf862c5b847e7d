//! `ledgit validate`: check the records of the work tree or of a commit.

use std::io::Write;

use ledgit::finding;
use ledgit::model::config::Config;
use ledgit::model::validate::{self, Report};

use super::command_error::{CliError, CliResult, Outcome};
use super::context::Context;
use super::render::{self, GREEN};

/// Check the deployment records.
///
/// Checks every file of the records folder against the format (the JSON Schemas in schema/),
/// that each (agent, environment) pair appears in exactly one file at its conventional path,
/// that environments are declared in ledgit.yaml, and that no private key is tracked. Every
/// finding is reported with a stable code, the file, line and column, and a hint.
///
/// Without --rev the work tree is checked, uncommitted files included. With --rev the commit's
/// tree is read straight from git, without a checkout (CI checks base and head of a pull
/// request this way).
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  ledgit validate\n  ledgit validate --rev origin/main --format github\n\nExit codes: 0 no errors, 1 findings, 2 could not run."
)]
pub struct Args {
    /// Check this commit (branch, tag, hash) instead of the work tree.
    #[arg(long, value_name = "REV")]
    rev: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// Findings with the source line and a caret, for people.
    Text,
    /// `{"records": N, "findings": [...]}` for scripts.
    Json,
    /// GitHub Actions workflow commands (annotations on the pull request).
    Github,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let repo = ctx.repo()?;
    let report = match (&args.rev, repo.workdir()) {
        (None, Some(root)) => {
            let config = Config::load(root)?;
            let tracked = tracked_paths(&repo.git)?;
            validate::worktree(root, &config, &tracked)?
        }
        (rev, _) => {
            // A bare repository has no work tree: check HEAD's tree.
            let commit = repo.resolve_or_head(rev.as_deref())?;
            let config = repo.config_at(commit)?;
            let tree = repo.tree_at(commit)?;
            validate::tree(&repo.git, &tree, &config)?
        }
    };
    print(&report, args.format)?;
    Ok(Outcome::from_findings(finding::has_errors(
        &report.findings,
    )))
}

fn tracked_paths(git: &git2::Repository) -> Result<Vec<String>, CliError> {
    let index = git.index().map_err(|e| {
        CliError::new(
            format!("reading git's index: {}", e.message()),
            "check the repository with `git status`",
        )
    })?;
    Ok(index
        .iter()
        .filter_map(|e| String::from_utf8(e.path).ok())
        .collect())
}

fn print(report: &Report, format: Format) -> std::io::Result<()> {
    let mut out = render::stdout();
    match format {
        Format::Json => {
            #[derive(serde::Serialize)]
            struct Json<'a> {
                records: usize,
                findings: &'a [finding::Finding],
            }
            render::json(
                &mut out,
                &Json {
                    records: report.records,
                    findings: &report.findings,
                },
            )
        }
        Format::Github => {
            for f in &report.findings {
                render::finding_github(&mut out, f)?;
            }
            Ok(())
        }
        Format::Text => {
            for f in &report.findings {
                render::finding_text(&mut out, f)?;
            }
            let plural = if report.records == 1 { "" } else { "s" };
            if report.findings.is_empty() {
                writeln!(
                    out,
                    "{GREEN}ok{GREEN:#}: {} record{plural}, no findings",
                    report.records
                )
            } else {
                writeln!(
                    out,
                    "{} record{plural} checked: {}",
                    report.records,
                    render::tally(&report.findings)
                )
            }
        }
    }
}
