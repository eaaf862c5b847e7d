//! The library's error type: everything that stops an operation from running at all (as opposed
//! to findings, which are results). Each error can say what the user should do about it.

use std::path::PathBuf;

/// A result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an operation could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `ledgit.yaml` is missing or invalid.
    #[error("{}{}: {message}", path.display(), location(*line, *column))]
    Config {
        path: PathBuf,
        line: Option<u32>,
        column: Option<u32>,
        message: String,
        hint: String,
    },
    /// No git repository was found.
    #[error("{} is not inside a git repository", path.display())]
    NotARepository { path: PathBuf },
    /// A revision that does not resolve.
    #[error("revision `{rev}` not found")]
    RevisionNotFound { rev: String },
    /// The branch has no commits yet.
    #[error("the repository has no commits yet")]
    NoCommits,
    /// The operation needs a work tree and the repository is bare.
    #[error("the repository is bare (it has no work tree)")]
    BareRepository,
    /// An argument that is well-formed for the parser but meaningless (a bad time, an unknown
    /// agent): what the user asked for, with what to ask instead. Failures that are not about
    /// the arguments have variants of their own.
    #[error("{message}")]
    Invalid { message: String, hint: String },
    /// A file of the repository that must be text is not UTF-8.
    #[error("{what} is not UTF-8 text")]
    NotText { what: String },
    /// An object of the repository does not read as git writes it.
    #[error("{what} is corrupt")]
    Corrupt { what: String },
    /// The history is beyond what ledgit's tables hold.
    #[error("{what}")]
    TooLarge { what: &'static str },
    /// The system's random source failed.
    #[error("could not draw {what}: the system's random source failed")]
    Randomness { what: &'static str },
    /// A defect in ledgit: a worker thread that panicked, an example that does not build.
    #[error("{what} (a defect in ledgit)")]
    Internal { what: String },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The reconciler's state store could not be read or written.
    #[error("state store {}: {source}", path.display())]
    Store {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The shared state store on PostgreSQL could not be reached, read or written. `url` is
    /// shown without its password.
    #[error("state store {url}: {}", chain(source))]
    Database {
        url: String,
        #[source]
        source: postgres::Error,
    },
    /// A state store whose schema is newer than this binary knows, or otherwise not usable.
    #[error("state store {location}: {message}")]
    StoreRefused {
        location: String,
        message: String,
        hint: String,
    },
    /// A write of a reconciler whose lease on the environment has moved to another replica
    /// (a newer epoch): refused so that a deposed leader never overwrites its successor.
    #[error("the lease on {environment} moved on from epoch {epoch}: another replica leads it now")]
    Fenced { environment: String, epoch: i64 },
    /// A folder could not be watched for changes.
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    /// The receipts could not be pushed to the remote (after fetching and merging its own).
    #[error("pushing receipts to {remote}: {said}")]
    Push { remote: String, said: String },
    /// libgit2 failed.
    #[error("{context}: {}", source.message())]
    Git {
        context: String,
        #[source]
        source: git2::Error,
    },
}

/// An error and its causes, `: `-separated (the client's "error performing TLS handshake"
/// says why only in its cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

fn location(line: Option<u32>, column: Option<u32>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// What kind of failure an error is, for a front end that answers in its own terms (the
/// server's status codes): the caller's input, something missing, a conflict with another
/// writer, a part that cannot be reached or read now, or a defect in ledgit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// What was asked for is not valid: asking again the same way fails again.
    Input,
    /// What was asked for does not exist.
    NotFound,
    /// Another writer got there first.
    Conflict,
    /// A part ledgit depends on (the repository, the store, the disk, the network, the random
    /// source) cannot be used now; the same request may succeed later.
    Unavailable,
    /// A defect in ledgit.
    Defect,
}

impl Error {
    /// The kind of failure (see [`Kind`]).
    pub fn kind(&self) -> Kind {
        match self {
            Error::Invalid { .. } => Kind::Input,
            Error::RevisionNotFound { .. } => Kind::NotFound,
            Error::Fenced { .. } => Kind::Conflict,
            Error::Internal { .. } => Kind::Defect,
            Error::Config { .. }
            | Error::NotARepository { .. }
            | Error::NoCommits
            | Error::BareRepository
            | Error::NotText { .. }
            | Error::Corrupt { .. }
            | Error::TooLarge { .. }
            | Error::Randomness { .. }
            | Error::Io { .. }
            | Error::Store { .. }
            | Error::Database { .. }
            | Error::StoreRefused { .. }
            | Error::Watch { .. }
            | Error::Push { .. }
            | Error::Git { .. } => Kind::Unavailable,
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config { hint, .. } | Error::Invalid { hint, .. } if !hint.is_empty() => {
                Some(hint.clone())
            }
            Error::NotARepository { .. } => Some(
                "run ledgit inside a deployments repository, pass -C DIR, or create one with `ledgit init`"
                    .into(),
            ),
            Error::RevisionNotFound { .. } => Some(
                "name a branch, tag or commit that exists; `git log --oneline` lists commits".into(),
            ),
            Error::NoCommits => Some("commit the records first, or omit --rev".into()),
            Error::BareRepository => {
                Some("pass --rev REV to read a commit, or run in a clone with a work tree".into())
            }
            Error::Store { .. } => Some("check the file, or pass another --state".into()),
            Error::NotText { .. } => {
                Some("save it as UTF-8 (`ledgit validate` names the file and line)".into())
            }
            Error::Corrupt { .. } => Some("run `git fsck`".into()),
            Error::TooLarge { .. } => Some(
                "query a shorter range with --rev, or report this repository's size".into(),
            ),
            Error::Randomness { .. } => {
                Some("check the system's entropy source (getrandom), then try again".into())
            }
            Error::Internal { .. } => {
                Some("please report it, with the command and what it printed".into())
            }
            Error::Database { source, .. } if chain(source).contains("certificate") => Some(
                "name the server's CA with sslrootcert=PATH in the URL or PGSSLROOTCERT (the public roots do not vouch for it)"
                    .into(),
            ),
            Error::Database { .. } => Some(
                "check the URL, that PostgreSQL runs and takes connections, and the credentials (PGPASSWORD or ~/.pgpass)"
                    .into(),
            ),
            Error::StoreRefused { hint, .. } => Some(hint.clone()),
            Error::Fenced { .. } => Some(
                "nothing to do: this replica follows now; `ledgit leases` shows who leads".into(),
            ),
            Error::Push { .. } => Some(
                "check the remote's address and credentials; the receipts stay in the local notes and are pushed at the next pass"
                    .into(),
            ),
            Error::Watch { .. } => Some(
                "check inotify limits (fs.inotify.max_user_watches) and the folder's permissions"
                    .into(),
            ),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn git(context: impl Into<String>, source: git2::Error) -> Self {
        Error::Git {
            context: context.into(),
            source,
        }
    }

    pub fn invalid(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Invalid {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers (the server maps errors to answers and logs) can reach the cause.
    #[test]
    fn errors_keep_their_source() {
        use std::error::Error as _;
        let e = Error::Store {
            path: "s.sqlite".into(),
            source: rusqlite::Error::InvalidQuery,
        };
        assert!(e.source().is_some());
        assert!(e.to_string().starts_with("state store s.sqlite: "));
        let io = Error::io("f", std::io::Error::other("disk"));
        assert_eq!(io.source().map(|s| s.to_string()), Some("disk".into()));
    }
}
