//! `ledgit leases`: which replica leads each environment of a shared state store, under which
//! epoch, and until when.

use std::io::Write;

use ledgit::reconcile::pass::repository_id;
use ledgit::reconcile::state::{self, Location};

use super::command_error::{CliError, CliResult, Outcome};
use super::context::{Context, current_full};
use super::render::{self, BOLD, DIM, GREEN, TextOrJson, YELLOW};

/// Show who leads each environment among the replicas sharing a PostgreSQL store.
///
/// Replicas of `ledgit watch` on one PostgreSQL store share the environments: each has one
/// leader at a time, by a lease renewed every third of its time to live. The epoch grows at
/// every change of leader; it is the fencing token actuators receive (LEDGIT_FENCING_TOKEN,
/// X-Ledgit-Fencing-Token). An expired lease is taken by the next replica that asks.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit leases --state postgres://ledgit@db.internal/ledgit
  LEDGIT_STATE=postgres://ledgit@db.internal/ledgit ledgit leases --format json")]
pub struct Args {
    /// The shared state store (a postgres:// URL).
    #[arg(long, value_name = "URL", env = "LEDGIT_STATE", hide_env_values = true)]
    state: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let location = args
        .state
        .as_deref()
        .map(|s| Location::parse(s, &ctx.dir))
        .filter(Location::is_shared)
        .ok_or_else(|| {
            CliError::new(
                "leases live in a shared state store",
                "pass --state postgres://... (or set LEDGIT_STATE); one machine's SQLite store has one reconciler and no leases",
            )
        })?;
    let repository = repository_id(&current_full(ctx, None)?);
    let leases = state::leases(&location, &repository)?;
    let mut out = render::stdout();
    if args.format == TextOrJson::Json {
        render::json(&mut out, &leases)?;
        return Ok(Outcome::Clean);
    }
    if leases.is_empty() {
        writeln!(
            out,
            "no replica has led an environment of this repository in {}",
            location.display()
        )?;
    }
    for l in &leases {
        let (style, state) = if l.live {
            (GREEN, "held")
        } else {
            (YELLOW, "expired")
        };
        writeln!(
            out,
            "{BOLD}{:12}{BOLD:#} {style}{state:8}{style:#} {}  epoch {}  {DIM}since {}, until {}{DIM:#}",
            l.environment, l.holder, l.epoch, l.acquired_at, l.expires_at
        )?;
    }
    Ok(Outcome::Clean)
}
