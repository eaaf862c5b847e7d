#!/usr/bin/env python3
"""Reconciler benchmarks on a copy of the history benchmark's repository.

  reconcile.py LEDGIT REPO WORKDIR

1. Initial sync of every record with a no-op actuator (`true`): actions per second, and the
   plan computation time (`reconcile --dry-run`, warm index).
2. Under `ledgit watch`, the time from a commit landing on the tracked branch (its ref being
   updated) to the exec actuator's start, over 20 commits: median and maximum.
"""
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
repo = os.path.join(work, "reconcile")
shutil.rmtree(repo, ignore_errors=True)
subprocess.run(["git", "clone", "-q", source, repo], check=True, env=env)
git = lambda *a: subprocess.run(["git", "-C", repo, *a], check=True, env=env, capture_output=True, text=True).stdout.strip()
run = lambda *a: subprocess.run([ledgit, "-C", repo, *a], env=env, capture_output=True, text=True)

run("status")  # build the history index (not timed)
records = int(subprocess.run(f"find {repo}/deployments -name '*.yaml' | wc -l", shell=True, capture_output=True, text=True).stdout)
plans = []
for _ in range(5):
    t = time.perf_counter(); run("reconcile", "--dry-run"); plans.append(time.perf_counter() - t)
t = time.perf_counter()
r = run("reconcile", "--exec", "true")
sync = time.perf_counter() - t
assert r.returncode in (0, 1), r.stderr
print(f"reconcile --dry-run (plan of {records} deploys), warm: {statistics.median(plans) * 1000:8.1f} ms (goal: under 50 ms)")
print(f"initial sync of {records} records, no-op actuator: {sync:8.2f} s   {records / sync:8.0f} actions/s")

log = os.path.join(work, "watch.log")
if os.path.exists(log):
    os.remove(log)
actuator = f"sh -c 'echo $(date +%s.%N) $LEDGIT_VERSION >> {log}'"
watch = subprocess.Popen([ledgit, "-C", repo, "watch", "--exec", actuator, "--interval", "1h"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    time.sleep(2)  # the first pass has nothing to do (synced above)
    path = os.path.join(repo, "deployments", "agent-0001", "staging.yaml")
    latencies = []
    for i in range(1, 21):
        version = f"9.{i}.0"
        text = open(path).read().splitlines()
        with open(path, "w") as f:
            f.write("\n".join(f"version: {version}" if l.startswith("version:") else l for l in text) + "\n")
        git("add", path)
        tree = git("write-tree")
        commit = git("commit-tree", tree, "-p", "HEAD", "-m", f"bench {version}")
        landed = time.time()
        git("update-ref", "refs/heads/main", commit)
        git("reset", "-q", "--soft", commit)
        deadline = time.time() + 30
        while time.time() < deadline:
            lines = open(log).read().splitlines() if os.path.exists(log) else []
            hit = [l for l in lines if l.endswith(" " + version)]
            if hit:
                latencies.append(float(hit[0].split()[0]) - landed)
                break
            time.sleep(0.005)
        else:
            sys.exit(f"watch did not apply {version} within 30 s")
    ms = [x * 1000 for x in latencies]
    print(f"watch, commit landed -> actuator start, 20 commits: median {statistics.median(ms):6.1f} ms, max {max(ms):6.1f} ms "
          f"(goal: median under 300 ms; Argo CD and Flux poll every few minutes by default)")
finally:
    watch.terminate()
    watch.wait()
