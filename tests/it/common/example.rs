//! The example repository (`ledgit init --example`'s history, ending at a fixed time, plus a
//! signing key listed and committed) that the in-process server tests drive `ledgit::server`
//! over. Built by the library and committed with libgit2, so it is hermetic by construction:
//! no user or system git configuration is read, and the clock is the fixture's.

use std::path::Path;
use std::sync::Arc;

use ledgit::server::{Options, Served, Shared};
use ledgit::token::{IssueOptions, SigningKey};

pub const NOW: i64 = 1_700_000_000;
pub const HOOK_SECRET: &[u8] = b"hook-secret-of-the-tests";
pub const GITLAB_TOKEN: &[u8] = b"gitlab-token-in-clear";
pub const INTROSPECTION_SECRET: &str = "gateway-secret-of-the-tests";
pub const UI_SECRET: &str = "operator-secret-of-the-tests";

/// A repository made by `ledgit init --example`, with a key listed and committed.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub key: SigningKey,
    pub branch: String,
    /// The time the example history ends at.
    pub now: i64,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::at(NOW)
    }

    /// The example history ending now: for what the page measures against the clock (soaks,
    /// expiries).
    pub fn recent() -> Fixture {
        Fixture::at(chrono::Utc::now().timestamp() - 120)
    }

    pub fn at(now: i64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        ledgit::git::init::init(dir.path(), true, now).unwrap();
        let (key, _) = SigningKey::generate().unwrap();
        let config = std::fs::read_to_string(dir.path().join("ledgit.yaml")).unwrap();
        // k1 first: the example's own key (whose private half is gone) stays listed.
        let config = config.replacen(
            "keys:\n",
            &format!(
                "keys:\n  - id: k1\n    algorithm: Ed25519\n    public_key: {}\n",
                key.public_encoded()
            ),
            1,
        );
        std::fs::write(dir.path().join("ledgit.yaml"), config).unwrap();
        let branch = ledgit::git::repo::Repo::open(dir.path())
            .unwrap()
            .current_branch()
            .unwrap();
        let f = Fixture {
            dir,
            key,
            branch,
            now,
        };
        f.commit("Add key k1", now + 60);
        f
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Commits the work tree as it is.
    pub fn commit(&self, message: &str, time: i64) {
        let repo = git2::Repository::open(self.path()).unwrap();
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.update_all(["*"], None).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig =
            git2::Signature::new("Ada", "ada@example.com", &git2::Time::new(time, 0)).unwrap();
        let parent = repo.head().unwrap().peel_to_commit().unwrap();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &[&parent])
            .unwrap();
    }

    pub fn write_record(&self, agent: &str, env: &str, version: &str) {
        let text = ledgit::git::init::record_text(agent, env, version, "team-support", None);
        self.write(&format!("deployments/{agent}/{env}.yaml"), &text);
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn tracked(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    pub fn options(&self) -> Options {
        Options {
            repo: self.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().unwrap(),
            tracked: self.tracked(),
            branch: self.branch.clone(),
            fetch: None,
            interval: std::time::Duration::from_secs(60),
            audience: None,
            public_url: "http://ledgit.example".into(),
            hook_secret: Some(HOOK_SECRET.to_vec()),
            gitlab_token: Some(GITLAB_TOKEN.to_vec()),
            introspection_client_id: None,
            introspection_secret: Some(INTROSPECTION_SECRET.as_bytes().to_vec()),
            quiet: true,
            proposals: true,
            ui_secret: Some(UI_SECRET.as_bytes().to_vec()),
            oidc: None,
            auth_proxy: None,
            trusted_proxies: Vec::new(),
            max_connections: ledgit::server::MAX_CONNECTIONS,
            push: None,
            pull_request_url: None,
            state: None,
            log: Default::default(),
        }
    }

    /// A server's shared state with the tip loaded.
    pub fn shared_with(&self, options: Options) -> Arc<Shared> {
        let audience = options.audience.clone();
        let shared = Arc::new(Shared::new(options));
        self.reload(&shared, audience.as_deref());
        shared
    }

    pub fn shared(&self) -> Arc<Shared> {
        self.shared_with(self.options())
    }

    pub fn reload(&self, shared: &Shared, audience: Option<&str>) {
        let repo = ledgit::git::repo::Repo::open(self.path()).unwrap();
        let tip = repo.resolve_tracked(&self.tracked()).unwrap();
        let time = repo.git.find_commit(tip).unwrap().time().seconds();
        let served = Served::load(&repo, tip, time, audience).unwrap();
        shared.served.store(Some(Arc::new(served)));
    }

    /// A token for support-bot in production, without expiry or audience.
    pub fn production_token(&self, shared: &Shared) -> String {
        self.issue(
            shared,
            "support-bot",
            "production",
            &IssueOptions::default(),
        )
    }

    pub fn issue(&self, shared: &Shared, agent: &str, env: &str, options: &IssueOptions) -> String {
        let served = shared.served.load_full().unwrap();
        let record = served.deployment(agent, env).unwrap().clone();
        let now = chrono::Utc::now().timestamp();
        ledgit::token::issue(&self.key, "k1", &record, now, options)
            .unwrap()
            .0
    }
}
