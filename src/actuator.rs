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
#[derive(Debug, Clone)]
pub enum Actuator {
    Exec {
        argv: Vec<String>,
    },
    Webhook {
        url: String,
        secret: Option<Vec<u8>>,
    },
}

impl Actuator {
    /// `--exec CMD`: split like a shell would split words, without running one.
    pub fn exec(command: &str) -> Result<Actuator, String> {
        let argv =
            shell_words::split(command).map_err(|e| format!("cannot split `{command}`: {e}"))?;
        if argv.is_empty() {
            return Err("--exec needs a command".into());
        }
        Ok(Actuator::Exec { argv })
    }

    /// Applies one action.
    pub fn run(&self, action: &ActionInfo, timeout: Duration) -> Outcome {
        match self {
            Actuator::Exec { argv } => run_exec(argv, action, timeout),
            Actuator::Webhook { url, secret } => {
                run_webhook(url, secret.as_deref(), action, timeout)
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

/// Reads a pipe to its end, keeping the first `MAX_OUTPUT` bytes.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let room = MAX_OUTPUT.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
        kept
    })
}

fn run_exec(argv: &[String], action: &ActionInfo, timeout: Duration) -> Outcome {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&argv[0]);
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
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                // SAFETY: signals the process group we created for the child.
                unsafe {
                    libc::killpg(child.id() as libc::pid_t, libc::SIGKILL);
                }
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => break None,
        }
    };
    let mut output = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
    if !stderr.is_empty() {
        output.extend_from_slice(&stderr);
    }
    output.truncate(MAX_OUTPUT);
    let output = String::from_utf8_lossy(&output).into_owned();
    let error = match status {
        None => Some(format!(
            "timed out after {} and was killed",
            crate::when::format_duration(timeout.as_secs() as i64)
        )),
        Some(s) if s.success() => None,
        Some(s) => Some(match s.code() {
            Some(code) => format!("`{}` exited with {code}", argv[0]),
            None => format!("`{}` was ended by a signal", argv[0]),
        }),
    };
    Outcome { error, output }
}

/// `sha256=<hex>` of the body with the secret, as in the `X-Ledgit-Signature` header.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn run_webhook(
    url: &str,
    secret: Option<&[u8]>,
    action: &ActionInfo,
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

    fn action() -> ActionInfo {
        ActionInfo::sample()
    }

    #[test]
    fn exec_passes_the_action_and_bounds_output() {
        let a = Actuator::exec(
            "sh -c 'echo $LEDGIT_ACTION $LEDGIT_AGENT $LEDGIT_VERSION; head -c 200000 /dev/zero'",
        )
        .unwrap();
        let out = a.run(&action(), Duration::from_secs(10));
        assert_eq!(out.error, None);
        assert!(out.output.starts_with("deploy a 1\n"));
        assert_eq!(out.output.len(), MAX_OUTPUT);
    }

    #[test]
    fn exec_failures_and_timeouts() {
        let fail = Actuator::exec("sh -c 'echo nope >&2; exit 3'")
            .unwrap()
            .run(&action(), Duration::from_secs(10));
        assert_eq!(fail.error.as_deref(), Some("`sh` exited with 3"));
        assert_eq!(fail.output, "nope\n");
        let start = Instant::now();
        let hang = Actuator::exec("sh -c 'sleep 30; echo late'")
            .unwrap()
            .run(&action(), Duration::from_millis(300));
        assert!(hang.error.unwrap().contains("timed out"));
        assert!(start.elapsed() < Duration::from_secs(5));
        let missing = Actuator::exec("/no/such/program")
            .unwrap()
            .run(&action(), Duration::from_secs(1));
        assert!(missing.error.unwrap().contains("cannot run"));
    }

    #[test]
    fn signature_matches_the_github_scheme() {
        // HMAC-SHA256("It's a Secret to Everybody", "Hello, World!") from GitHub's documentation.
        assert_eq!(
            signature(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }
}
