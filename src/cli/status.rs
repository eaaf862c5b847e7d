//! `ledgit status`: the deployment snapshot, one row per agent and one column per environment.

use std::io::Write;

use ledgit::git::repo::short;
use ledgit::model::Deployment;
use ledgit::reconcile::state::{Sync, SyncState};
use ledgit::support::when;
use ledgit::view::{Cell, Overview};

use super::command_error::{CliError, CliResult, Outcome};
use super::context::Context;
use super::context::{current_full, load};
use super::render::{self, BOLD, DIM, TextOrJson, YELLOW};

/// Show which version of each agent runs in each environment.
///
/// One row per agent, one column per environment in promotion order; each cell is the version
/// and when it was last updated. Agents whose environments run different versions are marked
/// with `*` (a promotion is pending, or the difference is on purpose).
///
/// With --at, the snapshot at that time: the state after the newest commit of the branch whose
/// committer time is at or before it ("what ran in production on 3 March at noon?").
///
/// Where a reconciler has run, each record also shows whether the platform is in sync with it:
/// Synced, OutOfSync, Failed (with the last error) or Pending.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit status
  ledgit status --at 2026-03-03T12:00:00Z
  ledgit status --rev origin/main --format json
  ledgit status --state /var/lib/ledgit/prod.sqlite   sync states from that reconciler's store")]
pub struct Args {
    /// The branch or commit to read (default: HEAD).
    #[arg(long, value_name = "REV")]
    rev: Option<String>,

    /// The snapshot at this time (RFC 3339, a date, or a duration ago such as 7d).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,

    /// The reconciler's state store to read sync states from: a path (default: under the
    /// repository's git directory, where `ledgit reconcile` keeps it) or a postgres:// URL.
    #[arg(
        long,
        value_name = "PATH|URL",
        env = "LEDGIT_STATE",
        hide_env_values = true
    )]
    state: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let now = chrono::Utc::now();
    let at = args
        .at
        .as_deref()
        .map(|t| when::parse_time(t, now))
        .transpose()?;
    // Where a reconciler has run, what it applied and whether each record is in sync. The
    // platform's state is now, so a snapshot of the past has none.
    let (config, rows, snapshot_at, sync) = match at {
        None => {
            let c = current_full(ctx, args.rev.as_deref())?;
            let repository = ledgit::reconcile::pass::repository_id(&c);
            let sync = sync_states(ctx, &c.rows, args.state.as_deref(), &repository)?;
            (c.config, c.rows, None, sync)
        }
        Some(t) => {
            if args.state.is_some() {
                anstream::eprintln!(
                    "{YELLOW}note{YELLOW:#}: --state is ignored with --at: sync states are about the platform now"
                );
            }
            let loaded = load(ctx, args.rev.as_deref())?;
            let h = &loaded.history;
            let pos = h.position_at(t.timestamp());
            let as_of = pos.map(|p| (h.chain()[p as usize], h.times()[p as usize]));
            (
                loaded.config.clone(),
                h.snapshot(pos),
                Some((t, as_of)),
                None,
            )
        }
    };
    let mut out = render::stdout();
    if let TextOrJson::Json = args.format {
        match &sync {
            Some(states) => {
                let rows: Vec<StatusRow> = rows
                    .iter()
                    .zip(states)
                    .map(|(d, s)| StatusRow {
                        deployment: d,
                        applied_version: s.applied.as_deref(),
                        sync: s.state,
                        last_error: s.error.as_deref(),
                    })
                    .collect();
                render::json(&mut out, &rows)?;
            }
            None => render::json(&mut out, &rows)?,
        }
        return Ok(Outcome::Clean);
    }
    if let Some((t, as_of)) = snapshot_at {
        match as_of {
            Some((commit, time)) => writeln!(
                out,
                "{BOLD}Snapshot at {}{BOLD:#} {DIM}(as of commit {}, {}){DIM:#}\n",
                when::rfc3339(t.timestamp()),
                short(commit),
                when::rfc3339(time)
            )?,
            None => writeln!(
                out,
                "Nothing was deployed at {}: the branch's first commit is later.",
                when::rfc3339(t.timestamp())
            )?,
        }
    }
    // The snapshot the page and `/v1/agents` show, computed by the same code: the columns, the
    // rows and the drift marks cannot disagree.
    let digest = ledgit::view::Digest::new(&config, &rows, sync.as_deref());
    let overview = ledgit::view::overview(
        &rows,
        sync.as_deref(),
        &digest,
        &ledgit::view::Selection {
            all: true,
            ..Default::default()
        },
    );
    table(&mut out, &overview, now.timestamp())?;
    if let Some(states) = &sync {
        for (d, s) in rows
            .iter()
            .zip(states)
            .filter(|(_, s)| s.state != SyncState::Synced)
        {
            let applied = s
                .applied
                .as_deref()
                .map(|v| format!(", applied {v}"))
                .unwrap_or_default();
            let error = s
                .error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            writeln!(
                out,
                "{YELLOW}{}{YELLOW:#} {}/{} {}{applied}{error}",
                s.state, d.agent, d.environment, d.version
            )?;
        }
    }
    Ok(Outcome::Clean)
}

/// A status row with the reconciler's view.
#[derive(serde::Serialize)]
struct StatusRow<'a> {
    #[serde(flatten)]
    deployment: &'a Deployment,
    applied_version: Option<&'a str>,
    sync: SyncState,
    last_error: Option<&'a str>,
}

/// Sync states of the rows, from the state store (`--state`, else the default one); `None`
/// when no reconciler has run. A store given with `--state` must exist.
fn sync_states(
    ctx: &Context,
    rows: &[Deployment],
    state: Option<&str>,
    repository: &str,
) -> Result<Option<Vec<Sync>>, CliError> {
    let repo = ctx.repo()?;
    let location = super::reconcile::location(repo, state, ctx);
    if let ledgit::reconcile::state::Location::Sqlite(path) = &location
        && state.is_some()
        && !path.exists()
    {
        return Err(CliError::new(
            format!("no state store at {}", path.display()),
            "check the path, or run `ledgit reconcile --state PATH` to create one",
        ));
    }
    Ok(ledgit::reconcile::state::view(&location, repository)?.map(|view| view.sync_states(rows)))
}

fn table(out: &mut dyn Write, overview: &Overview, now: i64) -> std::io::Result<()> {
    if overview.agents.is_empty() {
        return writeln!(out, "no deployments");
    }
    let cell = |c: &Option<Cell>| match c {
        Some(c) => {
            let mark = match c.sync {
                Some(SyncState::Synced) | None => "",
                Some(SyncState::Failed) => " !failed",
                Some(SyncState::Pending) => " ~pending",
                Some(SyncState::OutOfSync) => " ~out-of-sync",
            };
            format!(
                "{} ({}){mark}",
                c.version,
                when::relative(c.since_time, now)
            )
        }
        None => "-".to_string(),
    };
    let texts: Vec<Vec<String>> = overview
        .agents
        .iter()
        .map(|r| r.cells.iter().map(cell).collect())
        .collect();
    let agent_w = overview
        .agents
        .iter()
        .map(|r| r.agent.len())
        .max()
        .unwrap_or(0)
        .max("AGENT".len());
    let widths: Vec<usize> = overview
        .environments
        .iter()
        .enumerate()
        .map(|(i, e)| {
            texts
                .iter()
                .map(|t| t[i].chars().count())
                .chain([e.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    write!(out, "  {BOLD}{:agent_w$}{BOLD:#}", "AGENT")?;
    for (e, w) in overview.environments.iter().zip(&widths) {
        write!(out, "  {BOLD}{:w$}{BOLD:#}", e.to_uppercase())?;
    }
    writeln!(out)?;
    for (row, texts) in overview.agents.iter().zip(&texts) {
        let marker = if row.drift {
            format!("{YELLOW}*{YELLOW:#}")
        } else {
            " ".into()
        };
        write!(out, "{marker} {:agent_w$}", row.agent)?;
        for (text, w) in texts.iter().zip(&widths) {
            let pad = " ".repeat(w.saturating_sub(text.chars().count()));
            if row.drift {
                write!(out, "  {YELLOW}{text}{YELLOW:#}{pad}")?;
            } else {
                write!(out, "  {text}{pad}")?;
            }
        }
        writeln!(out)?;
    }
    let differing = overview.agents.iter().filter(|r| r.drift).count();
    if differing > 0 {
        let plural = if differing == 1 {
            "agent runs"
        } else {
            "agents run"
        };
        writeln!(
            out,
            "\n{YELLOW}*{YELLOW:#} {differing} {plural} different versions across environments"
        )?;
    }
    Ok(())
}
