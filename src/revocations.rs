//! The revocation list, `revocations.yaml` at the repository root: the token ids that no longer
//! verify, whatever else holds. This module reads it with findings that point at the line, as
//! the token ledger and the records are read, so that `validate` and `check` refuse a list that
//! would make every token check fail once merged; the verifier and `token revoke` read it
//! through the same function.

use crate::config::API_VERSION;
use crate::finding::{Code, Finding};
use crate::shape::Checker;
use crate::token::Revocation;
use crate::yaml::{self, Node, Value};

/// The list's name at the repository root.
pub const FILE_NAME: &str = "revocations.yaml";
/// The list's `kind`.
pub const KIND: &str = "Revocations";

const FIELDS: &[&str] = &["apiVersion", "kind", "revoked"];
const ENTRY_FIELDS: &[&str] = &["jti", "reason", "revoked_at"];

/// What reading a revocation list gives: the entries that are whole, and a finding for
/// everything wrong. A list with findings is not used: a token is not judged by half a list.
#[derive(Debug, Default)]
pub struct List {
    pub entries: Vec<Revocation>,
    pub findings: Vec<Finding>,
}

/// Reads the list at `path`: every entry, and every problem as a finding (the YAML layer, the
/// header, unknown fields, wrong types, a malformed token id or time).
pub fn read(path: &str, text: &str) -> List {
    let mut c = Checker::new(path, text);
    let mut entries = Vec::new();
    let root = match yaml::parse(yaml::strip_bom(text)) {
        Ok(root) => root,
        Err(p) => {
            c.report_at(
                crate::record::problem_code(p.kind),
                p.line,
                p.column,
                p.message,
                "fix the revocation list's YAML here: a token check reads this file",
            );
            return List {
                entries,
                findings: c.findings,
            };
        }
    };
    if c.mapping(&root, "the revocation list", FIELDS).is_none() {
        return List {
            entries,
            findings: c.findings,
        };
    }
    c.header(&root, "the revocation list", API_VERSION, KIND);
    match root.get("revoked").map(|n| (n, &n.value)) {
        None | Some((_, Value::Null)) => {}
        Some((_, Value::Seq(items))) => {
            entries.extend(items.iter().filter_map(|item| read_entry(&mut c, item)));
        }
        Some((node, other)) => c.report(
            Code::WrongType,
            node,
            format!("`revoked` must be a list, found a {}", other.type_name()),
            "write `revoked:` followed by `- jti: ...` entries",
        ),
    }
    c.findings.sort_by_key(|f| (f.line, f.column));
    List {
        entries,
        findings: c.findings,
    }
}

fn read_entry(c: &mut Checker, item: &Node) -> Option<Revocation> {
    c.mapping(item, "a revocation", ENTRY_FIELDS)?;
    let before = c.findings.len();
    let jti = c
        .required(item, "jti", "the revocation")
        .and_then(|n| Some((n, c.string(n, "jti")?)));
    if let Some((node, j)) = jti
        && !crate::ledger::is_token_id(j)
    {
        c.report(
            Code::InvalidRevocation,
            node,
            format!("`jti` `{}` is not a token id", j.escape_debug()),
            "copy the id `ledgit token list` shows (letters, digits, '-' and '_')",
        );
    }
    let reason = item
        .get("reason")
        .and_then(|n| c.string(n, "reason").map(str::to_string));
    let revoked_at = item.get("revoked_at").and_then(|n| {
        let s = c.string(n, "revoked_at")?;
        if chrono::DateTime::parse_from_rfc3339(s).is_err() {
            c.report(
                Code::InvalidRevocation,
                n,
                format!(
                    "`revoked_at` `{}` is not an RFC 3339 time",
                    s.escape_debug()
                ),
                "write a time such as \"2026-03-03T12:00:00Z\"",
            );
        }
        Some(s.to_string())
    });
    if c.findings.len() > before {
        return None;
    }
    Some(Revocation {
        jti: jti?.1.to_string(),
        reason,
        revoked_at,
    })
}

/// The findings of the list's bytes as a file: not UTF-8, too large, or what [`read`] finds.
pub fn findings(bytes: &[u8]) -> Vec<Finding> {
    match std::str::from_utf8(bytes) {
        Ok(text) => read(FILE_NAME, text).findings,
        Err(_) => vec![
            Finding::new(
                Code::NotUtf8,
                FILE_NAME,
                1,
                1,
                format!("{FILE_NAME} is not UTF-8 text"),
            )
            .hint("save the file as UTF-8: a token check reads this file"),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_reads_with_its_entries() {
        let list = read(
            FILE_NAME,
            "apiVersion: ledgit/v1\nkind: Revocations\nrevoked:\n  - jti: a1\n    reason: leaked\n    revoked_at: \"2026-03-03T12:00:00Z\"\n  - jti: b2\n",
        );
        assert!(list.findings.is_empty(), "{:?}", list.findings);
        assert_eq!(list.entries.len(), 2);
        assert_eq!(list.entries[0].reason.as_deref(), Some("leaked"));
        let empty = read(
            FILE_NAME,
            "apiVersion: ledgit/v1\nkind: Revocations\nrevoked: []\n",
        );
        assert!(empty.findings.is_empty() && empty.entries.is_empty());
    }

    #[test]
    fn problems_are_findings_at_their_line() {
        let codes = |text: &str| -> Vec<(&'static str, u32)> {
            read(FILE_NAME, text)
                .findings
                .iter()
                .map(|f| (f.code.as_str(), f.line))
                .collect()
        };
        let head = "apiVersion: ledgit/v1\nkind: Revocations\n";
        assert_eq!(
            codes(&format!("{head}revoked: {{oops: [\n")),
            [("yaml-syntax", 3)]
        );
        assert_eq!(
            codes(&format!("{head}revoked:\n  - jti: a1\n    why: x\n")),
            [("unknown-field", 5)]
        );
        assert_eq!(
            codes(&format!("{head}revoked:\n  - jti: \"a 1\"\n")),
            [("invalid-revocation", 4)]
        );
        assert_eq!(
            codes(&format!(
                "{head}revoked:\n  - jti: a1\n    revoked_at: yesterday\n"
            )),
            [("invalid-revocation", 5)]
        );
        assert_eq!(codes(&format!("{head}revoked: a1\n")), [("wrong-type", 3)]);
        assert_eq!(
            codes("apiVersion: ledgit/v1\nkind: Config\n"),
            [("invalid-kind", 2)]
        );
        assert_eq!(
            findings(b"\xff\xfe")
                .iter()
                .map(|f| f.code.as_str())
                .collect::<Vec<_>>(),
            ["not-utf8"]
        );
    }
}
