//! The model: the files a ledgit repository is made of and what they mean, read from text
//! with findings that name file, line and column. `ledgit.yaml` ([`config`]), one record per
//! agent per environment ([`record`], their shared [`shape`]), the agent deployment itself
//! ([`deployment`]), the ledger of tokens issued ([`ledger`]) and the list of tokens revoked
//! ([`revocations`]); the parser-based editor that changes one field and keeps every other
//! byte ([`edit`]); and the validation of a whole tree ([`validate`]). The model knows nothing
//! of git, of tokens' cryptography, or of the reconciler: those groups stand on it.

pub mod config;
pub mod deployment;
pub mod edit;
pub mod ledger;
pub mod record;
pub mod revocations;
pub mod shape;
pub mod validate;

pub use deployment::Deployment;
