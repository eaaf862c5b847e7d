//! The reconciler: makes the platform converge to what the tracked branch declares. [`plan`]
//! compares the records at the tip with what the [`state`] store says was applied; [`pass`] runs
//! the plan's actions through an [`actuator`], journaling every attempt, under leases when
//! replicas share a PostgreSQL store ([`lease`]). `RefWatcher` tells `watch` as soon as the
//! tracked ref moves, and [`controller`] holds the whole reconciler as a value with one pass and
//! the `watch` loop, for every front end.

pub mod actuator;
pub mod controller;
pub mod lease;
pub mod pass;
pub mod plan;
pub mod state;

pub use pass::{Attempt, Pass};
pub use plan::{Action, Desired, Kind, Plan, Tip, desired, idempotency_key, plan};

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Error, Result};

/// Tells when refs of a repository may have moved. Watches the git directory (for `HEAD` and
/// `packed-refs`, which `git pack-refs` rewrites) and `refs/` recursively; ignores lock files
/// (a ref moves by a lock file renamed into place) and debounces bursts.
pub struct RefWatcher {
    _watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<()>,
}

impl RefWatcher {
    pub fn new(git_dir: &Path) -> Result<RefWatcher> {
        use notify::Watcher;
        let (tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(event) = res {
                // Reading a ref opens its file, and inotify reports opens: only changes count,
                // or every look at the branch would announce that it moved.
                let change = !matches!(event.kind, notify::EventKind::Access(_));
                let relevant = change
                    && event.paths.iter().any(|p| {
                        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        !name.ends_with(".lock")
                            && !p
                                .components()
                                .any(|c| c.as_os_str() == "objects" || c.as_os_str() == "ledgit")
                    });
                if relevant {
                    let _ = tx.send(());
                }
            }
        })
        .map_err(|source| Error::Watch {
            path: git_dir.to_path_buf(),
            source,
        })?;
        let watch = |w: &mut notify::RecommendedWatcher, p: PathBuf, mode| {
            w.watch(&p, mode)
                .map_err(|source| Error::Watch { path: p, source })
        };
        watch(
            &mut watcher,
            git_dir.to_path_buf(),
            notify::RecursiveMode::NonRecursive,
        )?;
        watch(
            &mut watcher,
            git_dir.join("refs"),
            notify::RecursiveMode::Recursive,
        )?;
        Ok(RefWatcher {
            _watcher: watcher,
            events,
        })
    }

    /// Waits up to `timeout` for a change; returns whether one came. After the first event,
    /// waits a little for the rest of the burst.
    pub fn wait(&self, timeout: Duration) -> bool {
        match self.events.recv_timeout(timeout) {
            Ok(()) => {
                while self.events.recv_timeout(Duration::from_millis(15)).is_ok() {}
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reading refs must not look like a move (inotify reports opens): a watcher that woke on
    /// its own reads never slept, and `watch --fetch` never reached its fetch.
    #[test]
    fn the_ref_watcher_wakes_on_changes_not_on_reads() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().join(".git");
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(git.join("refs/heads/main"), "0".repeat(40)).unwrap();
        let watcher = RefWatcher::new(&git).unwrap();
        for _ in 0..20 {
            std::fs::read(git.join("HEAD")).unwrap();
            std::fs::read(git.join("refs/heads/main")).unwrap();
        }
        assert!(!watcher.wait(Duration::from_millis(300)), "woke on reads");
        std::fs::write(git.join("refs/heads/main.lock"), "1".repeat(40)).unwrap();
        std::fs::rename(
            git.join("refs/heads/main.lock"),
            git.join("refs/heads/main"),
        )
        .unwrap();
        assert!(watcher.wait(Duration::from_secs(5)), "missed a ref update");
    }
}
