//! Reading every receipt in the notes and deciding whether it holds. A receipt is valid when it
//! is a DSSE envelope over an in-toto statement with ledgit's apply predicate, its signature
//! verifies with the key `ledgit.yaml` lists under `reconcilers:` for its keyid **at the commit
//! the receipt is attached to**, that reconciler may apply the environment, the statement names
//! that same commit, and the record it names is there with the digest and version it claims (a
//! removal's record is gone). Anything else is a coded finding pointing at the note's line.

use std::collections::HashMap;
use std::path::Path;

use git2::{Oid, Repository};

use crate::error::{Error, Result};
use crate::finding::{Code, Finding};
use crate::model::config::Config;
use crate::receipt::envelope::Envelope;
use crate::receipt::notes;
use crate::receipt::statement::Statement;

/// One receipt as found in a note, with the verdict on it.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The commit the note is attached to.
    pub commit: Oid,
    /// Its line in the note (1-based).
    pub line: u32,
    /// The key id its signature names (empty when it does not read).
    pub keyid: String,
    /// What it claims, when the envelope reads.
    pub claim: Option<Claim>,
    /// The applied time in seconds (0 when the statement does not read).
    pub applied_time: i64,
    /// Why it does not hold; none when it is valid.
    pub problem: Option<Problem>,
}

/// What a receipt claims was applied, as its readers need it (the whole statement is in the
/// note).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Claim {
    pub agent: String,
    pub environment: String,
    /// `deploy`, `update` or `remove`.
    pub action: String,
    pub version: Option<String>,
    pub reconciler: String,
}

impl Claim {
    pub fn of(s: &Statement) -> Claim {
        let p = &s.predicate;
        Claim {
            agent: p.agent.clone(),
            environment: p.environment.clone(),
            action: p.action.clone(),
            version: p.version.clone(),
            reconciler: p.reconciler.clone(),
        }
    }

    /// Whether it claims a removal.
    pub fn is_removal(&self) -> bool {
        self.action == "remove"
    }
}

/// Why a receipt does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: Code,
    pub message: String,
}

impl Receipt {
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }

    /// The finding of an invalid receipt: at `refs/notes/ledgit/applied:<commit>`, its line.
    pub fn finding(&self) -> Option<Finding> {
        let p = self.problem.as_ref()?;
        Some(
            Finding::new(
                p.code,
                &format!("{}:{}", notes::NOTES_REF, self.commit),
                self.line,
                1,
                p.message.clone(),
            )
            .hint(hint(p.code)),
        )
    }
}

fn hint(code: Code) -> &'static str {
    match code {
        Code::ReceiptMalformed | Code::ReceiptSignature => {
            "the note was altered after it was signed: compare it with the reconciler's journal (`ledgit journal`) and restore it from another clone"
        }
        Code::ReceiptUnknownKey => {
            "only reconcilers listed under `reconcilers:` in ledgit.yaml at that commit sign valid receipts; was the key removed, or is this a forgery?"
        }
        Code::ReceiptEnvironment => {
            "add the environment to the reconciler's `environments:` if it may apply it, or find out why it applied it"
        }
        Code::ReceiptMoved => {
            "a receipt is valid only on the commit it names: it was copied from another commit"
        }
        Code::ReceiptUndeclared => {
            "the receipt claims a version or content the record did not declare at that commit"
        }
        Code::ReceiptOffBranch => {
            "a reconciler applies commits of the tracked branch only: a receipt elsewhere, checked with the keys of a commit nobody merged, proves nothing"
        }
        _ => "",
    }
}

fn problem(code: Code, message: String) -> Option<Problem> {
    Some(Problem { code, message })
}

/// Each commit of `history`'s chain, with its position on it.
pub fn chain_positions(history: &crate::git::history::History) -> HashMap<Oid, u32> {
    history
        .chain()
        .iter()
        .enumerate()
        .map(|(i, c)| (*c, i as u32))
        .collect()
}

/// A pair's declarations: (chain position, version from there on; none once removed).
type Declarations = Vec<(u32, Option<String>)>;

/// What the history says each pair declared along the chain: the version check of a receipt
/// on a commit of the chain is a lookup here, not a walk down the commit's trees.
pub struct Declared {
    positions: HashMap<Oid, u32>,
    /// Per (agent, environment): (chain position, version declared from there on; none once
    /// removed), in chain order.
    pairs: HashMap<(String, String), Declarations>,
}

impl Declared {
    pub fn new(history: &crate::git::history::History) -> Declared {
        use crate::git::history::Action;
        let positions = chain_positions(history);
        let mut pairs: HashMap<(String, String), Declarations> = HashMap::new();
        for e in history.events() {
            let version = match e.action {
                Action::Moved => continue,
                Action::Removed => None,
                _ => history.opt(e.version).map(str::to_string),
            };
            pairs
                .entry((
                    history.str(e.agent).to_string(),
                    history.str(e.environment).to_string(),
                ))
                .or_default()
                .push((history.commit_of(e).pos, version));
        }
        Declared { positions, pairs }
    }

    /// Whether `commit` is on the tracked branch's chain.
    pub fn on_chain(&self, commit: Oid) -> bool {
        self.positions.contains_key(&commit)
    }

    /// The version the pair declared at `commit` (`Some(None)`: no record there); `None` when
    /// the commit is not on the chain.
    fn at(&self, commit: Oid, agent: &str, environment: &str) -> Option<Option<&str>> {
        let pos = *self.positions.get(&commit)?;
        let Some(list) = self
            .pairs
            .get(&(agent.to_string(), environment.to_string()))
        else {
            return Some(None);
        };
        let n = list.partition_point(|(p, _)| *p <= pos);
        Some(n.checked_sub(1).and_then(|i| list[i].1.as_deref()))
    }
}

/// What a worker keeps between receipts: configs by blob, record identities by blob.
struct Checker<'r> {
    repo: &'r Repository,
    declared: Option<&'r Declared>,
    configs: HashMap<Oid, Option<Config>>,
    records: HashMap<Oid, Option<crate::model::record::Identity>>,
}

impl<'r> Checker<'r> {
    fn new(repo: &'r Repository, declared: Option<&'r Declared>) -> Self {
        Checker {
            repo,
            declared,
            configs: HashMap::new(),
            records: HashMap::new(),
        }
    }

    /// The config at `commit` (none when it has none that reads).
    fn config(&mut self, tree: &git2::Tree<'_>) -> Option<&Config> {
        let id = tree.get_name(crate::model::config::FILE_NAME)?.id();
        let repo = self.repo;
        self.configs
            .entry(id)
            .or_insert_with(|| {
                let blob = repo.find_blob(id).ok()?;
                Config::from_bytes(Path::new(crate::model::config::FILE_NAME), blob.content()).ok()
            })
            .as_ref()
    }

    fn check(&mut self, commit: Oid, line: u32, text: &str) -> (Receipt, Option<Statement>) {
        let mut r = Receipt {
            commit,
            line,
            keyid: String::new(),
            claim: None,
            applied_time: 0,
            problem: None,
        };
        let envelope = match Envelope::parse(text) {
            Ok(e) => e,
            Err(m) => {
                r.problem = problem(Code::ReceiptMalformed, m.to_string());
                return (r, None);
            }
        };
        r.keyid = envelope.keyids().next().unwrap_or_default().to_string();
        let statement = match envelope.statement() {
            Ok(s) => s,
            Err(m) => {
                r.problem = problem(Code::ReceiptMalformed, m.to_string());
                return (r, None);
            }
        };
        r.applied_time = chrono::DateTime::parse_from_rfc3339(&statement.predicate.applied_at)
            .map(|t| t.timestamp())
            .unwrap_or(0);
        r.problem = self.judge(commit, &envelope, &statement);
        r.claim = Some(Claim::of(&statement));
        (r, Some(statement))
    }

    fn judge(&mut self, commit: Oid, envelope: &Envelope, s: &Statement) -> Option<Problem> {
        let p = &s.predicate;
        let short = crate::git::repo::short(commit);
        // With the branch's history, only its commits count: a side commit's `ledgit.yaml`
        // may list any key under any name.
        if let Some(d) = self.declared
            && !d.on_chain(commit)
        {
            return problem(Code::ReceiptOffBranch, off_branch(commit));
        }
        let Ok(tree) = self.repo.find_commit(commit).and_then(|c| c.tree()) else {
            return problem(
                Code::ReceiptMoved,
                format!(
                    "the note is attached to {commit}, which is not a commit of this repository"
                ),
            );
        };
        let keyids: Vec<String> = envelope.keyids().map(str::to_string).collect();
        let Some(config) = self.config(&tree) else {
            return problem(
                Code::ReceiptUnknownKey,
                format!("commit {short} has no ledgit.yaml that reads, so no reconciler key"),
            );
        };
        let Some(reconciler) = keyids.iter().find_map(|k| config.reconciler(k)) else {
            return problem(
                Code::ReceiptUnknownKey,
                format!(
                    "signed by `{}`, which ledgit.yaml does not list under `reconcilers:` at {short}",
                    keyids.join("`, `")
                ),
            );
        };
        if !envelope.verified_by(reconciler.id(), &reconciler.key.bytes) {
            return problem(
                Code::ReceiptSignature,
                format!(
                    "the signature does not verify with reconciler `{}`'s key: the receipt was altered after signing, or signed by another key",
                    reconciler.id()
                ),
            );
        }
        if !reconciler.may_apply(&p.environment) {
            return problem(
                Code::ReceiptEnvironment,
                format!(
                    "reconciler `{}` may apply {}, not {}",
                    reconciler.id(),
                    reconciler.environments.join(", "),
                    p.environment
                ),
            );
        }
        if p.commit != commit.to_string() {
            return problem(
                Code::ReceiptMoved,
                format!(
                    "the receipt is for commit {}, but it is attached to {short}",
                    p.commit.get(..12).unwrap_or(&p.commit)
                ),
            );
        }
        if p.reconciler != reconciler.id() {
            return problem(
                Code::ReceiptUnknownKey,
                format!(
                    "the receipt names reconciler `{}` but is signed by `{}`",
                    p.reconciler,
                    reconciler.id()
                ),
            );
        }
        let subject = s.record()?;
        if let Some(declared) = self
            .declared
            .and_then(|d| d.at(commit, &p.agent, &p.environment))
        {
            // On the chain, the history says what the record declared there.
            let claimed = if p.action == "remove" {
                None
            } else {
                p.version.as_deref()
            };
            return (declared != claimed).then(|| Problem {
                code: Code::ReceiptUndeclared,
                message: format!(
                    "receipt for {} {} in {}, but at {short} the record {}",
                    p.agent,
                    claimed.unwrap_or("(removed)"),
                    p.environment,
                    match declared {
                        Some(v) => format!("declares {v}"),
                        None => "is absent".to_string(),
                    }
                ),
            });
        }
        let entry = tree.get_path(Path::new(&subject.name)).ok();
        let what = format!(
            "{} {} in {}",
            p.agent,
            p.version.as_deref().unwrap_or("(removed)"),
            p.environment
        );
        if p.action == "remove" {
            return entry.is_some().then(|| Problem {
                code: Code::ReceiptUndeclared,
                message: format!(
                    "the receipt says {} was removed, but {short} still has {}",
                    p.agent, subject.name
                ),
            });
        }
        let Some(entry) = entry else {
            return problem(
                Code::ReceiptUndeclared,
                format!(
                    "receipt for {what}, but {short} has no record at {}",
                    subject.name
                ),
            );
        };
        if subject.digest.get("gitBlob").map(String::as_str) != Some(&entry.id().to_string()) {
            return problem(
                Code::ReceiptUndeclared,
                format!(
                    "receipt for {what}: the record at {short} is not the content it names ({})",
                    subject.name
                ),
            );
        }
        let repo = self.repo;
        let identity = self
            .records
            .entry(entry.id())
            .or_insert_with(|| {
                let blob = repo.find_blob(entry.id()).ok()?;
                crate::model::record::identity(blob.content())
            })
            .clone();
        match identity {
            Some(i)
                if i.agent == p.agent
                    && i.environment == p.environment
                    && Some(&i.version) == p.version.as_ref() =>
            {
                None
            }
            Some(i) => problem(
                Code::ReceiptUndeclared,
                format!(
                    "receipt for {what}, but at {short} the record declares {} {} in {}",
                    i.agent, i.version, i.environment
                ),
            ),
            None => problem(
                Code::ReceiptUndeclared,
                format!("receipt for {what}, but the record at {short} does not read"),
            ),
        }
    }
}

/// The message of a receipt on `commit`, off the tracked branch.
pub fn off_branch(commit: Oid) -> String {
    format!(
        "the receipt is attached to {}, which is not a commit of the tracked branch",
        crate::git::repo::short(commit)
    )
}

/// Receipts in applied order (then by commit and line).
pub fn sort(receipts: &mut [Receipt]) {
    receipts.sort_by_key(|r| (r.applied_time, r.commit, r.line));
}

/// The receipts of these notes ((annotated commit, note blob) pairs), checked, in no order.
pub fn notes_checked(
    repo: &Repository,
    notes: &[(Oid, Oid)],
    declared: Option<&Declared>,
) -> Result<Vec<Receipt>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(notes.len().max(1));
    let path = repo.path().to_path_buf();
    let chunk = notes.len().div_ceil(workers).max(1);
    let results: Vec<Result<Vec<Receipt>>> = std::thread::scope(|s| {
        let handles: Vec<_> = notes
            .chunks(chunk)
            .map(|part| {
                let path = path.clone();
                s.spawn(move || -> Result<Vec<Receipt>> {
                    let repo = Repository::open(&path)
                        .map_err(|e| Error::git("opening the repository", e))?;
                    let mut checker = Checker::new(&repo, declared);
                    let mut out = Vec::new();
                    for &(commit, blob) in part {
                        // The same line twice in a note is one receipt.
                        let mut seen = std::collections::HashSet::new();
                        for (n, line) in notes::numbered_lines(&repo, blob)? {
                            if seen.insert(line.clone()) {
                                out.push(checker.check(commit, n, &line).0);
                            }
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Internal {
                        what: "a receipt-checking thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut out = Vec::new();
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// The receipts of `commit` only, checked, each with the statement it carries.
pub fn on_commit(repo: &Repository, commit: Oid) -> Result<Vec<(Receipt, Option<Statement>)>> {
    let mut checker = Checker::new(repo, None);
    let mut seen = std::collections::HashSet::new();
    Ok(notes::numbered_lines_on(repo, commit)?
        .into_iter()
        .filter(|(_, l)| seen.insert(l.clone()))
        .map(|(n, l)| checker.check(commit, n, &l))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_receipt_code_says_what_to_do() {
        let codes = [
            Code::ReceiptMalformed,
            Code::ReceiptSignature,
            Code::ReceiptUnknownKey,
            Code::ReceiptEnvironment,
            Code::ReceiptMoved,
            Code::ReceiptUndeclared,
        ];
        let hints: std::collections::HashSet<&str> = codes.iter().map(|c| hint(*c)).collect();
        assert!(hints.iter().all(|h| !h.is_empty()));
        // Malformed and altered share one; the others each have their own.
        assert_eq!(hints.len(), codes.len() - 1);
    }

    #[test]
    fn receipts_sort_in_applied_order_then_by_commit_and_line() {
        let commit = |b: &[u8]| Oid::hash_object(git2::ObjectType::Blob, b).unwrap();
        let r = |t: i64, c: Oid, line: u32| Receipt {
            commit: c,
            line,
            keyid: String::new(),
            claim: None,
            applied_time: t,
            problem: None,
        };
        let (a, b) = {
            let (x, y) = (commit(b"x"), commit(b"y"));
            if x < y { (x, y) } else { (y, x) }
        };
        let mut list = vec![r(2, a, 1), r(1, b, 2), r(1, b, 1), r(1, a, 9)];
        sort(&mut list);
        let got: Vec<(i64, Oid, u32)> = list
            .iter()
            .map(|r| (r.applied_time, r.commit, r.line))
            .collect();
        assert_eq!(got, [(1, a, 9), (1, b, 1), (1, b, 2), (2, a, 1)]);
    }

    /// The version a pair declared at each commit of the chain, as the history says it.
    #[test]
    fn declared_versions_follow_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let sig = git2::Signature::new("t", "t@t", &git2::Time::new(1_700_000_000, 0)).unwrap();
        let mut parent: Option<Oid> = None;
        let mut commits = Vec::new();
        for content in [Some("1.0.0"), Some("2.0.0"), None] {
            let mut root = repo.treebuilder(None).unwrap();
            let config = repo
                .blob(b"apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: e\n")
                .unwrap();
            root.insert("ledgit.yaml", config, 0o100644).unwrap();
            if let Some(v) = content {
                let record = format!(
                    "apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: a\nenvironment: e\nversion: {v}\n"
                );
                let blob = repo.blob(record.as_bytes()).unwrap();
                let mut agent = repo.treebuilder(None).unwrap();
                agent.insert("e.yaml", blob, 0o100644).unwrap();
                let agent = agent.write().unwrap();
                let mut folder = repo.treebuilder(None).unwrap();
                folder.insert("a", agent, 0o040000).unwrap();
                root.insert("deployments", folder.write().unwrap(), 0o040000)
                    .unwrap();
            }
            let tree = repo.find_tree(root.write().unwrap()).unwrap();
            let parents: Vec<git2::Commit> = parent
                .iter()
                .map(|p| repo.find_commit(*p).unwrap())
                .collect();
            let parents: Vec<&git2::Commit> = parents.iter().collect();
            let c = repo
                .commit(Some("HEAD"), &sig, &sig, "c", &tree, &parents)
                .unwrap();
            commits.push(c);
            parent = Some(c);
        }
        let history =
            crate::git::history::build(&repo, commits[2], "deployments", &mut |_| {}).unwrap();
        let d = Declared::new(&history);
        assert_eq!(d.at(commits[0], "a", "e"), Some(Some("1.0.0")));
        assert_eq!(d.at(commits[1], "a", "e"), Some(Some("2.0.0")));
        assert_eq!(d.at(commits[2], "a", "e"), Some(None));
        assert_eq!(d.at(commits[1], "b", "e"), Some(None));
        let elsewhere = Oid::hash_object(git2::ObjectType::Blob, b"not a commit").unwrap();
        assert_eq!(d.at(elsewhere, "a", "e"), None);
    }

    /// A receipt signed by a listed key is judged by what the commit's record declares, off
    /// the chain (its tree) and on it (the history) alike.
    #[test]
    fn a_receipt_holds_only_for_what_the_record_declares() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let (key, _) = crate::token::SigningKey::generate().unwrap();
        let config = format!(
            "apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: e\n  - name: f\nreconcilers:\n  - id: r1\n    algorithm: Ed25519\n    public_key: {}\n    environments: [e, f]\n",
            key.public_encoded()
        );
        let record = "apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: a\nenvironment: e\nversion: 1.0.0\n";
        let sig = git2::Signature::new("t", "t@t", &git2::Time::new(1_700_000_000, 0)).unwrap();
        let blob = repo.blob(record.as_bytes()).unwrap();
        let mut agent = repo.treebuilder(None).unwrap();
        agent.insert("e.yaml", blob, 0o100644).unwrap();
        let agent = agent.write().unwrap();
        let mut folder = repo.treebuilder(None).unwrap();
        folder.insert("a", agent, 0o040000).unwrap();
        let mut root = repo.treebuilder(None).unwrap();
        root.insert("deployments", folder.write().unwrap(), 0o040000)
            .unwrap();
        root.insert(
            "ledgit.yaml",
            repo.blob(config.as_bytes()).unwrap(),
            0o100644,
        )
        .unwrap();
        let tree = repo.find_tree(root.write().unwrap()).unwrap();
        let commit = repo
            .commit(Some("HEAD"), &sig, &sig, "c", &tree, &[])
            .unwrap();
        let history =
            crate::git::history::build(&repo, commit, "deployments", &mut |_| {}).unwrap();
        let declared = Declared::new(&history);
        let line = |agent: &str, env: &str, version: &str| {
            let mut apply = crate::receipt::statement::tests::apply();
            apply.agent = agent.into();
            apply.environment = env.into();
            apply.version = Some(version.into());
            apply.commit = commit.to_string();
            let s = Statement::new(
                apply,
                "deployments/a/e.yaml",
                Some((record.as_bytes(), blob)),
            );
            crate::receipt::Envelope::sign(&s, &key, "r1").to_line()
        };
        let cases = [
            (("a", "e", "1.0.0"), None),
            (("a", "e", "2.0.0"), Some(Code::ReceiptUndeclared)),
            (("b", "e", "1.0.0"), Some(Code::ReceiptUndeclared)),
            (("a", "f", "1.0.0"), Some(Code::ReceiptUndeclared)),
        ];
        for chain in [None, Some(&declared)] {
            let mut checker = Checker::new(&repo, chain);
            for ((agent, env, version), want) in cases {
                let (r, statement) = checker.check(commit, 1, &line(agent, env, version));
                assert_eq!(
                    r.problem.map(|p| p.code),
                    want,
                    "{agent} {env} {version} {}",
                    chain.is_some()
                );
                assert!(statement.is_some());
                let c = r.claim.unwrap();
                assert_eq!((c.agent.as_str(), c.is_removal()), (agent, false));
            }
        }
    }
}
