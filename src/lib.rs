//! ledgit keeps AI-agent deployment records in a git repository and derives everything else
//! from git: validation of the records, the history of what ran where (from the commit log),
//! review of pull requests, deployment tokens tied to each record's identity, and the
//! reconciler that applies the tracked branch to the platform.
//!
//! This crate is the core: it returns values, findings and typed errors, and never prints. Its
//! groups, each using only those listed before it:
//!
//! - [`error`] and [`finding`]: why an operation could not run; findings as data.
//! - [`support`]: atomic writes, times, YAML with spans, HMAC, the secret scan.
//! - [`model`]: the files of a repository (config, records, the token ledger, the revocation
//!   list), the agent deployment, the parser-based editor, and validation.
//! - [`token`]: Ed25519 keys, deployment tokens (JWS), their verification.
//! - [`git`]: the repository, the history engine and its index, loading a commit, `init`.
//! - [`receipt`]: signed apply receipts in git notes, their verification and the audit.
//! - [`review`]: the policy and its gates, plans, settings changes, the page's proposals.
//! - [`reconcile`]: the reconciler's passes, its actuators and its state store.
//! - [`view`]: what the pages show, as data, and the JSON of events.
//!
//! Two front ends stand on it: the command line (the `ledgit` binary, `src/main.rs` and
//! `src/cli/`, behind the `cli` feature), which renders what the library returns, and
//! [`server`] (behind the `server` feature), `ledgit serve`'s HTTP server, whose log lines go
//! to a sink its embedder chooses. `tests/it/architecture.rs` holds the groups to this order.

pub mod error;
pub mod finding;
pub mod git;
pub mod model;
pub mod receipt;
pub mod reconcile;
pub mod review;
#[cfg(feature = "server")]
pub mod server;
pub mod support;
pub mod token;
pub mod view;

pub use error::{Error, Result};
