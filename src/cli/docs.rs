//! `ledgit completions` and `ledgit man`: shell completions and man pages, generated from the
//! command line's own definitions so they cannot drift from it.

use std::io::Write;
use std::path::PathBuf;

use super::command_error::{CliError, CliResult, Outcome};
use super::context::Context;

/// Print a shell completion script.
///
/// bash: `ledgit completions bash > ~/.local/share/bash-completion/completions/ledgit`;
/// zsh: `ledgit completions zsh > "${fpath[1]}/_ledgit"`; fish: `ledgit completions fish >
/// ~/.config/fish/completions/ledgit.fish`.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit completions bash > ~/.local/share/bash-completion/completions/ledgit
  ledgit completions zsh > \"${fpath[1]}/_ledgit\"
  ledgit completions fish > ~/.config/fish/completions/ledgit.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    shell: clap_complete::Shell,
}

/// Write man pages: one for ledgit and one for each subcommand.
///
/// Without DIR, prints ledgit(1) to stdout. With DIR, writes ledgit.1, ledgit-validate.1,
/// ledgit-token-issue.1, ... into it (created if needed).
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit man | man -l -
  sudo ledgit man /usr/local/share/man/man1")]
pub struct ManArgs {
    /// The folder to write the pages into.
    dir: Option<PathBuf>,
}

/// `cli` is the whole command line's definition (the root command).
pub fn completions(mut cmd: clap::Command, args: CompletionsArgs) -> CliResult {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "ledgit", &mut out);
    std::io::stdout().lock().write_all(&out)?;
    Ok(Outcome::Clean)
}

/// Every page: (file name, the command it documents).
fn pages(mut root: clap::Command) -> Vec<(String, clap::Command)> {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            let name = format!("{prefix}-{}", sub.get_name());
            let page = sub
                .clone()
                .name(name.clone())
                .bin_name(name.replace('-', " "));
            out.push((format!("{name}.1"), page.clone()));
            walk(sub, &name, out);
        }
    }
    root.build();
    let mut out = vec![("ledgit.1".to_string(), root.clone())];
    walk(&root, "ledgit", &mut out);
    out
}

fn render(cmd: clap::Command) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .source(concat!("ledgit ", env!("CARGO_PKG_VERSION")))
        .render(&mut buf)?;
    Ok(buf)
}

/// `cli` is the whole command line's definition (the root command).
pub fn man(cli: clap::Command, ctx: &Context, args: ManArgs) -> CliResult {
    let Some(dir) = args.dir else {
        let (_, root) = pages(cli).swap_remove(0);
        std::io::stdout().lock().write_all(&render(root)?)?;
        return Ok(Outcome::Clean);
    };
    let dir = ctx.dir.join(dir);
    std::fs::create_dir_all(&dir).map_err(|e| {
        CliError::new(
            format!("{}: {e}", dir.display()),
            "pass a folder you can write to",
        )
    })?;
    let pages = pages(cli);
    for (file, cmd) in &pages {
        ledgit::support::fsutil::write_atomic(&dir.join(file), &render(cmd.clone())?)?;
    }
    eprintln!("wrote {} man pages to {}", pages.len(), dir.display());
    Ok(Outcome::Clean)
}
