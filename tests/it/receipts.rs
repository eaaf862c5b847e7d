//! Signed apply receipts end to end: the reconciler signs one per applied action into git
//! notes; `receipts verify`, `audit`, `history --applied` and the server read them; attacks on
//! them are findings with their codes; a crash between the apply and the note, two reconcilers
//! on one commit and two clones pushing to one remote lose nothing and duplicate nothing; and
//! Python's in-toto and securesystemslib verify them without ledgit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ledgit::receipt::{Envelope, Statement};
use ledgit::token::SigningKey;

use crate::common::{T0, TestRepo, wait_for};

const NOTES: &str = "--ref=ledgit/applied";

/// A repository with reconciler `r1` (development and staging) committed, and its key.
fn signed_repo() -> (TestRepo, tempfile::TempDir, PathBuf) {
    let repo = TestRepo::new();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("r1.pem");
    let made = repo.ledgit(&[
        "keys",
        "generate",
        "--out",
        key.to_str().unwrap(),
        "--reconciler",
        "r1",
        "--environment",
        "development",
        "--environment",
        "staging",
    ]);
    assert_eq!(made.code, 0, "{}{}", made.stdout, made.stderr);
    assert!(
        repo.read("ledgit.yaml")
            .contains("environments: [development, staging]")
    );
    repo.set("alpha", "development", "1.0.0");
    repo.set("beta", "development", "2.0.0");
    repo.commit("Initial", T0);
    (repo, keys, key)
}

fn reconcile(repo: &TestRepo, key: &Path, extra: &[&str]) -> crate::common::Run {
    let mut args = vec![
        "reconcile",
        "--exec",
        "true",
        "--signing-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let run = repo.ledgit(&args);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    run
}

/// The lines of the note on `rev`.
fn note(repo: &TestRepo, rev: &str) -> Vec<String> {
    let out = Command::new("git")
        .current_dir(repo.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["notes", NOTES, "show", rev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn statement(line: &str) -> Statement {
    Envelope::parse(line).unwrap().statement().unwrap()
}

/// The codes of `receipts verify --format json`, sorted.
fn verify_codes(repo: &TestRepo) -> (i32, Vec<String>) {
    let run = repo.ledgit(&["receipts", "verify", "--format", "json"]);
    let codes = run.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect();
    (run.code, codes)
}

#[test]
fn each_applied_action_gets_one_signed_receipt_on_the_applied_commit() {
    let (repo, _keys, key) = signed_repo();
    let head = repo.git(&["rev-parse", "HEAD"]);
    let run = reconcile(&repo, &key, &[]);
    assert!(
        run.stdout
            .contains("2 receipts signed into refs/notes/ledgit/applied"),
        "{}",
        run.stdout
    );
    let lines = note(&repo, "HEAD");
    assert_eq!(lines.len(), 2, "{lines:?}");
    let s = statement(&lines[0]);
    assert_eq!(s.statement_type, "https://in-toto.io/Statement/v1");
    assert_eq!(s.predicate_type, "https://ledgit.dev/apply/v1");
    assert_eq!(s.subject[0].name, "deployments/alpha/development.yaml");
    let blob = repo.git(&["rev-parse", "HEAD:deployments/alpha/development.yaml"]);
    assert_eq!(s.subject[0].digest["gitBlob"], blob);
    let p = &s.predicate;
    assert_eq!(
        (
            p.agent.as_str(),
            p.action.as_str(),
            p.version.as_deref(),
            p.commit.as_str()
        ),
        ("alpha", "deploy", Some("1.0.0"), head.as_str())
    );
    assert_eq!(
        (p.reconciler.as_str(), p.actuator.as_str()),
        ("r1", "exec: true")
    );
    assert!(p.host.contains("(pid "), "{}", p.host);
    // git shows them; the work tree and the branch are as they were.
    let log = repo.git(&["log", "-1", "--notes=ledgit/applied"]);
    assert!(log.contains("Notes (ledgit/applied):"), "{log}");
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert_eq!(repo.git(&["rev-parse", "HEAD"]), head);
    // A pass with nothing to do writes nothing; a change gets its own receipt on its commit.
    reconcile(&repo, &key, &[]);
    assert_eq!(note(&repo, "HEAD").len(), 2);
    repo.set("alpha", "development", "1.1.0");
    let second = repo.commit("Bump alpha", T0 + 60);
    reconcile(&repo, &key, &[]);
    let lines = note(&repo, &second);
    assert_eq!(lines.len(), 1);
    assert_eq!(
        statement(&lines[0]).predicate.previous_version.as_deref(),
        Some("1.0.0")
    );
    assert_eq!(verify_codes(&repo), (0, vec![]));
    // Readers: the audit, the history with lags, one commit's receipts.
    let audit = repo.ledgit(&["audit", "--format", "json"]);
    assert_eq!(audit.code, 0, "{}", audit.stdout);
    let rows = audit.json()["rows"].as_array().unwrap().clone();
    let alpha = rows.iter().find(|r| r["agent"] == "alpha").unwrap();
    assert_eq!(
        (&alpha["declared"], &alpha["running"]),
        (&"1.1.0".into(), &"1.1.0".into())
    );
    assert_eq!(alpha["status"], "applied");
    // In 2025 the records were declared (2024) and no receipt shows anything applied yet.
    let then = repo.ledgit(&["audit", "--at", "2025-01-01", "--format", "json"]);
    assert_eq!(then.code, 1);
    let then = then.json();
    let alpha_then = then["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agent"] == "alpha")
        .unwrap()
        .clone();
    assert_eq!(
        (
            &alpha_then["declared"],
            &alpha_then["running"],
            &alpha_then["status"]
        ),
        (
            &"1.1.0".into(),
            &serde_json::Value::Null,
            &"not-applied".into()
        )
    );
    assert_eq!(then["findings"][0]["code"], "declared-not-applied");
    let history = repo
        .ledgit(&["history", "--applied", "--format", "json"])
        .json();
    let events = history.as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(
        events.iter().all(|e| e["applied"]["reconciler"] == "r1"),
        "{history}"
    );
    // Committed at T0 (2024), applied now: the lag is the difference.
    assert!(events[0]["applied"]["lag_seconds"].as_i64().unwrap() > 0);
    let text = repo.ledgit(&["history", "--applied"]).stdout;
    assert!(text.contains("LAG") && text.contains("r1"), "{text}");
    let shown = repo.ledgit(&["receipts", "show", &second]);
    assert!(shown.stdout.contains("signed, valid"), "{}", shown.stdout);
    // A removal (with --prune) gets its receipt too, naming the commit instead of a content.
    repo.remove("deployments/beta/development.yaml");
    let third = repo.commit("Remove beta", T0 + 120);
    reconcile(&repo, &key, &["--prune"]);
    let removal = statement(&note(&repo, &third)[0]);
    assert_eq!(removal.predicate.action, "remove");
    assert_eq!(removal.subject[0].digest["gitCommit"], third);
    assert_eq!(verify_codes(&repo), (0, vec![]));
    let audit = repo.ledgit(&["audit", "--format", "json"]).json();
    assert!(
        audit["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["agent"] != "beta"),
        "beta neither declared nor running: {audit}"
    );
    let history = repo
        .ledgit(&["history", "--applied", "--format", "json"])
        .json();
    let removed = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "removed")
        .unwrap()
        .clone();
    assert_eq!(removed["applied"]["commit"], third, "{removed}");
}

#[test]
fn without_a_key_nothing_is_signed_and_it_says_so() {
    let (repo, _keys, _key) = signed_repo();
    let run = repo.ledgit(&["reconcile", "--exec", "true"]);
    assert_eq!(run.code, 0);
    assert!(run.stderr.contains("no --signing-key"), "{}", run.stderr);
    assert!(note(&repo, "HEAD").is_empty());
    // Declared long ago (T0), never applied with a receipt: the audit says so.
    let (code, codes) = verify_codes(&repo);
    assert_eq!(
        (code, codes),
        (1, vec!["declared-not-applied".to_string(); 2])
    );
}

/// Signs `s` as `keyid` with the PEM key at `key`, as a note line.
fn sign(s: &Statement, key: &Path, keyid: &str) -> String {
    let key = SigningKey::from_bytes(&std::fs::read(key).unwrap()).unwrap();
    Envelope::sign(s, &key, keyid).to_line()
}

fn append_note(repo: &TestRepo, rev: &str, line: &str) {
    repo.git(&["notes", NOTES, "append", "-m", line, rev]);
}

#[test]
fn attacks_on_receipts_are_each_a_coded_finding() {
    let (repo, keys, key) = signed_repo();
    let head = repo.git(&["rev-parse", "HEAD"]);
    reconcile(&repo, &key, &[]);
    let original = note(&repo, "HEAD");
    let genuine = original[0].clone();
    assert_eq!(verify_codes(&repo), (0, vec![]));
    let restore = |rev: &str| {
        repo.git(&["notes", NOTES, "remove", rev]);
        for line in &original {
            append_note(&repo, rev, line);
        }
    };

    // A note edited after signing: the version changed in the payload, the signature kept.
    let mut edited: Envelope = Envelope::parse(&genuine).unwrap();
    let mut s = edited.statement().unwrap();
    s.predicate.version = Some("6.6.6".into());
    use base64::Engine;
    edited.payload =
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&s).unwrap());
    append_note(&repo, "HEAD", &edited.to_line());
    assert_eq!(verify_codes(&repo).1, ["receipt-signature"]);
    restore(&head);

    // A receipt signed by a key ledgit.yaml does not list, claiming r1 or naming itself.
    let rogue = keys.path().join("rogue.pem");
    repo.ledgit(&["keys", "generate", "--out", rogue.to_str().unwrap()]);
    let s = statement(&genuine);
    append_note(&repo, "HEAD", &sign(&s, &rogue, "r1"));
    append_note(&repo, "HEAD", &sign(&s, &rogue, "rogue"));
    let (code, codes) = verify_codes(&repo);
    assert_eq!(code, 1);
    assert_eq!(codes, ["receipt-signature", "receipt-unknown-key"]);
    restore(&head);

    // A receipt moved to another commit.
    repo.set("gamma", "development", "0.1.0");
    let later = repo.commit("Add gamma", T0 + 120);
    append_note(&repo, &later, &genuine);
    assert!(verify_codes(&repo).1.contains(&"receipt-moved".to_string()));
    repo.git(&["notes", NOTES, "remove", &later]);

    // A receipt, with the real key, for a version the record never declared.
    let mut s = statement(&genuine);
    s.predicate.version = Some("9.9.9".into());
    append_note(&repo, &head, &sign(&s, &key, "r1"));
    let (_, codes) = verify_codes(&repo);
    assert!(
        codes.contains(&"receipt-undeclared".to_string()),
        "{codes:?}"
    );
    restore(&head);
    assert_eq!(
        verify_codes(&repo).1,
        ["declared-not-applied"],
        "only gamma, not applied yet"
    );
    reconcile(&repo, &key, &[]); // gamma, on `later`
    assert_eq!(verify_codes(&repo), (0, vec![]));

    // An environment the key may not apply: r1 signs for development and staging only.
    repo.set("alpha", "production", "1.0.0");
    repo.commit("alpha to production", T0 + 180);
    reconcile(&repo, &key, &["--environment", "production"]);
    let (_, codes) = verify_codes(&repo);
    assert_eq!(codes, ["receipt-environment"]);

    // A removed key: receipts before the removal hold, receipts after it do not.
    let config = repo.read("ledgit.yaml");
    let cut = config.find("reconcilers:").unwrap();
    repo.write("ledgit.yaml", &config[..cut]);
    repo.set("beta", "development", "2.1.0");
    repo.commit("Remove r1; bump beta", T0 + 240);
    let run = reconcile(&repo, &key, &["--environment", "development"]);
    assert!(
        run.stderr.contains("not listed under `reconcilers:`"),
        "{}",
        run.stderr
    );
    let report = repo
        .ledgit(&["receipts", "verify", "--format", "json"])
        .json();
    let findings = report["findings"].as_array().unwrap();
    let unknown: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| f["code"] == "receipt-unknown-key")
        .collect();
    assert_eq!(unknown.len(), 1, "{report}");
    assert!(
        unknown[0]["path"]
            .as_str()
            .unwrap()
            .starts_with("refs/notes/ledgit/applied:")
    );
    // The text names the note and its line, with a hint.
    let text = repo.ledgit(&["receipts", "verify"]);
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains("error[receipt-unknown-key]"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("hint:"), "{}", text.stdout);
}

/// Polls until `check` holds.

#[test]
fn kill_9_between_the_apply_and_the_note_writes_the_receipt_at_restart() {
    let (repo, _keys, key) = signed_repo();
    // A lock left on the notes ref (as a crashed git leaves one) keeps the note from being
    // written: the reconciler is killed while it tries.
    let lock = repo.path().join(".git/refs/notes/ledgit/applied.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, "").unwrap();
    let tools = tempfile::tempdir().unwrap();
    let log = tools.path().join("ran.log");
    let cmd = format!("sh -c 'echo $LEDGIT_AGENT >> {}'", log.display());
    let mut child = crate::common::ledgit_command()
        .current_dir(repo.path())
        .args([
            "reconcile",
            "--exec",
            &cmd,
            "--signing-key",
            key.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let applied = || {
        let j = repo.ledgit(&["journal", "--format", "json"]);
        j.code == 0
            && j.json()
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["result"] == "applied")
                .count()
                == 2
    };
    wait_for(
        "both actions to be journaled as applied",
        Duration::from_secs(20),
        applied,
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "it ended before it was killed"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        note(&repo, "HEAD").is_empty(),
        "the note was written before the kill"
    );
    std::fs::remove_file(&lock).unwrap();
    // The restart has nothing to apply, and writes both receipts from the journal.
    let run = reconcile(&repo, &key, &[]);
    assert!(
        run.stdout.contains("0 applied") && run.stdout.contains("2 receipts"),
        "{}",
        run.stdout
    );
    let ran = std::fs::read_to_string(&log).unwrap();
    assert_eq!(ran.lines().count(), 2, "each action ran once: {ran}");
    assert_eq!(note(&repo, "HEAD").len(), 2);
    // Again: nothing is written twice.
    reconcile(&repo, &key, &[]);
    assert_eq!(note(&repo, "HEAD").len(), 2);
    assert_eq!(verify_codes(&repo), (0, vec![]));
}

#[test]
fn two_reconcilers_annotating_one_commit_at_once_keep_both_receipts() {
    let repo = TestRepo::new();
    let keys = tempfile::tempdir().unwrap();
    for (id, env) in [("dev", "development"), ("prod", "production")] {
        let out = keys.path().join(format!("{id}.pem"));
        let run = repo.ledgit(&[
            "keys",
            "generate",
            "--out",
            out.to_str().unwrap(),
            "--reconciler",
            id,
            "--environment",
            env,
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    for agent in ["a1", "a2", "a3", "a4", "a5"] {
        repo.set(agent, "development", "1.0.0");
        repo.set(agent, "production", "1.0.0");
    }
    let merge = repo.commit("Release", T0);
    // Each actuator waits for the other reconciler's first action, so both passes end (and
    // write their notes) together.
    let barrier = tempfile::tempdir().unwrap();
    let spawn = |id: &str, env: &str| {
        let me = barrier.path().join(env);
        let cmd = format!(
            "sh -c 'touch {}; while [ $(ls {} | wc -l) -lt 2 ]; do sleep 0.01; done'",
            me.display(),
            barrier.path().display()
        );
        crate::common::ledgit_command()
            .current_dir(repo.path())
            .args([
                "reconcile",
                "--exec",
                &cmd,
                "--environment",
                env,
                "--state",
                &format!("{env}.sqlite"),
                "--signing-key",
                keys.path().join(format!("{id}.pem")).to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The stores live in the work tree's folder: keep them out of git's way.
    repo.write(".git/info/exclude", "*.sqlite\n");
    let (a, b) = (spawn("dev", "development"), spawn("prod", "production"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lines = note(&repo, &merge);
    assert_eq!(lines.len(), 10, "{lines:#?}");
    let mut by: Vec<String> = lines
        .iter()
        .map(|l| statement(l).predicate.reconciler)
        .collect();
    by.sort();
    by.dedup();
    assert_eq!(by, ["dev", "prod"]);
    assert_eq!(verify_codes(&repo), (0, vec![]));
}

#[test]
fn receipts_pushed_from_two_clones_merge_at_the_remote() {
    let (origin, _keys, key) = signed_repo();
    origin.set("alpha", "staging", "1.0.0");
    origin.commit("alpha to staging", T0 + 60);
    let remote = origin.bare_clone();
    let url = remote.path().join("remote.git");
    let dev = TestRepo::clone_of(&url);
    let staging = TestRepo::clone_of(&url);
    reconcile(
        &dev,
        &key,
        &["--environment", "development", "--push-receipts", "origin"],
    );
    // The second push is rejected (the remote's notes moved): it fetches, merges and pushes.
    let run = reconcile(
        &staging,
        &key,
        &["--environment", "staging", "--push-receipts", "origin"],
    );
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    let check = TestRepo::clone_of(&url);
    check.git(&[
        "fetch",
        "-q",
        "origin",
        "refs/notes/ledgit/applied:refs/notes/ledgit/applied",
    ]);
    let lines = note(&check, "HEAD");
    let mut envs: Vec<String> = lines
        .iter()
        .map(|l| statement(l).predicate.environment)
        .collect();
    envs.sort();
    assert_eq!(envs, ["development", "development", "staging"]);
    assert_eq!(verify_codes(&check), (0, vec![]));
}

#[test]
fn the_server_serves_an_agents_receipts_and_shows_them_on_its_page() {
    let (repo, _keys, key) = signed_repo();
    reconcile(&repo, &key, &[]);
    let server = crate::common::server::Server::start(&repo, &["--quiet"], &[]);
    let (status, doc) = server.get("/v1/agents/alpha/receipts", None);
    assert_eq!(status, 200);
    let list = doc["receipts"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{doc}");
    assert_eq!(list[0]["valid"], true);
    assert_eq!(list[0]["statement"]["predicate"]["version"], "1.0.0");
    let (_, page) = server.get_text("/agents/alpha", None);
    assert!(page.contains("after merge by r1, signed"), "{page}");
    let (_, agent) = server.get("/v1/agents/beta", None);
    let development = agent["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["environment"] == "development")
        .unwrap()
        .clone();
    assert_eq!(
        development["receipt"]["applied"]["reconciler"], "r1",
        "{agent}"
    );
    assert_eq!(server.get("/v1/agents/nobody/receipts", None).0, 404);
}

#[test]
#[ignore = "needs in-toto and securesystemslib (pip install into bench/.venv); run with --include-ignored"]
fn python_in_toto_and_securesystemslib_verify_the_receipts() {
    let python = crate::common::needs(
        crate::common::venv_python(),
        "in-toto, in-toto-attestation and securesystemslib (pip install into bench/.venv)",
    );
    let (repo, _keys, key) = signed_repo();
    reconcile(&repo, &key, &[]);
    let line = note(&repo, "HEAD")[0].clone();
    let config = repo.read("ledgit.yaml");
    let public = config
        .lines()
        .skip_while(|l| !l.starts_with("reconcilers:"))
        .find_map(|l| l.trim().strip_prefix("public_key: "))
        .unwrap()
        .to_string();
    let script = r#"
import base64, json, sys
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from securesystemslib.exceptions import VerificationError
from in_toto.models.metadata import ENVELOPE_PAYLOAD_TYPE
from in_toto_attestation.v1.statement import Statement
from google.protobuf import json_format
import in_toto_attestation.v1.statement_pb2 as spb

line, public_b64url = sys.argv[1], sys.argv[2]
raw = base64.urlsafe_b64decode(public_b64url + "=" * (-len(public_b64url) % 4))
key = SSlibKey("r1", "ed25519", "ed25519", {"public": raw.hex()})
envelope = Envelope.from_dict(json.loads(line))
assert envelope.payload_type == ENVELOPE_PAYLOAD_TYPE, envelope.payload_type
envelope.verify([key], 1)
statement = Statement.copy_from_pb(json_format.Parse(envelope.payload, spb.Statement()))
statement.validate()
tampered = Envelope.from_dict(json.loads(line))
tampered.payload = tampered.payload.replace(b"1.0.0", b"6.6.6")
try:
    tampered.verify([key], 1)
    print("TAMPERED-VERIFIED")
except VerificationError:
    pass
print(json.dumps({"type": statement.pb.predicate_type,
                  "subject": statement.pb.subject[0].name,
                  "version": statement.pb.predicate["version"]}))
"#;
    let out = Command::new(python)
        .args(["-c", script, &line, &public])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("TAMPERED-VERIFIED"), "{stdout}");
    let got: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(got["type"], "https://ledgit.dev/apply/v1");
    assert_eq!(got["subject"], "deployments/alpha/development.yaml");
    assert_eq!(got["version"], "1.0.0");
}

/// A side commit whose `ledgit.yaml` lists a rogue key as `r1`, with a receipt signed by that
/// key attached to it: the receipt counts for nothing on the tracked branch (a finding,
/// `receipt-off-branch`), and the audit does not say the version ran. A line twice in a note
/// is one receipt, and `audit --at T` reports a receipt that does not hold whatever its date.
#[test]
fn receipts_off_the_branch_duplicates_and_later_forgeries_are_findings() {
    let (repo, keys, key) = signed_repo();
    let head = repo.git(&["rev-parse", "HEAD"]);
    reconcile(&repo, &key, &[]);
    let genuine = note(&repo, "HEAD")[0].clone();
    let audited = |extra: &[&str]| {
        let mut args = vec!["audit", "--format", "json"];
        args.extend_from_slice(extra);
        repo.ledgit(&args).json()
    };
    assert_eq!(audited(&[])["receipts"], 2);

    // The side branch: r1's key replaced by a rogue one, alpha at 6.6.6, a receipt for it.
    let rogue = keys.path().join("rogue.pem");
    let made = repo.ledgit(&["keys", "generate", "--out", rogue.to_str().unwrap()]);
    assert_eq!(made.code, 0, "{}", made.stderr);
    let rogue_public = SigningKey::from_bytes(&std::fs::read(&rogue).unwrap())
        .unwrap()
        .public_encoded();
    repo.git(&["checkout", "-q", "-b", "side"]);
    let config = repo.read("ledgit.yaml");
    let r1_line = config
        .lines()
        .skip_while(|l| !l.starts_with("reconcilers:"))
        .find(|l| l.trim().starts_with("public_key: "))
        .unwrap()
        .to_string();
    repo.write(
        "ledgit.yaml",
        config.replace(&r1_line, &format!("    public_key: {rogue_public}")),
    );
    repo.set("alpha", "development", "6.6.6");
    let side = repo.commit("A side commit nobody merged", T0 + 120);
    let mut s = statement(&genuine);
    s.predicate.version = Some("6.6.6".into());
    s.predicate.commit = side.clone();
    let path = "deployments/alpha/development.yaml";
    let blob = repo.git(&["rev-parse", &format!("{side}:{path}")]);
    let content = std::fs::read(repo.path().join(path)).unwrap();
    let sha = ring::digest::digest(&ring::digest::SHA256, &content);
    s.subject[0].digest.insert("gitBlob".into(), blob);
    s.subject[0]
        .digest
        .insert("sha256".into(), ledgit::support::hex::encode(sha.as_ref()));
    append_note(&repo, &side, &sign(&s, &rogue, "r1"));
    repo.git(&["checkout", "-q", "main"]);
    assert_eq!(repo.git(&["rev-parse", "HEAD"]), head);

    let (code, codes) = verify_codes(&repo);
    assert_eq!((code, codes), (1, vec!["receipt-off-branch".to_string()]));
    let audit = audited(&[]);
    let rows = audit["rows"].as_array().unwrap();
    assert!(
        !rows.iter().any(|r| r.to_string().contains("6.6.6")),
        "{audit}"
    );

    // The same line twice in a note: one receipt.
    let before = audited(&[])["receipts"].clone();
    append_note(&repo, "HEAD", &genuine);
    assert_eq!(audited(&[])["receipts"], before);
    assert_eq!(verify_codes(&repo).1, ["receipt-off-branch"]);

    // A forgery dated after --at (applied now, audited at the branch's first day) is reported.
    let mut edited: Envelope = Envelope::parse(&genuine).unwrap();
    let mut s = edited.statement().unwrap();
    s.predicate.version = Some("7.7.7".into());
    use base64::Engine;
    edited.payload =
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&s).unwrap());
    append_note(&repo, "HEAD", &edited.to_line());
    let at = crate::common::when(T0 + 60);
    let early = audited(&["--at", &at]);
    let codes: Vec<&str> = early["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"receipt-signature"), "{early}");
}
