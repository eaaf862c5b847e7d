//! `ledgit history`: the deployment events of the tracked branch, from the commit log; and the
//! loading of a history (with a progress bar and warnings) that `status` and `show` share.

use std::io::{self, Write};

use ledgit::git::history::{Action, Event, EventFilter, History};
use ledgit::git::repo::short;
use ledgit::receipt::audit::Applied;
use ledgit::support::when;
pub use ledgit::view::json::{EventJson, commit_strings, event_json, pull_request, write_json};

use super::command_error::{CliResult, Outcome};
use super::context::{Context, load};
use super::render::{self, BOLD, DIM, GREEN, RED};

/// Show what ran where, and since when, from the git log.
///
/// Every event on the first-parent chain of the tracked branch (the checked-out branch, or
/// --rev): a record deployed (its pair appeared), updated (its version changed) or removed.
/// The time is the committer time of the commit that landed the change: for a pull request
/// merged with a merge commit, the merge. Oldest first.
///
/// The first run walks the whole chain and saves an index under the git directory; later runs
/// read only the commits that are new.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit history --environment production
  ledgit history --agent support-bot --since 7d
  ledgit history --since 2026-03-01 --until 2026-03-31 --format csv > march.csv
  ledgit history --limit 10 --reverse            the ten newest events, newest first

Times: RFC 3339 (2026-03-03T12:00:00Z), a date (2026-03-03, UTC), or a duration ago (7d, 12h).")]
pub struct Args {
    /// Only this agent.
    #[arg(long, value_name = "AGENT")]
    agent: Option<String>,

    /// Only this environment.
    #[arg(long, visible_alias = "env", value_name = "ENV")]
    environment: Option<String>,

    /// Only events at or after this time.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,

    /// Only events at or before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,

    /// The branch or commit whose history to show (default: HEAD).
    #[arg(long, value_name = "REV")]
    rev: Option<String>,

    /// Newest first.
    #[arg(long)]
    reverse: bool,

    /// Only the N newest matching events.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,

    /// Beside each event, when a signed receipt shows it applied, by which reconciler, and the
    /// lag from the merge (receipts: git notes under refs/notes/ledgit/applied).
    #[arg(long)]
    applied: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

impl Args {
    /// Whether it reads the receipts (`--applied`).
    pub fn reads_receipts(&self) -> bool {
        self.applied
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Csv,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let now = chrono::Utc::now();
    let since = args
        .since
        .as_deref()
        .map(|t| when::parse_time(t, now))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|t| when::parse_time(t, now))
        .transpose()?;
    let loaded = load(ctx, args.rev.as_deref())?;
    let h = &loaded.history;
    let filter = EventFilter {
        agent: args.agent.as_deref(),
        environment: args.environment.as_deref(),
        since: since.map(|s| s.timestamp()),
        until: until.map(|u| u.timestamp()),
    };
    let mut events: Vec<(usize, &Event)> = h
        .events()
        .iter()
        .enumerate()
        .filter(|(_, e)| h.keeps(&filter, e))
        .collect();
    if let Some(n) = args.limit {
        let skip = events.len().saturating_sub(n);
        events.drain(..skip);
    }
    if args.reverse {
        events.reverse();
    }
    if args.applied {
        let receipts = super::audit::receipts(ctx, h)?;
        let applied = ledgit::receipt::audit::applied_events(h, &receipts);
        let rows: Vec<(&Event, Option<&Applied>)> = events
            .iter()
            .map(|(i, e)| (*e, applied[*i].as_ref()))
            .collect();
        return write_applied(args.format, h, &rows);
    }
    let events: Vec<&Event> = events.into_iter().map(|(_, e)| e).collect();
    match args.format {
        Format::Json => write_json(&mut render::plain_stdout(), h, &events)?,
        Format::Csv => {
            let mut out = io::BufWriter::with_capacity(1 << 16, render::plain_stdout());
            write_csv(&mut out, h, &events)?;
            out.flush()?;
        }
        Format::Text => {
            let mut out = io::BufWriter::with_capacity(1 << 16, render::stdout());
            write_text(&mut out, h, &events)?;
            out.flush()?;
        }
    }
    Ok(Outcome::Clean)
}

/// An event with when it was applied (`history --applied --format json`).
#[derive(serde::Serialize)]
struct AppliedJson<'a> {
    #[serde(flatten)]
    event: EventJson<'a>,
    applied: Option<&'a Applied>,
}

fn write_applied(format: Format, h: &History, rows: &[(&Event, Option<&Applied>)]) -> CliResult {
    let events: Vec<&Event> = rows.iter().map(|(e, _)| *e).collect();
    let strings = commit_strings(h, &events);
    match format {
        Format::Json => {
            // One array, one event per line, as plain `history --format json` writes it.
            let mut out = io::BufWriter::with_capacity(1 << 16, render::plain_stdout());
            out.write_all(b"[")?;
            for (i, (e, a)) in rows.iter().enumerate() {
                out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
                let item = AppliedJson {
                    event: event_json(h, &strings, e),
                    applied: *a,
                };
                serde_json::to_writer(&mut out, &item).map_err(std::io::Error::from)?;
            }
            out.write_all(if rows.is_empty() { b"]\n" } else { b"\n]\n" })?;
            out.flush()?;
        }
        Format::Csv => {
            let mut out = io::BufWriter::new(render::plain_stdout());
            writeln!(
                out,
                "time,agent,environment,action,version,previous_version,commit,applied_at,lag_seconds,reconciler"
            )?;
            for (e, a) in rows {
                let j = event_json(h, &strings, e);
                let lag = a.map(|a| a.lag_seconds.to_string()).unwrap_or_default();
                let fields = [
                    j.time,
                    j.agent,
                    j.environment,
                    j.action,
                    j.version.unwrap_or(""),
                    j.previous_version.unwrap_or(""),
                    j.commit,
                    a.map(|a| a.applied_at.as_str()).unwrap_or(""),
                    &lag,
                    a.map(|a| a.reconciler.as_str()).unwrap_or(""),
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                writeln!(out, "{}", line.join(","))?;
            }
            out.flush()?;
        }
        Format::Text => {
            let mut out = io::BufWriter::new(render::stdout());
            if rows.is_empty() {
                writeln!(out, "no deployment events")?;
            }
            let mut table = vec![vec![
                "DECLARED".to_string(),
                "AGENT".into(),
                "ENVIRONMENT".into(),
                "CHANGE".into(),
                "APPLIED".into(),
                "LAG".into(),
                "BY".into(),
            ]];
            for (e, a) in rows {
                let c = h.commit_of(e);
                let v = h.opt(e.version).unwrap_or("");
                let p = h.opt(e.previous_version).unwrap_or("");
                let change = match e.action {
                    Action::Deployed => format!("+ {v}"),
                    Action::Removed => format!("- {p}"),
                    _ => format!("{p} -> {v}"),
                };
                let (applied, lag, by) = match a {
                    Some(a) => (
                        minute(a.applied_time),
                        when::format_duration_short(a.lag_seconds.max(0)),
                        a.reconciler.clone(),
                    ),
                    None => (
                        format!("{DIM}not applied{DIM:#}"),
                        String::new(),
                        String::new(),
                    ),
                };
                table.push(vec![
                    minute(c.time),
                    h.str(e.agent).to_string(),
                    h.str(e.environment).to_string(),
                    change,
                    applied,
                    lag,
                    by,
                ]);
            }
            if !rows.is_empty() {
                render::table(&mut out, &table)?;
            }
            out.flush()?;
        }
    }
    Ok(Outcome::Clean)
}

fn minute(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn write_csv(out: &mut dyn Write, h: &History, events: &[&Event]) -> io::Result<()> {
    writeln!(
        out,
        "time,agent,environment,action,version,previous_version,commit,author,author_time,subject"
    )?;
    let strings = commit_strings(h, events);
    for e in events {
        let j = event_json(h, &strings, e);
        let fields = [
            j.time,
            j.agent,
            j.environment,
            j.action,
            j.version.unwrap_or(""),
            j.previous_version.unwrap_or(""),
            j.commit,
            j.author,
            j.author_time,
            j.subject,
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        writeln!(out, "{}", line.join(","))?;
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_text(out: &mut dyn Write, h: &History, events: &[&Event]) -> io::Result<()> {
    if events.is_empty() {
        return writeln!(out, "no deployment events");
    }
    let wa = events
        .iter()
        .map(|e| h.str(e.agent).len())
        .max()
        .unwrap_or(0);
    let we = events
        .iter()
        .map(|e| h.str(e.environment).len())
        .max()
        .unwrap_or(0);
    // Padding is computed on the plain text, so colour codes do not break the alignment.
    let change = |e: &Event| {
        let v = h.opt(e.version).unwrap_or("");
        let p = h.opt(e.previous_version).unwrap_or("");
        let (plain, styled) = match e.action {
            Action::Deployed => (format!("+ {v}"), format!("{GREEN}+ {v}{GREEN:#}")),
            Action::Removed => (format!("- {p}"), format!("{RED}- {p}{RED:#}")),
            _ => (format!("{p} -> {v}"), format!("{p} -> {BOLD}{v}{BOLD:#}")),
        };
        let pad = " ".repeat(24usize.saturating_sub(plain.chars().count()));
        format!("{styled}{pad}")
    };
    for e in events {
        let c = h.commit_of(e);
        let time = chrono::DateTime::from_timestamp(c.time, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default();
        let (author, subject) = (h.str(c.author), h.str(c.subject));
        let name = author.split(" <").next().unwrap_or(author);
        let pr = pull_request(subject)
            .filter(|n| !subject.contains(&format!("#{n} ")))
            .map(|n| format!("#{n} "))
            .unwrap_or_default();
        writeln!(
            out,
            "{time}  {:wa$}  {:we$}  {}  {DIM}{}{DIM:#}  {name}  {pr}{DIM}{}{DIM:#}",
            h.str(e.agent),
            h.str(e.environment),
            change(e),
            short(c.id),
            subject,
        )?;
    }
    Ok(())
}
