//! ledgit keeps AI-agent deployment records in a git repository and derives everything else
//! from git: validation of the records, the history of what ran where (from the commit log),
//! review of pull requests, deployment tokens tied to each record's identity, and the
//! reconciler that applies the tracked branch to the platform.
//!
//! This crate is the core: it returns values, findings and typed errors, and never prints.
//! The `ledgit` binary (`src/main.rs`, `src/cli/`) renders them.

pub mod actuator;
pub mod config;
pub mod edit;
pub mod error;
pub mod finding;
pub mod fsutil;
pub mod history;
pub mod hmac;
pub mod index;
pub mod init;
pub mod json;
pub mod ledger;
pub mod load;
pub mod plan;
pub mod policy;
pub mod proposal;
pub mod reconcile;
pub mod record;
pub mod repo;
pub mod revocations;
pub mod secret;
pub mod settings;
pub mod shape;
pub mod state;
pub mod token;
pub mod validate;
pub mod view;
pub mod when;
pub mod yaml;

pub use error::{Error, Result};
