//! `ledgit init`: create a deployments repository, optionally with an example history.

use std::io::Write;
use std::path::PathBuf;

use super::command_error::{CliResult, Outcome};
use super::context::Context;
use super::render::{self, BOLD, GREEN};

/// Create a deployments repository.
///
/// Runs `git init` where DIR is not a repository yet, writes a commented ledgit.yaml with
/// development, staging and production, and creates the records folder. Never overwrites an
/// existing ledgit.yaml.
///
/// With --example, also writes a handful of agents across the three environments and commits
/// them as a short history (several commits over two weeks, one merged from a pull request), so
/// that `ledgit history` and `ledgit status` have something real to show.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  ledgit init\n  ledgit init --example /tmp/deployments && ledgit -C /tmp/deployments status"
)]
pub struct Args {
    /// The folder to create the repository in (relative to -C); created if missing.
    #[arg(default_value = ".")]
    dir: PathBuf,

    /// Also write and commit an example history.
    #[arg(long)]
    example: bool,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let dir = ctx.dir.join(&args.dir);
    let now = chrono::Utc::now().timestamp();
    let done = ledgit::git::init::init(&dir, args.example, now)?;
    let mut out = render::stdout();
    if done.created_repository {
        writeln!(
            out,
            "Initialized a git repository in {}",
            done.root.display()
        )?;
    }
    writeln!(
        out,
        "{GREEN}Created{GREEN:#} {BOLD}ledgit.yaml{BOLD:#} and the records folder {BOLD}deployments/{BOLD:#}"
    )?;
    if done.commits.is_empty() {
        writeln!(
            out,
            "Next: add a record at deployments/<agent>/<environment>.yaml and run `ledgit validate`."
        )?;
    } else {
        writeln!(
            out,
            "Committed an example history of {} commits. Try:\n  ledgit -C {root} status\n  ledgit -C {root} history\n  ledgit -C {root} token list\n  ledgit -C {root} serve     (then open http://127.0.0.1:8080/)",
            done.commits.len(),
            root = done.root.display(),
        )?;
    }
    Ok(Outcome::Clean)
}
