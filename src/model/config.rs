//! The repository config, `ledgit.yaml`: where the records live, the environments in promotion
//! order with their gates (`promote_from`, `soak`), the public keys that verify tokens, and the
//! reconcilers' public keys that verify apply receipts (each with the environments it may apply).
//! Loading reports every problem at once, each with its line, as one [`Error::Config`].

use std::path::Path;

use base64::Engine;

use crate::error::{Error, Result};
use crate::finding::{Code, Finding};
use crate::model::shape::Checker;
use crate::support::when;
use crate::support::yaml::{self, Value};

/// The config file's name at the repository root.
pub const FILE_NAME: &str = "ledgit.yaml";
/// The API version both file kinds declare.
pub const API_VERSION: &str = "ledgit/v1";

/// A parsed, valid `ledgit.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The records folder, relative to the repository root, `/`-separated, no trailing slash.
    pub deployments: String,
    /// Environments in promotion order.
    pub environments: Vec<Environment>,
    pub keys: Vec<PublicKey>,
    /// The reconcilers whose signed receipts count, each with the environments it may apply.
    pub reconcilers: Vec<Reconciler>,
    /// The tokens' issuer (`iss`) and the server's RFC 8414 issuer: an https URL, where the
    /// server is reached. Without it tokens carry `ledgit`.
    pub issuer: Option<String>,
}

/// One environment.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub name: String,
    /// The environment a version must have run in before it may enter this one.
    pub promote_from: Option<String>,
    /// How long it must have run there, in seconds.
    pub soak: Option<i64>,
}

/// A public key that verifies deployment tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicKey {
    pub id: String,
    pub algorithm: String,
    /// The key as written (base64url without padding).
    pub encoded: String,
    pub bytes: [u8; 32],
}

/// A reconciler that signs apply receipts: its id and public key (as a token key is written)
/// and the environments it may apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciler {
    pub key: PublicKey,
    pub environments: Vec<String>,
}

impl Reconciler {
    /// The reconciler's id.
    pub fn id(&self) -> &str {
        &self.key.id
    }

    /// Whether it may apply `environment`.
    pub fn may_apply(&self, environment: &str) -> bool {
        self.environments.iter().any(|e| e == environment)
    }
}

impl Config {
    /// The reconciler with this id.
    pub fn reconciler(&self, id: &str) -> Option<&Reconciler> {
        self.reconcilers.iter().find(|r| r.key.id == id)
    }

    /// The environment with this name.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// The error of naming an environment this config does not declare.
    pub fn unknown_environment(&self, name: &str) -> crate::Error {
        let names: Vec<&str> = self.environments.iter().map(|e| e.name.as_str()).collect();
        crate::Error::invalid(
            format!("environment `{name}` is not declared in ledgit.yaml"),
            format!("declared environments: {}", names.join(", ")),
        )
    }

    /// The position of an environment in promotion order.
    pub fn environment_index(&self, name: &str) -> Option<usize> {
        self.environments.iter().position(|e| e.name == name)
    }

    /// The key with this id.
    pub fn key(&self, id: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Whether a repository-relative path lies in the records folder.
    pub fn in_deployments(&self, path: &str) -> bool {
        path.strip_prefix(&self.deployments)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    /// The conventional path of a record.
    pub fn record_path(&self, agent: &str, environment: &str) -> String {
        format!("{}/{agent}/{environment}.yaml", self.deployments)
    }

    /// Reads `ledgit.yaml` from a work tree root.
    pub fn load(root: &Path) -> Result<Config> {
        let path = root.join(FILE_NAME);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Config {
                    path,
                    line: None,
                    column: None,
                    message: "no ledgit.yaml at the repository root".into(),
                    hint: "create one with `ledgit init`, or pass -C to the deployments repository"
                        .into(),
                });
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        Config::from_bytes(&path, &bytes)
    }

    /// Parses the config's bytes; `path` is used in errors.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Config> {
        let text = std::str::from_utf8(bytes).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: format!("not UTF-8 text ({e})"),
            hint: "save the file as UTF-8".into(),
        })?;
        parse(FILE_NAME, text).map_err(|findings| {
            let first = &findings[0];
            let mut message = first.message.clone();
            for other in &findings[1..] {
                message.push_str(&format!(
                    "\n  {}:{}: {}",
                    other.line, other.column, other.message
                ));
            }
            Error::Config {
                path: path.to_path_buf(),
                line: Some(first.line),
                column: Some(first.column),
                message,
                hint: first.hint.clone(),
            }
        })
    }
}

/// Parses and checks the config text, reporting every problem found.
pub fn parse(path: &str, text: &str) -> std::result::Result<Config, Vec<Finding>> {
    let mut c = Checker::new(path, text);
    let root = match yaml::parse(text) {
        Ok(node) => node,
        Err(p) => {
            c.report_at(
                crate::model::shape::problem_code(p.kind),
                p.line,
                p.column,
                p.message,
                "fix the YAML syntax",
            );
            return Err(c.findings);
        }
    };
    let known = [
        "apiVersion",
        "kind",
        "deployments",
        "environments",
        "keys",
        "reconcilers",
        "issuer",
    ];
    if c.mapping(&root, "ledgit.yaml", &known).is_none() {
        return Err(c.findings);
    }
    c.header(&root, "ledgit.yaml", API_VERSION, "Config");
    let mut deployments = "deployments".to_string();
    if let Some(v) = root.get("deployments")
        && let Some(s) = c.string(v, "deployments")
    {
        match normalize_folder(s) {
            Some(folder) => deployments = folder,
            None => c.report(
                Code::WrongType,
                v,
                format!("`deployments: {s}` is not a folder inside the repository"),
                "use a relative path without `..`, such as `deployments`",
            ),
        }
    }
    let environments = environments(&mut c, &root);
    let keys = keys(&mut c, &root);
    let reconcilers = reconcilers(&mut c, &root, &environments);
    let issuer = root.get("issuer").and_then(|v| {
        let s = c.string(v, "issuer")?;
        if is_issuer(s) {
            Some(s.to_string())
        } else {
            c.report(
                Code::InvalidIssuer,
                v,
                format!("`issuer: {s}` is not an https URL without query or fragment"),
                "write the address the server is reached at, such as https://ledgit.example.com",
            );
            None
        }
    });
    if c.findings.is_empty() {
        Ok(Config {
            deployments,
            environments,
            keys,
            reconcilers,
            issuer,
        })
    } else {
        Err(c.findings)
    }
}

/// Whether `s` is an issuer identifier as RFC 8414 asks: an https URL with a host and no
/// query, fragment or white space.
pub fn is_issuer(s: &str) -> bool {
    s.strip_prefix("https://").is_some_and(|rest| {
        let host = rest.split('/').next().unwrap_or("");
        !host.is_empty()
            && !host.contains('@')
            && !rest.contains(['?', '#'])
            && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

fn environments(c: &mut Checker, root: &yaml::Node) -> Vec<Environment> {
    let mut out: Vec<Environment> = Vec::new();
    let Some(list) = c.required(root, "environments", "ledgit.yaml") else {
        return out;
    };
    let Value::Seq(items) = &list.value else {
        c.report(
            Code::WrongType,
            list,
            format!(
                "`environments` must be a list, found a {}",
                list.value.type_name()
            ),
            "list the environments in promotion order, each as `- name: ...`",
        );
        return out;
    };
    if items.is_empty() {
        c.report(
            Code::MissingField,
            list,
            "`environments` is empty".into(),
            "declare at least one environment",
        );
    }
    for item in items {
        if c.mapping(item, "an environment", &["name", "promote_from", "soak"])
            .is_none()
        {
            continue;
        }
        let Some(name_node) = c.required(item, "name", "an environment") else {
            continue;
        };
        let Some(name) = c.string(name_node, "name") else {
            continue;
        };
        c.dns_label(name_node, name, "name");
        if out.iter().any(|e| e.name == name) {
            c.report(
                Code::DuplicatePair,
                name_node,
                format!("environment `{name}` is declared twice"),
                "declare each environment once",
            );
        }
        let mut env = Environment {
            name: name.to_string(),
            promote_from: None,
            soak: None,
        };
        if let Some(p) = item.get("promote_from")
            && let Some(from) = c.string(p, "promote_from")
        {
            if out.iter().any(|e| e.name == from) {
                env.promote_from = Some(from.to_string());
            } else {
                c.report(
                    Code::UnknownEnvironment,
                    p,
                    format!("`promote_from: {from}` names no environment declared before `{name}`"),
                    "environments are in promotion order: promote from one listed above",
                );
            }
        }
        if let Some(s) = item.get("soak")
            && let Some(text) = c.string(s, "soak")
        {
            match when::parse_duration(text) {
                Some(secs) => env.soak = Some(secs),
                None => c.report(
                    Code::WrongType,
                    s,
                    format!("`soak: {text}` is not a duration"),
                    "write a duration such as 30m, 24h, 7d or 1d12h",
                ),
            }
            if item.get("promote_from").is_none() {
                c.report(
                    Code::MissingField,
                    s,
                    format!("`soak` on `{name}` needs `promote_from`"),
                    "say which environment the version must soak in",
                );
            }
        }
        out.push(env);
    }
    out
}

/// The items of the optional top-level list `name` (none when it is absent or null).
fn list<'n>(c: &mut Checker, root: &'n yaml::Node, name: &str) -> &'n [yaml::Node] {
    let Some(list) = root.get(name) else {
        return &[];
    };
    match &list.value {
        Value::Seq(items) => items.as_slice(),
        Value::Null => &[],
        other => {
            c.report(
                Code::WrongType,
                list,
                format!("`{name}` must be a list, found a {}", other.type_name()),
                "list its entries as `- id: ...`",
            );
            &[]
        }
    }
}

fn keys(c: &mut Checker, root: &yaml::Node) -> Vec<PublicKey> {
    let mut out: Vec<PublicKey> = Vec::new();
    for item in list(c, root, "keys") {
        if c.mapping(item, "a key", &["id", "algorithm", "public_key"])
            .is_some()
            && let Some(key) = public_key(c, item, "a key", &out)
        {
            out.push(key);
        }
    }
    out
}

fn reconcilers(c: &mut Checker, root: &yaml::Node, declared: &[Environment]) -> Vec<Reconciler> {
    let mut out: Vec<Reconciler> = Vec::new();
    for item in list(c, root, "reconcilers") {
        let what = "a reconciler";
        if c.mapping(
            item,
            what,
            &["id", "algorithm", "public_key", "environments"],
        )
        .is_none()
        {
            continue;
        }
        let taken: Vec<PublicKey> = out.iter().map(|r| r.key.clone()).collect();
        let key = public_key(c, item, what, &taken);
        let mut environments = Vec::new();
        if let Some(node) = c.required(item, "environments", what) {
            match &node.value {
                Value::Seq(names) => {
                    for n in names {
                        let Some(name) = c.string(n, "environments") else {
                            continue;
                        };
                        if declared.iter().any(|e| e.name == name) {
                            environments.push(name.to_string());
                        } else {
                            c.report(
                                Code::UnknownEnvironment,
                                n,
                                format!(
                                    "reconciler environment `{name}` is not declared in ledgit.yaml"
                                ),
                                "list environments declared under `environments:`",
                            );
                        }
                    }
                }
                other => c.report(
                    Code::WrongType,
                    node,
                    format!(
                        "`environments` must be a list, found a {}",
                        other.type_name()
                    ),
                    "list the environments it may apply, such as [development, staging]",
                ),
            }
        }
        if let Some(key) = key {
            out.push(Reconciler { key, environments });
        }
    }
    out
}

/// One `id` / `algorithm` / `public_key` entry; `taken` are the entries of its list so far.
fn public_key(
    c: &mut Checker,
    item: &yaml::Node,
    what: &str,
    taken: &[PublicKey],
) -> Option<PublicKey> {
    let id = c
        .required(item, "id", what)
        .and_then(|n| c.string(n, "id").map(|s| (n, s)));
    let alg = c
        .required(item, "algorithm", what)
        .and_then(|n| c.string(n, "algorithm").map(|s| (n, s)));
    let public = c
        .required(item, "public_key", what)
        .and_then(|n| c.string(n, "public_key").map(|s| (n, s)));
    let (Some((id_node, id)), Some((alg_node, alg)), Some((pk_node, pk))) = (id, alg, public)
    else {
        return None;
    };
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_whitespace) {
        c.report(
            Code::InvalidName,
            id_node,
            format!("key id `{id}` must be 1 to 128 characters without white space"),
            "use an id such as k2026-11",
        );
    }
    if taken.iter().any(|k| k.id == id) {
        c.report(
            Code::DuplicatePair,
            id_node,
            format!("key id `{id}` is listed twice"),
            "give each key its own id",
        );
    }
    if alg != "Ed25519" {
        c.report(
            Code::WrongType,
            alg_node,
            format!("algorithm `{alg}` is not supported"),
            "use `algorithm: Ed25519`",
        );
    }
    match decode_key(pk) {
        Some(bytes) => Some(PublicKey {
            id: id.to_string(),
            algorithm: alg.to_string(),
            encoded: pk.to_string(),
            bytes,
        }),
        None => {
            c.report(
                Code::WrongType,
                pk_node,
                "`public_key` is not 32 bytes in base64url without padding".into(),
                "paste the public entry printed by `ledgit keys generate`",
            );
            None
        }
    }
}

/// Decodes a base64url (no padding) Ed25519 public key.
pub fn decode_key(text: &str) -> Option<[u8; 32]> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    bytes.try_into().ok()
}

/// `deployments`, `./deployments/`, `a/b` are fine; absolute paths and `..` are not.
fn normalize_folder(s: &str) -> Option<String> {
    if s.starts_with('/') || s.contains('\\') {
        return None;
    }
    let parts: Vec<&str> = s
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return None;
    }
    Some(parts.join("/"))
}

/// The text of `ledgit.yaml` with one more Ed25519 public key under `keys:` (the list is
/// created when missing): only that list is edited, through the same editor as the token
/// ledger and the revocation list, in the file's line endings. The result is read back and
/// must list the old keys and the new one, or nothing is returned.
pub fn add_key(
    text: &str,
    id: &str,
    public_key: &str,
) -> std::result::Result<String, crate::model::edit::EditError> {
    add_entry(text, "keys", id, public_key, None)
}

/// The text of `ledgit.yaml` with one more reconciler under `reconcilers:` (its public key and
/// the environments it may apply), edited as [`add_key`] edits `keys:`.
pub fn add_reconciler(
    text: &str,
    id: &str,
    public_key: &str,
    environments: &[String],
) -> std::result::Result<String, crate::model::edit::EditError> {
    add_entry(text, "reconcilers", id, public_key, Some(environments))
}

fn add_entry(
    text: &str,
    list: &'static str,
    id: &str,
    public_key: &str,
    environments: Option<&[String]>,
) -> std::result::Result<String, crate::model::edit::EditError> {
    use crate::model::edit::{EditError, append_read_back};
    // `parse` fails with at least one finding; the first names the line.
    let ids = |text: &str| -> std::result::Result<Vec<String>, EditError> {
        match parse(FILE_NAME, text) {
            Ok(c) if list == "keys" => Ok(c.keys.iter().map(|k| k.id.clone()).collect()),
            Ok(c) => Ok(c.reconcilers.iter().map(|r| r.key.id.clone()).collect()),
            Err(f) => Err(f
                .first()
                .map(EditError::from)
                .unwrap_or(EditError::Unreadable {
                    line: 0,
                    message: "ledgit.yaml does not read".into(),
                })),
        }
    };
    if ids(text)?.iter().any(|k| k == id) {
        return Err(EditError::Unsupported(format!(
            "ledgit.yaml already lists `{id}` under {list}:"
        )));
    }
    let item = |indent: &str, nl: &str| {
        let mut out = format!(
            "{indent}- id: {id}{nl}{indent}  algorithm: Ed25519{nl}{indent}  public_key: {public_key}{nl}"
        );
        if let Some(envs) = environments {
            out.push_str(&format!(
                "{indent}  environments: [{}]{nl}",
                envs.join(", ")
            ));
        }
        out
    };
    append_read_back(text, list, &item, &ids, id.to_string(), "config")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: development\n  - name: staging\n    promote_from: development\n  - name: production\n    promote_from: staging\n    soak: 24h\nkeys:\n  - id: k1\n    algorithm: Ed25519\n    public_key: 11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\n";

    #[test]
    fn parses_the_spec_example() {
        let cfg = parse(FILE_NAME, GOOD).unwrap();
        assert_eq!(cfg.deployments, "deployments");
        assert_eq!(cfg.environments.len(), 3);
        assert_eq!(cfg.environments[2].soak, Some(86_400));
        assert_eq!(cfg.environments[2].promote_from.as_deref(), Some("staging"));
        assert_eq!(cfg.keys[0].id, "k1");
        assert!(cfg.in_deployments("deployments/a/b.yaml"));
        assert!(!cfg.in_deployments("deployments-old/a.yaml"));
    }

    #[test]
    fn reports_every_problem_with_lines() {
        let text = "apiVersion: ledgit/v2\nkind: Config\ndeployments: ../out\nenvironments:\n  - name: Dev\n  - name: prod\n    promote_from: staging\n    soak: 1 day\n    colour: red\n";
        let findings = parse(FILE_NAME, text).unwrap_err();
        let got: Vec<(Code, u32)> = findings.iter().map(|f| (f.code, f.line)).collect();
        assert_eq!(
            got,
            vec![
                (Code::InvalidApiVersion, 1),
                (Code::WrongType, 3),
                (Code::InvalidName, 5),
                (Code::UnknownField, 9),
                (Code::UnknownEnvironment, 7),
                (Code::WrongType, 8),
            ]
        );
    }

    #[test]
    fn folders() {
        assert_eq!(normalize_folder("./records/"), Some("records".into()));
        assert_eq!(normalize_folder("a/b"), Some("a/b".into()));
        assert_eq!(normalize_folder("../x"), None);
        assert_eq!(normalize_folder("/etc"), None);
    }

    const PK: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
    const HEAD: &str = "apiVersion: ledgit/v1\nkind: Config\n";

    #[test]
    fn a_key_goes_into_an_empty_flow_list_keeping_the_comment() {
        let text = format!("{HEAD}keys: []   # signing keys\nenvironments:\n  - name: a\n");
        let out = add_key(&text, "k1", PK).unwrap();
        assert_eq!(
            out,
            format!(
                "{HEAD}keys:   # signing keys\n  - id: k1\n    algorithm: Ed25519\n    public_key: {PK}\nenvironments:\n  - name: a\n"
            )
        );
    }

    #[test]
    fn a_key_goes_after_the_last_in_a_block_list_with_its_indent() {
        let text = format!(
            "{HEAD}keys:\n- id: k0\n  algorithm: Ed25519\n  public_key: {PK}\n# end\nenvironments:\n  - name: a\n"
        );
        let out = add_key(&text, "k1", PK).unwrap();
        assert!(
            out.contains(&format!(
                "  public_key: {PK}\n- id: k1\n  algorithm: Ed25519\n  public_key: {PK}\n# end\n"
            )),
            "{out}"
        );
        assert!(
            add_key(&out, "k1", PK)
                .unwrap_err()
                .to_string()
                .contains("already")
        );
    }

    #[test]
    fn a_keys_list_is_added_when_missing_in_the_files_line_endings() {
        let text = "apiVersion: ledgit/v1\r\nkind: Config\r\nenvironments:\r\n  - name: a\r\n";
        let out = add_key(text, "k1", PK).unwrap();
        assert_eq!(
            out,
            format!(
                "{text}keys:\r\n  - id: k1\r\n    algorithm: Ed25519\r\n    public_key: {PK}\r\n"
            )
        );
        assert!(add_key("kind: [\n", "k1", PK).is_err());
    }

    #[test]
    fn reconcilers_name_declared_environments_and_are_added_like_keys() {
        let text = format!("{HEAD}environments:\n  - name: dev\n  - name: prod\n");
        let out = add_reconciler(&text, "r1", PK, &["dev".into(), "prod".into()]).unwrap();
        let cfg = parse(FILE_NAME, &out).unwrap();
        let r = cfg.reconciler("r1").unwrap();
        assert_eq!(r.environments, ["dev", "prod"]);
        assert!(r.may_apply("prod") && !r.may_apply("staging"));
        assert!(cfg.keys.is_empty());
        assert!(add_reconciler(&out, "r1", PK, &[]).is_err());
        let bad = format!(
            "{HEAD}environments:\n  - name: dev\nreconcilers:\n  - id: r1\n    algorithm: Ed25519\n    public_key: {PK}\n    environments: [dev, qa]\n  - id: r2\n    algorithm: Ed25519\n    public_key: {PK}\n"
        );
        let got: Vec<(Code, u32)> = parse(FILE_NAME, &bad)
            .unwrap_err()
            .iter()
            .map(|f| (f.code, f.line))
            .collect();
        assert_eq!(
            got,
            [(Code::UnknownEnvironment, 9), (Code::MissingField, 10)]
        );
    }
}
