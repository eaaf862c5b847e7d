//! How a `postgres://` URL becomes a connection, as libpq users expect: what the URL leaves out
//! comes from `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`,
//! `PGSSLROOTCERT`, `PGCONNECT_TIMEOUT` and `PGAPPNAME`, then from the password file
//! (`PGPASSFILE`, else `~/.pgpass`, ignored unless private, as libpq ignores it). TLS is
//! rustls's: `sslmode=require` (and `verify-ca`, `verify-full`) verify the server's certificate
//! against webpki's roots and `sslrootcert`; `prefer` tries TLS first, `disable` never does.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use postgres::config::{Host, SslMode};

use crate::error::{Error, Result};

/// How long a connection attempt may take unless the URL or `PGCONNECT_TIMEOUT` says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection's configuration and its TLS connector.
pub struct Connector {
    pub config: postgres::Config,
    pub tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// The URL without its password, for messages.
    pub shown: String,
}

/// The URL without its password (`postgres://user:***@host/db`).
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    // A password may also be a query parameter.
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some(("password", _)) => "password=***".to_string(),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Where libpq's environment is read from: the process's, or a map (tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process's environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// Builds the connection for `url`, completed from `env` and the password file.
pub fn connector(url: &str, env: &dyn Env) -> Result<Connector> {
    let shown = redacted(url);
    let refused = |message: String| Error::StoreRefused {
        location: shown.clone(),
        message,
        hint: "write it as postgres://USER@HOST:PORT/DATABASE?sslmode=require".into(),
    };
    // What rust-postgres does not parse, libpq users still write: take it out first.
    let (url, extra) = split_extra(url);
    let mut config = postgres::Config::from_str(&url)
        .map_err(|e| refused(format!("not a PostgreSQL URL: {e}")))?;
    let mut sslmode = extra.sslmode.clone();
    if config.get_hosts().is_empty() {
        let host = env.var("PGHOST").unwrap_or_else(default_host);
        for h in host.split(',') {
            config.host(h);
        }
    }
    if config.get_ports().is_empty()
        && let Some(port) = env.var("PGPORT")
    {
        let port: u16 = port
            .parse()
            .map_err(|_| refused(format!("PGPORT `{port}` is not a port")))?;
        config.port(port);
    }
    if config.get_user().is_none() {
        let user = env
            .var("PGUSER")
            .or_else(|| env.var("USER"))
            .unwrap_or_else(|| "postgres".into());
        config.user(&user);
    }
    if config.get_dbname().is_none()
        && let Some(db) = env.var("PGDATABASE")
    {
        config.dbname(&db);
    }
    if config.get_application_name().is_none() {
        config.application_name(&env.var("PGAPPNAME").unwrap_or_else(|| "ledgit".into()));
    }
    if config.get_connect_timeout().is_none() {
        let secs = env
            .var("PGCONNECT_TIMEOUT")
            .and_then(|t| t.parse::<u64>().ok())
            .map_or(CONNECT_TIMEOUT, |s| Duration::from_secs(s.max(2)));
        config.connect_timeout(secs);
    }
    if sslmode.is_none() {
        sslmode = env.var("PGSSLMODE");
    }
    config.ssl_mode(match sslmode.as_deref() {
        None | Some("prefer") | Some("allow") => SslMode::Prefer,
        Some("disable") => SslMode::Disable,
        Some("require") | Some("verify-ca") | Some("verify-full") => SslMode::Require,
        Some(other) => return Err(refused(format!("sslmode `{other}` is not one libpq knows"))),
    });
    if config.get_password().is_none() {
        if let Some(p) = env.var("PGPASSWORD") {
            config.password(&p);
        } else if let Some(p) = password_from_file(&config, env) {
            config.password(&p);
        }
    }
    let root = extra.sslrootcert.or_else(|| env.var("PGSSLROOTCERT"));
    let tls = tls(root.as_deref().map(Path::new)).map_err(|e| Error::StoreRefused {
        location: shown.clone(),
        message: e.to_string(),
        hint: "point sslrootcert (or PGSSLROOTCERT) at the PEM file of the server's CA".into(),
    })?;
    Ok(Connector { config, tls, shown })
}

/// libpq's default host: its socket directory where there is one, else the loopback.
fn default_host() -> String {
    ["/var/run/postgresql", "/tmp"]
        .into_iter()
        .find(|d| Path::new(d).join(".s.PGSQL.5432").exists())
        .unwrap_or("localhost")
        .to_string()
}

/// The URL parameters rust-postgres does not take, removed from the URL.
#[derive(Default)]
struct Extra {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

fn split_extra(url: &str) -> (String, Extra) {
    let mut extra = Extra::default();
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), extra);
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.split_once('=') {
            Some(("sslmode", v)) => {
                extra.sslmode = Some(v.to_string());
                false
            }
            Some(("sslrootcert", v)) => {
                extra.sslrootcert = Some(v.to_string());
                false
            }
            _ => true,
        })
        .collect();
    if kept.is_empty() {
        (base.to_string(), extra)
    } else {
        (format!("{base}?{}", kept.join("&")), extra)
    }
}

/// The password for the connection from `PGPASSFILE` or `~/.pgpass`: the first line whose
/// host, port, database and user match (`*` matches anything). Like libpq, a file that others
/// may read is ignored.
fn password_from_file(config: &postgres::Config, env: &dyn Env) -> Option<String> {
    let path = env
        .var("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|h| Path::new(&h).join(".pgpass")))?;
    let meta = std::fs::metadata(&path).ok()?;
    {
        use std::os::unix::fs::PermissionsExt;
        if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
            return None;
        }
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let host = match config.get_hosts().first()? {
        Host::Tcp(h) => h.clone(),
        Host::Unix(_) => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user()?.to_string();
    let db = config.get_dbname().unwrap_or(&user).to_string();
    pgpass_lookup(&text, [&host, &port, &db, &user])
}

/// The password of the first line of a password file matching `wanted` (host, port, database,
/// user).
fn pgpass_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        // Comments are skipped; a blank line has one field and matches nothing.
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = pgpass_fields(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(f, w)| f == "*" || f == w);
            matches.then(|| fields[4].clone())
        })
}

/// A password file line's fields: `:` separates, `\:` and `\\` escape.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// Why the TLS set-up for the store failed.
#[derive(Debug, thiserror::Error)]
enum TlsSetupError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{} holds no certificate", path.display())]
    Empty { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Certificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("{0}")]
    Protocols(rustls::Error),
}

/// rustls with webpki's roots and, when given, the CA file's certificates.
fn tls(
    root: Option<&Path>,
) -> std::result::Result<tokio_postgres_rustls::MakeRustlsConnect, TlsSetupError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = root {
        let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
            .and_then(|i| i.collect())
            .map_err(|source| TlsSetupError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        if certs.is_empty() {
            return Err(TlsSetupError::Empty {
                path: path.to_path_buf(),
            });
        }
        for c in certs {
            roots.add(c).map_err(|source| TlsSetupError::Certificate {
                path: path.to_path_buf(),
                source,
            })?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Protocols)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<&'static str, String>);
    impl Env for Map {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redacted("postgres://ledgit:s3cret@db:5432/ledgit?sslmode=require"),
            "postgres://ledgit:***@db:5432/ledgit?sslmode=require"
        );
        assert_eq!(
            redacted("postgresql://db/x?user=a&password=s3cret"),
            "postgresql://db/x?user=a&password=***"
        );
        assert_eq!(redacted("postgres://u@db"), "postgres://u@db");
        assert_eq!(redacted("postgres://p:w@"), "postgres://p:***@");
    }

    #[test]
    fn the_environment_completes_the_url() {
        let env = Map(HashMap::from([
            ("PGHOST", "db.internal".to_string()),
            ("PGPORT", "6543".to_string()),
            ("PGUSER", "reconciler".to_string()),
            ("PGDATABASE", "platform".to_string()),
            ("PGPASSWORD", "pw".to_string()),
            ("PGSSLMODE", "verify-full".to_string()),
        ]));
        let c = connector("postgres://", &env).unwrap();
        assert_eq!(c.config.get_hosts(), [Host::Tcp("db.internal".into())]);
        assert_eq!(c.config.get_ports(), [6543]);
        assert_eq!(c.config.get_user(), Some("reconciler"));
        assert_eq!(c.config.get_dbname(), Some("platform"));
        assert_eq!(c.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(c.config.get_ssl_mode(), SslMode::Require);
        // The URL wins over the environment.
        let c = connector("postgres://me@other:5433/x?sslmode=disable", &env).unwrap();
        assert_eq!(c.config.get_hosts(), [Host::Tcp("other".into())]);
        assert_eq!(c.config.get_ports(), [5433]);
        assert_eq!(c.config.get_user(), Some("me"));
        assert_eq!(c.config.get_ssl_mode(), SslMode::Disable);
        assert!(connector("postgres://x?sslmode=sometimes", &env).is_err());
        let bad_port = Map(HashMap::from([("PGPORT", "five".to_string())]));
        assert!(connector("postgres://", &bad_port).is_err());
    }

    #[test]
    fn the_password_file_matches_like_libpq() {
        let text = "# comment\n\
                    other:5432:*:ledgit:wrong\n\
                    db:*:platform:ledgit:right\\:colon\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            pgpass_lookup(text, ["db", "5432", "platform", "ledgit"]),
            Some("right:colon".into())
        );
        assert_eq!(
            pgpass_lookup(text, ["x", "1", "y", "z"]),
            Some("fallback".into())
        );
        assert_eq!(pgpass_lookup("a:b:c\n", ["a", "b", "c", "d"]), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "db:5432:platform:ledgit:from-file\n").unwrap();
        let env = |mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            Map(HashMap::from([("PGPASSFILE", file.display().to_string())]))
        };
        let url = "postgres://ledgit@db:5432/platform";
        let c = connector(url, &env(0o600)).unwrap();
        assert_eq!(c.config.get_password(), Some(&b"from-file"[..]));
        // Readable by others: ignored, as libpq ignores it.
        let c = connector(url, &env(0o644)).unwrap();
        assert_eq!(c.config.get_password(), None);
    }

    #[test]
    fn the_password_file_keeps_comments_and_colons_as_libpq_does() {
        // A commented-out line is no entry, however well it would match.
        let text = "# *:*:*:*:commented-out\n*:*:*:*:real\n";
        assert_eq!(
            pgpass_lookup(text, ["h", "1", "d", "u"]),
            Some("real".into())
        );
        // After the fourth field, the rest of the line is the password, colons and all.
        assert_eq!(
            pgpass_lookup(
                "db:5432:platform:ledgit:pa:ss\n",
                ["db", "5432", "platform", "ledgit"]
            ),
            Some("pa:ss".into())
        );
    }

    #[test]
    fn the_process_environment_is_read_and_empty_is_unset() {
        assert!(ProcessEnv.var("PATH").is_some_and(|p| !p.is_empty()));
        assert_eq!(ProcessEnv.var("LEDGIT_NEVER_SET_IN_ANY_ENVIRONMENT"), None);
    }

    #[test]
    fn without_a_host_libpq_s_socket_or_the_loopback_is_used() {
        let c = connector("postgres:///db", &Map(HashMap::new())).unwrap();
        match c.config.get_hosts() {
            [Host::Unix(dir)] => assert!(dir.join(".s.PGSQL.5432").exists(), "{dir:?}"),
            [Host::Tcp(host)] => assert_eq!(host, "localhost"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_root_certificate_is_said() {
        let e = connector(
            "postgres://h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem",
            &Map(HashMap::new()),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        assert!(e.hint().unwrap().contains("sslrootcert"));
    }
}
