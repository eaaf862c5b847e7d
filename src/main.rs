//! The `ledgit` binary: parses the command line and renders what the library returns.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
