//! `ledgit status`: the deployment snapshot, one row per agent and one column per environment.

use std::collections::BTreeMap;
use std::io::Write;

use ledgit::history::Deployment;
use ledgit::repo::short;
use ledgit::when;

use super::history::{current, load};
use super::render::{self, BOLD, DIM, YELLOW};
use super::{CliResult, Context, Outcome};

/// Show which version of each agent runs in each environment.
///
/// One row per agent, one column per environment in promotion order; each cell is the version
/// and when it was last updated. Agents whose environments run different versions are marked
/// with `*` (a promotion is pending, or the difference is on purpose).
///
/// With --at, the snapshot at that time: the state after the newest commit of the branch whose
/// committer time is at or before it ("what ran in production on 3 March at noon?").
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit status
  ledgit status --at 2026-03-03T12:00:00Z
  ledgit status --rev origin/main --format json")]
pub struct Args {
    /// The branch or commit to read (default: HEAD).
    #[arg(long, value_name = "REV")]
    rev: Option<String>,

    /// The snapshot at this time (RFC 3339, a date, or a duration ago such as 7d).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let now = chrono::Utc::now();
    let at = args
        .at
        .as_deref()
        .map(|t| when::parse_time(t, now))
        .transpose()?;
    let (config, rows, snapshot_at) = match at {
        None => {
            let (config, rows) = current(ctx, args.rev.as_deref())?;
            (config, rows, None)
        }
        Some(t) => {
            let loaded = load(ctx, args.rev.as_deref())?;
            let h = &loaded.history;
            let pos = h.position_at(t.timestamp());
            let as_of = pos.map(|p| (h.chain[p as usize], h.times[p as usize]));
            (loaded.config.clone(), h.snapshot(pos), Some((t, as_of)))
        }
    };
    let mut out = render::stdout();
    if let Format::Json = args.format {
        render::json(&mut out, &rows)?;
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
    let mut envs: Vec<String> = config.environments.iter().map(|e| e.name.clone()).collect();
    for r in &rows {
        if !envs.contains(&r.environment) {
            envs.push(r.environment.clone());
        }
    }
    table(&mut out, &rows, &envs, now.timestamp())?;
    Ok(Outcome::Clean)
}

fn table(
    out: &mut dyn Write,
    rows: &[Deployment],
    envs: &[String],
    now: i64,
) -> std::io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "no deployments");
    }
    let mut by_agent: BTreeMap<&str, BTreeMap<&str, &Deployment>> = BTreeMap::new();
    for r in rows {
        by_agent
            .entry(&r.agent)
            .or_default()
            .insert(&r.environment, r);
    }
    let cell = |d: Option<&&Deployment>| match d {
        Some(d) => format!("{} ({})", d.version, when::relative(d.updated_time, now)),
        None => "-".to_string(),
    };
    let agent_w = by_agent
        .keys()
        .map(|a| a.len())
        .max()
        .unwrap_or(0)
        .max("AGENT".len());
    let widths: Vec<usize> = envs
        .iter()
        .map(|e| {
            by_agent
                .values()
                .map(|m| cell(m.get(e.as_str())).chars().count())
                .chain([e.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    write!(out, "  {BOLD}{:agent_w$}{BOLD:#}", "AGENT")?;
    for (e, w) in envs.iter().zip(&widths) {
        write!(out, "  {BOLD}{:w$}{BOLD:#}", e.to_uppercase())?;
    }
    writeln!(out)?;
    let mut differing = 0;
    for (agent, cells) in &by_agent {
        let mut versions: Vec<&str> = cells.values().map(|d| d.version.as_str()).collect();
        versions.dedup();
        let differs = {
            versions.sort_unstable();
            versions.dedup();
            versions.len() > 1
        };
        differing += usize::from(differs);
        let marker = if differs {
            format!("{YELLOW}*{YELLOW:#}")
        } else {
            " ".into()
        };
        write!(out, "{marker} {agent:agent_w$}")?;
        for (e, w) in envs.iter().zip(&widths) {
            let text = cell(cells.get(e.as_str()));
            let pad = " ".repeat(w.saturating_sub(text.chars().count()));
            if differs {
                write!(out, "  {YELLOW}{text}{YELLOW:#}{pad}")?;
            } else {
                write!(out, "  {text}{pad}")?;
            }
        }
        writeln!(out)?;
    }
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
