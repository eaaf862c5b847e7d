//! A throw-away PostgreSQL cluster for the shared-store tests: `initdb` and `pg_ctl` from
//! Debian's `postgresql` package, run as an unprivileged user (`postgres` when the tests run
//! as root, which PostgreSQL refuses to run as), in a temporary directory, on a free port of
//! the loopback, with trust authentication for the loopback only. Stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder of PostgreSQL's server programs: on the PATH, else Debian's newest.
fn bin_dir() -> Option<PathBuf> {
    if let Some(p) = super::program("initdb", &[]) {
        return p.parent().map(Path::to_path_buf);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// A running cluster.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// The user the server runs as, when the tests run as root.
    user: Option<String>,
    /// Extra server settings (`-c name=value`).
    settings: Vec<String>,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Cluster {
    /// Starts a new cluster; fails the test (naming what to install) without PostgreSQL.
    pub fn start() -> Cluster {
        Cluster::start_with(|_| Vec::new())
    }

    /// Starts a cluster that takes only TLS connections on the loopback, with a certificate for
    /// 127.0.0.1 signed by a CA of its own; returns it and the CA's PEM file.
    pub fn start_tls() -> (Cluster, std::path::PathBuf) {
        let mut ca = None;
        let cluster = Cluster::start_with(|dir| {
            let d = dir.display().to_string();
            let openssl = |args: &[&str]| {
                let out = Command::new("openssl").args(args).output().unwrap();
                assert!(
                    out.status.success(),
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=ledgit test CA",
                "-keyout",
                &format!("{d}/ca.key"),
                "-out",
                &format!("{d}/ca.pem"),
            ]);
            openssl(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                &format!("{d}/server.key"),
                "-out",
                &format!("{d}/server.csr"),
            ]);
            std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{d}/server.csr"),
                "-CA",
                &format!("{d}/ca.pem"),
                "-CAkey",
                &format!("{d}/ca.key"),
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &format!("{d}/san.ext"),
                "-out",
                &format!("{d}/server.crt"),
            ]);
            {
                use std::os::unix::fs::PermissionsExt;
                let key = dir.join("server.key");
                std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
                if is_root() {
                    let ok = Command::new("chown")
                        .args(["postgres", &key.display().to_string()])
                        .status()
                        .unwrap()
                        .success();
                    assert!(ok, "chown of the server's key");
                }
            }
            ca = Some(dir.join("ca.pem"));
            // Only TLS connections on the loopback.
            std::fs::write(
                dir.join("hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .unwrap();
            vec![
                "ssl=on".to_string(),
                format!("hba_file={d}/hba.conf"),
                format!("ssl_cert_file={d}/server.crt"),
                format!("ssl_key_file={d}/server.key"),
            ]
        });
        (cluster, ca.unwrap())
    }

    /// Starts a cluster; `settings` gets its folder (before the server starts) and returns
    /// extra server settings.
    fn start_with(settings: impl FnOnce(&Path) -> Vec<String>) -> Cluster {
        let bin = super::needs(bin_dir(), "PostgreSQL (apt-get install postgresql)");
        let user = is_root().then(|| "postgres".to_string());
        let dir = tempfile::tempdir().unwrap();
        if user.is_some() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = settings(dir.path());
        let cluster = Cluster {
            dir,
            bin,
            port,
            user,
            settings,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "ledgit",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        cluster.start_server();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's programs as the cluster's user; panics with its output if it
    /// fails.
    fn run(&self, program: &str, args: &[&str]) {
        let exe = self.bin.join(program);
        let mut cmd = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{program} {args:?} failed:\n{}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
        );
    }

    fn start_server(&self) {
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        for s in &self.settings {
            options.push_str(&format!(" -c {s}"));
        }
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// The URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!(
            "postgres://ledgit@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Stops the server the way an operator's restart does (clients are disconnected), then
    /// starts it again on the same port.
    pub fn restart(&self) {
        self.stop();
        self.start_server();
    }

    /// Stops the server (clients are disconnected); [`Cluster::start_again`] brings it back.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// Starts a stopped server again on the same port.
    pub fn start_again(&self) {
        self.start_server();
    }

    /// Runs SQL with psql; returns what it printed (unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        let psql = super::needs(
            super::program("psql", &[]).or_else(|| bin_dir().map(|b| b.join("psql"))),
            "psql (apt-get install postgresql-client)",
        );
        let out = Command::new(psql)
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(),
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = match &self.user {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&exe)
                .args(args)
                .output(),
            None => Command::new(&exe).args(args).output(),
        };
    }
}
