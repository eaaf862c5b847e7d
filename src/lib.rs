//! ledgit keeps AI-agent deployment records in a git repository and derives everything else
//! from git: validation of the records, the history of what ran where (from the commit log),
//! review of pull requests, deployment tokens tied to each record's identity, and the
//! reconciler that applies the tracked branch to the platform.
//!
//! This crate is the core: it returns values, findings and typed errors, and never prints.
//! Two front ends stand on it: the command line (the `ledgit` binary, `src/main.rs` and
//! `src/cli/`), which renders what the library returns, and [`server`] (behind the `server`
//! feature), `ledgit serve`'s HTTP server, whose log lines go to a sink its embedder chooses.

pub mod error;
pub mod finding;
pub mod git;
pub mod model;
pub mod reconcile;
pub mod review;
#[cfg(feature = "server")]
pub mod server;
pub mod support;
pub mod token;
pub mod view;

pub use error::{Error, Result};
