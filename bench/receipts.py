#!/usr/bin/env python3
"""Signed apply receipts: what they cost to write and to read.

  receipts.py LEDGIT RECEIPTS_REPO WORKDIR

1. Writing: 30 one-action passes of `reconcile --exec true`, with a signing key and without, in
   turn on the same kind of repository: the median pass and the difference (sign, journal the
   receipt, add the note, mark it written), beside the actuator's own time.
2. Reading, on the 100,000-commit repository with a receipt for every event (`generate.py
   receipts`): `history --applied` beside plain `history` (both cold: no index, no receipts
   cache); with the history index but no receipts cache; and warm. `audit --at T` the same way.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ledgit, source, work = sys.argv[1], sys.argv[2], sys.argv[3]
env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1", NO_COLOR="1",
           GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com",
           GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com")


def timed(*args, cwd):
    t = time.perf_counter()
    r = subprocess.run([ledgit, "-C", cwd, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode not in (0, 1):
        sys.exit(f"ledgit {' '.join(args)} failed: {r.stderr}")
    return (time.perf_counter() - t) * 1000


# 1. Writing.
small = os.path.join(work, "receipts-write")
shutil.rmtree(small, ignore_errors=True)
os.makedirs(small)
git = lambda *a: subprocess.run(["git", "-C", small, *a], check=True, env=env, capture_output=True)
git("init", "-q", "-b", "main")
key = os.path.join(work, "receipts-r1.pem")
if os.path.exists(key):
    os.remove(key)
with open(os.path.join(small, "ledgit.yaml"), "w") as f:
    f.write("apiVersion: ledgit/v1\nkind: Config\nenvironments:\n  - name: development\n")
subprocess.run([ledgit, "-C", small, "keys", "generate", "--out", key, "--reconciler", "r1"],
               check=True, env=env, capture_output=True)
record = os.path.join(small, "deployments", "bench", "development.yaml")
os.makedirs(os.path.dirname(record))
signed, plain, actuator = [], [], []
for i in range(60):
    with open(record, "w") as f:
        f.write(f"apiVersion: ledgit/v1\nkind: AgentDeployment\nagent: bench\nenvironment: development\nversion: 1.{i}.0\n")
    git("add", "-A")
    git("commit", "-q", "-m", f"bench {i}")
    with_key = i % 2 == 0
    args = ["reconcile", "--exec", "true", "--format", "json"] + (["--signing-key", key] if with_key else [])
    t = time.perf_counter()
    r = subprocess.run([ledgit, "-C", small, *args], env=env, capture_output=True, text=True, check=True)
    ms = (time.perf_counter() - t) * 1000
    (signed if with_key else plain).append(ms)
    actuator.append(json.loads(r.stdout)["attempts"][0]["duration_ms"])
notes = subprocess.run(["git", "-C", small, "log", "--notes=ledgit/applied", "--format=%N"], env=env,
                       capture_output=True, text=True, check=True).stdout.count("payloadType")
assert notes == 30, f"expected 30 receipts, found {notes}"
ms, mp = statistics.median(signed), statistics.median(plain)
print(f"one-action reconcile pass with a receipt (median of 30):    {ms:8.1f} ms")
print(f"the same without a signing key (median of 30):             {mp:8.1f} ms")
print(f"receipt cost per action (difference of the medians):       {ms - mp:8.1f} ms   (goal: under 5 ms; the actuator itself: {statistics.median(actuator):.0f} ms)")

# 2. Reading.
repo = source
ledgit_dir = os.path.join(repo, ".git", "ledgit")
cache = os.path.join(ledgit_dir, "receipts.idx")


def cold(*args):
    shutil.rmtree(ledgit_dir, ignore_errors=True)
    return timed(*args, cwd=repo)


history_cold = cold("history", "--format", "json")
applied_cold = cold("history", "--applied", "--format", "json")
timed("history", "--format", "json", cwd=repo)  # the history index
history_warm = statistics.median(timed("history", "--format", "json", cwd=repo) for _ in range(5))
os.remove(cache) if os.path.exists(cache) else None
applied_no_cache = timed("history", "--applied", "--format", "json", cwd=repo)
applied_warm = statistics.median(timed("history", "--applied", "--format", "json", cwd=repo) for _ in range(5))
at = "2021-06-01T00:00:00Z"
audit_cold = cold("audit", "--at", at)
timed("history", "--format", "json", cwd=repo)
os.remove(cache) if os.path.exists(cache) else None
audit_no_cache = timed("audit", "--at", at, cwd=repo)
audit_warm = statistics.median(timed("audit", "--at", at, cwd=repo) for _ in range(5))
n = subprocess.run(["git", "-C", repo, "notes", "--ref=ledgit/applied", "list"], env=env,
                   capture_output=True, text=True).stdout.count("\n")
print(f"receipts repository: 100,000 commits, notes on {n} of them (a receipt for every event)")
print(f"history --format json, cold (no index):                    {history_cold:8.0f} ms")
print(f"history --applied, cold (no index, no receipts cache):     {applied_cold:8.0f} ms   ratio {applied_cold / history_cold:.2f} (goal: 1.5)")
print(f"history --applied, history index warm, no receipts cache:  {applied_no_cache:8.0f} ms")
print(f"history --applied, warm:                                   {applied_warm:8.0f} ms   plain history warm {history_warm:.0f} ms (goal: under 50 ms)")
print(f"audit --at T, cold (no index, no receipts cache):          {audit_cold:8.0f} ms   (goal: under 1,000 ms)")
print(f"audit --at T, history index warm, no receipts cache:       {audit_no_cache:8.0f} ms")
print(f"audit --at T, warm:                                        {audit_warm:8.0f} ms")
