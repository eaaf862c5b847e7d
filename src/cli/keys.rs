//! `ledgit keys`: generate signing keys (for tokens, or a reconciler's for its receipts), list
//! the public keys of `ledgit.yaml`, print them as a JSON Web Key Set.

use std::io::Write;
use std::path::{Path, PathBuf};

use ledgit::model::config::{self, Config};
use ledgit::token::{self, SigningKey};

use super::command_error::{CliError, CliResult, Outcome};
use super::context::Context;
use super::render::{self, BOLD, GREEN, TextOrJson};

/// Manage the keys that sign and verify deployment tokens.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Generate(GenerateArgs),
    List(ListArgs),
    Jwks(ListArgs),
}

/// Generate an Ed25519 key pair.
///
/// Writes the private key (PKCS#8, PEM) to --out with mode 0600; refuses to overwrite a file
/// and refuses a path inside the repository's work tree. Prints the public entry for
/// ledgit.yaml; with --add, writes it into ledgit.yaml, keeping the file's comments and layout.
///
/// With --reconciler ID the key is a reconciler's: it signs the apply receipts of `reconcile`
/// and `watch --signing-key`, and its public half is added under `reconcilers:` with the
/// environments it may apply (--environment, default all).
#[derive(clap::Args)]
#[command(after_help = "Examples:
  ledgit keys generate --out ~/.config/ledgit/signing.pem --add
  ledgit keys generate --out /run/secrets/ledgit.pem --id k2026-12
  ledgit keys generate --out /etc/ledgit/r1.pem --reconciler r1 --environment production")]
pub struct GenerateArgs {
    /// Where to write the private key (outside the repository).
    #[arg(long, value_name = "PATH")]
    out: PathBuf,

    /// The key id (default: k<year>-<month>).
    #[arg(long, value_name = "ID")]
    id: Option<String>,

    /// Also add the public key to ledgit.yaml.
    #[arg(long)]
    add: bool,

    /// A reconciler's receipt-signing key with this id, added under `reconcilers:`.
    #[arg(long, value_name = "ID", conflicts_with_all = ["id", "add"])]
    reconciler: Option<String>,

    /// An environment the reconciler may apply (repeat; default: every declared one).
    #[arg(long = "environment", value_name = "ENV", requires = "reconciler")]
    environments: Vec<String>,
}

/// List the public keys of ledgit.yaml (the work tree's).
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  ledgit keys list\n  ledgit keys jwks > jwks.json")]
pub struct ListArgs {
    /// Output format (jwks always prints JSON).
    #[arg(long, value_enum, default_value_t = TextOrJson::Text)]
    format: TextOrJson,
}

pub fn run(ctx: &Context, args: Args) -> CliResult {
    match args.command {
        Command::Generate(a) => generate(ctx, a),
        Command::List(a) => list(ctx, a.format),
        Command::Jwks(_) => jwks(ctx),
    }
}

fn work_tree_config(ctx: &Context) -> Result<(PathBuf, Config), CliError> {
    let repo = ctx.repo()?;
    let root = repo.require_workdir()?;
    let config = Config::load(&root)?;
    Ok((root, config))
}

fn generate(ctx: &Context, args: GenerateArgs) -> CliResult {
    if args.reconciler.is_some() {
        return generate_reconciler(ctx, args);
    }
    let out_path = ctx.dir.join(&args.out);
    let repo = ctx.repo().ok();
    let root = repo
        .as_ref()
        .and_then(|r| r.workdir().map(Path::to_path_buf));
    if let Some(root) = &root
        && inside(&out_path, root)
    {
        return Err(CliError::new(
            format!(
                "{} is inside the repository's work tree",
                out_path.display()
            ),
            "write private keys outside the repository, for example under ~/.config/ledgit/",
        ));
    }
    if args.add && root.is_none() {
        return Err(CliError::new(
            "--add needs a deployments repository",
            "run it inside the repository, or pass -C DIR",
        ));
    }
    let config = match (&root, args.add) {
        (Some(root), true) => Some(Config::load(root)?),
        _ => None,
    };
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| default_id(config.as_ref()));
    if let Some(c) = &config
        && c.key(&id).is_some()
    {
        return Err(CliError::new(
            format!("ledgit.yaml already lists a key `{id}`"),
            "pass another --id",
        ));
    }
    let (key, der) = SigningKey::generate()?;
    write_private(&out_path, token::pem(&der).as_bytes())?;
    let entry = format!(
        "  - id: {id}\n    algorithm: Ed25519\n    public_key: {}\n",
        key.public_encoded()
    );
    eprintln!(
        "wrote the private key to {} (mode 0600); keep it secret and outside the repository",
        out_path.display()
    );
    let mut out = render::stdout();
    if let (Some(root), true) = (&root, args.add) {
        let path = root.join(config::FILE_NAME);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| CliError::new(format!("{}: {e}", path.display()), "check the file"))?;
        let new = config::add_key(&text, &id, &key.public_encoded()).map_err(|e| {
            CliError::new(
                format!("cannot add the key to ledgit.yaml: {e}"),
                format!("add this entry under keys:\n{entry}"),
            )
        })?;
        ledgit::support::fsutil::write_atomic(&path, new.as_bytes())?;
        writeln!(
            out,
            "{GREEN}Added{GREEN:#} key {BOLD}{id}{BOLD:#} to ledgit.yaml; commit it so that verifiers see it"
        )?;
    } else {
        writeln!(out, "# Add under `keys:` in ledgit.yaml:\n{entry}")?;
    }
    Ok(Outcome::Clean)
}

/// `keys generate --reconciler ID`: the key, and its entry under `reconcilers:`.
fn generate_reconciler(ctx: &Context, args: GenerateArgs) -> CliResult {
    let id = args.reconciler.unwrap_or_default();
    let out_path = ctx.dir.join(&args.out);
    let (root, config) = work_tree_config(ctx)?;
    if inside(&out_path, &root) {
        return Err(CliError::new(
            format!(
                "{} is inside the repository's work tree",
                out_path.display()
            ),
            "write private keys outside the repository, for example under /etc/ledgit/",
        ));
    }
    let environments: Vec<String> = if args.environments.is_empty() {
        config.environments.iter().map(|e| e.name.clone()).collect()
    } else {
        for e in &args.environments {
            if config.environment(e).is_none() {
                return Err(config.unknown_environment(e).into());
            }
        }
        args.environments.clone()
    };
    if config.reconciler(&id).is_some() {
        return Err(CliError::new(
            format!("ledgit.yaml already lists a reconciler `{id}`"),
            "pass another id, or remove the old entry first (its receipts then stop verifying)",
        ));
    }
    let path = root.join(config::FILE_NAME);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::new(format!("{}: {e}", path.display()), "check the file"))?;
    let (key, der) = SigningKey::generate()?;
    let new =
        config::add_reconciler(&text, &id, &key.public_encoded(), &environments).map_err(|e| {
            CliError::new(
                format!("cannot add the reconciler to ledgit.yaml: {e}"),
                "fix ledgit.yaml so that it reads, then run the command again",
            )
        })?;
    write_private(&out_path, token::pem(&der).as_bytes())?;
    ledgit::support::fsutil::write_atomic(&path, new.as_bytes())?;
    eprintln!(
        "wrote the private key to {} (mode 0600); keep it secret and outside the repository",
        out_path.display()
    );
    writeln!(
        render::stdout(),
        "{GREEN}Added{GREEN:#} reconciler {BOLD}{id}{BOLD:#} to ledgit.yaml (may apply: {}); commit it, then run `ledgit reconcile --signing-key {}`",
        environments.join(", "),
        args.out.display()
    )?;
    Ok(Outcome::Clean)
}

/// Whether `path` (which may not exist yet) lies inside `root`.
fn inside(path: &Path, root: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let parent = path.parent().map(canonical).unwrap_or_default();
    parent.starts_with(canonical(root))
}

fn default_id(config: Option<&Config>) -> String {
    let base = format!("k{}", chrono::Utc::now().format("%Y-%m"));
    let taken = |id: &str| config.is_some_and(|c| c.key(id).is_some());
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| !taken(id))
        .unwrap_or(base)
}

/// Writes the private key: mode 0600 from the start, never over an existing file.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::new(format!("{}: {e}", dir.display()), "pick a writable folder"))?;
    // tempfile creates files readable by the owner only (0600).
    let mut tmp = tempfile::Builder::new()
        .prefix(".ledgit-key-")
        .tempfile_in(dir)
        .map_err(|e| CliError::new(format!("{}: {e}", dir.display()), "pick a writable folder"))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist_noclobber(path).map_err(|e| {
        CliError::new(
            format!("{}: {}", path.display(), e.error),
            "ledgit never overwrites a key file; pick another --out",
        )
    })?;
    Ok(())
}

fn list(ctx: &Context, format: TextOrJson) -> CliResult {
    let (_, config) = work_tree_config(ctx)?;
    let mut out = render::stdout();
    if format == TextOrJson::Json {
        let keys: Vec<serde_json::Value> = config
            .keys
            .iter()
            .map(|k| serde_json::json!({"id": k.id, "algorithm": k.algorithm, "public_key": k.encoded}))
            .collect();
        render::json(&mut out, &keys)?;
        return Ok(Outcome::Clean);
    }
    if config.keys.is_empty() {
        writeln!(
            out,
            "no keys in ledgit.yaml (add one with `ledgit keys generate --out PATH --add`)"
        )?;
    }
    for k in &config.keys {
        writeln!(
            out,
            "{BOLD}{}{BOLD:#}  {}  {}",
            k.id, k.algorithm, k.encoded
        )?;
    }
    if !config.reconcilers.is_empty() {
        writeln!(out, "\nreconcilers (sign apply receipts):")?;
    }
    for r in &config.reconcilers {
        writeln!(
            out,
            "{BOLD}{}{BOLD:#}  {}  {}  may apply: {}",
            r.key.id,
            r.key.algorithm,
            r.key.encoded,
            r.environments.join(", ")
        )?;
    }
    Ok(Outcome::Clean)
}

fn jwks(ctx: &Context) -> CliResult {
    let (_, config) = work_tree_config(ctx)?;
    render::json(&mut render::plain_stdout(), &ledgit::token::jwks(&config))?;
    Ok(Outcome::Clean)
}
