//! The deployments repository: finding it from a directory (like git does), resolving revisions
//! to commits, and reading `ledgit.yaml` either from the work tree or from a commit's tree
//! without a checkout.

use std::path::{Path, PathBuf};

use git2::{ErrorCode, Oid, Repository};

use crate::error::{Error, Result};
use crate::model::config::{self, Config};

/// The longest a `git fetch` may take.
pub const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// How long a push of a proposal's branch may take.
pub const PUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a run of the user's git did not succeed.
#[derive(Debug)]
pub enum GitFailure {
    /// git could not be started.
    Spawn(std::io::Error),
    /// It ended with this status, having said this on stderr.
    Exit(std::process::ExitStatus, String),
    /// It ran out of time and was killed.
    TimedOut,
    /// Waiting for it failed.
    Wait(std::io::Error),
}

/// Why `git fetch` did not bring the remote's refs.
#[derive(Debug)]
pub struct FetchError {
    pub remote: String,
    pub failure: GitFailure,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let remote = &self.remote;
        match &self.failure {
            GitFailure::Spawn(e) => write!(f, "cannot run git fetch {remote}: {e}"),
            GitFailure::Exit(status, _) => write!(f, "git fetch {remote} failed ({status})"),
            GitFailure::TimedOut => write!(f, "git fetch {remote} timed out"),
            GitFailure::Wait(e) => write!(f, "git fetch {remote}: {e}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// An opened deployments repository.
pub struct Repo {
    pub git: Repository,
}

impl Repo {
    /// Creates branch `name` at HEAD's commit and makes it HEAD (as `git switch -c`), for a
    /// change that goes to review rather than onto the current branch.
    pub fn switch_to_new_branch(&self, name: &str) -> Result<()> {
        let fail = |e: git2::Error| {
            Error::invalid(
                format!("creating branch {name}: {}", e.message()),
                "pick a branch name that does not exist yet",
            )
        };
        let head = self
            .git
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(|e| {
                Error::invalid(
                    format!("reading HEAD: {}", e.message()),
                    "a new branch needs a commit to branch from",
                )
            })?;
        self.git.branch(name, &head, false).map_err(fail)?;
        self.git
            .set_head(&format!("refs/heads/{name}"))
            .map_err(fail)
    }

    /// Stages `paths` (from the work tree's root) and commits them on HEAD with the user's git
    /// identity, as `git add` and `git commit` would: the index is written, so `git status` is
    /// clean afterwards.
    pub fn commit_paths<'a>(
        &self,
        paths: impl Iterator<Item = &'a str>,
        message: &str,
    ) -> Result<Oid> {
        let git = &self.git;
        let fail = |e: git2::Error| {
            Error::invalid(
                format!("committing: {}", e.message()),
                "commit by hand with git",
            )
        };
        let sig = git.signature().map_err(|e| {
            Error::invalid(
                format!("no git identity to commit with: {}", e.message()),
                "set one with `git config user.name \"Your Name\"` and `git config user.email you@example.com`",
            )
        })?;
        let mut index = git.index().map_err(fail)?;
        for p in paths {
            index.add_path(Path::new(p)).map_err(fail)?;
        }
        index.write().map_err(fail)?;
        let tree = git
            .find_tree(index.write_tree().map_err(fail)?)
            .map_err(fail)?;
        let parent = git.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        git.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .map_err(fail)
    }

    /// Finds the repository containing `start`, searching upward like git.
    pub fn discover(start: &Path) -> Result<Repo> {
        match Repository::discover(start) {
            Ok(git) => Ok(Repo { git }),
            Err(e) if e.code() == ErrorCode::NotFound => Err(Error::NotARepository {
                path: start.to_path_buf(),
            }),
            Err(e) => Err(Error::git(format!("opening {}", start.display()), e)),
        }
    }

    /// Opens the repository at exactly `path`.
    pub fn open(path: &Path) -> Result<Repo> {
        Repository::open(path)
            .map(|git| Repo { git })
            .map_err(|e| Error::git(format!("opening {}", path.display()), e))
    }

    /// The work tree root, or `None` for a bare repository.
    pub fn workdir(&self) -> Option<&Path> {
        self.git.workdir()
    }

    /// The work tree root, or an error for a bare repository.
    pub fn require_workdir(&self) -> Result<PathBuf> {
        self.workdir()
            .map(Path::to_path_buf)
            .ok_or(Error::BareRepository)
    }

    /// The commit HEAD points at, or `None` on an unborn branch.
    pub fn head(&self) -> Result<Option<Oid>> {
        match self.git.head() {
            Ok(r) => Ok(r.target()),
            Err(e) if matches!(e.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => Ok(None),
            Err(e) => Err(Error::git("reading HEAD", e)),
        }
    }

    /// The commit a revision names (`main`, `HEAD~3`, a hash, a tag).
    pub fn resolve(&self, rev: &str) -> Result<Oid> {
        if rev == "HEAD" && self.head()?.is_none() {
            return Err(Error::NoCommits);
        }
        let obj = self.git.revparse_single(rev).map_err(|e| match e.code() {
            ErrorCode::NotFound | ErrorCode::InvalidSpec | ErrorCode::Ambiguous => {
                Error::RevisionNotFound {
                    rev: rev.to_string(),
                }
            }
            _ => Error::git(format!("resolving `{rev}`"), e),
        })?;
        obj.peel_to_commit().map(|c| c.id()).map_err(|_| {
            Error::invalid(
                format!("`{rev}` does not name a commit"),
                "name a branch, tag or commit",
            )
        })
    }

    /// The commit a revision from an untrusted client names: a full commit id or a ref name
    /// (`main`, `refs/heads/main`, `origin/main`, a tag), nothing else. Revision expressions
    /// (`:/text` searches the whole history, `main@{yesterday}` reads the reflog, `~`, `^`,
    /// ranges) are refused, so a query string cannot make the server walk the history.
    pub fn resolve_exact(&self, rev: &str) -> Result<Oid> {
        let not_found = || Error::RevisionNotFound {
            rev: rev.chars().take(100).collect(),
        };
        if rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
            let id = Oid::from_str(rev).map_err(|_| not_found())?;
            return self
                .git
                .find_commit(id)
                .map(|c| c.id())
                .map_err(|_| not_found());
        }
        let full = if rev.starts_with("refs/") || rev == "HEAD" {
            rev.to_string()
        } else {
            format!("refs/heads/{rev}")
        };
        if rev.is_empty() || rev.len() > 256 || !git2::Reference::is_valid_name(&full) {
            return Err(Error::invalid(
                format!(
                    "`{}` is not a ref name or a full commit id",
                    rev.chars().take(100).collect::<String>().escape_debug()
                ),
                "name a branch or tag (main, refs/tags/v1) or a 40-hex commit id",
            ));
        }
        let reference = self
            .git
            .resolve_reference_from_short_name(rev)
            .map_err(|_| not_found())?;
        reference
            .peel_to_commit()
            .map(|c| c.id())
            .map_err(|_| not_found())
    }

    /// The ref a long-running process tracks (`watch`, `serve`): the branch `rev` names (else
    /// the checked-out branch), as `refs/heads/BRANCH`, or `refs/remotes/REMOTE/BRANCH` when
    /// it fetches from `fetch`; `HEAD` when detached; `rev` as given when it is no branch.
    pub fn tracked_ref(&self, rev: Option<&str>, fetch: Option<&str>) -> String {
        let branch = match rev {
            Some(r) => r.trim_start_matches("refs/heads/").to_string(),
            None => self.current_branch().unwrap_or_else(|| "HEAD".into()),
        };
        match (fetch, branch.as_str()) {
            (Some(remote), b) => format!("refs/remotes/{remote}/{b}"),
            (None, "HEAD") => "HEAD".into(),
            (None, b)
                if self.git.find_reference(&format!("refs/heads/{b}")).is_ok() || rev.is_none() =>
            {
                format!("refs/heads/{b}")
            }
            (None, b) => b.to_string(),
        }
    }

    /// The short name of the checked-out branch (also when it has no commits yet).
    pub fn current_branch(&self) -> Option<String> {
        match self.git.head() {
            Ok(h) if h.is_branch() => h.shorthand().ok().map(str::to_string),
            Ok(_) => None,
            Err(_) => {
                // Unborn: HEAD names the branch to come.
                let head = self.git.find_reference("HEAD").ok()?;
                head.symbolic_target()
                    .ok()
                    .flatten()
                    .map(|t| t.trim_start_matches("refs/heads/").to_string())
            }
        }
    }

    /// The commit a tracked ref (from [`Repo::tracked_ref`]) points at now, `None` when it
    /// does not exist (yet).
    pub fn resolve_tracked(&self, name: &str) -> Option<Oid> {
        self.git.refname_to_id(name).ok().or_else(|| {
            self.git
                .revparse_single(name)
                .ok()
                .and_then(|o| o.peel_to_commit().ok())
                .map(|c| c.id())
        })
    }

    /// Runs `git fetch --quiet REMOTE` in this repository (with the user's git, its
    /// credentials and transports), at most `FETCH_TIMEOUT` long.
    pub fn fetch(&self, remote: &str) -> std::result::Result<(), FetchError> {
        self.run_git(&["fetch", "--quiet", "--", remote], FETCH_TIMEOUT)
            .map_err(|failure| FetchError {
                remote: remote.to_string(),
                failure,
            })
    }

    /// Runs `git fetch --quiet REMOTE REFSPEC` (as [`Repo::fetch`]).
    pub fn fetch_refspec(
        &self,
        remote: &str,
        refspec: &str,
    ) -> std::result::Result<(), FetchError> {
        self.run_git(&["fetch", "--quiet", "--", remote, refspec], FETCH_TIMEOUT)
            .map_err(|failure| FetchError {
                remote: remote.to_string(),
                failure,
            })
    }

    /// Runs `git push --quiet REMOTE REFSPEC` with the user's git, at most `PUSH_TIMEOUT` long.
    pub fn push_refspec(&self, remote: &str, refspec: &str) -> std::result::Result<(), GitFailure> {
        self.run_git(&["push", "--quiet", "--", remote, refspec], PUSH_TIMEOUT)
    }

    /// Pushes the branch `branch` to the same name at `remote` with the user's git (their
    /// credentials and transports), at most `PUSH_TIMEOUT` long.
    pub fn push(&self, remote: &str, branch: &str) -> std::result::Result<(), GitFailure> {
        self.push_refspec(remote, &format!("refs/heads/{branch}:refs/heads/{branch}"))
    }

    /// Runs the user's git on this repository, never prompting, for at most `timeout` (then it
    /// is killed). What it writes to stderr is kept (its first 4 KiB) for the error.
    fn run_git(
        &self,
        args: &[&str],
        timeout: std::time::Duration,
    ) -> std::result::Result<(), GitFailure> {
        use std::io::Read;
        let mut child = std::process::Command::new("git")
            .arg("-C")
            .arg(self.git.commondir())
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(GitFailure::Spawn)?;
        // Read stderr as git writes it, so that a talkative git never blocks on a full pipe.
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let _ = pipe.by_ref().take(4096).read_to_end(&mut kept);
                let _ = std::io::copy(&mut pipe, &mut std::io::sink());
                String::from_utf8_lossy(&kept).trim().to_string()
            })
        });
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    let said = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
                    return Err(GitFailure::Exit(status, said));
                }
                Ok(None) if std::time::Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(GitFailure::TimedOut);
                }
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
                Err(e) => return Err(GitFailure::Wait(e)),
            }
        }
    }

    /// The revision to read: the one given, else HEAD.
    pub fn resolve_or_head(&self, rev: Option<&str>) -> Result<Oid> {
        match rev {
            Some(r) => self.resolve(r),
            None => self.head()?.ok_or(Error::NoCommits),
        }
    }

    /// The tree of a commit.
    pub fn tree_at(&self, commit: Oid) -> Result<git2::Tree<'_>> {
        self.git
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(|e| Error::git(format!("reading commit {}", short(commit)), e))
    }

    /// Reads `ledgit.yaml` from a commit's tree.
    pub fn config_at(&self, commit: Oid) -> Result<Config> {
        let path = PathBuf::from(format!("{}:{}", short(commit), config::FILE_NAME));
        let tree = self.tree_at(commit)?;
        let entry = tree.get_name(config::FILE_NAME).ok_or_else(|| Error::Config {
            path: path.clone(),
            line: None,
            column: None,
            message: "this commit has no ledgit.yaml at its root".into(),
            hint: "pick a commit of the deployments repository, or create ledgit.yaml with `ledgit init`"
                .into(),
        })?;
        let blob = self
            .git
            .find_blob(entry.id())
            .map_err(|e| Error::git("reading ledgit.yaml", e))?;
        Config::from_bytes(&path, blob.content())
    }

    /// The config in force for a command: the work tree's, else (bare repository) HEAD's.
    pub fn config(&self) -> Result<Config> {
        match self.workdir() {
            Some(root) => Config::load(root),
            None => self.config_at(self.head()?.ok_or(Error::NoCommits)?),
        }
    }

    /// Whether the repository is a shallow clone (history is cut).
    pub fn is_shallow(&self) -> bool {
        self.git.is_shallow()
    }
}

/// The abbreviated form of a commit id used in messages.
pub fn short(oid: Oid) -> String {
    let s = oid.to_string();
    s[..12.min(s.len())].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_name_refs_and_full_ids_only() {
        let dir = tempfile::tempdir().unwrap();
        let git = Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::new("A", "a@example.com", &git2::Time::new(0, 0)).unwrap();
        let (first, second) = {
            let tree = git
                .find_tree(git.index().unwrap().write_tree().unwrap())
                .unwrap();
            let first = git
                .commit(Some("HEAD"), &sig, &sig, "first: needle", &tree, &[])
                .unwrap();
            let parent = git.find_commit(first).unwrap();
            let second = git
                .commit(Some("HEAD"), &sig, &sig, "second", &tree, &[&parent])
                .unwrap();
            git.tag_lightweight("v1", parent.as_object(), false)
                .unwrap();
            (first, second)
        };
        let branch = git.head().unwrap().shorthand().unwrap().to_string();
        let repo = Repo { git };
        assert_eq!(repo.resolve_exact(&branch).unwrap(), second);
        assert_eq!(
            repo.resolve_exact(&format!("refs/heads/{branch}")).unwrap(),
            second
        );
        assert_eq!(repo.resolve_exact("HEAD").unwrap(), second);
        assert_eq!(repo.resolve_exact("v1").unwrap(), first);
        assert_eq!(repo.resolve_exact(&first.to_string()).unwrap(), first);
        for expression in [
            ":/needle",
            "HEAD~1",
            "HEAD^",
            &format!("{branch}@{{0}}"),
            "v1..HEAD",
            "",
            &first.to_string()[..12],
        ] {
            assert!(repo.resolve_exact(expression).is_err(), "{expression}");
            // The same text through the command line's resolver works, or fails differently.
        }
        assert!(repo.resolve(":/needle").is_ok());
        assert!(matches!(
            repo.resolve_exact("nope").unwrap_err(),
            Error::RevisionNotFound { .. }
        ));
        assert!(repo.resolve_exact(&"0".repeat(40)).is_err());
    }
}
