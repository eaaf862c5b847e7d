//! Structural checks on a parsed YAML tree, shared by both file kinds (the config and records):
//! "this is a mapping with these fields", "this field is a string", "this name is a DNS label".
//! They mirror the JSON Schemas in `schema/` and turn every violation into a [`Finding`] that
//! points at the offending node, so one pass reports all of them.

use crate::finding::{Code, Finding};
use crate::support::yaml::{Node, ProblemKind, Value};

/// Collects findings for one file.
pub struct Checker<'a> {
    pub path: &'a str,
    pub text: &'a str,
    pub findings: Vec<Finding>,
}

impl<'a> Checker<'a> {
    pub fn new(path: &'a str, text: &'a str) -> Self {
        Checker {
            path,
            text,
            findings: Vec::new(),
        }
    }

    /// Records a finding at a node.
    pub fn report(&mut self, code: Code, node: &Node, message: String, hint: impl Into<String>) {
        self.report_at(code, node.line, node.column, message, hint);
    }

    /// Records a finding at a position.
    pub fn report_at(
        &mut self,
        code: Code,
        line: u32,
        column: u32,
        message: String,
        hint: impl Into<String>,
    ) {
        let finding = Finding::new(code, self.path, line, column, message)
            .hint(hint)
            .with_source(self.text);
        self.findings.push(finding);
    }

    /// Checks that `node` is a mapping whose keys are all in `known`; reports every other key.
    /// Returns the entries when it is a mapping.
    pub fn mapping<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        known: &[&str],
    ) -> Option<&'n [(Node, Node)]> {
        let Value::Map(entries) = &node.value else {
            self.report(
                Code::WrongType,
                node,
                format!(
                    "{what} must be a mapping, found a {}",
                    node.value.type_name()
                ),
                format!("write {what} as `key: value` lines"),
            );
            return None;
        };
        for (key, _) in entries {
            match key.as_str() {
                Some(k) if known.contains(&k) => {}
                Some(k) => {
                    let hint = match closest(k, known) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("known fields: {}", known.join(", ")),
                    };
                    self.report(
                        Code::UnknownField,
                        key,
                        format!("unknown field `{k}` in {what}"),
                        hint,
                    );
                }
                None => self.report(
                    Code::UnknownField,
                    key,
                    format!(
                        "{what} has a key that is a {}, not a field name",
                        key.value.type_name()
                    ),
                    format!("known fields: {}", known.join(", ")),
                ),
            }
        }
        Some(entries)
    }

    /// The value of a required field, or a `missing-field` finding at the mapping.
    pub fn required<'n>(&mut self, map: &'n Node, key: &str, what: &str) -> Option<&'n Node> {
        let found = map.get(key);
        if found.is_none() {
            self.report(
                Code::MissingField,
                map,
                format!("{what} has no `{key}` field"),
                format!("add `{key}:`"),
            );
        }
        found
    }

    /// Checks the two fields every ledgit file starts with: `apiVersion` (which must be
    /// `api_version`) and `kind` (which must be `kind`); `what` names the file in findings.
    pub fn header(&mut self, root: &Node, what: &str, api_version: &str, kind: &str) {
        if let Some(v) = self.required(root, "apiVersion", what)
            && let Some(s) = self.string(v, "apiVersion")
            && s != api_version
        {
            self.report(
                Code::InvalidApiVersion,
                v,
                format!("apiVersion `{s}` is not supported"),
                format!("use `apiVersion: {api_version}`"),
            );
        }
        if let Some(v) = self.required(root, "kind", what)
            && let Some(s) = self.string(v, "kind")
            && s != kind
        {
            self.report(
                Code::InvalidKind,
                v,
                format!("kind `{s}` is not `{kind}`"),
                format!("use `kind: {kind}`"),
            );
        }
    }

    /// The string value of a field, or a `wrong-type` finding.
    pub fn string<'n>(&mut self, node: &'n Node, field: &str) -> Option<&'n str> {
        if let Value::Str(s) = &node.value {
            return Some(s);
        }
        let found = node.value.type_name();
        self.report(
            Code::WrongType,
            node,
            format!("`{field}` must be a string, found a {found}"),
            format!("write `{field}` as a string"),
        );
        None
    }

    /// Checks a name against the DNS label rule; reports `invalid-name`.
    pub fn dns_label(&mut self, node: &Node, value: &str, field: &str) -> bool {
        if is_dns_label(value) {
            return true;
        }
        self.report(
            Code::InvalidName,
            node,
            format!("`{field}` `{value}` is not a DNS label"),
            "use 1 to 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
        );
        false
    }
}

/// `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && ok(&b[0])
        && ok(&b[b.len() - 1])
        && b.iter().all(|c| ok(c) || *c == b'-')
}

/// The known name closest to `word`, if it is a plausible typo (edit distance at most 2).
pub fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// A hint naming what exists when `word` does not: the closest name if one is near, and the
/// names themselves when there are few (a repository of hundreds of agents gets a count).
/// `nouns` is the plural (`agents`).
pub fn known(word: &str, names: &[&str], nouns: &str) -> String {
    const LIST: usize = 12;
    let mut names: Vec<&str> = names.to_vec();
    names.sort_unstable();
    names.dedup();
    let guess = closest(word, &names)
        .map(|c| format!("did you mean `{c}`? "))
        .unwrap_or_default();
    match names.len() {
        0 => format!("{guess}there are no {nouns} yet"),
        n if n <= LIST => format!("{guess}known {nouns}: {}", names.join(", ")),
        n => format!(
            "{guess}{n} {nouns} are known ({}, ...); `ledgit status` lists them",
            names[..3].join(", ")
        ),
    }
}

/// The finding code for a YAML problem.
pub fn problem_code(kind: ProblemKind) -> Code {
    match kind {
        ProblemKind::Syntax => Code::YamlSyntax,
        ProblemKind::DuplicateKey => Code::DuplicateKey,
        ProblemKind::MultipleDocuments => Code::MultipleDocuments,
        ProblemKind::TooComplex => Code::YamlTooComplex,
        ProblemKind::Empty => Code::EmptyFile,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_a_close_match_and_lists_only_a_few() {
        assert_eq!(
            known(
                "suport-bot",
                &["support-bot", "triage-bot", "support-bot"],
                "agents"
            ),
            "did you mean `support-bot`? known agents: support-bot, triage-bot"
        );
        assert_eq!(known("x", &[], "agents"), "there are no agents yet");
        let many: Vec<String> = (0..100).map(|i| format!("agent-{i:03}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            known("zzz", &many, "agents"),
            "100 agents are known (agent-000, agent-001, agent-002, ...); `ledgit status` lists them"
        );
    }

    #[test]
    fn dns_labels() {
        for ok in ["a", "support-bot", "a1", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64), "ä"] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn suggests_close_field_names() {
        let known = ["agent", "environment", "version"];
        assert_eq!(closest("verison", &known), Some("version"));
        assert_eq!(closest("agnet", &known), Some("agent"));
        assert_eq!(closest("colour", &known), None);
    }
}
