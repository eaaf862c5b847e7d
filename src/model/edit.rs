//! In-place edits of records: change the version value and nothing else. Comments, key order,
//! quoting style, indentation and line endings stay byte for byte; only the bytes of the version
//! scalar are replaced. New records are written in the conventional layout.

use crate::error::{Error, Result};
use crate::support::yaml::{self, Value};

/// Returns `text` with its `version` value replaced by `version`, keeping the quoting style
/// where the new value allows it.
pub fn set_version(path: &str, text: &str, version: &str) -> Result<String> {
    let problem = |message: String| {
        Error::invalid(
            format!("{path}: {message}"),
            "fix the record first (`ledgit validate` shows what is wrong); nothing was written",
        )
    };
    let body = yaml::strip_bom(text);
    let bom = text.len() - body.len();
    let root = yaml::parse(body)
        .map_err(|p| problem(format!("{}:{}: {}", p.line, p.column, p.message)))?;
    let node = root
        .get("version")
        .ok_or_else(|| problem("the record has no `version` field".into()))?;
    if matches!(node.value, Value::Seq(_) | Value::Map(_)) {
        return Err(problem("`version` is not a scalar".into()));
    }
    let (start, len) = node
        .bytes
        .ok_or_else(|| problem("the version's position is unknown".into()))?;
    let old = body
        .get(start..start + len)
        .ok_or_else(|| problem("the version's position is out of range".into()))?;
    if old.contains('\n') {
        return Err(problem(
            "the version spans several lines; write it on one line".into(),
        ));
    }
    let new = match old.chars().next() {
        Some('"') => double_quoted(version),
        Some('\'') => format!("'{}'", version.replace('\'', "''")),
        // Inside a flow collection (`{agent: a, version: 1.4.2}`) these end a plain scalar.
        _ if version.contains([',', '[', ']', '{', '}']) => double_quoted(version),
        _ if plain_is_safe(version) => version.to_string(),
        _ => double_quoted(version),
    };
    let at = bom + start;
    let edited = format!("{}{new}{}", &text[..at], &text[at + len..]);
    // Read the result back: it must parse, with the new version, or nothing is written.
    let back = yaml::parse(yaml::strip_bom(&edited)).map_err(|p| {
        problem(format!(
            "the edited file would not parse ({}:{}: {})",
            p.line, p.column, p.message
        ))
    })?;
    if back.get("version").and_then(|n| n.as_str()) != Some(version) {
        return Err(problem(format!(
            "the edited file would not read back version `{}`",
            version.escape_debug()
        )));
    }
    Ok(edited)
}

/// The text of a new record in the conventional layout.
pub fn new_record(
    agent: &str,
    environment: &str,
    version: &str,
    annotations: &std::collections::BTreeMap<String, String>,
) -> String {
    let version = scalar(version);
    let mut text = format!(
        "apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: {agent}\nenvironment: {environment}\nversion: {version}\n"
    );
    if !annotations.is_empty() {
        text.push_str("annotations:\n");
        for (k, v) in annotations {
            text.push_str(&format!("  {}: {}\n", scalar(k), scalar(v)));
        }
    }
    text
}

/// A scalar written plain where every reader reads back the same string, else double-quoted.
fn scalar(v: &str) -> String {
    if plain_is_safe(v) {
        v.to_string()
    } else {
        double_quoted(v)
    }
}

fn double_quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Whether `v` may be written plain: every YAML reader, 1.2's core schema and 1.1's (PyYAML,
/// Ruby's Psych, many CI tools) alike, reads it back as this exact string. YAML 1.1 reads
/// `no`, `on` and `y` as booleans, `1:20` as a number in base 60, `2026-01-01` as a date,
/// `0x10` as 16 and `1.10` as the float 1.1, so anything that looks like a word of that kind
/// or like a number is quoted; a plain value keeps to letters, digits and `._+-`, and one made
/// only of digits, separators and the letters a number can hold must have two dots (`1.4.2`).
/// Quoting where it was not needed costs nothing; a value read differently loses the version.
pub(crate) fn plain_is_safe(v: &str) -> bool {
    const WORDS: [&str; 9] = ["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let mut chars = v.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !first.is_ascii_alphanumeric()
        || !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
        || WORDS.contains(&v.to_ascii_lowercase().as_str())
    {
        return false;
    }
    // Letters a number may hold: hex digits, exponents, and the 0x, 0o, 0b prefixes.
    let numeric = |c: char| {
        c.is_ascii_hexdigit() || matches!(c, '.' | '_' | '+' | '-' | 'x' | 'X' | 'o' | 'O')
    };
    let looks_numeric = v.chars().all(numeric);
    if looks_numeric && (v.matches('.').count() < 2 || v.contains(['_', 'x', 'X'])) {
        return false;
    }
    reads_as_string(v)
}

/// Whether `v` written plain reads back as the same string under ledgit's own reader.
fn reads_as_string(v: &str) -> bool {
    yaml::parse(&format!("v: {v}\n"))
        .ok()
        .and_then(|n| n.get("v").and_then(|x| x.as_str().map(str::to_string)))
        .is_some_and(|s| s == v)
}

/// Why a list could not be appended to: the edit is refused and the file stays as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The file does not read (as YAML, or as the file it should be).
    #[error("line {line}: {message}")]
    Unreadable { line: u32, message: String },
    /// The file is written in a way this editor does not change (an inline list, say).
    #[error("{0}")]
    Unsupported(String),
    /// The edited text would not read back as the old entries and the new one.
    #[error("the edited {what} would not read back as the old entries and the new one")]
    NotReadBack { what: &'static str },
    /// A free text given for the entry may not be written (see
    /// [`crate::support::text::one_line_problem`]).
    #[error("{0}")]
    BadText(String),
}

impl From<&crate::finding::Finding> for EditError {
    /// A file that does not read, as its first finding says.
    fn from(f: &crate::finding::Finding) -> Self {
        EditError::Unreadable {
            line: f.line,
            message: f.message.clone(),
        }
    }
}

/// `text` with one more item in its top-level list `key` (see [`append_list_item`]), read back:
/// `read` gives the list's items before and after, and the result is returned only when it
/// lists exactly the old items and `added`, in order. What a file's own list format says is
/// equal decides (lines, say, may differ). Nothing half-edited is ever returned.
pub fn append_read_back<T: PartialEq>(
    text: &str,
    key: &str,
    item: &dyn Fn(&str, &str) -> String,
    read: &dyn Fn(&str) -> std::result::Result<Vec<T>, EditError>,
    added: T,
    what: &'static str,
) -> std::result::Result<String, EditError> {
    let mut expected = read(text)?;
    let edited = append_list_item(text, key, item)?;
    expected.push(added);
    if read(&edited)? != expected {
        return Err(EditError::NotReadBack { what });
    }
    Ok(edited)
}

/// `text` (a YAML file whose root is a mapping) with one more item in its top-level block list
/// `key`: after the list's last item, or replacing an empty `[]` on the key's own line, or as a
/// new `key:` at the end when the file has none. `item(indent, newline)` writes the item's
/// lines, each ended as the file's lines end. Only that list is edited: comments and the rest of
/// the file stay as they are. [`append_read_back`] is what callers use.
pub fn append_list_item(
    text: &str,
    key: &str,
    item: &dyn Fn(&str, &str) -> String,
) -> std::result::Result<String, EditError> {
    let body = crate::support::yaml::strip_bom(text);
    let root = crate::support::yaml::parse(body).map_err(|p| EditError::Unreadable {
        line: p.line,
        message: p.message,
    })?;
    // Lines added end as the file's lines do.
    let nl = if body.contains("\r\n") { "\r\n" } else { "\n" };
    let mut lines: Vec<String> = body.split_inclusive('\n').map(str::to_string).collect();
    if let Some(l) = lines.last_mut()
        && !l.ends_with('\n')
    {
        l.push_str(nl);
    }
    // The top-level key and the line it is on.
    let found = match &root.value {
        crate::support::yaml::Value::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, v)| (k.line as usize - 1, v)),
        _ => None,
    };
    match found {
        None => {
            lines.push(format!("{key}:{nl}"));
            lines.push(item("  ", nl));
        }
        Some((line, value)) => {
            let items = match &value.value {
                crate::support::yaml::Value::Seq(items) => items.len(),
                _ => 0,
            };
            let key_line = &lines[line];
            let after_colon = key_line
                .find(key)
                .and_then(|i| key_line[i..].find(':').map(|c| i + c + 1))
                .ok_or_else(|| {
                    EditError::Unsupported(format!(
                        "the `{key}` list's key is not where the parser put it"
                    ))
                })?;
            let rest = key_line[after_colon..].trim_start();
            if rest.starts_with('[') {
                if items > 0 {
                    return Err(EditError::Unsupported(format!(
                        "the `{key}` list is written inline ([...]); write it as a block list (- ...) to add to it"
                    )));
                }
                let close = key_line[after_colon..].find(']').ok_or_else(|| {
                    EditError::Unsupported(format!(
                        "the `{key}` list's `[` is not closed on its line"
                    ))
                })?;
                let tail = &key_line[after_colon + close + 1..];
                lines[line] = format!("{}{}", &key_line[..after_colon], tail);
                lines.insert(line + 1, item("  ", nl));
            } else {
                // A block list (or nothing yet): after its last line that is not blank or a
                // comment, before the next top-level key.
                let mut last = line;
                let mut indent = "  ".to_string();
                for (i, l) in lines.iter().enumerate().skip(line + 1) {
                    let content = l.trim_start();
                    if content.is_empty() || content.starts_with('#') {
                        continue;
                    }
                    if !l.starts_with([' ', '-']) {
                        break;
                    }
                    if content.starts_with('-') && last == line {
                        indent = l[..l.len() - content.len()].to_string();
                    }
                    last = i;
                }
                lines.insert(last + 1, item(&indent, nl));
            }
        }
    }
    let bom = &text[..text.len() - body.len()];
    Ok(format!("{bom}{}", lines.concat()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed_lines(a: &str, b: &str) -> usize {
        a.split_inclusive('\n')
            .zip(b.split_inclusive('\n'))
            .filter(|(x, y)| x != y)
            .count()
    }

    #[test]
    fn only_the_version_bytes_change() {
        let text = "# owner: support\r\napiVersion: ledgit/v1   # v1\r\nversion:   1.4.2   # pinned\r\nannotations: {a: b}\r\n";
        let out = set_version("p", text, "1.5.0").unwrap();
        assert_eq!(out, text.replace("1.4.2", "1.5.0"));
        assert_eq!(changed_lines(text, &out), 1);
    }

    #[test]
    fn a_flow_mapping_keeps_its_meaning() {
        let text = "{apiVersion: ledgit/v1, agent: a, environment: e, version: 1.4.2, annotations: {o: t}}\n";
        for v in ["1,5", "1.5]", "x{y}", "2.0.0"] {
            let out = set_version("p", text, v).unwrap();
            let root = yaml::parse(&out).unwrap();
            assert_eq!(root.get("version").unwrap().as_str(), Some(v), "{out}");
            assert_eq!(root.get("agent").unwrap().as_str(), Some("a"), "{out}");
            assert!(root.get("annotations").is_some(), "{out}");
        }
    }

    #[test]
    fn an_edit_that_would_not_read_back_is_refused() {
        // A version with a line break cannot be written on the version's line.
        let err = set_version("p", "version: '1.4'\n", "1.5\nagent: x").unwrap_err();
        assert!(
            err.to_string().contains("read back") || err.to_string().contains("parse"),
            "{err}"
        );
    }

    #[test]
    fn quoting_style_is_kept() {
        assert_eq!(
            set_version("p", "version: \"1.4\"\n", "1.10").unwrap(),
            "version: \"1.10\"\n"
        );
        assert_eq!(
            set_version("p", "version: '1.4'\n", "it's").unwrap(),
            "version: 'it''s'\n"
        );
        // A plain value that would read as a number gets quoted.
        assert_eq!(
            set_version("p", "version: v1\n", "1.10").unwrap(),
            "version: \"1.10\"\n"
        );
        assert_eq!(
            set_version("p", "version: v1\n", "true").unwrap(),
            "version: \"true\"\n"
        );
        assert_eq!(
            set_version("p", "version: v1\n", "2.0.0-rc.1").unwrap(),
            "version: 2.0.0-rc.1\n"
        );
    }

    #[test]
    fn values_yaml_1_1_reads_otherwise_are_quoted() {
        for v in [
            "no",
            "No",
            "NO",
            "yes",
            "on",
            "off",
            "y",
            "n",
            "Y",
            "~",
            "null",
            "Null",
            "true",
            "false",
            "1:20",
            "2026-01-01",
            "1e3",
            "1E3",
            "0x10",
            "0o17",
            "0b101",
            "1.10",
            "1.0",
            "10",
            "+1",
            "-1",
            ".5",
            ".inf",
            ".nan",
            "1_000",
            "=",
            "<<",
            "",
            " 1.4.2",
            "1.4.2 ",
            "1.4.2 #x",
            "a: b",
            "@x",
            "`x",
            "!x",
            "&x",
            "*x",
            "%x",
            "|",
            ">",
            "'",
            "\"",
            "deadbeef",
            "0.0.0_1",
        ] {
            assert!(!plain_is_safe(v), "{v:?} written plain");
            let text = set_version("p", "version: v1\n", v).unwrap();
            assert!(text.starts_with("version: \""), "{v:?}: {text}");
            let record = new_record("a", "e", v, &Default::default());
            assert!(
                record.contains(&format!("version: {}\n", double_quoted(v))),
                "{record}"
            );
        }
        for v in [
            "1.4.2",
            "2.0.0-rc.1",
            "v1",
            "1.0.0+build.5",
            "release-7",
            "1.2.3.4",
        ] {
            assert!(plain_is_safe(v), "{v:?} quoted");
            assert_eq!(
                set_version("p", "version: v1\n", v).unwrap(),
                format!("version: {v}\n")
            );
        }
    }

    #[test]
    fn new_records_are_valid_and_read_back() {
        let mut ann = std::collections::BTreeMap::new();
        ann.insert("owner".to_string(), "team \"a\"".to_string());
        let text = new_record("a", "prod", "1.10", &ann);
        let node = yaml::parse(&text).unwrap();
        assert_eq!(node.get("version").unwrap().as_str(), Some("1.10"));
        assert_eq!(
            node.get("annotations")
                .unwrap()
                .get("owner")
                .unwrap()
                .as_str(),
            Some("team \"a\"")
        );
    }

    #[test]
    fn a_byte_order_mark_is_kept() {
        let out = set_version("p", "\u{feff}version: 1.0.0\n", "2.0.0").unwrap();
        assert_eq!(out, "\u{feff}version: 2.0.0\n");
    }

    #[test]
    fn broken_records_are_refused() {
        assert!(set_version("p", "version: [1\n", "2").is_err());
        assert!(set_version("p", "agent: a\n", "2").is_err());
        assert!(set_version("p", "version: [1, 2]\n", "2").is_err());
    }
}
