//! The revocation list, `revocations.yaml` at the repository root: the token ids that no longer
//! verify, whatever else holds. This module reads it with findings that point at the line, as
//! the token ledger and the records are read, so that `validate` and `check` refuse a list that
//! would make every token check fail once merged; the verifier and `token revoke` read it
//! through the same function.

use serde::{Deserialize, Serialize};

use crate::finding::{Code, Finding};
use crate::model::config::API_VERSION;
use crate::model::edit::{EditError, append_read_back};
use crate::model::shape::Checker;
use crate::support::yaml::{self, Node, Value};

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
                crate::model::shape::problem_code(p.kind),
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
        && !crate::model::ledger::is_token_id(j)
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

/// One revoked token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// Parses the revocation list; an error names the first problem (file, line, what is wrong).
pub fn parse(text: &str) -> Result<Vec<Revocation>, EditError> {
    let list = read(FILE_NAME, text);
    match list.findings.first() {
        Some(f) => Err(f.into()),
        None => Ok(list.entries),
    }
}

/// The text of a revocation list with one more entry appended: the file is created when
/// missing; otherwise only the `revoked` list itself is edited (the entry goes after its last
/// item, or replaces an empty `[]` on the key's own line), so comments and the rest of the file
/// stay as they are. The result is read back and must list exactly the old entries and the new
/// one, or nothing is returned.
pub fn append(existing: Option<&str>, r: &Revocation) -> Result<String, EditError> {
    let item = |indent: &str, nl: &str| {
        let mut entry = format!("{indent}- jti: {}{nl}", r.jti);
        if let Some(reason) = &r.reason {
            entry.push_str(&format!(
                "{indent}  reason: {}{nl}",
                serde_json::to_string(reason).unwrap_or_default()
            ));
        }
        if let Some(at) = &r.revoked_at {
            entry.push_str(&format!("{indent}  revoked_at: \"{at}\"{nl}"));
        }
        entry
    };
    let Some(text) = existing else {
        return Ok(format!(
            "# Revoked deployment tokens, by id (jti). `ledgit token verify` refuses them.\napiVersion: ledgit/v1\nkind: Revocations\nrevoked:\n{}",
            item("  ", "\n")
        ));
    };
    append_read_back(text, "revoked", &item, &parse, r.clone(), "revocation list")
}

/// What revoking a token does to the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// The token is already on the list: nothing to write.
    Already,
    /// The list's new text, to be written whole.
    Text(String),
}

/// Revokes the token `jti` in the list `existing` (`None`: there is no list yet) at `now`: the
/// one revocation edit both front ends make (`ledgit token revoke` in the work tree, the page's
/// proposal on a branch). A list that does not read is refused, never replaced: a new list
/// would drop every revocation it holds.
pub fn revoke(
    existing: Option<&str>,
    jti: &str,
    reason: Option<String>,
    now: i64,
) -> Result<Revoked, EditError> {
    if let Some(problem) = reason
        .as_deref()
        .and_then(|r| crate::support::text::one_line_problem("reason", r))
    {
        return Err(EditError::BadText(problem));
    }
    if let Some(text) = existing
        && parse(text)?.iter().any(|r| r.jti == jti)
    {
        return Ok(Revoked::Already);
    }
    let entry = Revocation {
        jti: jti.to_string(),
        reason: reason.filter(|r| !r.trim().is_empty()),
        revoked_at: Some(crate::support::when::rfc3339(now)),
    };
    append(existing, &entry).map(Revoked::Text)
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

    /// Found in review: a comment that mentions `revoked: []` was edited instead of the list.
    #[test]
    fn only_the_list_itself_is_edited() {
        let r = Revocation {
            jti: "new1".into(),
            reason: None,
            revoked_at: None,
        };
        let cases = [
            "# start with revoked: [] and add entries\napiVersion: ledgit/v1\nkind: Revocations\nrevoked: []   # none yet\n",
            "apiVersion: ledgit/v1\nkind: Revocations\nrevoked:\n    - jti: old1   # leaked\n    # the next one too\n    - jti: old2\n\n# trailing comment: revoked: []\n",
            "apiVersion: ledgit/v1\nrevoked:\n- jti: old1\nkind: Revocations\n",
            "apiVersion: ledgit/v1\nkind: Revocations\n",
            "apiVersion: ledgit/v1\nkind: Revocations\nrevoked: []",
        ];
        for text in cases {
            let out = append(Some(text), &r).unwrap_or_else(|e| panic!("{text}: {e}"));
            let list = parse(&out).unwrap();
            assert_eq!(list.last().unwrap().jti, "new1", "{out}");
            // Every comment of the original is still there.
            for comment in text.lines().filter_map(|l| l.split_once('#').map(|c| c.1)) {
                assert!(out.contains(comment), "{comment:?} lost:\n{out}");
            }
        }
        let inline = "apiVersion: ledgit/v1\nkind: Revocations\nrevoked: [{jti: a}]\n";
        assert!(
            append(Some(inline), &r)
                .unwrap_err()
                .to_string()
                .contains("block list")
        );
    }

    #[test]
    fn revocation_lists() {
        let r = Revocation {
            jti: "abc".into(),
            reason: Some("leaked: in a log".into()),
            revoked_at: Some("2026-01-01T00:00:00Z".into()),
        };
        let text = append(None, &r).unwrap();
        assert_eq!(parse(&text).unwrap(), vec![r.clone()]);
        let two = append(
            Some(&text),
            &Revocation {
                jti: "def".into(),
                reason: None,
                revoked_at: None,
            },
        )
        .unwrap();
        assert_eq!(parse(&two).unwrap().len(), 2);
        let empty = "apiVersion: ledgit/v1\nkind: Revocations\nrevoked: []\n";
        assert_eq!(parse(&append(Some(empty), &r).unwrap()).unwrap(), vec![r]);
        assert!(parse("apiVersion: ledgit/v1\nkind: Config\n").is_err());
    }

    #[test]
    fn a_reason_is_one_plain_line_of_at_most_200_characters() {
        for bad in [
            "rotated\n\nSigned-off-by: Eve <eve@evil.test>\n[skip ci]",
            "rotated\r\nCo-authored-by: x",
            "tab\there",
            "bidi \u{202E}txt.exe",
            "zero\u{200B}width",
            "line\u{2028}separator",
        ] {
            let e = revoke(None, "a1", Some(bad.into()), 0).unwrap_err();
            assert!(matches!(e, EditError::BadText(_)), "{bad:?}: {e:?}");
        }
        let long = "x".repeat(201);
        assert!(matches!(
            revoke(None, "a1", Some(long), 0),
            Err(EditError::BadText(m)) if m.contains("201 characters")
        ));
        let ok = "y".repeat(200);
        assert!(matches!(
            revoke(None, "a1", Some(ok), 0),
            Ok(Revoked::Text(_))
        ));
        assert!(matches!(
            revoke(
                None,
                "a1",
                Some("leaked in a build log — rotated".into()),
                0
            ),
            Ok(Revoked::Text(_))
        ));
    }
}
