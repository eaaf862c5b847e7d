//! How a command ends: an [`Outcome`] (exit 0, or 1 when the repository has findings) or a
//! [`CliError`] (exit 2) that says what went wrong and what the user can do about it. Library
//! errors convert with their hint; output errors too, except a reader that went away.

use ledgit::model::config::Config;

/// How a command that ran ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0: done, nothing wrong.
    Clean,
    /// Exit 1: done, and the repository has findings.
    Findings,
}

impl Outcome {
    pub fn from_findings(has_errors: bool) -> Self {
        if has_errors {
            Outcome::Findings
        } else {
            Outcome::Clean
        }
    }
}

/// A command that could not run (exit 2), with what to do about it.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub hint: Option<String>,
    /// The reader of our output went away (`ledgit history | head`): not an error.
    pub broken_pipe: bool,
}

impl From<ledgit::Error> for CliError {
    fn from(e: ledgit::Error) -> Self {
        CliError {
            hint: e.hint(),
            message: e.to_string(),
            broken_pipe: false,
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError {
            message: format!("writing output: {e}"),
            hint: None,
            broken_pipe: e.kind() == std::io::ErrorKind::BrokenPipe,
        }
    }
}

impl CliError {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            hint: Some(hint.into()),
            broken_pipe: false,
        }
    }
}

pub type CliResult = Result<Outcome, CliError>;

pub fn unknown_environment(config: &Config, env: &str) -> CliError {
    config.unknown_environment(env).into()
}
