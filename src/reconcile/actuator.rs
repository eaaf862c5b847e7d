//! Actuators: what applies one reconciler action to the platform. `exec` runs a program once
//! per action (no shell unless the user writes one) with the action in its environment, kills
//! its whole process group at the timeout and keeps a bounded copy of its output. `webhook`
//! POSTs the action as JSON, signed with HMAC-SHA256 as GitHub signs its webhooks, refuses
//! redirects and reads a bounded response.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The most output kept per attempt, in bytes.
pub const MAX_OUTPUT: usize = 64 * 1024;

/// One action as actuators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionInfo {
    pub action: String,
    pub agent: String,
    pub environment: String,
    pub version: Option<String>,
    pub previous_version: Option<String>,
    pub commit: String,
    pub generation: String,
    pub idempotency_key: String,
}

#[cfg(test)]
impl ActionInfo {
    /// A deploy of `a` 1 to `prod`, for tests.
    pub(crate) fn sample() -> Self {
        ActionInfo {
            action: "deploy".into(),
            agent: "a".into(),
            environment: "prod".into(),
            version: Some("1".into()),
            previous_version: None,
            commit: "c".into(),
            generation: "g".into(),
            idempotency_key: "k".into(),
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `None` when applied.
    pub error: Option<String>,
    /// What the actuator printed or answered, bounded.
    pub output: String,
}

/// Where actions are applied.
#[derive(Clone)]
pub enum Actuator {
    Exec {
        argv: Vec<String>,
    },
    Webhook {
        url: String,
        secret: Option<Vec<u8>>,
    },
}

/// Never shows the webhook's secret.
impl std::fmt::Debug for Actuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actuator::Exec { argv } => f.debug_struct("Exec").field("argv", argv).finish(),
            Actuator::Webhook { url, secret } => f
                .debug_struct("Webhook")
                .field("url", url)
                .field("secret", &secret.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

impl Actuator {
    /// `--exec CMD`: split like a shell would split words, without running one.
    pub fn exec(command: &str) -> crate::Result<Actuator> {
        let hint = "quote the command as one argument: --exec './deploy.sh --fast'";
        let argv = shell_words::split(command)
            .map_err(|e| crate::Error::invalid(format!("cannot split `{command}`: {e}"), hint))?;
        if argv.is_empty() {
            return Err(crate::Error::invalid("--exec needs a command", hint));
        }
        Ok(Actuator::Exec { argv })
    }

    /// What a receipt says applied the action: `exec: <program>` (its arguments may carry
    /// secrets, so only the program), or `webhook: <scheme://host/path>` (no user, query or
    /// fragment).
    pub fn describe(&self) -> String {
        match self {
            Actuator::Exec { argv } => {
                format!("exec: {}", argv.first().map(String::as_str).unwrap_or(""))
            }
            Actuator::Webhook { url, .. } => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
                let rest = rest.split(['?', '#']).next().unwrap_or("");
                let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                let host = authority.rsplit('@').next().unwrap_or(authority);
                format!("webhook: {scheme}://{host}/{path}")
            }
        }
    }

    /// Applies one action. `fencing` is the lease epoch it runs under (shared stores): exec
    /// gets it in `LEDGIT_FENCING_TOKEN`, the webhook in `X-Ledgit-Fencing-Token`, so that a
    /// platform can refuse an action from a deposed leader (a token lower than one it has seen
    /// for the environment).
    pub fn run(&self, action: &ActionInfo, fencing: Option<i64>, timeout: Duration) -> Outcome {
        match self {
            Actuator::Exec { argv } => run_exec(argv, action, fencing, timeout),
            Actuator::Webhook { url, secret } => {
                run_webhook(url, secret.as_deref(), action, fencing, timeout)
            }
        }
    }
}

/// The action as environment variables.
pub fn env_vars(a: &ActionInfo) -> Vec<(&'static str, String)> {
    vec![
        ("LEDGIT_ACTION", a.action.clone()),
        ("LEDGIT_AGENT", a.agent.clone()),
        ("LEDGIT_ENVIRONMENT", a.environment.clone()),
        ("LEDGIT_VERSION", a.version.clone().unwrap_or_default()),
        (
            "LEDGIT_PREVIOUS_VERSION",
            a.previous_version.clone().unwrap_or_default(),
        ),
        ("LEDGIT_COMMIT", a.commit.clone()),
        ("LEDGIT_GENERATION", a.generation.clone()),
        ("LEDGIT_IDEMPOTENCY_KEY", a.idempotency_key.clone()),
    ]
}

/// Environment variables that hold ledgit's own secrets. An actuator is a program of the
/// platform's, not of ledgit's: it gets the action, never these.
pub const SECRET_ENV: &[&str] = &[
    "LEDGIT_WEBHOOK_SECRET",
    "LEDGIT_HOOK_SECRET",
    "LEDGIT_INTROSPECTION_SECRET",
    "LEDGIT_UI_SECRET",
    "LEDGIT_SIGNING_KEY",
    "LEDGIT_RECONCILER_KEY",
];

/// How long the output pipes may stay open after the actuator's process group has ended (a
/// descendant that left the group with `setsid` may hold them forever).
const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// Output read so far from a pipe, and whether the pipe reached its end.
type Kept = std::sync::Arc<std::sync::Mutex<(Vec<u8>, bool)>>;

/// Reads a pipe on a thread of its own, keeping the first `MAX_OUTPUT` bytes where the caller
/// can take them at any time.
fn drain(mut pipe: impl Read + Send + 'static) -> Kept {
    let kept: Kept = Default::default();
    let shared = kept.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            let n = pipe.read(&mut buf).unwrap_or(0);
            let Ok(mut k) = shared.lock() else { return };
            if n == 0 {
                k.1 = true;
                return;
            }
            let room = MAX_OUTPUT.saturating_sub(k.0.len());
            k.0.extend_from_slice(&buf[..n.min(room)]);
        }
    });
    kept
}

/// What the pipes gave, waiting at most `grace` for them to reach their end.
fn collect(pipes: &[&Kept], grace: Duration) -> Vec<u8> {
    let until = Instant::now() + grace;
    while Instant::now() < until && !pipes.iter().all(|p| p.lock().map_or(true, |k| k.1)) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut out = Vec::new();
    for p in pipes {
        if let Ok(k) = p.lock() {
            out.extend_from_slice(&k.0);
        }
    }
    out.truncate(MAX_OUTPUT);
    out
}

fn run_exec(
    argv: &[String],
    action: &ActionInfo,
    fencing: Option<i64>,
    timeout: Duration,
) -> Outcome {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&argv[0]);
    for name in SECRET_ENV {
        cmd.env_remove(name);
    }
    match fencing {
        Some(token) => cmd.env("LEDGIT_FENCING_TOKEN", token.to_string()),
        None => cmd.env_remove("LEDGIT_FENCING_TOKEN"),
    };
    cmd.args(&argv[1..])
        .envs(env_vars(action))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C at the terminal does not reach it (the reconciler
        // finishes the action in flight), and a timeout ends everything it started.
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                error: Some(format!("cannot run `{}`: {e}", argv[0])),
                output: String::new(),
            };
        }
    };
    let group = child.id() as libc::pid_t;
    let out = child.stdout.take().map(drain).unwrap_or_default();
    let err = child.stderr.take().map(drain).unwrap_or_default();
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => break None,
        }
    };
    // The action is over when the actuator exits or its time is up: whatever it left running
    // in its group (`cmd &`, `nohup cmd`) ends with it, so that nothing holds the output pipes
    // and the next action does not wait for a stray process.
    // SAFETY: signals the process group created for the child; the group id cannot be reused
    // while any member remains, and signalling an empty group only returns ESRCH.
    unsafe {
        libc::killpg(group, libc::SIGKILL);
    }
    if status.is_none() {
        let _ = child.wait();
    }
    let output = collect(&[&out, &err], DRAIN_GRACE);
    let output = String::from_utf8_lossy(&output).into_owned();
    let error = match status {
        None => Some(format!(
            "timed out after {} and was killed",
            crate::support::when::format_duration(timeout.as_secs() as i64)
        )),
        Some(s) if s.success() => None,
        Some(s) => Some(match s.code() {
            Some(code) => format!("`{}` exited with {code}{}", argv[0], last_words(&output)),
            None => format!("`{}` was ended by a signal{}", argv[0], last_words(&output)),
        }),
    };
    Outcome { error, output }
}

/// The last line an actuator wrote, as the end of its failure's message (`: no capacity`), cut
/// to 200 characters: what people read first on the page and in `status` (the journal keeps
/// the whole output).
fn last_words(output: &str) -> String {
    match output.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) => {
            let mut cut: String = line.chars().take(200).collect();
            if cut.len() < line.len() {
                cut.push('…');
            }
            format!(": {cut}")
        }
        None => String::new(),
    }
}

/// `sha256=<hex>` of the body with the secret, as in the `X-Ledgit-Signature` header.
pub use crate::support::hmac::signature;

fn run_webhook(
    url: &str,
    secret: Option<&[u8]>,
    action: &ActionInfo,
    fencing: Option<i64>,
    timeout: Duration,
) -> Outcome {
    let body = serde_json::to_vec(action).unwrap_or_default();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("ledgit/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut request = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Ledgit-Idempotency-Key", &action.idempotency_key);
    if let Some(token) = fencing {
        request = request.header("X-Ledgit-Fencing-Token", &token.to_string());
    }
    if let Some(secret) = secret {
        request = request.header("X-Ledgit-Signature", &signature(secret, &body));
    }
    let response = match request.send(&body[..]) {
        Ok(r) => r,
        Err(e) => {
            return Outcome {
                error: Some(format!("POST {url}: {e}")),
                output: String::new(),
            };
        }
    };
    let status = response.status().as_u16();
    let mut kept = Vec::new();
    let _ = response
        .into_body()
        .into_reader()
        .take(MAX_OUTPUT as u64)
        .read_to_end(&mut kept);
    let output = String::from_utf8_lossy(&kept).into_owned();
    let error = match status {
        200..=299 => None,
        300..=399 => Some(format!(
            "POST {url}: answered {status}, and redirects are refused"
        )),
        _ => Some(format!("POST {url}: answered {status}")),
    };
    Outcome { error, output }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_actuator_is_described_without_what_may_be_secret() {
        let exec = Actuator::exec("./deploy.sh --token s3cret").unwrap();
        assert_eq!(exec.describe(), "exec: ./deploy.sh");
        let hook = Actuator::Webhook {
            url: "https://user:pw@deploy.example.com/hook?key=s3cret#x".into(),
            secret: Some(b"k".to_vec()),
        };
        assert_eq!(hook.describe(), "webhook: https://deploy.example.com/hook");
    }

    /// The fencing token reaches both actuators, and only when there is one.
    #[test]
    fn the_fencing_token_reaches_exec_and_the_webhook() {
        let exec = Actuator::exec("sh -c 'echo token=${LEDGIT_FENCING_TOKEN-unset}'").unwrap();
        let out = exec.run(&action(), Some(7), Duration::from_secs(10));
        assert_eq!(out.output, "token=7\n");
        let out = exec.run(&action(), None, Duration::from_secs(10));
        assert_eq!(out.output, "token=unset\n");
        let heard = |fencing: Option<i64>| {
            use std::io::{Read, Write};
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}/hook", listener.local_addr().unwrap());
            let server = std::thread::spawn(move || {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).unwrap();
                    request.extend_from_slice(&buf[..n]);
                }
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .unwrap();
                String::from_utf8_lossy(&request).to_lowercase()
            });
            let hook = Actuator::Webhook { url, secret: None };
            assert_eq!(
                hook.run(&action(), fencing, Duration::from_secs(10)).error,
                None
            );
            server.join().unwrap()
        };
        assert!(heard(Some(3)).contains("x-ledgit-fencing-token: 3\r\n"));
        assert!(!heard(None).contains("x-ledgit-fencing-token"));
    }

    fn action() -> ActionInfo {
        ActionInfo::sample()
    }

    #[test]
    fn exec_passes_the_action_and_bounds_output() {
        let a = Actuator::exec(
            "sh -c 'echo $LEDGIT_ACTION $LEDGIT_AGENT $LEDGIT_VERSION; head -c 200000 /dev/zero'",
        )
        .unwrap();
        let out = a.run(&action(), None, Duration::from_secs(10));
        assert_eq!(out.error, None);
        assert!(out.output.starts_with("deploy a 1\n"));
        assert_eq!(out.output.len(), MAX_OUTPUT);
    }

    #[test]
    fn exec_failures_and_timeouts() {
        let fail = Actuator::exec("sh -c 'echo nope >&2; exit 3'")
            .unwrap()
            .run(&action(), None, Duration::from_secs(10));
        assert_eq!(fail.error.as_deref(), Some("`sh` exited with 3: nope"));
        assert_eq!(last_words("a\nb\n\n  \n"), ": b");
        assert_eq!(last_words(""), "");
        assert_eq!(last_words(&"x".repeat(300)).chars().count(), 2 + 200 + 1);
        assert_eq!(fail.output, "nope\n");
        let start = Instant::now();
        let hang = Actuator::exec("sh -c 'sleep 30; echo late'").unwrap().run(
            &action(),
            None,
            Duration::from_millis(300),
        );
        assert!(hang.error.unwrap().contains("timed out"));
        assert!(start.elapsed() < Duration::from_secs(5));
        let missing = Actuator::exec("/no/such/program").unwrap().run(
            &action(),
            None,
            Duration::from_secs(1),
        );
        assert!(missing.error.unwrap().contains("cannot run"));
    }

    #[test]
    fn a_background_process_does_not_outlive_the_action() {
        let marker = tempfile::tempdir().unwrap();
        let late = marker.path().join("late");
        let start = Instant::now();
        let out = Actuator::exec(&format!(
            "sh -c 'echo started; (sleep 3; touch {}) & exit 0'",
            late.display()
        ))
        .unwrap()
        .run(&action(), None, Duration::from_secs(10));
        assert_eq!(out.error, None);
        assert_eq!(out.output, "started\n");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "waited {:?} for a background process",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_secs(4));
        assert!(!late.exists(), "the background process was not ended");
    }

    #[test]
    fn a_process_that_leaves_the_group_does_not_hold_the_action() {
        // `setsid` puts the sleeper in a session of its own, out of reach of the group kill;
        // it still holds the output pipe, and the reading stops after the grace period.
        let start = Instant::now();
        let out = Actuator::exec("sh -c 'echo hi; setsid sleep 5 & exit 0'")
            .unwrap()
            .run(&action(), None, Duration::from_secs(10));
        assert_eq!(out.error, None);
        assert_eq!(out.output, "hi\n");
        assert!(start.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn secrets_stay_out_of_actuators_and_debug_output() {
        // SAFETY: this test is the only one that touches this variable.
        unsafe { std::env::set_var("LEDGIT_WEBHOOK_SECRET", "hunter2") };
        let out = Actuator::exec("sh -c 'echo \"[$LEDGIT_WEBHOOK_SECRET]\"'")
            .unwrap()
            .run(&action(), None, Duration::from_secs(10));
        assert_eq!(out.output, "[]\n");
        let hook = Actuator::Webhook {
            url: "https://example.com/hook".into(),
            secret: Some(b"hunter2".to_vec()),
        };
        let shown = format!("{hook:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("104, 117"),
            "{shown}"
        );
        assert!(shown.contains("redacted"));
    }
}
