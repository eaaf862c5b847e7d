//! The YAML layer: turns the text of one file into a tree of nodes that each know their line,
//! column and byte range, or into a [`YamlProblem`] that says what is wrong and where.
//!
//! Everything above this module (records, the config) validates that tree, so every rule can
//! point at the exact place in the source. Parsing is bounded: aliases, nesting depth, node count
//! and document count are capped by serde-saphyr's budget, so a "billion laughs" file or 100,000
//! nested brackets end in a problem, not in exhausted memory. Duplicate keys are rejected and only
//! `true`/`false` are booleans (`yes`, `on` stay strings).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Budget, DuplicateKeyPolicy, Options, Spanned};

/// A node of the parsed document with its position in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    /// 1-based line of the node's first character.
    pub line: u32,
    /// 1-based column (in characters) of the node's first character.
    pub column: u32,
    /// Byte range of the node in the source, where known.
    pub bytes: Option<(usize, usize)>,
}

/// The value of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// The JSON-Schema-like name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) | Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "sequence",
            Value::Map(_) => "mapping",
        }
    }
}

impl Node {
    /// The source text of this node (for scalars, exactly as written).
    pub fn source<'a>(&self, text: &'a str) -> Option<&'a str> {
        let (start, len) = self.bytes?;
        text.get(start..start.checked_add(len)?)
    }

    /// The string value, when the node is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Looks a key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Why a text is not one well-formed YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlProblem {
    pub kind: ProblemKind,
    pub message: String,
    pub line: u32,
    pub column: u32,
}

/// The kind of a [`YamlProblem`], which picks the finding code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    Syntax,
    DuplicateKey,
    MultipleDocuments,
    /// The document exceeds the parser's budget (alias bomb, deep nesting, too many nodes).
    TooComplex,
    Empty,
}

impl fmt::Display for YamlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

fn options() -> Options {
    let mut budget = Budget::default();
    budget.max_depth = 32;
    budget.max_documents = 8;
    budget.max_nodes = 100_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_events = 200_000;
    budget.max_total_scalar_bytes = 4 * 1024 * 1024;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    options.strict_booleans = true;
    options.with_snippet = false;
    options
}

/// Strips a UTF-8 byte-order mark. CRLF line endings need no treatment: YAML accepts them.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Parses exactly one YAML document. Comments and blank lines alone count as an empty document.
pub fn parse(text: &str) -> Result<Node, YamlProblem> {
    let text = strip_bom(text);
    let docs: Vec<Option<Node>> =
        serde_saphyr::from_str_multiple_with_options(text, options()).map_err(problem)?;
    let mut docs = docs.into_iter();
    let first = docs.next().flatten();
    if let Some(second) = docs.next() {
        let (line, column) = second.as_ref().map_or((0, 0), |n| (n.line, n.column));
        return Err(YamlProblem {
            kind: ProblemKind::MultipleDocuments,
            message: "the file holds more than one YAML document".into(),
            line: line.max(1),
            column: column.max(1),
        });
    }
    match first {
        Some(node) if node.value != Value::Null => Ok(node),
        _ => Err(YamlProblem {
            kind: ProblemKind::Empty,
            message: "the file holds no YAML document".into(),
            line: 1,
            column: 1,
        }),
    }
}

fn problem(err: serde_saphyr::Error) -> YamlProblem {
    use serde_saphyr::Error as E;
    let err = err.without_snippet();
    let (line, column) = err.location().map_or((1, 1), |l| {
        (l.line().max(1) as u32, l.column().max(1) as u32)
    });
    let detail = first_line(&err.to_string());
    let (kind, message) = match err {
        E::DuplicateMappingKey { .. } => {
            let key = detail
                .strip_prefix("duplicate mapping key: ")
                .and_then(|rest| rest.split(", set ").next())
                .unwrap_or(&detail);
            (ProblemKind::DuplicateKey, format!("duplicate key `{key}`"))
        }
        E::MultipleDocuments { .. } => (
            ProblemKind::MultipleDocuments,
            "the file holds more than one YAML document".to_string(),
        ),
        _ if ["budget", "recursion limit", "nesting", "alias"]
            .iter()
            .any(|w| detail.contains(w)) =>
        {
            (
                ProblemKind::TooComplex,
                "the document is too large, too deeply nested or expands too many aliases to be read safely"
                    .to_string(),
            )
        }
        _ => (ProblemKind::Syntax, detail),
    };
    YamlProblem {
        kind,
        message,
        line,
        column,
    }
}

/// The message without the position suffix the parser appends ("at line X, column Y").
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    let line = match line.find(" at line ") {
        Some(i) => &line[..i],
        None => line,
    };
    line.trim_end_matches(':').to_string()
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(d)?;
        let loc = spanned.referenced;
        let span = loc.span();
        let bytes = match (span.byte_offset(), span.byte_len()) {
            (Some(o), Some(l)) => Some((o as usize, l as usize)),
            _ => None,
        };
        Ok(Node {
            value: spanned.value,
            line: loc.line() as u32,
            column: loc.column() as u32,
            bytes,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::Float(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node, Node>()? {
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_positions_and_raw_text() {
        let text = "agent: a\nversion: 1.10\nlist: [x, 'y']\n";
        let node = parse(text).unwrap();
        let version = node.get("version").unwrap();
        assert_eq!(version.value, Value::Float(1.1));
        assert_eq!((version.line, version.column), (2, 10));
        assert_eq!(version.source(text), Some("1.10"));
        let Value::Seq(items) = &node.get("list").unwrap().value else {
            panic!("not a sequence")
        };
        assert_eq!(items[1].as_str(), Some("y"));
        assert_eq!(items[1].column, 11);
    }

    #[test]
    fn strict_booleans_keep_yes_a_string() {
        let node = parse("a: yes\nb: true\n").unwrap();
        assert_eq!(node.get("a").unwrap().as_str(), Some("yes"));
        assert_eq!(node.get("b").unwrap().value, Value::Bool(true));
    }

    #[test]
    fn classifies_problems() {
        assert_eq!(
            parse("a: 1\na: 2\n").unwrap_err().kind,
            ProblemKind::DuplicateKey
        );
        assert_eq!(
            parse("a: 1\n---\nb: 2\n").unwrap_err().kind,
            ProblemKind::MultipleDocuments
        );
        assert_eq!(parse("").unwrap_err().kind, ProblemKind::Empty);
        assert_eq!(
            parse("# only a comment\n").unwrap_err().kind,
            ProblemKind::Empty
        );
        let err = parse("a: [1, 2\n").unwrap_err();
        assert_eq!(err.kind, ProblemKind::Syntax);
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep).unwrap_err().kind, ProblemKind::TooComplex);
    }

    #[test]
    fn alias_bomb_is_bounded() {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let mut prev = 'a';
        for name in 'b'..='i' {
            text.push_str(&format!(
                "{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            ));
            prev = name;
        }
        assert_eq!(parse(&text).unwrap_err().kind, ProblemKind::TooComplex);
    }

    #[test]
    fn bom_and_crlf_are_accepted() {
        let node = parse("\u{feff}agent: a\r\nversion: \"1\"\r\n").unwrap();
        assert_eq!(node.get("version").unwrap().as_str(), Some("1"));
        assert_eq!(node.get("version").unwrap().line, 2);
    }
}
