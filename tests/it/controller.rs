//! The reconciler driven from the library, as a third front end would: no binary, no command
//! line. `Reconciler::watch` runs on a thread over a real repository and a real actuator
//! process, through a commit, a failed action and its retry, and stops when asked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledgit::git::repo::Repo;
use ledgit::reconcile::actuator::Actuator;
use ledgit::reconcile::controller::{Event, Follow, Reconciler, Settings};
use ledgit::reconcile::pass;
use ledgit::reconcile::state::{self, Location};

use crate::common::{T0, TestRepo, wait_for};

/// What the loop said, one line per event.
fn said(event: &Event) -> String {
    match event {
        Event::Watching { tracked, .. } => format!("watching {tracked}"),
        Event::Planned(p) => format!("planned {} actions", p.actions.len()),
        Event::Attempted(a) => format!(
            "{} {}/{} {} {}",
            a.action.action.as_str(),
            a.action.agent,
            a.action.environment,
            a.action.version.as_deref().unwrap_or(""),
            if a.error.is_some() {
                "failed"
            } else {
                "applied"
            }
        ),
        Event::Passed(p) => format!("passed {} attempts", p.attempts.len()),
        other => format!("{other:?}"),
    }
}

#[test]
fn the_watch_loop_runs_from_the_library_through_a_commit_and_a_failure() {
    let repo = TestRepo::new();
    repo.set("alpha", "staging", "1.0.0");
    repo.commit("Initial", T0);
    let tools = tempfile::tempdir().unwrap();
    // Fails 2.0.0 while the file `broken` exists.
    let broken = tools.path().join("broken");
    std::fs::write(&broken, "").unwrap();
    let script = tools.path().join("actuator.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$LEDGIT_VERSION\" = 2.0.0 ] && [ -e {} ]; then echo no capacity; exit 1; fi\n",
            broken.display()
        ),
    )
    .unwrap();
    let store = tools.path().join("state.sqlite");
    let settings = Settings {
        location: Location::Sqlite(store.clone()),
        pass: pass::Options {
            environments: Vec::new(),
            prune: false,
            timeout: Duration::from_secs(30),
            respect_backoff: true,
            allow_rewind: false,
        },
        lease_ttl: Duration::from_secs(15),
        dry_run: false,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let events: Arc<Mutex<Vec<String>>> = Arc::default();
    let path = repo.path().to_path_buf();
    let actuator = Actuator::exec(&format!("sh {}", script.display())).unwrap();
    let loop_thread = {
        let (stop, events) = (stop.clone(), events.clone());
        std::thread::spawn(move || {
            let repo = Repo::open(&path).unwrap();
            let follow = Follow {
                tracked: "refs/heads/main".into(),
                fetch: None,
                interval: Duration::from_secs(60),
            };
            let mut reconciler = Reconciler::new(settings, Some(actuator), None);
            reconciler.watch(&repo, &follow, &stop, &mut |e| {
                events.lock().unwrap().push(said(&e));
            })
        })
    };
    let has = |line: &str| events.lock().unwrap().iter().any(|l| l == line);
    wait_for("the first apply", Duration::from_secs(20), || {
        has("deploy alpha/staging 1.0.0 applied")
    });
    // A commit: reconciled at once, and its action fails.
    repo.set("alpha", "staging", "2.0.0");
    repo.commit("alpha 2.0.0", T0 + 60);
    wait_for("the failed update", Duration::from_secs(20), || {
        has("update alpha/staging 2.0.0 failed")
    });
    // The platform recovers: the retry (after its backoff) applies it, with no new commit.
    std::fs::remove_file(&broken).unwrap();
    wait_for("the retry", Duration::from_secs(20), || {
        has("update alpha/staging 2.0.0 applied")
    });
    stop.store(true, Ordering::SeqCst);
    loop_thread.join().unwrap().unwrap();
    let said = events.lock().unwrap().clone();
    assert_eq!(said[0], "watching refs/heads/main", "{said:?}");
    // The journal has the three attempts, the failure kept with its output.
    let repository = repo.git(&["rev-list", "--max-parents=0", "HEAD"]);
    let journal = state::journal(&Location::Sqlite(store), &repository, 100).unwrap();
    let results: Vec<&str> = journal.iter().map(|e| e.result.as_str()).collect();
    assert_eq!(results, ["applied", "failed", "applied"], "{said:?}");
    assert!(journal[1].output.contains("no capacity"));
}
