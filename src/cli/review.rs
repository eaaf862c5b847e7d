//! `ledgit diff` and `ledgit check`: what a pull request changes in terms of deployments, with
//! history's context, and the CI gate that applies the promotion policy to it.

use std::collections::HashSet;
use std::io::{self, Write};

use git2::Oid;
use ledgit::finding::{self, Code, Finding};
use ledgit::git::history::{self, Action, Focus};
use ledgit::git::repo::{Repo, short};
use ledgit::model::Deployment;
use ledgit::model::config::Config;
use ledgit::model::record::{self, Identity, Record};
use ledgit::model::validate::{self, Threads};
use ledgit::review::policy::{self, Change, Stays};
use ledgit::review::settings::SettingChange;
use ledgit::support::{secret, when};

use super::command_error::{CliError, CliResult, Outcome, unknown_environment};
use super::context::Context;
use super::context::{load, load_focused};
use super::render::{self, BOLD, DIM, GREEN, RED, YELLOW};

/// Show what a change of the repository means in deployments.
///
/// Compares the records of two commits by (agent, environment): deployed, updated (marked as a
/// downgrade where semantic versions go down) or removed. For each change it adds what the
/// history of BASE says: for a promotion, since when the version has run in the upstream
/// environment and whether the soak is met; for a rollback, when that version last ran there.
///
/// With --env SRC..DST, shows where two environments differ today: what `ledgit promote --all
/// --from SRC --to DST` would change, with how long each SRC version has run.
///
/// Only agents whose record files differ between BASE and HEAD are compared. Without a history
/// index, BASE's history is read for those agents only and no index is written.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit diff origin/main..HEAD
  ledgit diff origin/main..HEAD --format markdown >> \"$GITHUB_STEP_SUMMARY\"
  ledgit diff --env staging..production")]
pub struct DiffArgs {
    /// BASE..HEAD (a single REV means REV..HEAD).
    #[arg(
        value_name = "BASE..HEAD",
        required_unless_present = "env",
        conflicts_with = "env"
    )]
    range: Option<String>,

    /// SRC..DST: compare two environments at the tip instead.
    #[arg(long, value_name = "SRC..DST")]
    env: Option<String>,

    /// With --env: the commit to read (default HEAD).
    #[arg(long, value_name = "REV", requires = "env")]
    rev: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    format: DiffFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DiffFormat {
    Text,
    Json,
    Markdown,
}

/// Gate a pull request: validate HEAD and apply the promotion policy to each change.
///
/// Validates HEAD's records, then checks every deployment change between BASE and HEAD:
/// promote_from (the version ran in the upstream environment, on BASE's history, or earlier in
/// the same change when no soak is set), soak (it ran there at least that long, measured to
/// --now), downgrades (allowed only as a rollback to a version that ran there before), and no
/// private key in any commit of the change. Each finding names the file and line of the version.
///
/// Overrides are annotations on the record, reviewed with the change, and reported as warnings:
/// ledgit.dev/skip-soak, ledgit.dev/skip-promotion, ledgit.dev/allow-downgrade, each with the
/// reason as its value.
///
/// Without a history index (a fresh CI clone), BASE's history is read for the agents whose
/// records the change touches only, and no index is written; with one, the index is used.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit check --base origin/main
  ledgit check --base origin/main --format github
  ledgit check --base origin/main --format markdown >> \"$GITHUB_STEP_SUMMARY\"

Exit codes: 0 the change passes, 1 it has findings, 2 could not run.")]
pub struct CheckArgs {
    /// The branch the pull request goes into.
    #[arg(long, value_name = "REV")]
    base: String,

    /// The pull request's head (default HEAD).
    #[arg(long, value_name = "REV", default_value = "HEAD")]
    head: String,

    /// The time soak is measured to (default: now).
    #[arg(long, value_name = "TIME")]
    now: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    format: CheckFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CheckFormat {
    Text,
    Json,
    Github,
    Markdown,
}

/// The records a history knows at its tip, as records (for diffing against a tree).
pub fn records_of(rows: &[Deployment]) -> Vec<Record> {
    rows.iter()
        .map(|d| Record {
            agent: d.agent.clone(),
            environment: d.environment.clone(),
            version: d.version.clone(),
            annotations: Default::default(),
            path: d.path.clone(),
            version_line: 1,
            version_column: 1,
        })
        .collect()
}

/// Parses `A..B`, `A..` and `A` (meaning `A..HEAD`).
fn split_range(range: &str) -> (String, String) {
    match range.split_once("..") {
        Some((a, b)) => {
            let b = b.trim_start_matches('.');
            (
                a.to_string(),
                if b.is_empty() {
                    "HEAD".into()
                } else {
                    b.to_string()
                },
            )
        }
        None => (range.to_string(), "HEAD".into()),
    }
}

/// The agents whose record files differ between the trees of base and head, by those files'
/// content on either side; `None` when a record of base does not parse (its pair is then in
/// older content, which only the whole history knows).
fn touched_agents(
    repo: &Repo,
    base_tree: Oid,
    head_tree: Oid,
    config: &Config,
) -> Result<Option<Focus>, CliError> {
    let changed = history::changed_files(&repo.git, Some(base_tree), Some(head_tree))?;
    let read = |blob| -> Result<Option<Identity>, CliError> {
        let blob = repo.git.find_blob(blob).map_err(|e| {
            CliError::new(
                format!("reading a record: {}", e.message()),
                "run `git fsck`",
            )
        })?;
        Ok(record::identity(blob.content()))
    };
    let mut agents = HashSet::new();
    for (path, before, after) in changed {
        if !config.in_deployments(&path) || !record::is_record_file(&path) {
            continue;
        }
        if let Some(blob) = before {
            match read(blob)? {
                Some(id) => agents.insert(id.agent),
                None => return Ok(None),
            };
        }
        if let Some(id) = after.map(read).transpose()?.flatten() {
            agents.insert(id.agent);
        }
    }
    Ok(Some(Focus::new(agents)))
}

/// Whether `base` is an ancestor of `head`.
fn is_ancestor(repo: &Repo, base: Oid, head: Oid) -> bool {
    base == head || repo.git.graph_descendant_of(head, base).unwrap_or(false)
}

/// The changes from base to head, explained by base's history, and head's validation.
struct Review {
    changes: Vec<Change>,
    /// What the change does to ledgit.yaml, tokens.yaml and revocations.yaml.
    settings: Vec<SettingChange>,
    head_report: validate::Report,
    base: Oid,
    head: Oid,
}

fn review(ctx: &Context, base_rev: &str, head_rev: &str, now: i64) -> Result<Review, CliError> {
    let repo = ctx.repo()?;
    let base = repo.resolve(base_rev)?;
    let head = repo.resolve(head_rev)?;
    if !is_ancestor(repo, base, head) {
        anstream::eprintln!(
            "{YELLOW}note{YELLOW:#}: {base_rev} is not an ancestor of {head_rev}; comparing the two states as they are"
        );
    }
    let config = repo.config_at(head)?;
    let head_tree = repo.tree_at(head)?;
    let focus = touched_agents(repo, repo.tree_at(base)?.id(), head_tree.id(), &config)?;
    // Head's files are read first; checking them is CPU work alone, done on a second thread
    // while this one reads base's history (two readers of the same pack slow each other down).
    let files = validate::read_tree(&repo.git, &head_tree, &config)?;
    let (loaded, head_report) = std::thread::scope(|s| {
        let checking = s.spawn(|| files.check(&config, Threads::One));
        let loaded = match &focus {
            // No record changes: nothing to explain, no history to read.
            Some(focus) if focus.is_empty() => None,
            _ => Some(load_focused(ctx, Some(base_rev), focus.as_ref())),
        };
        let report = checking.join().map_err(|_| {
            CliError::new("validating head failed", "run `ledgit validate --rev HEAD`")
        });
        (loaded.transpose(), report)
    });
    let (loaded, head_report) = (loaded?, head_report?);
    let Some(loaded) = loaded else {
        return Ok(Review {
            changes: Vec::new(),
            settings: ledgit::review::settings::changes(repo, base, head),
            head_report,
            base,
            head,
        });
    };
    let base_records = records_of(&loaded.history.current());
    let mut changes = policy::changes(&base_records, &head_report.parsed);
    if let Some(focus) = &focus {
        // Pairs whose files the change leaves alone are not its changes (a focused history
        // knows only the touched agents anyway).
        changes.retain(|c| focus.contains(&c.agent));
    }
    let agents: HashSet<&str> = changes.iter().map(|c| c.agent.as_str()).collect();
    let stays = Stays::of_agents(&loaded.history, |a| agents.contains(a));
    policy::explain(&mut changes, &config, &stays, &head_report.parsed, now);
    Ok(Review {
        changes,
        settings: ledgit::review::settings::changes(repo, base, head),
        head_report,
        base,
        head,
    })
}

pub fn diff(ctx: &Context, args: DiffArgs) -> CliResult {
    let now = chrono::Utc::now().timestamp();
    let (changes, settings) = match (&args.env, &args.range) {
        (Some(envs), _) => (env_diff(ctx, envs, args.rev.as_deref(), now)?, Vec::new()),
        (None, Some(range)) => {
            let (base, head) = split_range(range);
            let r = review(ctx, &base, &head, now)?;
            (r.changes, r.settings)
        }
        (None, None) => unreachable!("clap requires a range or --env"),
    };
    let mut out = render::stdout();
    match args.format {
        // The array of deployment changes, as before; settings changes are in `check`'s JSON.
        DiffFormat::Json => render::json(&mut out, &changes)?,
        DiffFormat::Markdown => {
            changes_markdown(&mut out, &changes)?;
            settings_markdown(&mut out, &settings)?;
        }
        DiffFormat::Text => {
            print_changes(&mut out, &changes)?;
            print_settings(&mut out, &settings)?;
        }
    }
    Ok(Outcome::Clean)
}

/// What promoting every agent from SRC to DST would change, at the tip.
fn env_diff(
    ctx: &Context,
    envs: &str,
    rev: Option<&str>,
    now: i64,
) -> Result<Vec<Change>, CliError> {
    let (src, dst) = envs.split_once("..").ok_or_else(|| {
        CliError::new(
            format!("`{envs}` is not SRC..DST"),
            "write the two environments as staging..production",
        )
    })?;
    let loaded = load(ctx, rev)?;
    for env in [src, dst] {
        if loaded.config.environment(env).is_none() {
            return Err(unknown_environment(&loaded.config, env));
        }
    }
    let current = records_of(&loaded.history.current());
    let mut target = current.clone();
    for r in current.iter().filter(|r| r.environment == src) {
        let path = loaded.config.record_path(&r.agent, dst);
        match target
            .iter_mut()
            .find(|t| t.agent == r.agent && t.environment == dst)
        {
            Some(t) => t.version = r.version.clone(),
            None => target.push(Record {
                environment: dst.to_string(),
                path,
                ..r.clone()
            }),
        }
    }
    let mut changes = policy::changes(&current, &target);
    let stays = Stays::new(&loaded.history);
    policy::explain(&mut changes, &loaded.config, &stays, &current, now);
    // Promotion context is always about SRC here, whatever DST's promote_from says.
    for c in &mut changes {
        if c.promotion.as_ref().is_none_or(|p| p.from != src)
            && let Some(v) = &c.version
        {
            let soak = loaded.config.environment(dst).and_then(|e| e.soak);
            c.promotion = Some(policy::Promotion::measure(
                &stays, &c.agent, src, v, soak, now, false,
            ));
        }
    }
    Ok(changes)
}

fn change_words(c: &Change) -> String {
    let v = c.version.as_deref().unwrap_or("");
    let p = c.previous_version.as_deref().unwrap_or("");
    match c.action {
        Action::Deployed => format!("+ {v}"),
        Action::Removed => format!("- {p}"),
        _ if c.downgrade => format!("{p} -> {v} (downgrade)"),
        _ => format!("{p} -> {v}"),
    }
}

/// One line of context for a change, or an empty string.
fn context(c: &Change) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &c.promotion {
        let text = match (&p.since, p.ran_for) {
            (Some(since), Some(ran)) => {
                let soak = match p.soak {
                    Some(s) if p.soak_met => format!(", soak {} met", when::format_duration(s)),
                    Some(s) => format!(", soak {} not met", when::format_duration(s)),
                    None => String::new(),
                };
                format!(
                    "in {} since {since} (ran {}{soak})",
                    p.from,
                    when::format_duration_short(ran)
                )
            }
            _ if p.upstream_in_this_change => format!("also deployed to {} in this change", p.from),
            _ => format!("never ran in {}", p.from),
        };
        parts.push(text);
    }
    if let Some(r) = &c.rollback {
        parts.push(format!("rollback: last ran here until {}", r.last_ran));
    }
    parts.join("; ")
}

/// The changes as aligned lines with their context, for people.
pub fn print_changes(out: &mut dyn Write, changes: &[Change]) -> io::Result<()> {
    if changes.is_empty() {
        return writeln!(out, "no deployment changes");
    }
    let wa = changes.iter().map(|c| c.agent.len()).max().unwrap_or(0);
    let we = changes
        .iter()
        .map(|c| c.environment.len())
        .max()
        .unwrap_or(0);
    let wc = changes
        .iter()
        .map(|c| change_words(c).len())
        .max()
        .unwrap_or(0);
    for c in changes {
        let words = change_words(c);
        let style = match c.action {
            Action::Deployed => GREEN,
            Action::Removed => RED,
            _ if c.downgrade => YELLOW,
            _ => BOLD,
        };
        let pad = " ".repeat(wc - words.len());
        writeln!(
            out,
            "{:wa$}  {:we$}  {style}{words}{style:#}{pad}  {DIM}{}{DIM:#}",
            c.agent,
            c.environment,
            context(c)
        )?;
    }
    Ok(())
}

/// The settings changes as aligned lines (nothing when there are none).
pub fn print_settings(out: &mut dyn Write, settings: &[SettingChange]) -> io::Result<()> {
    let wf = settings.iter().map(|c| c.file.len()).max().unwrap_or(0);
    let ws = settings.iter().map(|c| c.subject.len()).max().unwrap_or(0);
    for c in settings {
        writeln!(
            out,
            "{:wf$}  {BOLD}{:ws$}{BOLD:#}  {}",
            c.file, c.subject, c.detail
        )?;
    }
    Ok(())
}

fn settings_markdown(out: &mut dyn Write, settings: &[SettingChange]) -> io::Result<()> {
    if settings.is_empty() {
        return Ok(());
    }
    writeln!(out, "\n| File | Subject | Change |")?;
    writeln!(out, "| --- | --- | --- |")?;
    for c in settings {
        writeln!(
            out,
            "| `{}` | `{}` | {} |",
            c.file,
            c.subject,
            c.detail.replace('|', "\\|")
        )?;
    }
    Ok(())
}

fn changes_markdown(out: &mut dyn Write, changes: &[Change]) -> io::Result<()> {
    if changes.is_empty() {
        return writeln!(out, "No deployment changes.");
    }
    writeln!(out, "| Agent | Environment | Change | Context |")?;
    writeln!(out, "| --- | --- | --- | --- |")?;
    for c in changes {
        let v = c.version.as_deref().unwrap_or("");
        let p = c.previous_version.as_deref().unwrap_or("");
        let change = match c.action {
            Action::Deployed => format!("deployed `{v}`"),
            Action::Removed => format!("removed (was `{p}`)"),
            _ if c.downgrade => format!("`{p}` → `{v}` ⚠️ downgrade"),
            _ => format!("`{p}` → `{v}`"),
        };
        writeln!(
            out,
            "| {} | {} | {change} | {} |",
            c.agent,
            c.environment,
            context(c).replace('|', "\\|")
        )?;
    }
    Ok(())
}

pub fn check(ctx: &Context, args: CheckArgs) -> CliResult {
    let now = match &args.now {
        Some(t) => when::parse_time(t, chrono::Utc::now())?.timestamp(),
        None => chrono::Utc::now().timestamp(),
    };
    let r = review(ctx, &args.base, &args.head, now)?;
    let repo = ctx.repo()?;
    let mut findings = r.head_report.findings.clone();
    findings.extend(policy::evaluate(&r.changes));
    findings.extend(keys_in_change(repo, r.base, r.head)?);
    finding::sort(&mut findings);
    findings.dedup_by(|a, b| a.code == b.code && a.path == b.path && a.line == b.line);
    let mut out = render::stdout();
    match args.format {
        CheckFormat::Json => {
            #[derive(serde::Serialize)]
            struct Json<'a> {
                base: String,
                head: String,
                changes: &'a [Change],
                settings: &'a [SettingChange],
                findings: &'a [Finding],
            }
            render::json(
                &mut out,
                &Json {
                    base: r.base.to_string(),
                    head: r.head.to_string(),
                    changes: &r.changes,
                    settings: &r.settings,
                    findings: &findings,
                },
            )?;
        }
        CheckFormat::Github => {
            for f in &findings {
                render::finding_github(&mut out, f)?;
            }
        }
        CheckFormat::Markdown => {
            let verdict = if finding::has_errors(&findings) {
                "❌ ledgit check failed"
            } else {
                "✅ ledgit check passed"
            };
            writeln!(out, "### {verdict}\n")?;
            writeln!(
                out,
                "Base `{}`, head `{}`: {}.\n",
                short(r.base),
                short(r.head),
                render::tally(&findings)
            )?;
            changes_markdown(&mut out, &r.changes)?;
            settings_markdown(&mut out, &r.settings)?;
            if !findings.is_empty() {
                writeln!(out)?;
                for f in &findings {
                    writeln!(
                        out,
                        "- **{}** `{}` {}:{}: {} ({})",
                        f.severity, f.code, f.path, f.line, f.message, f.hint
                    )?;
                }
            }
        }
        CheckFormat::Text => {
            print_changes(&mut out, &r.changes)?;
            print_settings(&mut out, &r.settings)?;
            writeln!(out)?;
            for f in &findings {
                render::finding_text(&mut out, f)?;
            }
            let n = r.changes.len() + r.settings.len();
            writeln!(
                out,
                "{n} change{} checked: {}",
                if n == 1 { "" } else { "s" },
                render::tally(&findings)
            )?;
        }
    }
    Ok(Outcome::from_findings(finding::has_errors(&findings)))
}

/// Private keys added by any commit between base and head (a key added and removed again in
/// the same pull request is still in its history).
fn keys_in_change(repo: &Repo, base: Oid, head: Oid) -> Result<Vec<Finding>, CliError> {
    let git = |e: git2::Error| {
        CliError::new(
            format!("walking the change: {}", e.message()),
            "run `git fsck`",
        )
    };
    let mut walk = repo.git.revwalk().map_err(git)?;
    walk.push(head).map_err(git)?;
    walk.hide(base).map_err(git)?;
    let mut out = Vec::new();
    for id in walk {
        let commit = repo.git.find_commit(id.map_err(git)?).map_err(git)?;
        let parent = commit
            .parent_ids()
            .next()
            .map(|p| repo.git.find_commit(p).map(|c| c.tree_id()));
        let parent = parent.transpose().map_err(git)?;
        for (path, _, after) in
            ledgit::git::history::changed_files(&repo.git, parent, Some(commit.tree_id()))?
        {
            let Some(blob) = after else {
                continue;
            };
            let Ok((size, _)) = repo.git.odb().and_then(|o| o.read_header(blob)) else {
                continue;
            };
            // The same bound as `validate`: a larger file is a finding, never a silent pass.
            if size as u64 > validate::MAX_SCAN_SIZE {
                out.push(
                    Finding::new(
                        Code::Unscanned,
                        &path,
                        1,
                        1,
                        format!(
                            "commit {} adds {path} ({size} bytes), too large to scan for private keys",
                            short(commit.id())
                        ),
                    )
                    .hint("keep large files out of the deployments repository"),
                );
                continue;
            }
            let Ok(blob) = repo.git.find_blob(blob) else {
                continue;
            };
            if let Some(line) = secret::private_key_line(blob.content()) {
                out.push(
                    Finding::new(
                        Code::PrivateKey,
                        &path,
                        line,
                        1,
                        format!("commit {} adds private key material to {path}", short(commit.id())),
                    )
                    .hint("remove the commit from the branch (rewrite it), rotate the key (it is compromised) and keep keys outside the repository"),
                );
            }
        }
    }
    Ok(out)
}
