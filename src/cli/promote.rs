//! `ledgit promote` and `ledgit set`: change versions by editing one line per record, checked
//! against the same policy as `ledgit check`, optionally committed on a new branch.

use std::io::{self, Write};
use std::path::Path;

use ledgit::finding::Finding;
use ledgit::model::config::Config;
use ledgit::model::validate;
use ledgit::review::edit::{self, Edited as Written};
use ledgit::review::plan::{self, Target};
use ledgit::review::policy::Change;

use super::command_error::unknown_environment;
use super::command_error::{CliError, CliResult, Outcome};
use super::context::Context;
use super::render::{self, BOLD, GREEN, TextOrJson};

/// Options shared by `promote` and `set`.
#[derive(clap::Args)]
pub struct EditOptions {
    /// Write even what the policy refuses (promote_from, soak, downgrade).
    #[arg(long)]
    force: bool,

    /// First create and switch to this branch (ready for a pull request).
    #[arg(long, value_name = "NAME")]
    branch: Option<String>,

    /// Commit the change (with a message listing what changed, or -m).
    #[arg(long)]
    commit: bool,

    /// The commit message (with --commit).
    #[arg(short, long, value_name = "MSG", requires = "commit")]
    message: Option<String>,

    /// Output format: JSON says what was written, for scripts and bots that open pull requests.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

/// What an edit did, as `--format json` prints it.
#[derive(serde::Serialize)]
struct Edited<'a> {
    /// Whether any file was written.
    written: bool,
    /// The branch created and switched to, if any.
    branch: Option<&'a str>,
    /// The commit made, if any.
    commit: Option<String>,
    changes: &'a [Change],
    findings: Vec<&'a Finding>,
}

/// Promote agents: set their version in one environment to the version of another.
///
/// Edits only the version value of each target record, in place: comments, key order, quoting
/// and line endings stay as they are. A missing target record is created with the source
/// record's annotations. Refuses what `ledgit check` would refuse (promote_from, soak,
/// downgrades) unless --force, and prints the resulting change.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit promote support-bot --from staging --to production
  ledgit promote --all --from development --to staging --branch promote-staging --commit
  ledgit promote support-bot --from staging --to production --format json")]
pub struct PromoteArgs {
    /// The agents to promote.
    #[arg(
        value_name = "AGENT",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    agents: Vec<String>,

    /// Every agent whose version differs between the two environments.
    #[arg(long)]
    all: bool,

    /// The environment to take the versions from.
    #[arg(long, value_name = "SRC")]
    from: String,

    /// The environment to set them in.
    #[arg(long, value_name = "DST")]
    to: String,

    #[command(flatten)]
    options: EditOptions,
}

/// Set one agent's version in one environment (a hotfix, a rollback).
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit set support-bot production 1.4.1
  ledgit set support-bot staging 2.0.0-rc.1 --commit -m \"Try 2.0.0-rc.1 in staging\"")]
pub struct SetArgs {
    agent: String,
    environment: String,
    version: String,

    /// Allow an agent that has no record in any environment yet.
    #[arg(long)]
    create: bool,

    #[command(flatten)]
    options: EditOptions,
}

pub fn promote(ctx: &Context, args: PromoteArgs) -> CliResult {
    let (root, config, report) = work_tree(ctx)?;
    for env in [&args.from, &args.to] {
        if config.environment(env).is_none() {
            return Err(unknown_environment(&config, env));
        }
    }
    let agents = (!args.all).then_some(args.agents.as_slice());
    let targets = plan::promote_targets(&report, &args.from, &args.to, agents)?;
    apply(ctx, &root, &config, &report, targets, &args.options)
}

pub fn set(ctx: &Context, args: SetArgs) -> CliResult {
    let (root, config, report) = work_tree(ctx)?;
    let target = plan::set_target(
        &config,
        &report,
        &args.agent,
        &args.environment,
        &args.version,
        args.create,
    )?;
    apply(ctx, &root, &config, &report, vec![target], &args.options)
}

type WorkTree = (std::path::PathBuf, Config, validate::Report);

fn work_tree(ctx: &Context) -> Result<WorkTree, CliError> {
    let repo = ctx.repo()?;
    let root = repo.require_workdir()?;
    let config = Config::load(&root)?;
    let report = validate::worktree(&root, &config, &[])?;
    Ok((root, config, report))
}

fn apply(
    ctx: &Context,
    root: &Path,
    config: &Config,
    report: &validate::Report,
    targets: Vec<Target>,
    options: &EditOptions,
) -> CliResult {
    let json = options.format == TextOrJson::Json;
    let repo = ctx.repo()?;
    let edited = edit::edit(
        &edit::WorkTree {
            repo,
            root,
            config,
            report,
        },
        &targets,
        &mut || super::context::history_of_head(repo),
        &edit::Options {
            force: options.force,
            branch: options.branch.clone(),
            commit: options.commit,
            message: options.message.clone(),
        },
        chrono::Utc::now().timestamp(),
    )?;
    let mut out = render::stdout();
    // Nothing written (refused, or nothing to change): the findings and the changes that
    // stopped it, or in text the findings and the reason.
    let mut nothing_written =
        |changes: &[Change], findings: &[Finding], why: &str| -> io::Result<()> {
            if json {
                return render::json(
                    &mut out,
                    &Edited {
                        written: false,
                        branch: None,
                        commit: None,
                        changes,
                        findings: findings.iter().collect(),
                    },
                );
            }
            for f in findings {
                render::finding_text(&mut out, f)?;
            }
            writeln!(out, "{why}")
        };
    let (branch, commit, changes, findings) = match edited {
        Written::Unreadable(findings) => {
            nothing_written(&[], &findings, "nothing was written: fix the record first")?;
            return Ok(Outcome::Findings);
        }
        Written::Unchanged => {
            nothing_written(&[], &[], "nothing to change: the versions are already set")?;
            return Ok(Outcome::Clean);
        }
        Written::Refused { changes, findings } => {
            nothing_written(
                &changes,
                &findings,
                "nothing was written: the policy refuses this change (--force overrides, and shows in review)",
            )?;
            return Ok(Outcome::Findings);
        }
        Written::Written {
            branch,
            commit,
            changes,
            findings,
        } => (branch, commit, changes, findings),
    };
    if json {
        render::json(
            &mut out,
            &Edited {
                written: true,
                branch: branch.as_deref(),
                commit: commit.map(|(id, _)| id.to_string()),
                changes: &changes,
                findings: findings.iter().collect(),
            },
        )?;
        return Ok(Outcome::Clean);
    }
    if let Some(branch) = &branch {
        writeln!(out, "Switched to a new branch {BOLD}{branch}{BOLD:#}")?;
    }
    super::review::print_changes(&mut out, &changes)?;
    for f in &findings {
        render::finding_text(&mut out, f)?;
    }
    if let Some((id, message)) = commit {
        writeln!(
            out,
            "{GREEN}Committed{GREEN:#} {} {}",
            ledgit::git::repo::short(id),
            message.lines().next().unwrap_or("")
        )?;
    }
    Ok(Outcome::Clean)
}
