//! The token ledger, `tokens.yaml` at the repository root (SPEC "The token ledger"): the
//! inventory of the deployment tokens issued, one entry of metadata per token (never the token,
//! its signature or anything it could be rebuilt from), committed and reviewed like any change.
//! This module owns its format: reading it with findings that point at the line, appending an
//! entry without disturbing the rest of the file, and each token's status against a repository
//! state (active, expired, revoked, stale, key-removed). The ledger is an inventory, not a gate:
//! verification never reads it.

use std::collections::HashMap;

use crate::finding::{Code, Finding};
use crate::model::config::API_VERSION;
use crate::model::edit::EditError;
use crate::model::shape::Checker;
use crate::support::yaml::{self, Node, Value};

/// The ledger's name at the repository root.
pub const FILE_NAME: &str = "tokens.yaml";
/// The ledger's `kind`.
pub const KIND: &str = "TokenLedger";

const FIELDS: &[&str] = &["apiVersion", "kind", "tokens"];
const ENTRY_FIELDS: &[&str] = &[
    "jti",
    "agent",
    "environment",
    "generation",
    "kid",
    "issued_at",
    "expires_at",
    "name",
    "issued_by",
];

/// One issued token, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    pub jti: String,
    pub agent: String,
    pub environment: String,
    /// The record's generation commit the token is tied to.
    pub generation: String,
    /// The id of the key that signed it.
    pub kid: String,
    /// Seconds since the epoch (written as RFC 3339).
    #[serde(serialize_with = "as_rfc3339")]
    pub issued_at: i64,
    #[serde(serialize_with = "as_rfc3339_opt")]
    pub expires_at: Option<i64>,
    pub name: Option<String>,
    /// Who issued it (their git identity).
    pub issued_by: String,
    /// The line of the entry in the file (for findings and links).
    #[serde(skip)]
    pub line: u32,
}

fn as_rfc3339<S: serde::Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::support::when::rfc3339(*t))
}

fn as_rfc3339_opt<S: serde::Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&crate::support::when::rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// What reading a ledger gives: the entries that are whole, and a finding for everything wrong.
#[derive(Debug, Default)]
pub struct Ledger {
    pub entries: Vec<Entry>,
    pub findings: Vec<Finding>,
}

/// Whether a token id has the form ledgit issues and `token revoke` accepts.
pub fn is_token_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads the ledger at `path`: every entry that is whole, and every problem as a finding (the
/// YAML layer, unknown fields, wrong types, malformed values, a `jti` listed twice).
pub fn read(path: &str, text: &str) -> Ledger {
    let mut c = Checker::new(path, text);
    let mut entries = Vec::new();
    let body = yaml::strip_bom(text);
    let root = match yaml::parse(body) {
        Ok(root) => root,
        Err(p) => {
            let code = crate::model::shape::problem_code(p.kind);
            c.report_at(
                code,
                p.line,
                p.column,
                p.message,
                "fix the ledger's YAML here",
            );
            return Ledger {
                entries,
                findings: c.findings,
            };
        }
    };
    if c.mapping(&root, "the token ledger", FIELDS).is_none() {
        return Ledger {
            entries,
            findings: c.findings,
        };
    }
    c.header(&root, "the token ledger", API_VERSION, KIND);
    let mut seen: HashMap<String, u32> = HashMap::new();
    match root.get("tokens").map(|n| (n, &n.value)) {
        None | Some((_, Value::Null)) => {}
        Some((_, Value::Seq(items))) => {
            for item in items {
                let Some(entry) = read_entry(&mut c, item) else {
                    continue;
                };
                if let Some(first) = seen.get(&entry.jti) {
                    c.report(
                        Code::DuplicateToken,
                        item,
                        format!(
                            "token {} is listed twice (first at line {first})",
                            entry.jti
                        ),
                        "keep one entry per token id; remove this one",
                    );
                    continue;
                }
                seen.insert(entry.jti.clone(), entry.line);
                entries.push(entry);
            }
        }
        Some((node, other)) => c.report(
            Code::WrongType,
            node,
            format!("`tokens` must be a list, found a {}", other.type_name()),
            "write `tokens:` followed by `- jti: ...` entries",
        ),
    }
    c.findings.sort_by_key(|f| (f.line, f.column));
    Ledger {
        entries,
        findings: c.findings,
    }
}

fn read_entry(c: &mut Checker, item: &Node) -> Option<Entry> {
    c.mapping(item, "a ledger entry", ENTRY_FIELDS)?;
    let before = c.findings.len();
    let text = |c: &mut Checker, key: &str| -> Option<String> {
        let node = c.required(item, key, "the ledger entry")?;
        c.string(node, key).map(str::to_string)
    };
    let jti = text(c, "jti");
    let agent = text(c, "agent");
    let environment = text(c, "environment");
    let generation = text(c, "generation");
    let kid = text(c, "kid");
    let issued_by = text(c, "issued_by");
    let issued_at = time(c, item, "issued_at", true);
    let expires_at = time(c, item, "expires_at", false);
    let name = item
        .get("name")
        .and_then(|n| c.string(n, "name").map(str::to_string));
    let node = |key: &str| item.get(key).unwrap_or(item);
    if let Some(j) = &jti
        && !is_token_id(j)
    {
        c.report(
            Code::InvalidLedgerValue,
            node("jti"),
            format!("`jti` `{}` is not a token id", j.escape_debug()),
            "copy the id ledgit printed at issue (letters, digits, '-' and '_')",
        );
    }
    for (key, value) in [("agent", &agent), ("environment", &environment)] {
        if let Some(v) = value {
            c.dns_label(node(key), v, key);
        }
    }
    if let Some(g) = &generation
        && !is_commit_id(g)
    {
        c.report(
            Code::InvalidLedgerValue,
            node("generation"),
            format!("`generation` `{}` is not a commit id", g.escape_debug()),
            "write the record's generation commit in full (40 hexadecimal digits)",
        );
    }
    if let (Some(Some(i)), Some(Some(e))) = (&issued_at, &expires_at)
        && e <= i
    {
        c.report(
            Code::InvalidLedgerValue,
            node("expires_at"),
            "`expires_at` is not after `issued_at`".into(),
            "write the expiry the token was issued with",
        );
    }
    if c.findings.len() > before {
        return None;
    }
    Some(Entry {
        jti: jti?,
        agent: agent?,
        environment: environment?,
        generation: generation?,
        kid: kid?,
        issued_at: issued_at??,
        expires_at: expires_at?,
        name,
        issued_by: issued_by?,
        line: item.line,
    })
}

/// A time field: `Some(Some(t))` when present and valid, `Some(None)` when absent and optional,
/// `None` after a finding.
fn time(c: &mut Checker, item: &Node, key: &str, required: bool) -> Option<Option<i64>> {
    let Some(node) = item.get(key) else {
        if required {
            c.required(item, key, "the ledger entry");
            return None;
        }
        return Some(None);
    };
    let s = c.string(node, key)?;
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => Some(Some(t.timestamp())),
        Err(_) => {
            c.report(
                Code::InvalidLedgerValue,
                node,
                format!("`{key}` `{}` is not an RFC 3339 time", s.escape_debug()),
                "write a time such as \"2026-03-03T12:00:00Z\"",
            );
            None
        }
    }
}

/// The text of the ledger with `entry` appended (the file is created when `existing` is
/// `None`). Only the `tokens` list is edited; the result is read back and must hold exactly the
/// old entries and the new one, or nothing is returned.
pub fn append(existing: Option<&str>, entry: &Entry) -> Result<String, EditError> {
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let item = |indent: &str, nl: &str| {
        let mut lines = vec![
            format!("{indent}- jti: {}{nl}", entry.jti),
            format!("{indent}  agent: {}{nl}", entry.agent),
            format!("{indent}  environment: {}{nl}", entry.environment),
            format!("{indent}  generation: \"{}\"{nl}", entry.generation),
            format!("{indent}  kid: {}{nl}", quoted(&entry.kid)),
            format!(
                "{indent}  issued_at: \"{}\"{nl}",
                crate::support::when::rfc3339(entry.issued_at)
            ),
        ];
        if let Some(e) = entry.expires_at {
            lines.push(format!(
                "{indent}  expires_at: \"{}\"{nl}",
                crate::support::when::rfc3339(e)
            ));
        }
        if let Some(n) = &entry.name {
            lines.push(format!("{indent}  name: {}{nl}", quoted(n)));
        }
        lines.push(format!(
            "{indent}  issued_by: {}{nl}",
            quoted(&entry.issued_by)
        ));
        lines.concat()
    };
    // Entries are compared without the line they are on.
    let entries = |text: &str| -> Result<Vec<Entry>, EditError> {
        let ledger = read(FILE_NAME, text);
        match ledger.findings.first() {
            Some(f) => Err(f.into()),
            None => Ok(ledger
                .entries
                .into_iter()
                .map(|e| Entry { line: 0, ..e })
                .collect()),
        }
    };
    let added = Entry {
        line: 0,
        ..entry.clone()
    };
    match existing {
        None => {
            let text = format!(
                "# Deployment tokens issued, one entry each (never the token). `ledgit token list` shows their status.\napiVersion: {API_VERSION}\nkind: {KIND}\ntokens:\n{}",
                item("  ", "\n")
            );
            if entries(&text)? != [added] {
                return Err(EditError::NotReadBack { what: "ledger" });
            }
            Ok(text)
        }
        Some(text) => {
            crate::model::edit::append_read_back(text, "tokens", &item, &entries, added, "ledger")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEN: &str = "0123456789abcdef0123456789abcdef01234567";

    fn entry(jti: &str) -> Entry {
        Entry {
            jti: jti.into(),
            agent: "support-bot".into(),
            environment: "production".into(),
            generation: GEN.into(),
            kid: "k1".into(),
            issued_at: 1_780_000_000,
            expires_at: Some(1_782_592_000),
            name: Some("ci \"deploy\"".into()),
            issued_by: "Jane Doe <jane@example.com>".into(),
            line: 0,
        }
    }

    #[test]
    fn token_ids_are_letters_digits_dashes_and_underscores() {
        for good in [
            "a",
            "3f2a9c0d5b7e41a8b1c2d3e4f5a6b7c8",
            "A-b_9",
            &"x".repeat(128),
        ] {
            assert!(is_token_id(good), "{good}");
        }
        for bad in ["", "a b", "a.b", "a/b", "é", "a\n", &"x".repeat(129)] {
            assert!(!is_token_id(bad), "{bad}");
        }
    }

    #[test]
    fn appends_create_then_extend_and_read_back() {
        let first = append(None, &entry("a1")).unwrap();
        let commented = format!("{first}# trailing comment\n");
        let second = append(Some(&commented), &entry("b2")).unwrap();
        assert!(second.contains("# trailing comment"));
        let ledger = read(FILE_NAME, &second);
        assert!(ledger.findings.is_empty(), "{:?}", ledger.findings);
        let ids: Vec<&str> = ledger.entries.iter().map(|e| e.jti.as_str()).collect();
        assert_eq!(ids, ["a1", "b2"]);
        assert_eq!(ledger.entries[0].name.as_deref(), Some("ci \"deploy\""));
        assert_eq!(ledger.entries[1].line, 14);
    }

    #[test]
    fn an_entry_added_to_a_crlf_file_ends_its_lines_the_same_way() {
        let crlf = append(None, &entry("a1")).unwrap().replace('\n', "\r\n");
        let out = append(Some(&crlf), &entry("b2")).unwrap();
        assert_eq!(
            out.matches('\n').count(),
            out.matches("\r\n").count(),
            "{out:?}"
        );
        assert_eq!(read(FILE_NAME, &out).entries.len(), 2);
    }

    #[test]
    fn an_empty_inline_list_takes_the_first_entry() {
        let text = "apiVersion: ledgit/v1\nkind: TokenLedger\ntokens: []\n";
        let out = append(Some(text), &entry("a1")).unwrap();
        assert_eq!(read(FILE_NAME, &out).entries.len(), 1);
    }

    #[test]
    fn problems_are_findings_at_their_line() {
        let text = "apiVersion: ledgit/v1\nkind: TokenLedger\ntokens:\n  - jti: a1\n    agent: Bad_Agent\n    environment: production\n    generation: \"123\"\n    kid: k1\n    issued_at: yesterday\n    issued_by: me\n    colour: red\n  - jti: a2\n    agent: a\n    environment: p\n    generation: \"0123456789abcdef0123456789abcdef01234567\"\n    kid: k1\n    issued_at: \"2026-01-01T00:00:00Z\"\n    issued_by: me\n  - jti: a2\n    agent: a\n    environment: p\n    generation: \"0123456789abcdef0123456789abcdef01234567\"\n    kid: k1\n    issued_at: \"2026-01-01T00:00:00Z\"\n    issued_by: me\n";
        let ledger = read("tokens.yaml", text);
        let found: Vec<(&str, u32)> = ledger
            .findings
            .iter()
            .map(|f| (f.code.as_str(), f.line))
            .collect();
        assert_eq!(
            found,
            [
                ("invalid-name", 5),
                ("invalid-ledger-value", 7),
                ("invalid-ledger-value", 9),
                ("unknown-field", 11),
                ("duplicate-token", 19),
            ]
        );
        assert_eq!(ledger.entries.len(), 1);
        assert!(append(Some(text), &entry("z")).is_err());
    }
}
