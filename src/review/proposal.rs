//! Changes proposed from the web page (SPEC "The server"): promote, set a version, roll back,
//! revoke a token. A proposal is planned against one commit of the tracked branch with the
//! same edit and the same policy as `ledgit promote`, `set` and `token revoke` ([`crate::review::plan`],
//! [`crate::model::revocations::revoke`]), shown as the exact diff with the policy's verdict,
//! and, when accepted, committed on a new branch whose one commit is built from that commit's
//! tree in the object database: no work tree, no index, and never the tracked branch.

use git2::{Oid, Signature};

use crate::error::{Error, Result};
use crate::finding::Finding;
use crate::git::history::History;
use crate::git::repo::Repo;
use crate::model::revocations::Revoked;
use crate::review::plan::{self, Planned};
use crate::review::policy::Change;

/// What a visitor asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Set `to`'s version of `agent` to the version its upstream environment runs.
    Promote { agent: String, to: String },
    /// Set a version (a hotfix, or a rollback to a version that ran before).
    Set {
        agent: String,
        environment: String,
        version: String,
    },
    /// Add a token id to the revocation list.
    Revoke { jti: String, reason: Option<String> },
}

impl Request {
    /// A branch name that says what the proposal does (unique by the time it carries).
    pub fn branch_name(&self, now: i64) -> String {
        let what = match self {
            Request::Promote { agent, to } => format!("promote-{agent}-{to}"),
            Request::Set {
                agent, environment, ..
            } => format!("set-{agent}-{environment}"),
            Request::Revoke { jti, .. } => format!("revoke-{}", &jti[..jti.len().min(12)]),
        };
        let stamp = chrono::DateTime::from_timestamp(now, 0)
            .map(|t| t.format("%Y%m%d-%H%M%S").to_string())
            .unwrap_or_else(|| now.to_string());
        format!("ledgit/{what}-{stamp}")
    }
}

/// A planned proposal: the files it writes, their diff, and the verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Preview {
    /// One line saying what it does.
    pub title: String,
    /// The commit it is planned against.
    pub base: String,
    pub commit_message: String,
    /// (path, new text).
    #[serde(skip)]
    pub writes: Vec<(String, String)>,
    /// The unified diff of the writes against the base.
    pub diff: String,
    pub changes: Vec<Change>,
    pub findings: Vec<Finding>,
    /// The policy refuses it (then there is no way to create it from the page).
    pub refused: bool,
}

impl Preview {
    /// What the preview promises, as a short digest of the commit it is planned against and the
    /// change it shows (its title and message, and each version change). The page's form carries it, and a
    /// proposal is created only when the same request still plans to the same digest: never a
    /// change the person did not see.
    pub fn fingerprint(&self) -> String {
        let mut text = format!("{}\n{}\n", self.base, self.title);
        // The message says the reason of a revocation, which the file holds too.
        text.push_str(&self.commit_message);
        text.push('\n');
        for c in &self.changes {
            text.push_str(&format!(
                "{}\t{}\t{:?}\t{}\t{}\n",
                c.agent,
                c.environment,
                c.action,
                c.previous_version.as_deref().unwrap_or(""),
                c.version.as_deref().unwrap_or("")
            ));
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        crate::support::hex::encode(&digest.as_ref()[..16])
    }
}

/// Plans `request` against `base` (a commit of the branch whose `history` is given).
pub fn preview(
    repo: &Repo,
    base: Oid,
    history: &History,
    request: &Request,
    now: i64,
) -> Result<Preview> {
    let config = repo.config_at(base)?;
    let tree = repo.tree_at(base)?;
    let read = |path: &str| -> Result<String> {
        let entry = tree
            .get_path(std::path::Path::new(path))
            .map_err(|e| Error::git(format!("reading {path}"), e))?;
        let blob = repo
            .git
            .find_blob(entry.id())
            .map_err(|e| Error::git(format!("reading {path}"), e))?;
        String::from_utf8(blob.content().to_vec()).map_err(|_| Error::NotText {
            what: path.to_string(),
        })
    };
    let (title, writes, changes, findings, message) = match request {
        Request::Revoke { jti, reason } => {
            if !crate::model::ledger::is_token_id(jti) {
                return Err(Error::invalid(
                    format!("`{}` is not a token id", jti.escape_debug()),
                    "pick the token from the deployments tab",
                ));
            }
            let file = crate::model::revocations::FILE_NAME;
            // A list that is there but does not read (not UTF-8) is an error: treating it as
            // missing would write a new list without every revocation it holds.
            let existing = match tree.get_name(file) {
                Some(_) => Some(read(file)?),
                None => None,
            };
            let text = match crate::model::revocations::revoke(
                existing.as_deref(),
                jti,
                reason.clone(),
                now,
            ) {
                Ok(Revoked::Text(text)) => text,
                Ok(Revoked::Already) => {
                    return Err(Error::invalid(
                        format!("token {jti} is already revoked"),
                        "nothing to propose",
                    ));
                }
                Err(e) => return Err(crate::token::workflow::revocation_refused(file, e)),
            };
            let title = format!("Revoke token {jti}");
            let message = match reason {
                Some(r) => format!("{title}\n\nReason: {r}"),
                None => title.clone(),
            };
            (
                title,
                vec![(file.to_string(), text)],
                Vec::new(),
                Vec::new(),
                message,
            )
        }
        Request::Promote { agent, .. } | Request::Set { agent, .. } => {
            let report = crate::model::validate::tree(&repo.git, &tree, &config)?;
            let targets = match request {
                Request::Promote { to, .. } => {
                    let from = config
                        .environment(to)
                        .ok_or_else(|| config.unknown_environment(to))?
                        .promote_from
                        .clone()
                        .ok_or_else(|| {
                            Error::invalid(
                                format!("{to} promotes from no environment"),
                                "set a version instead",
                            )
                        })?;
                    plan::promote_targets(&report, &from, to, Some(std::slice::from_ref(agent)))?
                }
                Request::Set {
                    environment,
                    version,
                    ..
                } => vec![plan::set_target(
                    &config,
                    &report,
                    agent,
                    environment,
                    version,
                    false,
                )?],
                Request::Revoke { .. } => unreachable!("handled above"),
            };
            let plan = match plan::plan(&config, &report, &targets, &read)? {
                Planned::Unreadable(findings) => {
                    return Ok(Preview {
                        title: "The record does not parse".into(),
                        base: base.to_string(),
                        commit_message: String::new(),
                        writes: Vec::new(),
                        diff: String::new(),
                        changes: Vec::new(),
                        findings,
                        refused: true,
                    });
                }
                Planned::Unchanged => {
                    return Err(Error::invalid(
                        "nothing to change: the version is already set",
                        "pick another version",
                    ));
                }
                Planned::Ready(draft) => draft.judge(&config, history, now),
            };
            let message = plan::commit_message(&plan.changes);
            let title = message.lines().next().unwrap_or("").to_string();
            (title, plan.writes, plan.changes, plan.findings, message)
        }
    };
    let mut diff = String::new();
    for (path, new) in &writes {
        let old = read(path).ok();
        diff.push_str(&unified_diff(path, old.as_deref(), new)?);
    }
    let refused = crate::finding::has_errors(&findings);
    Ok(Preview {
        title,
        base: base.to_string(),
        commit_message: message,
        writes,
        diff,
        changes,
        findings,
        refused,
    })
}

/// The unified diff of one file (git's format, three lines of context).
fn unified_diff(path: &str, old: Option<&str>, new: &str) -> Result<String> {
    let patch = git2::Patch::from_buffers(
        old.unwrap_or("").as_bytes(),
        old.map(|_| std::path::Path::new(path)),
        new.as_bytes(),
        Some(std::path::Path::new(path)),
        None,
    )
    .map_err(|e| Error::git("computing the diff", e))?;
    let mut patch = patch;
    let buf = patch
        .to_buf()
        .map_err(|e| Error::git("formatting the diff", e))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Commits a preview's writes on a new branch `branch` whose one commit's parent is the
/// preview's base, its tree the base's tree with the writes. Refuses a branch that exists.
/// `author` is who asked for it (the signed-in person), `committer` the server that made it.
pub fn create(
    repo: &Repo,
    preview: &Preview,
    branch: &str,
    author: &Signature,
    committer: &Signature,
) -> Result<Oid> {
    let git = &repo.git;
    let fail = |what: &str| {
        let what = what.to_string();
        move |e: git2::Error| Error::git(what.clone(), e)
    };
    let base = Oid::from_str(&preview.base).map_err(fail("reading the base"))?;
    let parent = git.find_commit(base).map_err(fail("reading the base"))?;
    let baseline = parent.tree().map_err(fail("reading the base's tree"))?;
    let mut update = git2::build::TreeUpdateBuilder::new();
    for (path, text) in &preview.writes {
        let blob = git.blob(text.as_bytes()).map_err(fail("writing a blob"))?;
        update.upsert(path, blob, git2::FileMode::Blob);
    }
    let tree_id = update
        .create_updated(git, &baseline)
        .map_err(fail("writing the tree"))?;
    let tree = git.find_tree(tree_id).map_err(fail("reading the tree"))?;
    let name = format!("refs/heads/{branch}");
    if git.find_reference(&name).is_ok() {
        return Err(Error::invalid(
            format!("branch {branch} exists already"),
            "propose again: each proposal gets a branch of its own",
        ));
    }
    let commit = git
        .commit(
            None,
            author,
            committer,
            &preview.commit_message,
            &tree,
            &[&parent],
        )
        .map_err(fail("committing the proposal"))?;
    git.reference(&name, commit, false, &format!("ledgit: {}", preview.title))
        .map_err(fail("creating the branch"))?;
    Ok(commit)
}

/// The URL to open a pull request of `branch` into `base`: from a template with `{branch}` and
/// `{base}`, else GitHub's compare page when the remote is on GitHub.
pub fn pull_request_url(
    template: Option<&str>,
    remote_url: Option<&str>,
    base: &str,
    branch: &str,
) -> Option<String> {
    if let Some(t) = template {
        return Some(t.replace("{branch}", branch).replace("{base}", base));
    }
    let url = remote_url?;
    let path = url
        .strip_prefix("git@github.com:")
        .or_else(|| url.strip_prefix("https://github.com/"))
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))?;
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    Some(format!(
        "https://github.com/{path}/compare/{base}...{branch}?expand=1"
    ))
}

/// The link to pull request `number`: from the template (`{number}`; or, from the address of a
/// GitHub compare page or a GitLab new merge request, the host's page of that number), else
/// GitHub's, when the remote is on GitHub.
pub fn pull_request_link(
    template: Option<&str>,
    remote_url: Option<&str>,
    number: u32,
) -> Option<String> {
    if let Some(t) = template {
        if t.contains("{number}") {
            return Some(t.replace("{number}", &number.to_string()));
        }
        if let Some(at) = t.find("/compare/") {
            return Some(format!("{}/pull/{number}", &t[..at]));
        }
        if let Some(at) = t.find("/-/merge_requests/new") {
            return Some(format!("{}/-/merge_requests/{number}", &t[..at]));
        }
        return None;
    }
    let compare = pull_request_url(None, remote_url, "b", "b")?;
    pull_request_link(Some(&compare), None, number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pull_request_is_linked_by_its_number_on_the_host() {
        assert_eq!(
            pull_request_link(None, Some("git@github.com:acme/deploys.git"), 12).as_deref(),
            Some("https://github.com/acme/deploys/pull/12")
        );
        assert_eq!(
            pull_request_link(
                Some("https://git.example/a/b/-/merge_requests/new?merge_request[source_branch]={branch}"),
                None,
                7
            )
            .as_deref(),
            Some("https://git.example/a/b/-/merge_requests/7")
        );
        assert_eq!(
            pull_request_link(Some("https://forge.example/r/{number}"), None, 3).as_deref(),
            Some("https://forge.example/r/3")
        );
        assert_eq!(
            pull_request_link(Some("https://forge.example/new?b={branch}"), None, 3),
            None
        );
        assert_eq!(
            pull_request_link(None, Some("https://gitlab.com/a/b.git"), 3),
            None
        );
    }

    #[test]
    fn pull_request_links_follow_the_template_or_github() {
        assert_eq!(
            pull_request_url(
                None,
                Some("git@github.com:acme/deploys.git"),
                "main",
                "ledgit/x-1"
            ),
            Some("https://github.com/acme/deploys/compare/main...ledgit/x-1?expand=1".into())
        );
        assert_eq!(
            pull_request_url(None, Some("https://github.com/acme/deploys"), "main", "b"),
            Some("https://github.com/acme/deploys/compare/main...b?expand=1".into())
        );
        assert_eq!(
            pull_request_url(None, Some("https://gitlab.com/a/b.git"), "main", "b"),
            None
        );
        assert_eq!(
            pull_request_url(
                Some("https://git.example/a/b/-/merge_requests/new?merge_request[source_branch]={branch}"),
                None,
                "main",
                "ledgit/p"
            )
            .as_deref(),
            Some("https://git.example/a/b/-/merge_requests/new?merge_request[source_branch]=ledgit/p")
        );
    }
}
