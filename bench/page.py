"""Benchmarks of the web page for a team: `ledgit serve` on 2,000 agents in three environments
with 20,000 commits of history and every record applied by the reconciler (sync states shown),
with wrk (64 connections): the snapshot (first page, a state filter, sorted by last change),
an agent's page and the JSON twins, each beside /healthz measured in the same run, and each
page's size.
Usage: python3 bench/page.py BIN REPO WORK (bench/run.sh page calls it)."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

BIN, REPO, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
ENV = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1", NO_COLOR="1")
DURATION = os.environ.get("LEDGIT_BENCH_SECONDS", "10")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Every record applied once (a no-op actuator), so that each cell carries its sync state.
store = os.path.join(REPO, ".git", "ledgit", "state.db")
if not os.path.exists(store):
    t = time.time()
    subprocess.run([BIN, "-C", REPO, "reconcile", "--exec", "true"], env=ENV, check=True,
                   capture_output=True)
    print(f"(applied every record once in {time.time() - t:.0f} s)", file=sys.stderr)

port = free_port()
base = f"http://127.0.0.1:{port}"
server = subprocess.Popen([BIN, "-C", REPO, "serve", "--quiet", "--listen", f"127.0.0.1:{port}"],
                          env=ENV, stderr=subprocess.DEVNULL)
for _ in range(600):
    try:
        if urllib.request.urlopen(base + "/readyz", timeout=1).status == 200:
            break
    except Exception:
        time.sleep(0.1)
else:
    sys.exit("the server did not get ready")


def wrk(path):
    out = subprocess.run(["wrk", "-t2", "-c64", f"-d{DURATION}s", "--latency", base + path],
                         env=ENV, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, ms("50"), ms("99"), int(errors.group(1)) if errors else 0


try:
    rows = []
    for path in ["/", "/?state=drift", "/?sort=changed&page=3", "/agents/agent-0001",
                 "/v1/agents", "/v1/agents/agent-0001"]:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            size = len(r.read())
        health = wrk("/healthz")
        rows.append((path, wrk(path), size, health))
finally:
    server.terminate()
    server.wait(timeout=30)

row = "{:<46} {:>34}   {}"
print(row.format("page (2,000 agents, 64 connections)", "ledgit: p50 / p99, req/s, size",
                 "reference: /healthz in the same run"))
for path, (rps, p50, p99, errors), size, (hrps, hp50, hp99, _) in rows:
    goal = "" if path.startswith("/v1") else (
        "  goal p99 < 50 ms, < 100 KB: " + ("met" if p99 < 50 and size < 100_000 else "NOT met"))
    print(row.format(path, f"{p50:.1f} / {p99:.1f} ms, {rps:,.0f}/s, {size / 1000:.0f} KB",
                     f"p99 {hp99:.1f} ms, {hrps:,.0f}/s{goal}"))
    if errors:
        print(f"  {errors} answers were not 2xx")
