//! `ledgit serve` as a test drives it: the real binary on an ephemeral port, its log kept.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::time::Duration;

use super::TestRepo;

pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// Starts `ledgit serve` on an ephemeral port in `repo` with `args` and `env`.
    pub fn start(repo: &TestRepo, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_in(repo.path(), args, env)
    }

    /// Starts `ledgit serve` on an ephemeral port in the repository at `dir`.
    pub fn start_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = super::ledgit_command()
            .current_dir(dir)
            .envs(env.iter().copied())
            .arg("serve")
            .args(if args.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            .args(if args.contains(&"--interval") {
                &[][..]
            } else {
                &["--interval", "2s"][..]
            })
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split(',').next().unwrap_or("").to_string());
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server did not say where it listens");
        Server { child, base, log }
    }

    /// Signs in to the page with the operator `secret` (as the sign-in form sends it, from this
    /// server's origin); the session's cookie, as a `Cookie` header value.
    pub fn sign_in(&self, secret: &str) -> String {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let form = serde_urlencoded::to_string([("secret", secret)]).unwrap();
        let signin = agent
            .post(format!("{}/signin", self.base))
            .header("Origin", &self.base)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send(form)
            .unwrap();
        assert_eq!(signin.status().as_u16(), 303, "sign-in refused");
        signin.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    }

    /// GET a path, with a bearer token; the status and the JSON body.
    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let (status, body) = self.get_text(path, token);
        (status, serde_json::from_str(&body).unwrap_or_default())
    }

    /// GET a path, with a bearer token; the status and the body as text.
    pub fn get_text(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut request = agent.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.header("Authorization", &format!("Bearer {t}"));
        }
        let response = request.call().unwrap();
        let status = response.status().as_u16();
        let mut body = String::new();
        response
            .into_body()
            .into_reader()
            .read_to_string(&mut body)
            .unwrap();
        (status, body)
    }

    /// SIGTERM; the exit code and the whole log.
    pub fn stop(mut self) -> (i32, String) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log.lock().unwrap().clone();
        (status.code().unwrap_or(-1), log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
