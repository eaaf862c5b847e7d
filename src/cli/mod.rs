//! The command line: clap definitions, one module per subcommand, and the rendering of values
//! from the core as text, JSON, GitHub annotations or markdown. Every command returns an
//! [`Outcome`] (exit 0 or 1) or a [`CliError`] (exit 2) that carries a hint for the user.

mod audit;
mod command_error;
mod context;
mod docs;
mod history;
mod init;
mod keys;
mod leases;
mod promote;
mod receipts;
mod reconcile;
mod render;
mod review;
mod serve;
mod show;
mod state;
mod status;
mod token;

mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use command_error::{CliError, Outcome};
use context::Context;

const AFTER_HELP: &str = "\
Examples:
  ledgit init --example /tmp/deployments     create a repository with an example history
  ledgit validate                            check the records in the work tree
  ledgit status                              which version runs where
  ledgit history --environment production    what ran in production, and since when
  ledgit check --base origin/main            gate a pull request (promotion policy)
  ledgit promote support-bot --from staging --to production
  ledgit token issue support-bot production --key ~/.config/ledgit/signing.pem
  ledgit watch --exec ./deploy.sh             apply the branch to the platform as it moves
  ledgit audit --at 2026-03-03T12:00:00Z     what ran where then, by the signed receipts
  ledgit serve --listen 127.0.0.1:8080       answer agents, gateways and git hosts over HTTP

Exit codes: 0 done and nothing wrong, 1 done and the repository has findings,
2 could not run (bad arguments, no repository, unreadable input).";

/// Keeps AI-agent deployment records in a git repository.
///
/// Records are YAML files, one per agent per environment, under the folder named in ledgit.yaml.
/// ledgit validates them, derives the history of what ran where from the git log, checks pull
/// requests against the promotion policy, signs deployment tokens tied to each record, and
/// applies the tracked branch to the platform.
#[derive(Parser)]
#[command(name = "ledgit", version, after_help = AFTER_HELP, max_term_width = 100)]
struct Cli {
    /// Run as if started in DIR (like `git -C`).
    #[arg(short = 'C', global = true, value_name = "DIR")]
    start_dir: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Init(init::Args),
    Validate(validate::Args),
    History(history::Args),
    Status(status::Args),
    Show(show::Args),
    Diff(review::DiffArgs),
    Check(review::CheckArgs),
    Promote(promote::PromoteArgs),
    Set(promote::SetArgs),
    Keys(keys::Args),
    Token(token::Args),
    Reconcile(reconcile::ReconcileArgs),
    Watch(reconcile::WatchArgs),
    Journal(reconcile::JournalArgs),
    Leases(leases::Args),
    Receipts(receipts::Args),
    Audit(audit::Args),
    State(state::Args),
    Serve(serve::Args),
    Completions(docs::CompletionsArgs),
    Man(docs::ManArgs),
}

/// Parses the arguments, runs the command and turns its result into an exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let dir = match cli.start_dir {
        Some(d) => d,
        None => match std::env::current_dir() {
            Ok(d) => d,
            Err(e) => {
                return fail(&CliError::new(
                    format!("cannot read the current directory: {e}"),
                    "run ledgit from an existing directory or pass -C DIR",
                ));
            }
        },
    };
    if !dir.is_dir() {
        return fail(&CliError::new(
            format!("{} is not a directory", dir.display()),
            "pass -C an existing directory",
        ));
    }
    // Every object is read once per walk; libgit2's object cache would only hold memory.
    git2::opts::enable_caching(false);
    // Like git itself, do not re-hash every object read from the object database: it was a
    // third of the time of a history walk. `git fsck` is the tool that verifies objects.
    git2::opts::strict_hash_verification(false);
    // Map packs in 16 MiB windows, at most 64 MiB at a time: a long history walk touches the
    // whole pack, and unbounded mappings would count towards the process's memory. Checking
    // receipts reads notes and commits all over the pack from two threads: within 64 MiB the
    // windows were unmapped and mapped again all the time (a third of the time went to it), so
    // the commands that check them map up to 1 GiB (file pages, given back under pressure).
    let mapped: usize = if reads_receipts(&cli.command) {
        1 << 30
    } else {
        64 << 20
    };
    // SAFETY: set once, before any repository is opened or any thread started.
    unsafe {
        let _ = git2::opts::set_mwindow_size(16 << 20);
        let _ = git2::opts::set_mwindow_mapped_limit(mapped);
    }
    let ctx = Context::new(dir);
    let result = match cli.command {
        Command::Init(args) => init::run(&ctx, args),
        Command::Validate(args) => validate::run(&ctx, args),
        Command::History(args) => history::run(&ctx, args),
        Command::Status(args) => status::run(&ctx, args),
        Command::Show(args) => show::run(&ctx, args),
        Command::Diff(args) => review::diff(&ctx, args),
        Command::Check(args) => review::check(&ctx, args),
        Command::Promote(args) => promote::promote(&ctx, args),
        Command::Set(args) => promote::set(&ctx, args),
        Command::Keys(args) => keys::run(&ctx, args),
        Command::Token(args) => token::run(&ctx, args),
        Command::Reconcile(args) => reconcile::reconcile(&ctx, args),
        Command::Watch(args) => reconcile::watch(&ctx, args),
        Command::Journal(args) => reconcile::journal(&ctx, args),
        Command::Leases(args) => leases::run(&ctx, args),
        Command::Receipts(args) => receipts::run(&ctx, args),
        Command::Audit(args) => audit::run(&ctx, args),
        Command::State(args) => state::run(&ctx, args),
        Command::Serve(args) => serve::run(&ctx, args),
        Command::Completions(args) => docs::completions(Cli::command(), args),
        Command::Man(args) => docs::man(Cli::command(), &ctx, args),
    };
    match result {
        Ok(Outcome::Clean) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(e) if e.broken_pipe => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Whether the command reads and checks every receipt.
fn reads_receipts(command: &Command) -> bool {
    match command {
        Command::Audit(_) | Command::Receipts(_) => true,
        Command::History(args) => args.reads_receipts(),
        _ => false,
    }
}

fn fail(e: &CliError) -> ExitCode {
    use std::io::Write;
    let mut err = anstream::stderr().lock();
    let red = anstyle::AnsiColor::Red.on_default().bold();
    let _ = writeln!(err, "{red}error{red:#}: {}", e.message);
    if let Some(hint) = &e.hint {
        let cyan = anstyle::AnsiColor::Cyan.on_default().bold();
        let _ = writeln!(err, "  {cyan}hint{cyan:#}: {hint}");
    }
    ExitCode::from(2)
}
