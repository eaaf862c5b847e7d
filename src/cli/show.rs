//! `ledgit show`: one agent's records, their generations and full history.

use std::io::Write;

use ledgit::git::history::{Action, Event};
use ledgit::git::repo::short;
use ledgit::model::Deployment;
use ledgit::support::when;

use super::command_error::{CliError, CliResult, Outcome};
use super::context::Context;
use super::context::load;
use super::history::{EventJson, commit_strings, event_json};
use super::render::{self, BOLD, DIM, TextOrJson};

/// Show one agent: its records at the tip, their generations, and its full history.
///
/// The generation of a record is the commit at which its (agent, environment) pair last came
/// into existence; deleting a record and creating it again starts a new generation (and
/// invalidates the tokens issued for the old one).
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  ledgit show support-bot\n  ledgit show support-bot production --format json"
)]
pub struct Args {
    /// The agent.
    agent: String,

    /// Only this environment.
    environment: Option<String>,

    /// The branch or commit to read (default: HEAD).
    #[arg(long, value_name = "REV")]
    rev: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    let loaded = load(ctx, args.rev.as_deref())?;
    let h = &loaded.history;
    let wanted = |agent: &str, env: &str| {
        agent == args.agent && args.environment.as_deref().is_none_or(|e| e == env)
    };
    let events: Vec<&Event> = h
        .deployment_events()
        .filter(|e| wanted(h.str(e.agent), h.str(e.environment)))
        .collect();
    if events.is_empty() {
        let agents: Vec<&str> = h.deployment_events().map(|e| h.str(e.agent)).collect();
        let envs: Vec<&str> = h
            .deployment_events()
            .filter(|e| h.str(e.agent) == args.agent)
            .map(|e| h.str(e.environment))
            .collect();
        return Err(match &args.environment {
            Some(env) if !envs.is_empty() => CliError::new(
                format!("agent `{}` has never been deployed to `{env}`", args.agent),
                ledgit::model::shape::known(env, &envs, "environments of this agent"),
            ),
            _ => CliError::new(
                format!("agent `{}` has no deployment history", args.agent),
                ledgit::model::shape::known(&args.agent, &agents, "agents"),
            ),
        });
    }
    let records: Vec<Deployment> = h
        .current()
        .into_iter()
        .filter(|d| wanted(&d.agent, &d.environment))
        .collect();
    let mut out = render::stdout();
    if let TextOrJson::Json = args.format {
        #[derive(serde::Serialize)]
        struct Json<'a> {
            agent: &'a str,
            records: &'a [Deployment],
            history: Vec<EventJson<'a>>,
        }
        let strings = commit_strings(h, &events);
        let history = events.iter().map(|e| event_json(h, &strings, e)).collect();
        render::json(
            &mut out,
            &Json {
                agent: &args.agent,
                records: &records,
                history,
            },
        )?;
        return Ok(Outcome::Clean);
    }
    let now = chrono::Utc::now().timestamp();
    writeln!(out, "{BOLD}{}{BOLD:#}", args.agent)?;
    let order = |env: &str| loaded.config.environment_index(env).unwrap_or(usize::MAX);
    let mut records = records;
    records.sort_by_key(|d| order(&d.environment));
    for d in &records {
        writeln!(
            out,
            "  {:12} {BOLD}{}{BOLD:#}  updated {} ({})  {DIM}{}{DIM:#}\n  {:12} generation {} ({})",
            d.environment,
            d.version,
            when::relative(d.updated_time, now),
            &d.updated_commit[..12],
            d.path,
            "",
            &d.generation[..12],
            when::rfc3339(d.generation_time),
        )?;
    }
    if records.is_empty() {
        writeln!(out, "  no records at the tip (removed)")?;
    }
    writeln!(out, "\n{BOLD}History{BOLD:#}")?;
    for e in &events {
        let c = h.commit_of(e);
        let what = match e.action {
            Action::Deployed => format!("deployed {}", h.opt(e.version).unwrap_or("")),
            Action::Removed => format!("removed (was {})", h.opt(e.previous_version).unwrap_or("")),
            _ => format!(
                "{} -> {}",
                h.opt(e.previous_version).unwrap_or(""),
                h.opt(e.version).unwrap_or("")
            ),
        };
        writeln!(
            out,
            "  {}  {:12} {:28} {DIM}{}{DIM:#}  {}",
            when::rfc3339(c.time),
            h.str(e.environment),
            what,
            short(c.id),
            h.str(c.subject)
        )?;
    }
    Ok(Outcome::Clean)
}
