//! Deployment records: one YAML file per (agent, environment) saying which version is the
//! current release there. This module parses one record file and checks every per-file rule of
//! the format; rules across files (duplicate pairs) belong to `validate`.

use std::collections::BTreeMap;

use crate::config::{API_VERSION, Config};
use crate::finding::{Code, Finding};
use crate::shape::Checker;
use crate::yaml::{self, ProblemKind, Value};

/// The `kind` of a record.
pub const KIND: &str = "AgentDeployment";
/// The longest version accepted.
pub const MAX_VERSION_LEN: usize = 128;
/// Fields a record may have.
pub const FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "agent",
    "environment",
    "version",
    "annotations",
];

/// A record that has at least a readable identity and version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    pub agent: String,
    pub environment: String,
    pub version: String,
    pub annotations: BTreeMap<String, String>,
    /// Repository-relative path.
    pub path: String,
    /// Where the version value starts (1-based), for findings and in-place edits.
    pub version_line: u32,
    pub version_column: u32,
}

/// The result of checking one record file.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Present when agent, environment and version could be read, even if other rules failed.
    pub record: Option<Record>,
    pub findings: Vec<Finding>,
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

/// Parses and checks one record file's text.
pub fn parse(path: &str, text: &str, config: &Config) -> Parsed {
    let mut c = Checker::new(path, text);
    let root = match yaml::parse(text) {
        Ok(node) => node,
        Err(p) => {
            let hint = match p.kind {
                ProblemKind::Empty => {
                    "write a record (apiVersion, kind, agent, environment, version) or delete the file"
                }
                ProblemKind::MultipleDocuments => {
                    "keep one record per file; move the others to their own files"
                }
                ProblemKind::DuplicateKey => "remove one of the two keys",
                ProblemKind::TooComplex => {
                    "a record is a handful of fields: remove anchors, aliases and nesting"
                }
                ProblemKind::Syntax => "fix the YAML syntax at this position",
            };
            c.report_at(problem_code(p.kind), p.line, p.column, p.message, hint);
            return Parsed {
                record: None,
                findings: c.findings,
            };
        }
    };
    if c.mapping(&root, "a record", FIELDS).is_none() {
        return Parsed {
            record: None,
            findings: c.findings,
        };
    }
    c.header(&root, "the record", API_VERSION, KIND);
    let mut names_valid = true;
    let agent = c.required(&root, "agent", "the record").and_then(|n| {
        let s = c.string(n, "agent")?;
        names_valid &= c.dns_label(n, s, "agent");
        Some(s)
    });
    let environment = c
        .required(&root, "environment", "the record")
        .and_then(|n| {
            let s = c.string(n, "environment")?;
            let valid = c.dns_label(n, s, "environment");
            names_valid &= valid;
            if valid && config.environment(s).is_none() {
                let names: Vec<&str> = config
                    .environments
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect();
                let hint = match crate::shape::closest(s, &names) {
                    Some(close) => {
                        format!("did you mean `{close}`? Declared: {}", names.join(", "))
                    }
                    None => format!(
                        "declare it in ledgit.yaml or use one of: {}",
                        names.join(", ")
                    ),
                };
                c.report(
                    Code::UnknownEnvironment,
                    n,
                    format!("environment `{s}` is not declared in ledgit.yaml"),
                    hint,
                );
            }
            Some(s)
        });
    let version = c
        .required(&root, "version", "the record")
        .and_then(|n| version(&mut c, n).map(|v| (v, n.line, n.column)));
    let annotations = annotations(&mut c, &root);

    if let (Some(agent), Some(env), true) = (agent, environment, names_valid) {
        let expected = config.record_path(agent, env);
        if path != expected {
            c.findings.push(
                Finding::new(
                    Code::PathMismatch,
                    path,
                    1,
                    1,
                    format!("the record of `{agent}` in `{env}` is not at its conventional path"),
                )
                .hint(format!("move it to {expected}")),
            );
        }
    }
    let record = match (agent, environment, version) {
        (Some(agent), Some(env), Some((version, line, column))) => Some(Record {
            agent: agent.to_string(),
            environment: env.to_string(),
            version,
            annotations,
            path: path.to_string(),
            version_line: line,
            version_column: column,
        }),
        _ => None,
    };
    Parsed {
        record,
        findings: c.findings,
    }
}

fn version(c: &mut Checker, node: &yaml::Node) -> Option<String> {
    let s = match &node.value {
        Value::Str(s) => s.clone(),
        Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
            let raw = node.source(c.text).unwrap_or("").trim().to_string();
            c.report(
                Code::VersionNotString,
                node,
                format!(
                    "version `{raw}` is read as a {}, not a string",
                    node.value.type_name()
                ),
                format!("quote it: version: \"{raw}\""),
            );
            return None;
        }
        _ => {
            c.string(node, "version");
            return None;
        }
    };
    let problem = if s.is_empty() {
        Some("the version is empty".to_string())
    } else if s.chars().count() > MAX_VERSION_LEN {
        Some(format!(
            "the version is {} characters long (at most {MAX_VERSION_LEN})",
            s.chars().count()
        ))
    } else if s.chars().any(char::is_whitespace) {
        Some(format!(
            "the version `{}` contains white space",
            s.escape_debug()
        ))
    } else {
        None
    };
    if let Some(message) = problem {
        c.report(
            Code::InvalidVersion,
            node,
            message,
            "use a non-empty version of at most 128 characters without spaces, such as 1.4.2",
        );
        return None;
    }
    Some(s)
}

fn annotations(c: &mut Checker, root: &yaml::Node) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(node) = root.get("annotations") else {
        return out;
    };
    let Value::Map(entries) = &node.value else {
        c.report(
            Code::WrongType,
            node,
            format!(
                "`annotations` must be a mapping of strings, found a {}",
                node.value.type_name()
            ),
            "write annotations as `key: \"value\"` lines, or remove the field",
        );
        return out;
    };
    for (k, v) in entries {
        let key = match &k.value {
            Value::Str(s) => s.clone(),
            other => {
                c.report(
                    Code::WrongType,
                    k,
                    format!(
                        "annotation keys must be strings, found a {}",
                        other.type_name()
                    ),
                    "quote the key",
                );
                continue;
            }
        };
        match &v.value {
            Value::Str(s) => {
                out.insert(key, s.clone());
            }
            other => c.report(
                Code::WrongType,
                v,
                format!(
                    "annotation `{key}` must be a string, found a {}",
                    other.type_name()
                ),
                "quote the value",
            ),
        }
    }
    out
}

/// What the history needs of a record: its identity and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub agent: String,
    pub environment: String,
    pub version: String,
}

/// Reads the identity of a record file's content, leniently: a record "parses" for the history
/// when it is one YAML mapping whose `agent`, `environment` and `version` are strings. Rules
/// that `validate` enforces on top (names, declared environments, paths) do not matter here.
pub fn identity(bytes: &[u8]) -> Option<Identity> {
    if bytes.len() > crate::validate::MAX_FILE_SIZE as usize {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let root = yaml::parse(text).ok()?;
    let field = |k: &str| root.get(k).and_then(|n| n.as_str()).map(str::to_string);
    Some(Identity {
        agent: field("agent")?,
        environment: field("environment")?,
        version: field("version")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(
            "ledgit.yaml",
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: staging\n  - name: production\n",
        )
        .unwrap()
    }

    fn codes(path: &str, text: &str) -> Vec<(Code, u32, u32)> {
        parse(path, text, &config())
            .findings
            .iter()
            .map(|f| (f.code, f.line, f.column))
            .collect()
    }

    const OK: &str = "apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: support-bot\nenvironment: production\nversion: 1.4.2\nannotations:\n  owner: team\n";

    #[test]
    fn a_valid_record() {
        let p = parse("deployments/support-bot/production.yaml", OK, &config());
        assert!(p.findings.is_empty(), "{:?}", p.findings);
        let r = p.record.unwrap();
        assert_eq!(r.version, "1.4.2");
        assert_eq!((r.version_line, r.version_column), (5, 10));
        assert_eq!(r.annotations["owner"], "team");
    }

    #[test]
    fn unquoted_number_version_says_to_quote() {
        let text = OK.replace("1.4.2", "1.10");
        let p = parse("deployments/support-bot/production.yaml", &text, &config());
        assert_eq!(p.findings[0].code, Code::VersionNotString);
        assert_eq!(p.findings[0].hint, "quote it: version: \"1.10\"");
        assert!(p.record.is_none());
    }

    #[test]
    fn reports_all_problems_of_one_file() {
        let text = "apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: Support_Bot\nenvironment: prod\nverison: 1.0.0\n";
        assert_eq!(
            codes("deployments/x/prod.yaml", text),
            vec![
                (Code::UnknownField, 5, 1),
                (Code::InvalidName, 3, 8),
                (Code::UnknownEnvironment, 4, 14),
                (Code::MissingField, 1, 1),
            ]
        );
    }

    #[test]
    fn path_must_follow_the_convention() {
        assert_eq!(
            codes("deployments/other.yaml", OK),
            vec![(Code::PathMismatch, 1, 1)]
        );
    }

    #[test]
    fn versions_with_white_space_or_too_long() {
        let spaced = OK.replace("1.4.2", "\"1.4 2\"");
        assert_eq!(
            codes("deployments/support-bot/production.yaml", &spaced)[0].0,
            Code::InvalidVersion
        );
        let long = OK.replace("1.4.2", &"a".repeat(129));
        assert_eq!(
            codes("deployments/support-bot/production.yaml", &long)[0].0,
            Code::InvalidVersion
        );
        let empty = OK.replace("1.4.2", "\"\"");
        assert_eq!(
            codes("deployments/support-bot/production.yaml", &empty)[0].0,
            Code::InvalidVersion
        );
    }

    #[test]
    fn identity_is_lenient() {
        let id = identity(b"agent: a\nenvironment: e\nversion: v\nextra: 1\n").unwrap();
        assert_eq!((id.agent.as_str(), id.version.as_str()), ("a", "v"));
        assert!(identity(b"agent: a\nenvironment: e\nversion: 1.10\n").is_none());
        assert!(identity(b"agent: [").is_none());
    }
}
