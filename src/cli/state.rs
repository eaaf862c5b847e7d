//! `ledgit state migrate`: copy one machine's SQLite state store into a shared PostgreSQL one.

use std::io::Write;
use std::path::PathBuf;

use ledgit::reconcile::state::{self, Location};

use super::command_error::{CliError, CliResult, Outcome};
use super::context::Context;
use super::render::{self, GREEN, TextOrJson};

/// Manage the reconciler's state store.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Migrate(MigrateArgs),
}

/// Copy an SQLite state store (applied versions, failures, the whole journal) into PostgreSQL.
///
/// The copy is one transaction: it is complete or absent. A target that already holds state
/// for the repository is refused, so a copy never mixes with what replicas wrote. Attempts the
/// old store still shows as running are copied as interrupted. Stop the reconciler on the old
/// store first; then start the replicas with --state URL.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit state migrate --from .git/ledgit/reconcile.sqlite --to postgres://ledgit@db.internal/ledgit")]
struct MigrateArgs {
    /// The SQLite store (relative to -C).
    #[arg(long, value_name = "PATH")]
    from: PathBuf,

    /// The PostgreSQL store.
    #[arg(long, value_name = "URL")]
    to: String,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let Command::Migrate(args) = args.command;
    let Location::Postgres(url) = Location::parse(&args.to, &ctx.dir) else {
        return Err(CliError::new(
            format!("`{}` is not a postgres:// URL", args.to),
            "pass --to postgres://USER@HOST/DATABASE",
        ));
    };
    let from = ctx.dir.join(&args.from);
    let migrated = state::migrate(&from, &url, None)?;
    let mut out = render::stdout();
    if args.format == TextOrJson::Json {
        render::json(&mut out, &migrated)?;
    } else {
        writeln!(
            out,
            "{GREEN}copied{GREEN:#} {} applied, {} failures and {} journal entries of repository {} to {}",
            migrated.applied,
            migrated.failures,
            migrated.journal,
            migrated.repository,
            Location::Postgres(url).display()
        )?;
    }
    Ok(Outcome::Clean)
}
