//! The `ledgit` binary: the command line (`cli`), which parses arguments and renders what the
//! library returns, and the server (`server`), the second front end on the same library.

mod cli;
mod server;

fn main() -> std::process::ExitCode {
    cli::run()
}
