//! Renovate itself on `init --example` with the preset of `examples/renovate.json`: it finds
//! every record of the first environment that names its source, with its current version, and
//! nothing else. Renovate 39 (npm; the newest major that runs on Node 20) comes from
//! `.ci/run`, into `bench/.npm`; a plain `cargo test` lists the test as ignored with what it
//! needs. `--dry-run=extract` needs no network.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use crate::common::{TestRepo, project_root};

fn renovate_bin(bin: &str) -> Option<PathBuf> {
    let path = project_root()
        .join("bench/.npm/node_modules/.bin")
        .join(bin);
    path.exists().then_some(path)
}

#[test]
#[ignore = "needs Renovate (npm install --prefix bench/.npm renovate@39); run with --include-ignored"]
fn renovate_finds_the_annotated_records_of_the_first_environment() {
    let what = "Renovate (npm install --prefix bench/.npm renovate@39)";
    let renovate = crate::common::needs(renovate_bin("renovate"), what);
    let validator = crate::common::needs(renovate_bin("renovate-config-validator"), what);
    let preset = project_root().join("examples/renovate.json");
    let valid = Command::new(&validator).arg(&preset).output().unwrap();
    assert!(
        valid.status.success(),
        "{}{}",
        String::from_utf8_lossy(&valid.stdout),
        String::from_utf8_lossy(&valid.stderr)
    );

    let repo = TestRepo::empty();
    assert_eq!(repo.ledgit(&["init", "--example", "."]).code, 0);
    std::fs::copy(&preset, repo.path().join("renovate.json")).unwrap();
    repo.commit("Renovate", crate::common::T0 + 40 * crate::common::DAY);
    let base = tempfile::tempdir().unwrap();
    let out = Command::new(&renovate)
        .args(["--platform=local", "--dry-run=extract"])
        .current_dir(repo.path())
        .env("LOG_LEVEL", "debug")
        .env("LOG_FORMAT", "json")
        .env("RENOVATE_BASE_DIR", base.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let extracted = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["msg"] == "Extracted dependencies")
        .unwrap_or_else(|| panic!("no extraction in the log:\n{log}"));
    let mut found = BTreeSet::new();
    for (manager, files) in extracted["packageFiles"].as_object().unwrap() {
        for file in files.as_array().unwrap() {
            for dep in file["deps"].as_array().unwrap() {
                found.insert(format!(
                    "{manager} {} {} {} {}",
                    file["packageFile"].as_str().unwrap(),
                    dep["datasource"].as_str().unwrap(),
                    dep["depName"].as_str().unwrap(),
                    dep["currentValue"].as_str().unwrap(),
                ));
            }
        }
    }
    let expected: BTreeSet<String> = [
        "regex deployments/billing-agent/development.yaml pypi billing-agent 2.1.0-rc.1",
        "regex deployments/search-assistant/development.yaml npm @acme/search-assistant 0.1.0",
        "regex deployments/support-bot/development.yaml docker ghcr.io/acme/support-bot 1.4.1",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(found, expected);
}
