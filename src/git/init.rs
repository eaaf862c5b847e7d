//! Creating a deployments repository: `git init` where needed, a commented `ledgit.yaml`, the
//! records folder, and on request a realistic example committed as a short history (several
//! commits with distinct times, one of them a pull request merged with a merge commit), so the
//! history commands have something real to show.

use std::path::{Path, PathBuf};

use git2::{Repository, Signature, Time};

use crate::error::{Error, Result};
use crate::model::config::FILE_NAME;
use crate::support::fsutil::write_atomic;

/// The config `ledgit init` writes.
pub const CONFIG_TEMPLATE: &str = "\
# ledgit.yaml: the deployments repository's config. See `ledgit --help`.
apiVersion: ledgit/v1
kind: Config

# The folder that holds the records, one file per agent and environment:
#   deployments/<agent>/<environment>.yaml
deployments: deployments

# Environments in promotion order, first to last.
environments:
  - name: development
  - name: staging
    promote_from: development   # a version enters staging only after it ran in development
  - name: production
    promote_from: staging
    soak: 24h                   # ...and ran in staging for at least a day

# Public keys that verify deployment tokens (add one with `ledgit keys generate --add`).
keys: []
";

/// What `init` did.
#[derive(Debug)]
pub struct Initialized {
    pub root: PathBuf,
    /// Whether a new git repository was created.
    pub created_repository: bool,
    /// The commits of the example history, oldest first (empty without `--example`).
    pub commits: Vec<git2::Oid>,
}

/// Creates a deployments repository in `dir`. With `example`, also writes and commits the
/// example history, the last commit `now`-ish and the first two weeks earlier.
pub fn init(dir: &Path, example: bool, now: i64) -> Result<Initialized> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let config_path = dir.join(FILE_NAME);
    if config_path.exists() {
        return Err(Error::invalid(
            format!("{} already exists", config_path.display()),
            "ledgit init never overwrites a config; edit it, or pick another folder",
        ));
    }
    let (repo, created_repository) = match Repository::open(dir) {
        Ok(repo) => (repo, false),
        Err(_) => {
            // The user's `init.defaultBranch` where they set one, else `main` (what the README
            // and hosts expect), never libgit2's fallback `master`.
            let branch = git2::Config::open_default()
                .and_then(|c| c.get_string("init.defaultBranch"))
                .ok()
                .filter(|b| !b.trim().is_empty())
                .unwrap_or_else(|| "main".into());
            let mut options = git2::RepositoryInitOptions::new();
            options.initial_head(&branch);
            (
                Repository::init_opts(dir, &options)
                    .map_err(|e| Error::git(format!("git init {}", dir.display()), e))?,
                true,
            )
        }
    };
    let root: PathBuf = repo
        .workdir()
        .ok_or(Error::BareRepository)?
        .components()
        .collect();
    if example && repo.head().is_ok() {
        return Err(Error::invalid(
            format!("{} already has commits", root.display()),
            "write the example into a new folder: ledgit init --example DIR",
        ));
    }
    let records = root.join("deployments");
    std::fs::create_dir_all(&records).map_err(|e| Error::io(&records, e))?;
    if !example {
        write_atomic(&config_path, CONFIG_TEMPLATE.as_bytes())?;
        write_atomic(&records.join(".gitkeep"), b"")?;
        return Ok(Initialized {
            root,
            created_repository,
            commits: Vec::new(),
        });
    }
    let commits = write_example(&repo, &root, now)?;
    Ok(Initialized {
        root,
        created_repository,
        commits,
    })
}

/// A record file's text; `source` is where its versions come from (`ledgit.dev/source`).
pub fn record_text(
    agent: &str,
    environment: &str,
    version: &str,
    owner: &str,
    source: Option<&str>,
) -> String {
    let mut text = format!(
        "apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: {agent}\nenvironment: {environment}\nversion: {version}\nannotations:\n  owner: {owner}\n"
    );
    if let Some(source) = source {
        text.push_str(&format!("  {}: {source}\n", crate::model::record::SOURCE));
    }
    text
}

struct Step {
    days_ago: i64,
    author: (&'static str, &'static str),
    subject: &'static str,
    /// (agent, environment, version)
    writes: &'static [(&'static str, &'static str, &'static str)],
    /// Merged from a pull request branch: (PR number, branch name).
    pull_request: Option<(u32, &'static str)>,
}

const ADA: (&str, &str) = ("Ada Lovelace", "ada@example.com");
const GRACE: (&str, &str) = ("Grace Hopper", "grace@example.com");
const ALAN: (&str, &str) = ("Alan Turing", "alan@example.com");

const STEPS: &[Step] = &[
    Step {
        days_ago: 14,
        author: ADA,
        subject: "Add the deployments repository with support-bot and billing-agent",
        writes: &[
            ("support-bot", "development", "1.4.0"),
            ("support-bot", "staging", "1.4.0"),
            ("support-bot", "production", "1.4.0"),
            ("billing-agent", "development", "2.0.0"),
            ("billing-agent", "staging", "2.0.0"),
            ("billing-agent", "production", "2.0.0"),
        ],
        pull_request: None,
    },
    Step {
        days_ago: 10,
        author: GRACE,
        subject: "Deploy triage-bot 0.9.0 to development",
        writes: &[("triage-bot", "development", "0.9.0")],
        pull_request: None,
    },
    Step {
        days_ago: 7,
        author: ADA,
        subject: "Deploy support-bot 1.4.1 to development",
        writes: &[("support-bot", "development", "1.4.1")],
        pull_request: None,
    },
    Step {
        days_ago: 6,
        author: ALAN,
        subject: "Promote support-bot 1.4.1 to staging",
        writes: &[("support-bot", "staging", "1.4.1")],
        pull_request: None,
    },
    Step {
        days_ago: 4,
        author: ALAN,
        subject: "Promote support-bot 1.4.1 to production",
        writes: &[("support-bot", "production", "1.4.1")],
        pull_request: Some((7, "alan/promote-support-bot")),
    },
    Step {
        days_ago: 2,
        author: GRACE,
        subject: "Deploy billing-agent 2.1.0-rc.1 to development, triage-bot 0.9.0 to staging",
        writes: &[
            ("billing-agent", "development", "2.1.0-rc.1"),
            ("triage-bot", "staging", "0.9.0"),
        ],
        pull_request: None,
    },
    Step {
        days_ago: 1,
        author: ADA,
        subject: "Deploy search-assistant 0.1.0 to development",
        writes: &[("search-assistant", "development", "0.1.0")],
        pull_request: None,
    },
];

fn owner(agent: &str) -> &'static str {
    match agent {
        "support-bot" => "team-support",
        "billing-agent" => "team-payments",
        "triage-bot" => "team-platform",
        _ => "team-search",
    }
}

/// Where each example agent's versions come from (none for triage-bot).
fn source(agent: &str) -> Option<&'static str> {
    match agent {
        "support-bot" => Some("docker:ghcr.io/acme/support-bot"),
        "billing-agent" => Some("pypi:billing-agent"),
        "search-assistant" => Some("npm:@acme/search-assistant"),
        _ => None,
    }
}

fn write_example(repo: &Repository, root: &Path, now: i64) -> Result<Vec<git2::Oid>> {
    let git = |what: &str| {
        let what = what.to_string();
        move |e| Error::git(what.clone(), e)
    };
    let mut commits = Vec::new();
    let mut parent: Option<git2::Oid> = None;
    let base = now - now.rem_euclid(60);
    for (i, step) in STEPS.iter().enumerate() {
        if i == 0 {
            write_atomic(&root.join(FILE_NAME), CONFIG_TEMPLATE.as_bytes())?;
        }
        for (agent, env, version) in step.writes {
            let dir = root.join("deployments").join(agent);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let text = record_text(agent, env, version, owner(agent), source(agent));
            write_atomic(&dir.join(format!("{env}.yaml")), text.as_bytes())?;
        }
        let tree = stage_all(repo)?;
        let when = base - step.days_ago * 86_400 + (i as i64) * 600;
        let parents: Vec<git2::Commit> = parent
            .map(|p| repo.find_commit(p))
            .transpose()
            .map_err(git("reading a commit"))?
            .into_iter()
            .collect();
        let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
        let id = match step.pull_request {
            None => {
                let s = sig(step.author, when)?;
                repo.commit(Some("HEAD"), &s, &s, step.subject, &tree, &parent_refs)
                    .map_err(git("committing"))?
            }
            Some((number, branch)) => {
                // The branch commit is authored a day before the merge lands.
                let s = sig(step.author, when - 86_400)?;
                let branch_commit = repo
                    .commit(None, &s, &s, step.subject, &tree, &parent_refs)
                    .map_err(git("committing"))?;
                let branch_commit = repo
                    .find_commit(branch_commit)
                    .map_err(git("reading a commit"))?;
                let merger = sig(ADA, when)?;
                let message = format!(
                    "Merge pull request #{number} from {branch}\n\n{}",
                    step.subject
                );
                let mut merge_parents = parent_refs.clone();
                merge_parents.push(&branch_commit);
                repo.commit(
                    Some("HEAD"),
                    &merger,
                    &merger,
                    &message,
                    &tree,
                    &merge_parents,
                )
                .map_err(git("committing a merge"))?
            }
        };
        commits.push(id);
        parent = Some(id);
    }
    let tokens = write_example_tokens(root, &commits, base)?;
    let tree = stage_all(repo)?;
    let s = sig(ADA, base - 3_600)?;
    let last = repo
        .find_commit(parent.ok_or_else(|| Error::Internal {
            what: "the example history has no commit".into(),
        })?)
        .map_err(git("reading a commit"))?;
    let id = repo
        .commit(
            Some("HEAD"),
            &s,
            &s,
            &format!("Add the token signing key and record the {tokens} tokens issued"),
            &tree,
            &[&last],
        )
        .map_err(git("committing"))?;
    commits.push(id);
    Ok(commits)
}

/// Stages the whole work tree and writes its tree.
fn stage_all(repo: &Repository) -> Result<git2::Tree<'_>> {
    let git = |what: &'static str| move |e| Error::git(what, e);
    let mut index = repo.index().map_err(git("opening the index"))?;
    index
        .add_all(["."], git2::IndexAddOption::DEFAULT, None)
        .map_err(git("staging the example"))?;
    index.write().map_err(git("writing the index"))?;
    let tree_id = index.write_tree().map_err(git("writing a tree"))?;
    repo.find_tree(tree_id).map_err(git("reading a tree"))
}

/// An author or committer of the example at time `t`.
fn sig((name, email): (&str, &str), t: i64) -> Result<Signature<'static>> {
    Signature::new(name, email, &Time::new(t, 0)).map_err(|e| Error::git("making a signature", e))
}

/// The example's key and token ledger: a public key in ledgit.yaml (its private half is thrown
/// away: add your own with `ledgit keys generate --add` to issue tokens), and ledger entries
/// that show each status: active, expiring soon, expired, revoked, key removed. Returns how
/// many tokens the ledger lists.
fn write_example_tokens(root: &Path, commits: &[git2::Oid], base: i64) -> Result<usize> {
    let (key, _) = crate::token::SigningKey::generate()?;
    let config = CONFIG_TEMPLATE.replace(
        "keys: []\n",
        &format!(
            "keys:\n  - id: example-2026\n    algorithm: Ed25519\n    public_key: {}\n",
            key.public_encoded()
        ),
    );
    write_atomic(&root.join(FILE_NAME), config.as_bytes())?;
    let first = commits.first().map(|c| c.to_string()).unwrap_or_default();
    let day = 86_400;
    // (agent, environment, key, issued days ago, lifetime in days, name, by)
    type Issued<'a> = (
        &'a str,
        &'a str,
        &'a str,
        i64,
        Option<i64>,
        &'a str,
        (&'a str, &'a str),
    );
    let issued: [Issued; 5] = [
        (
            "support-bot",
            "production",
            "example-2026",
            3,
            Some(90),
            "gateway",
            ALAN,
        ),
        (
            "support-bot",
            "staging",
            "example-2026",
            20,
            Some(30),
            "load tests",
            GRACE,
        ),
        (
            "billing-agent",
            "production",
            "example-2026",
            40,
            Some(30),
            "batch jobs",
            ADA,
        ),
        (
            "billing-agent",
            "staging",
            "example-2026",
            5,
            None,
            "ci smoke tests",
            GRACE,
        ),
        (
            "support-bot",
            "production",
            "retired-2025",
            13,
            None,
            "old gateway",
            ALAN,
        ),
    ];
    let mut text: Option<String> = None;
    let mut jtis = Vec::new();
    for (i, (agent, environment, kid, ago, ttl, name, by)) in issued.iter().enumerate() {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("ledgit example token {i}").as_bytes(),
        );
        let jti: String = crate::support::hex::encode(&digest.as_ref()[..16]);
        let issued_at = base - ago * day;
        let entry = crate::model::ledger::Entry {
            jti: jti.clone(),
            agent: agent.to_string(),
            environment: environment.to_string(),
            generation: first.clone(),
            kid: kid.to_string(),
            issued_at,
            expires_at: ttl.map(|d| issued_at + d * day),
            name: Some(name.to_string()),
            issued_by: format!("{} <{}>", by.0, by.1),
            line: 0,
        };
        text = Some(
            crate::model::ledger::append(text.as_deref(), &entry).map_err(|e| Error::Internal {
                what: format!("the example ledger: {e}"),
            })?,
        );
        jtis.push(jti);
    }
    let ledger = text.unwrap_or_default();
    write_atomic(
        &root.join(crate::model::ledger::FILE_NAME),
        ledger.as_bytes(),
    )?;
    // The CI smoke-test token was revoked.
    let revoked = crate::model::revocations::Revocation {
        jti: jtis[3].clone(),
        reason: Some("printed in a CI log".into()),
        revoked_at: Some(crate::support::when::rfc3339(base - 2 * day)),
    };
    let list = crate::model::revocations::append(None, &revoked).map_err(|e| Error::Internal {
        what: format!("the example revocations: {e}"),
    })?;
    write_atomic(
        &root.join(crate::model::revocations::FILE_NAME),
        list.as_bytes(),
    )?;
    Ok(jtis.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_overwrite_a_config() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), false, 0).unwrap();
        let err = init(dir.path(), false, 0).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
            CONFIG_TEMPLATE
        );
    }

    #[test]
    fn the_template_is_a_valid_config() {
        crate::model::config::parse(FILE_NAME, CONFIG_TEMPLATE).unwrap();
    }

    #[test]
    fn example_commits_a_history_with_a_merge() {
        let dir = tempfile::tempdir().unwrap();
        let done = init(dir.path(), true, 1_800_000_000).unwrap();
        assert!(done.created_repository);
        assert_eq!(done.commits.len(), STEPS.len() + 1);
        let repo = Repository::open(dir.path()).unwrap();
        let merge = repo.find_commit(done.commits[4]).unwrap();
        assert_eq!(merge.parent_count(), 2);
        let times: Vec<i64> = done
            .commits
            .iter()
            .map(|c| repo.find_commit(*c).unwrap().time().seconds())
            .collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    }
}
