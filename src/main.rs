//! The `ledgit` binary: the command line (`cli`), which parses arguments and renders what the
//! library returns; `ledgit serve` runs the library's server (`ledgit::server`).

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
