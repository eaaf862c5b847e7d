//! What a change does to the repository's settings, beside its records: `ledgit.yaml` (keys,
//! environments and their gates, the records folder, the issuer), `tokens.yaml` (tokens issued)
//! and `revocations.yaml` (tokens revoked, or revoked no more). A reviewer approves these as
//! much as a new version, so `ledgit diff` and `ledgit check` list them in these terms.

use std::collections::{BTreeMap, BTreeSet};

use git2::Oid;
use serde::Serialize;

use crate::git::repo::Repo;
use crate::model::config::Config;
use crate::model::revocations::Revocation;
use crate::support::when::format_duration;

/// One change to the settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingChange {
    /// The file changed: `ledgit.yaml`, `tokens.yaml` or `revocations.yaml`.
    pub file: &'static str,
    /// What changed, as a stable code: `key-added`, `key-removed`, `key-replaced`,
    /// `environment-added`, `environment-removed`, `environment-changed`,
    /// `environments-reordered`, `folder-changed`, `issuer-changed`, `token-issued`,
    /// `token-unlisted`, `token-revoked`, `token-unrevoked`.
    pub kind: &'static str,
    /// What it is about: a key id, an environment, a token id.
    pub subject: String,
    /// The change in words.
    pub detail: String,
}

/// The three files of one commit, each as far as it reads whole (a file that does not is a
/// finding of `validate`, and its changes are not listed).
struct Settings {
    config: Option<Config>,
    ledger: Option<Vec<crate::model::ledger::Entry>>,
    revoked: Option<Vec<Revocation>>,
}

fn settings(repo: &Repo, commit: Oid) -> Settings {
    Settings {
        config: repo.config_at(commit).ok(),
        ledger: crate::git::load::ledger(repo, commit)
            .ok()
            .filter(|l| l.findings.is_empty())
            .map(|l| l.entries),
        revoked: crate::git::load::revocation_list(repo, commit).ok(),
    }
}

/// The settings changes from `base` to `head`, by file, then in the files' order.
pub fn changes(repo: &Repo, base: Oid, head: Oid) -> Vec<SettingChange> {
    let (before, after) = (settings(repo, base), settings(repo, head));
    let mut out = Vec::new();
    if let (Some(b), Some(a)) = (&before.config, &after.config) {
        config_changes(b, a, &mut out);
    }
    if let (Some(b), Some(a)) = (&before.ledger, &after.ledger) {
        ledger_changes(b, a, &mut out);
    }
    if let (Some(b), Some(a)) = (&before.revoked, &after.revoked) {
        revocation_changes(b, a, &mut out);
    }
    out
}

fn change(
    file: &'static str,
    kind: &'static str,
    subject: impl Into<String>,
    detail: impl Into<String>,
) -> SettingChange {
    SettingChange {
        file,
        kind,
        subject: subject.into(),
        detail: detail.into(),
    }
}

const CONFIG: &str = crate::model::config::FILE_NAME;

/// An environment's gate in words: `after staging, soak 24h`, or `no gate`.
fn gate(e: &crate::model::config::Environment) -> String {
    match (&e.promote_from, e.soak) {
        (Some(from), Some(soak)) => format!("after {from}, soak {}", format_duration(soak)),
        (Some(from), None) => format!("after {from}"),
        (None, Some(soak)) => format!("soak {}", format_duration(soak)),
        (None, None) => "no gate".into(),
    }
}

fn config_changes(before: &Config, after: &Config, out: &mut Vec<SettingChange>) {
    if before.deployments != after.deployments {
        out.push(change(
            CONFIG,
            "folder-changed",
            "deployments",
            format!(
                "records folder {} -> {}",
                before.deployments, after.deployments
            ),
        ));
    }
    if before.issuer != after.issuer {
        let shown = |i: &Option<String>| i.clone().unwrap_or_else(|| "ledgit".into());
        out.push(change(
            CONFIG,
            "issuer-changed",
            "issuer",
            format!(
                "token issuer {} -> {}",
                shown(&before.issuer),
                shown(&after.issuer)
            ),
        ));
    }
    let keys = |c: &Config| -> BTreeMap<String, String> {
        c.keys
            .iter()
            .map(|k| (k.id.clone(), k.encoded.clone()))
            .collect()
    };
    let (kb, ka) = (keys(before), keys(after));
    for (id, key) in &ka {
        match kb.get(id) {
            None => out.push(change(
                CONFIG,
                "key-added",
                id,
                "key added: tokens it signs verify",
            )),
            Some(old) if old != key => out.push(change(
                CONFIG,
                "key-replaced",
                id,
                "key replaced under the same id: tokens the old key signed no longer verify",
            )),
            Some(_) => {}
        }
    }
    for id in kb.keys().filter(|id| !ka.contains_key(*id)) {
        out.push(change(
            CONFIG,
            "key-removed",
            id,
            "key removed: every token it signed stops verifying",
        ));
    }
    for e in &after.environments {
        match before.environment(&e.name) {
            None => out.push(change(
                CONFIG,
                "environment-added",
                &e.name,
                format!("environment added ({})", gate(e)),
            )),
            Some(old) if old != e => out.push(change(
                CONFIG,
                "environment-changed",
                &e.name,
                format!("gate {} -> {}", gate(old), gate(e)),
            )),
            Some(_) => {}
        }
    }
    for e in &before.environments {
        if after.environment(&e.name).is_none() {
            out.push(change(
                CONFIG,
                "environment-removed",
                &e.name,
                "environment removed: its records no longer validate",
            ));
        }
    }
    let order = |c: &Config, other: &Config| -> Vec<String> {
        c.environments
            .iter()
            .filter(|e| other.environment(&e.name).is_some())
            .map(|e| e.name.clone())
            .collect()
    };
    let (ob, oa) = (order(before, after), order(after, before));
    if ob != oa {
        out.push(change(
            CONFIG,
            "environments-reordered",
            "environments",
            format!("promotion order {} -> {}", ob.join(", "), oa.join(", ")),
        ));
    }
}

/// The items of `after` whose id `before` lacks (added), and the items of `before` whose id
/// `after` lacks (removed).
fn added_and_removed<'a, T>(
    before: &'a [T],
    after: &'a [T],
    id: impl Fn(&T) -> &str,
) -> (Vec<&'a T>, Vec<&'a T>) {
    let ids = |l: &'a [T]| -> BTreeSet<&'a str> { l.iter().map(&id).collect() };
    let (ib, ia) = (ids(before), ids(after));
    (
        after.iter().filter(|e| !ib.contains(id(e))).collect(),
        before.iter().filter(|e| !ia.contains(id(e))).collect(),
    )
}

fn ledger_changes(
    before: &[crate::model::ledger::Entry],
    after: &[crate::model::ledger::Entry],
    out: &mut Vec<SettingChange>,
) {
    let file = crate::model::ledger::FILE_NAME;
    let (issued, unlisted) = added_and_removed(before, after, |e| &e.jti);
    for e in issued {
        let mut detail = format!(
            "token issued for {}/{} by {}",
            e.agent, e.environment, e.issued_by
        );
        if let Some(name) = &e.name {
            detail.push_str(&format!(", named {name}"));
        }
        detail.push_str(&match e.expires_at {
            Some(t) => format!(", expires {}", crate::support::when::rfc3339(t)),
            None => ", no expiry".into(),
        });
        out.push(change(file, "token-issued", &e.jti, detail));
    }
    for e in unlisted {
        out.push(change(
            file,
            "token-unlisted",
            &e.jti,
            format!(
                "token for {}/{} removed from the ledger (it still verifies unless revoked)",
                e.agent, e.environment
            ),
        ));
    }
}

fn revocation_changes(before: &[Revocation], after: &[Revocation], out: &mut Vec<SettingChange>) {
    let file = crate::model::revocations::FILE_NAME;
    let (revoked, unrevoked) = added_and_removed(before, after, |r| &r.jti);
    for r in revoked {
        let detail = match &r.reason {
            Some(reason) => format!("token revoked: {reason}"),
            None => "token revoked".into(),
        };
        out.push(change(file, "token-revoked", &r.jti, detail));
    }
    for r in unrevoked {
        out.push(change(
            file,
            "token-unrevoked",
            &r.jti,
            "revocation removed: the token verifies again",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::model::config::parse(CONFIG, text).unwrap()
    }

    #[test]
    fn keys_environments_and_gates_are_named() {
        let before = config(
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: staging\n  - name: production\n    promote_from: staging\n    soak: 24h\nkeys:\n  - id: k1\n    algorithm: Ed25519\n    public_key: 11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\n",
        );
        let after = config(
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: staging\n  - name: production\n    promote_from: staging\n    soak: 2h\n  - name: canary\n    promote_from: production\nkeys:\n  - id: k2\n    algorithm: Ed25519\n    public_key: 11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\n",
        );
        let mut out = Vec::new();
        config_changes(&before, &after, &mut out);
        let kinds: Vec<(&str, &str, &str)> = out
            .iter()
            .map(|c| (c.kind, c.subject.as_str(), c.detail.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("key-added", "k2", "key added: tokens it signs verify"),
                (
                    "key-removed",
                    "k1",
                    "key removed: every token it signed stops verifying"
                ),
                (
                    "environment-changed",
                    "production",
                    "gate after staging, soak 1d -> after staging, soak 2h"
                ),
                (
                    "environment-added",
                    "canary",
                    "environment added (after production)"
                ),
            ]
        );
        let mut none = Vec::new();
        config_changes(&before, &before, &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn revocations_both_ways() {
        let r = |jti: &str, reason: Option<&str>| Revocation {
            jti: jti.into(),
            reason: reason.map(str::to_string),
            revoked_at: None,
        };
        let mut out = Vec::new();
        revocation_changes(&[r("a", None)], &[r("b", Some("leaked"))], &mut out);
        assert_eq!(out[0].kind, "token-revoked");
        assert_eq!(out[0].detail, "token revoked: leaked");
        assert_eq!(
            (out[1].kind, out[1].subject.as_str()),
            ("token-unrevoked", "a")
        );
    }
}
