//! Data-driven tests over `fixtures/`: every record and config example states the finding codes
//! it must produce (`# expect: ...` on its first line), every sample repository its exit code and
//! findings (`expect`). The JSON Schemas in `schema/` must agree with ledgit on every example
//! on the rules a schema can express.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::{CONFIG, TestRepo, copy_tree, project_root};
use ledgit::support::yaml::{self, Node, Value};

/// Codes of rules that a JSON Schema expresses; the others (declared environments, paths,
/// duplicates, keys in the wrong place) need the whole repository.
const SCHEMA_CODES: &[&str] = &[
    "unknown-field",
    "missing-field",
    "wrong-type",
    "version-not-string",
    "invalid-api-version",
    "invalid-kind",
    "invalid-name",
    "invalid-version",
    "invalid-source",
    "invalid-ledger-value",
];

fn files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = ["valid", "invalid"]
        .iter()
        .flat_map(|kind| {
            std::fs::read_dir(project_root().join("fixtures").join(dir).join(kind)).unwrap()
        })
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    assert!(out.len() > 5, "fixtures/{dir} is missing");
    out
}

/// The codes named on the first line: `# expect: a b` (`valid` for none).
fn expected(bytes: &[u8]) -> BTreeSet<String> {
    let text = String::from_utf8_lossy(bytes);
    let first = text
        .trim_start_matches('\u{feff}')
        .lines()
        .next()
        .unwrap_or("");
    let list = first
        .strip_prefix("# expect:")
        .unwrap_or_else(|| panic!("no `# expect:` line"));
    list.split_whitespace()
        .filter(|c| *c != "valid")
        .map(str::to_string)
        .collect()
}

fn to_json(node: &Node) -> serde_json::Value {
    match &node.value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => serde_json::Value::from(*i as f64),
        Value::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Str(s) => s.clone().into(),
        Value::Seq(items) => items.iter().map(to_json).collect(),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| {
                let key = match &k.value {
                    Value::Str(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                (key, to_json(v))
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

fn schema(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(project_root().join("schema").join(name)).unwrap();
    jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
}

/// Checks that the schema and ledgit agree on one file.
fn agree(validator: &jsonschema::Validator, path: &Path, bytes: &[u8], codes: &BTreeSet<String>) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(node) = yaml::parse(text) else { return };
    let instance = to_json(&node);
    let schema_ok = validator.is_valid(&instance);
    let ledgit_ok = !codes.iter().any(|c| SCHEMA_CODES.contains(&c.as_str()));
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        schema_ok,
        ledgit_ok,
        "{}: the schema says {} ({errors:?}), ledgit says {codes:?}",
        path.display(),
        if schema_ok { "valid" } else { "invalid" },
    );
}

#[test]
fn record_fixtures_produce_the_codes_they_state() {
    let validator = schema("record.schema.json");
    let config = ledgit::model::config::parse("ledgit.yaml", CONFIG).unwrap();
    for path in files("records") {
        let bytes = std::fs::read(&path).unwrap();
        let want = expected(&bytes);
        let repo = tempfile::tempdir().unwrap();
        let target = repo.path().join("deployments/support-bot/production.yaml");
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, &bytes).unwrap();
        let report = ledgit::model::validate::worktree(repo.path(), &config, &[]).unwrap();
        let got: BTreeSet<String> = report.findings.iter().map(|f| f.code.to_string()).collect();
        assert_eq!(got, want, "{}: {:#?}", path.display(), report.findings);
        for f in &report.findings {
            assert!(
                f.line >= 1 && f.column >= 1 && !f.message.is_empty() && !f.hint.is_empty(),
                "{f:?}"
            );
        }
        agree(&validator, &path, &bytes, &got);
    }
}

#[test]
fn config_fixtures_produce_the_codes_they_state() {
    let validator = schema("config.schema.json");
    for path in files("config") {
        let bytes = std::fs::read(&path).unwrap();
        let want = expected(&bytes);
        let text = std::str::from_utf8(&bytes).unwrap();
        let got: BTreeSet<String> = match ledgit::model::config::parse("ledgit.yaml", text) {
            Ok(_) => BTreeSet::new(),
            Err(findings) => findings.iter().map(|f| f.code.to_string()).collect(),
        };
        assert_eq!(got, want, "{}", path.display());
        agree(&validator, &path, &bytes, &got);
    }
}

#[test]
fn repository_fixtures_exit_and_report_as_stated() {
    let dir = project_root().join("fixtures/repos");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.len() >= 8);
    for name in names {
        let src = dir.join(&name);
        let expect = std::fs::read_to_string(src.join("expect")).unwrap();
        let repo = TestRepo::empty();
        copy_tree(&src, repo.path());
        repo.remove("expect");
        let mut exit = None;
        let mut findings = BTreeSet::new();
        let mut stderr = Vec::new();
        for line in expect.lines() {
            let (word, rest) = line.split_once(' ').unwrap();
            match word {
                "exit" => exit = Some(rest.parse::<i32>().unwrap()),
                "finding" => {
                    findings.insert(rest.to_string());
                }
                "stderr" => stderr.push(rest.to_string()),
                "large" => repo.write(rest, "# padding\n".repeat(120_000)),
                other => panic!("unknown directive {other}"),
            }
        }
        repo.commit("fixture", crate::common::T0);
        for args in [
            &["validate", "--format", "json"][..],
            &["validate", "--rev", "HEAD", "--format", "json"],
        ] {
            let run = repo.ledgit(args);
            let ctx = format!("{name:?} {args:?}: {}{}", run.stdout, run.stderr);
            assert_eq!(Some(run.code), exit, "{ctx}");
            for s in &stderr {
                assert!(
                    run.stderr.contains(s.as_str()),
                    "{ctx}\nexpected on stderr: {s}"
                );
            }
            if run.code != 2 {
                let got: BTreeSet<String> = run.json()["findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| {
                        format!(
                            "{} {}",
                            f["code"].as_str().unwrap(),
                            f["path"].as_str().unwrap()
                        )
                    })
                    .collect();
                assert_eq!(got, findings, "{ctx}");
            }
        }
    }
}

#[test]
fn ledger_fixtures_produce_the_codes_they_state() {
    let validator = schema("tokens.schema.json");
    for path in files("tokens") {
        let bytes = std::fs::read(&path).unwrap();
        let want = expected(&bytes);
        // Through `validate`, as a user meets it: the ledger at the root of a work tree.
        let repo = tempfile::tempdir().unwrap();
        std::fs::write(repo.path().join("tokens.yaml"), &bytes).unwrap();
        let config = ledgit::model::config::parse("ledgit.yaml", CONFIG).unwrap();
        let report = ledgit::model::validate::worktree(repo.path(), &config, &[]).unwrap();
        let got: BTreeSet<String> = report.findings.iter().map(|f| f.code.to_string()).collect();
        assert_eq!(got, want, "{}: {:#?}", path.display(), report.findings);
        for f in &report.findings {
            assert!(
                f.path == "tokens.yaml" && f.line >= 2 && !f.hint.is_empty(),
                "{f:?}"
            );
        }
        // A duplicate id needs the whole list; the schema agrees on the rest.
        agree(&validator, &path, &bytes, &got);
    }
}
