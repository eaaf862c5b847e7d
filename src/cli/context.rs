//! What every command starts from: the directory (`-C`), the repository around it (opened once
//! per command, on first use), and the loading of the tracked branch through the library's
//! [`ledgit::git::load`] with a progress bar on a terminal and the history's caveats on
//! stderr.

use std::cell::OnceCell;
use std::io::Write;
use std::path::PathBuf;

use ledgit::git::history::{History, Progress};
use ledgit::git::repo::{Repo, short};
use ledgit::model::config::Config;
use ledgit::support::when;

use super::command_error::CliError;
use super::render::YELLOW;

/// Global context handed to every command.
pub struct Context {
    /// The directory to start from (`-C`, else the current directory).
    pub dir: PathBuf,
    repo: OnceCell<Repo>,
}

impl Context {
    pub fn new(dir: PathBuf) -> Context {
        Context {
            dir,
            repo: OnceCell::new(),
        }
    }

    /// The repository around the start directory, discovered on first use and then kept.
    pub fn repo(&self) -> Result<&Repo, CliError> {
        if let Some(repo) = self.repo.get() {
            return Ok(repo);
        }
        let repo = Repo::discover(&self.dir)?;
        Ok(self.repo.get_or_init(|| repo))
    }
}

pub use ledgit::git::load::{Current, Loaded};

/// The commit `rev` names (default HEAD), resolved once; `None` on an unborn branch.
pub fn tip_of(ctx: &Context, rev: Option<&str>) -> Result<Option<git2::Oid>, CliError> {
    let repo = ctx.repo()?;
    Ok(match rev {
        Some(r) => Some(repo.resolve(r)?),
        None => repo.head()?,
    })
}

/// A progress bar on stderr for long history walks (drawn only on a terminal).
pub fn progress_bar() -> impl FnMut(Progress) {
    let mut bar: Option<indicatif::ProgressBar> = None;
    move |p: Progress| {
        let bar = bar.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {wide_bar} {pos}/{len}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        match p {
            Progress::Chain(n) => {
                bar.set_message("reading commits");
                bar.set_position(n);
            }
            Progress::Diff(done, total) => {
                bar.set_message("reading records");
                bar.set_length(total);
                bar.set_position(done);
            }
            Progress::Done => bar.finish_and_clear(),
        }
    }
}

/// Loads the history of `rev` (default HEAD) through the index, with a progress bar on a
/// terminal. An unborn branch gives an empty history. Warnings go to stderr.
pub fn load(ctx: &Context, rev: Option<&str>) -> Result<Loaded, CliError> {
    load_focused(ctx, rev, None)
}

/// [`load`], following only the agents in `focus` where there is no index (see
/// [`ledgit::git::load::focused`]).
fn load_focused(
    ctx: &Context,
    rev: Option<&str>,
    focus: Option<&ledgit::git::history::Focus>,
) -> Result<Loaded, CliError> {
    let tip = tip_of(ctx, rev)?;
    if tip.is_none() {
        eprintln!("ledgit: the branch has no commits yet; the history is empty");
    }
    let loaded = ledgit::git::load::focused(ctx.repo()?, tip, focus, &mut progress_bar())?;
    warn(&loaded.history);
    Ok(loaded)
}

/// The history of HEAD for a workflow of the library that reads it only when it needs it: with
/// the progress bar and the history's caveats on stderr, as [`load`] shows them.
pub fn history_of_head(repo: &Repo) -> ledgit::Result<History> {
    let loaded = ledgit::git::load::focused(repo, repo.head()?, None, &mut progress_bar())?;
    warn(&loaded.history);
    Ok(loaded.history)
}

/// The deployments at the tip of `rev` (default HEAD), the config there, and the root of the
/// chain (see [`ledgit::git::load::current`]).
pub fn current_full(ctx: &Context, rev: Option<&str>) -> Result<Current, CliError> {
    let tip = tip_of(ctx, rev)?;
    let repo = ctx.repo()?;
    let mut progress = progress_bar();
    let current = ledgit::git::load::current(repo, tip, &mut progress)?;
    Ok(current)
}

/// The config and the deployments at the tip of `rev` (see [`current_full`]).
pub fn current(
    ctx: &Context,
    rev: Option<&str>,
) -> Result<(Config, Vec<ledgit::model::Deployment>), CliError> {
    let c = current_full(ctx, rev)?;
    Ok((c.config, c.rows))
}

/// Prints the history's caveats to stderr: a shallow boundary and records that did not parse.
pub fn warn(h: &History) {
    let mut err = anstream::stderr().lock();
    if h.shallow()
        && let (Some(first), Some(t)) = (h.chain().first(), h.times().first())
    {
        let _ = writeln!(
            err,
            "{YELLOW}warning{YELLOW:#}: shallow clone: the history is cut at commit {} ({}); earlier deployments are missing.\n  hint: run `git fetch --unshallow` for the complete history",
            short(*first),
            when::rfc3339(*t)
        );
    }
    for w in h.warnings() {
        let c = &h.commits()[w.commit as usize];
        let _ = writeln!(
            err,
            "{YELLOW}warning{YELLOW:#}: {} did not parse at commit {} ({}); it keeps its last parsable version",
            h.str(w.path),
            short(c.id),
            when::rfc3339(c.time)
        );
    }
}
