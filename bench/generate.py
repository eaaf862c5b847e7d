#!/usr/bin/env python3
"""Deterministic benchmark repositories for ledgit.

  generate.py validate DIR   20,000 records (10,000 agents in two environments), one commit
  generate.py history DIR    ~2,000 records and 100,000 first-parent commits, two thirds of
                             them merges of one-commit pull request branches
  generate.py fleet DIR N    N agents in three environments, one commit (the replicas' bench)
  generate.py team DIR [N]   2,000 agents in three environments and N (20,000) first-parent
                             commits: the web page's repository (drift, merges, long histories)
  generate.py receipts DIR   the history repository with reconciler r1 in ledgit.yaml from the
                             start, and a signed apply receipt for every event (git notes under
                             refs/notes/ledgit/applied, 30 s after each merge)

Both are built with `git fast-import`, so generation takes seconds, not hours.
"""
import os
import random
import subprocess
import sys

CONFIG = b"""apiVersion: ledgit/v1
kind: Config
environments:
  - name: development
  - name: staging
    promote_from: development
  - name: production
    promote_from: staging
    soak: 24h
"""


def record(agent, env, version):
    return (
        f"apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: {agent}\n"
        f"environment: {env}\nversion: {version}\nannotations:\n  owner: team-{agent[-1]}\n"
    ).encode()


def git_init(d):
    env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    subprocess.run(["git", "init", "-q", "-b", "main", d], check=True, env=env)
    return env


def validate_repo(d):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "ledgit.yaml"), "wb") as f:
        f.write(CONFIG)
    for i in range(10_000):
        agent = f"agent-{i:05d}"
        folder = os.path.join(d, "deployments", agent)
        os.makedirs(folder, exist_ok=True)
        for env in ("staging", "production"):
            with open(os.path.join(folder, env + ".yaml"), "wb") as f:
                f.write(record(agent, env, f"1.{i % 17}.{i % 5}"))


class Stream:
    def __init__(self, out):
        self.out = out
        self.mark = 0

    def blob(self, data):
        self.mark += 1
        self.out.write(b"blob\nmark :%d\ndata %d\n%s\n" % (self.mark, len(data), data))
        return self.mark

    def commit(self, ref, t, message, parents, files):
        self.mark += 1
        msg = message.encode()
        w = self.out.write
        w(b"commit %s\nmark :%d\n" % (ref.encode(), self.mark))
        w(b"author Ada Lovelace <ada@example.com> %d +0000\n" % (t - 3600))
        w(b"committer Ada Lovelace <ada@example.com> %d +0000\n" % t)
        w(b"data %d\n%s\n" % (len(msg), msg))
        for i, p in enumerate(parents):
            w(b"%s :%d\n" % (b"from" if i == 0 else b"merge", p))
        for path, mark in files:
            w(b"M 100644 :%d %s\n" % (mark, path.encode()))
        return self.mark


def fleet_repo(d, agents):
    env = git_init(d)
    with open(os.path.join(d, "ledgit.yaml"), "wb") as f:
        f.write(CONFIG)
    for i in range(agents):
        agent = f"agent-{i:05d}"
        folder = os.path.join(d, "deployments", agent)
        os.makedirs(folder, exist_ok=True)
        for e in ("development", "staging", "production"):
            with open(os.path.join(folder, e + ".yaml"), "wb") as f:
                f.write(record(agent, e, "1.0.0"))
    env.update(GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com")
    subprocess.run(["git", "-C", d, "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", d, "commit", "-q", "-m", "Fleet"], check=True, env=env)


def history_repo(d, commits=100_000, agents=700, config=CONFIG, events=None):
    """`events`, when given, collects (commit mark, time, path, content, action, version,
    previous version) of every event on the first-parent chain."""
    env = git_init(d)
    envs = ("development", "staging", "production")
    rng = random.Random(42)
    t = 1_600_000_000
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"], cwd=d, stdin=subprocess.PIPE, env=env
    )
    s = Stream(proc.stdin)
    files = [("ledgit.yaml", s.blob(config))]
    versions = {}
    initial = []
    for a in range(agents):
        for e in envs:
            versions[(a, e)] = 0
            path, content = f"deployments/agent-{a:04d}/{e}.yaml", record(f"agent-{a:04d}", e, "1.0.0")
            files.append((path, s.blob(content)))
            initial.append((path, content, "deploy", "1.0.0", None))
    tip = s.commit("refs/heads/main", t, "Initial records", [], files)
    if events is not None:
        events.extend((tip, t, *i) for i in initial)
    for n in range(1, commits):
        t += 600
        a, e = rng.randrange(agents), rng.choice(envs)
        versions[(a, e)] += 1
        path = f"deployments/agent-{a:04d}/{e}.yaml"
        version = f"1.{versions[(a, e)]}.0"
        content = record(f"agent-{a:04d}", e, version)
        blob = s.blob(content)
        if n % 3:  # two thirds: a one-commit pull request branch, merged with a merge commit
            branch = s.commit(f"refs/heads/pr/{n}", t - 300, f"Bump agent-{a:04d} in {e}", [tip], [(path, blob)])
            tip = s.commit("refs/heads/main", t, f"Merge pull request #{n} from team/pr-{n}", [tip, branch], [(path, blob)])
        else:
            tip = s.commit("refs/heads/main", t, f"Bump agent-{a:04d} in {e}", [tip], [(path, blob)])
        if events is not None:
            events.append((tip, t, path, content, "update", version, f"1.{versions[(a, e)] - 1}.0"))
    proc.stdin.write(b"done\n")
    proc.stdin.close()
    if proc.wait() != 0:
        sys.exit("git fast-import failed")
    if events is not None:
        # The commits' ids, for the receipts' second import.
        marks = subprocess.run(["git", "-C", d, "rev-list", "--first-parent", "--reverse", "main"],
                               check=True, env=env, capture_output=True, text=True).stdout.split()
        on_chain = sorted({e[0] for e in events})
        ids = dict(zip(on_chain, marks))
        events[:] = [(ids[e[0]], *e[1:]) for e in events]
    # Pull request branches are merged: delete their refs, as hosting platforms do.
    subprocess.run(["git", "-C", d, "for-each-ref", "--format=delete %(refname)", "refs/heads/pr/"],
                   check=True, env=env, stdout=open(os.path.join(d, ".git", "del"), "w"))
    subprocess.run(["git", "-C", d, "update-ref", "--stdin"], check=True, env=env,
                   stdin=open(os.path.join(d, ".git", "del")))
    subprocess.run(["git", "-C", d, "checkout", "-q", "main"], check=True, env=env)
    subprocess.run(["git", "-C", d, "gc", "-q"], check=True, env=env)


# The receipts' reconciler key: a fixed seed, so the repository is the same on every machine.
RECEIPT_SEED = bytes(range(32))


def receipts_repo(d):
    """The history repository with reconciler r1 listed from the first commit and one receipt
    per event, each a DSSE envelope exactly as `ledgit reconcile --signing-key` writes it."""
    import base64
    import hashlib
    import json
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization

    key = Ed25519PrivateKey.from_private_bytes(RECEIPT_SEED)
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    b64url = base64.urlsafe_b64encode(public).rstrip(b"=").decode()
    config = CONFIG + (
        "reconcilers:\n  - id: r1\n    algorithm: Ed25519\n"
        f"    public_key: {b64url}\n    environments: [development, staging, production]\n"
    ).encode()
    events = []
    history_repo(d, config=config, events=events)
    payload_type = b"application/vnd.in-toto+json"
    notes = {}
    for commit, t, path, content, action, version, previous in events:
        agent, env = path.split("/")[1], path.split("/")[2][: -len(".yaml")]
        blob = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
        applied = t + 30
        statement = {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": path, "digest": {"gitBlob": blob, "sha256": hashlib.sha256(content).hexdigest()}}],
            "predicateType": "https://ledgit.dev/apply/v1",
            "predicate": {
                "agent": agent, "environment": env, "action": action, "version": version,
                "previous_version": previous, "generation": commit, "commit": commit,
                "applied_at": __import__("time").strftime("%Y-%m-%dT%H:%M:%SZ", __import__("time").gmtime(applied)),
                "duration_ms": 1200, "actuator": "exec: deploy.sh", "reconciler": "r1",
                "host": "bench (pid 1)", "idempotency_key": hashlib.sha256(f"{commit}{path}".encode()).hexdigest()[:32],
                "epoch": None,
            },
        }
        body = json.dumps(statement, separators=(",", ":")).encode()
        pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(body), body)
        envelope = {
            "payload": base64.b64encode(body).decode(),
            "payloadType": payload_type.decode(),
            "signatures": [{"keyid": "r1", "sig": base64.b64encode(key.sign(pae)).decode()}],
        }
        notes.setdefault(commit, []).append(json.dumps(envelope, separators=(",", ":")))
    env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    proc = subprocess.Popen(["git", "fast-import", "--quiet", "--done"], cwd=d, stdin=subprocess.PIPE, env=env)
    w = proc.stdin.write
    w(b"commit refs/notes/ledgit/applied\ncommitter ledgit <ledgit@localhost> 1700000000 +0000\ndata 0\n")
    for commit, lines in notes.items():
        text = ("\n".join(lines) + "\n").encode()
        w(b"N inline %s\ndata %d\n%s\n" % (commit.encode(), len(text), text))
    w(b"done\n")
    proc.stdin.close()
    if proc.wait() != 0:
        sys.exit("git fast-import of the receipts failed")
    subprocess.run(["git", "-C", d, "gc", "-q"], check=True, env=env)
    print(f"{len(events)} receipts on {len(notes)} commits")


if __name__ == "__main__":
    kind, d = sys.argv[1], sys.argv[2]
    if kind == "validate":
        validate_repo(d)
    elif kind == "fleet":
        fleet_repo(d, int(sys.argv[3]))
    elif kind == "receipts":
        receipts_repo(d)
    elif kind == "team":
        history_repo(d, int(sys.argv[3]) if len(sys.argv) > 3 else 20_000, agents=2_000)
    elif kind == "history":
        history_repo(d, int(sys.argv[3]) if len(sys.argv) > 3 else 100_000)
    else:
        sys.exit(__doc__)
