//! Apply receipts: the signed record that a reconciler applied an action, kept in git beside
//! the commit it applied, so the repository proves what ran where and when, not only what was
//! declared. A receipt is an in-toto Statement v1 ([`statement`]) in a DSSE envelope signed
//! with the reconciler's Ed25519 key ([`envelope`]), one line of a git note under
//! `refs/notes/ledgit/applied` ([`notes`]). The reconciler signs and writes them ([`writer`]);
//! [`check`] verifies every one against `ledgit.yaml`'s `reconcilers:` at its commit, and
//! [`audit`] sets what they say ran beside what the branch declared; [`cache`] keeps the
//! checked notes so that each is read and verified once.

pub mod audit;
pub mod cache;
pub mod check;
pub mod envelope;
pub mod notes;
pub mod statement;
pub mod writer;

pub use check::Receipt;
pub use envelope::Envelope;
pub use notes::NOTES_REF;
pub use statement::{Apply, Statement};
pub use writer::Writer;
