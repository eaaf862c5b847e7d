//! What a receipt says: an in-toto Statement v1 whose subject is the record file that was
//! applied (its path, with the `sha256` and git blob id of its content at the applied commit)
//! and whose predicate, of ledgit's own versioned type, describes the apply. A removal's record
//! is gone at the commit it applied, so its subject names the path with the commit
//! (`gitCommit`) instead of a content digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The in-toto Statement type this crate writes and reads.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of an apply receipt. A later, incompatible predicate gets `/v2`.
pub const PREDICATE_TYPE: &str = "https://ledgit.dev/apply/v1";

/// An in-toto Statement v1 with ledgit's apply predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    pub predicate: Apply,
}

/// An in-toto resource descriptor: the record file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    /// `sha256` and `gitBlob` of the record's content, or `gitCommit` for a removal.
    pub digest: BTreeMap<String, String>,
}

/// One applied action, as the reconciler that applied it saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Apply {
    pub agent: String,
    pub environment: String,
    /// `deploy`, `update` or `remove`.
    pub action: String,
    /// The version applied (none for a removal).
    pub version: Option<String>,
    pub previous_version: Option<String>,
    /// The record's generation: the commit at which the pair last came into existence.
    pub generation: String,
    /// The commit applied: the tip of the tracked branch the pass read.
    pub commit: String,
    /// When the actuator reported success (RFC 3339, UTC).
    pub applied_at: String,
    pub duration_ms: i64,
    /// What applied it: `exec: <program>` or `webhook: <url>`.
    pub actuator: String,
    /// The reconciler's id under `reconcilers:` (also the signature's `keyid`).
    pub reconciler: String,
    /// The machine, and the process on it, that applied it: `host (pid N)`.
    pub host: String,
    pub idempotency_key: String,
    /// The lease epoch it ran under (replicas sharing a PostgreSQL store).
    pub epoch: Option<i64>,
}

impl Statement {
    /// The statement of `apply` on the record at `path`: with its content's digests, or for a
    /// removal (`content` none) with the commit.
    pub fn new(apply: Apply, path: &str, content: Option<(&[u8], git2::Oid)>) -> Statement {
        let mut digest = BTreeMap::new();
        match content {
            Some((bytes, blob)) => {
                let sha = ring::digest::digest(&ring::digest::SHA256, bytes);
                digest.insert("sha256".into(), crate::support::hex::encode(sha.as_ref()));
                digest.insert("gitBlob".into(), blob.to_string());
            }
            None => {
                digest.insert("gitCommit".into(), apply.commit.clone());
            }
        }
        Statement {
            statement_type: STATEMENT_TYPE.into(),
            subject: vec![Subject {
                name: path.to_string(),
                digest,
            }],
            predicate_type: PREDICATE_TYPE.into(),
            predicate: apply,
        }
    }

    /// The record file the statement is about.
    pub fn record(&self) -> Option<&Subject> {
        self.subject.first()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::receipt) fn apply() -> Apply {
        Apply {
            agent: "billing".into(),
            environment: "production".into(),
            action: "update".into(),
            version: Some("2.0.0".into()),
            previous_version: Some("1.9.0".into()),
            generation: "a".repeat(40),
            commit: "b".repeat(40),
            applied_at: "2026-03-03T10:00:00Z".into(),
            duration_ms: 1200,
            actuator: "exec: deploy.sh".into(),
            reconciler: "r1".into(),
            host: "box (pid 7)".into(),
            idempotency_key: "k".into(),
            epoch: None,
        }
    }

    #[test]
    fn the_subject_carries_both_digests_or_the_commit() {
        let blob = git2::Oid::hash_object(git2::ObjectType::Blob, b"x").unwrap();
        let s = Statement::new(
            apply(),
            "deployments/billing/production.yaml",
            Some((b"x", blob)),
        );
        let d = &s.record().unwrap().digest;
        assert_eq!(
            d["sha256"],
            "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
        assert_eq!(d["gitBlob"], blob.to_string());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["_type"], STATEMENT_TYPE);
        assert_eq!(json["predicateType"], PREDICATE_TYPE);
        let removal = Statement::new(apply(), "p", None);
        assert_eq!(removal.subject[0].digest["gitCommit"], "b".repeat(40));
    }
}
