"""Benchmarks of `ledgit serve` on the 100,000-commit repository, with wrk (64 connections):
/healthz as the reference, /v1/whoami with 1,000 distinct tokens, /v1/deployments, the web
page's three pages and a JSON twin (time and size), the branch moving ten times under load, the
time from a commit to its being served, and peak memory.
Usage: python3 bench/serve.py BIN REPO WORK (bench/run.sh serve calls it)."""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

BIN, REPO, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
ENV = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1", NO_COLOR="1",
           GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com",
           GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com")
DURATION = os.environ.get("LEDGIT_BENCH_SECONDS", "10")


def run(*args, **kw):
    return subprocess.run(args, env=ENV, check=True, capture_output=True, text=True, **kw).stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


# A clone with a signing key, served from its own branch.
clone = os.path.join(WORK, "serve")
if not os.path.isdir(clone):
    run("git", "clone", "-q", REPO, clone)
    if os.path.isdir(os.path.join(REPO, ".git", "ledgit")):
        shutil.copytree(os.path.join(REPO, ".git", "ledgit"), os.path.join(clone, ".git", "ledgit"))
    key = os.path.join(WORK, "serve-signing.pem")
    if os.path.exists(key):
        os.remove(key)
    run(BIN, "-C", clone, "keys", "generate", "--out", key, "--id", "bench", "--add")
    run("git", "-C", clone, "commit", "-qam", "bench key")
key = os.path.join(WORK, "serve-signing.pem")
rows = json.loads(run(BIN, "-C", clone, "status", "--format", "json"))
pairs = [(r["agent"], r["environment"]) for r in rows][:1000]
tokens_file = os.path.join(WORK, "serve-tokens.txt")
ledger = os.path.join(clone, "tokens.yaml")
if not os.path.exists(ledger) and os.path.exists(tokens_file):
    os.remove(tokens_file)  # issued before the ledger existed: issue again, into the ledger
if not os.path.exists(tokens_file):
    with open(tokens_file, "w") as f:
        for agent, env in pairs:
            f.write(run(BIN, "-C", clone, "token", "issue", agent, env, "--key", key).strip() + "\n")
    run("git", "-C", clone, "add", "tokens.yaml")
    run("git", "-C", clone, "commit", "-qm", "Record the bench tokens")
tokens = open(tokens_file).read().split()
assert len(set(tokens)) >= 1000, len(set(tokens))

port = free_port()
base = f"http://127.0.0.1:{port}"
server = subprocess.Popen([BIN, "-C", clone, "serve", "--quiet", "--listen", f"127.0.0.1:{port}",
                           "--interval", "1m"], env=ENV, stderr=subprocess.PIPE, text=True)
started = time.perf_counter()
while True:
    try:
        if get(base + "/readyz")[0] == 200:
            break
    except OSError:
        pass
    if time.perf_counter() - started > 120:
        sys.exit("the server did not get ready")
    time.sleep(0.05)
load_ms = (time.perf_counter() - started) * 1000

LUA = os.path.join(WORK, "whoami.lua")
with open(LUA, "w") as f:
    f.write("""
local tokens = {}
for line in io.lines(os.getenv("LEDGIT_TOKENS")) do tokens[#tokens + 1] = line end
local i = math.random(#tokens)
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", "/v1/whoami", {["Authorization"] = "Bearer " .. tokens[i]})
end
""")


def wrk(path, script=None, seconds=DURATION, header=None):
    args = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", base + path]
    if script:
        args[1:1] = ["-s", script]
    if header:
        args[1:1] = ["-H", header]
    out = subprocess.run(args, env=dict(ENV, LEDGIT_TOKENS=tokens_file), check=True,
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return rps, ms("50"), ms("99"), errors


health = wrk("/healthz")
whoami = wrk("/v1/whoami", LUA)
deployments = wrk("/v1/deployments")
deployments_gzip = wrk("/v1/deployments", header="Accept-Encoding: gzip")
etag = urllib.request.urlopen(base + "/v1/deployments").headers["ETag"]
deployments_304 = wrk("/v1/deployments", header=f"If-None-Match: {etag}")

# The web page: the snapshot (first page of agents), an agent's page, its deployments tab, and
# the agent page's JSON twin: time under load and size.
pages = {}
for path in ["/", "/agents/agent-0001", "/agents/agent-0001/deployments", "/v1/agents/agent-0001"]:
    status, body = get(base + path)
    assert status == 200, (path, status)
    pages[path] = (wrk(path), len(body))

# The branch moves ten times under load.
moves_done = []


def move_branch():
    time.sleep(1)
    for i in range(10):
        path = os.path.join(clone, "deployments", "agent-0001", "staging.yaml")
        text = open(path).read()
        open(path, "w").write(re.sub(r"(?m)^version: .*$", f"version: 7.{i}.{int(time.time())}", text))
        run("git", "-C", clone, "commit", "-qam", f"move {i}")
        moves_done.append(i)
        time.sleep(0.8)


mover = threading.Thread(target=move_branch)
mover.start()
moving = wrk("/v1/whoami", LUA, seconds=12)
mover.join()

# 5,000 connections that hold a socket and send nothing, from five other loopback addresses
# (1,000 each): /healthz and /v1/whoami from a new client meanwhile, beside /healthz measured
# above without them.
import resource
import socket
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
idle = []
for c in range(2, 7):
    for _ in range(1000):
        s = socket.socket()
        s.bind((f"127.0.0.{c}", 0))
        try:
            s.connect(("127.0.0.1", port))
            idle.append(s)
        except OSError:
            s.close()
time.sleep(0.5)
health_idle = wrk("/healthz", seconds=5)
whoami_idle = wrk("/v1/whoami", LUA, seconds=5)
for s in idle:
    s.close()

# A commit to the tracked branch until it is served: 20 times.
latencies = []
for i in range(20):
    path = os.path.join(clone, "deployments", "agent-0002", "staging.yaml")
    version = f"8.{i}.{int(time.time() * 1000)}"
    text = open(path).read()
    open(path, "w").write(re.sub(r"(?m)^version: .*$", f"version: {version}", text))
    subprocess.run(["git", "-C", clone, "commit", "-qam", f"serve {i}"], env=ENV, check=True)
    t = time.perf_counter()
    while True:
        body = json.loads(get(base + "/v1/deployments/agent-0002/staging")[1])
        if body["version"] == version:
            break
        if time.perf_counter() - t > 10:
            sys.exit("a commit was not served within 10 s")
        time.sleep(0.002)
    latencies.append((time.perf_counter() - t) * 1000)
    time.sleep(0.2)

peak = 0
for line in open(f"/proc/{server.pid}/status"):
    if line.startswith("VmHWM:"):
        peak = int(line.split()[1]) / 1024
server.terminate()
server.wait(timeout=30)

row = "{:<58} {}"
print(row.format("serve: load of the 100,000-commit history (warm index):", f"{load_ms:.0f} ms"))
print(row.format("serve: GET /healthz, 64 connections:",
                 f"{health[0]:.0f} req/s   p50 {health[1]:.2f} ms   p99 {health[2]:.2f} ms (reference)"))
print(row.format("serve: GET /v1/whoami, 1,000 distinct tokens:",
                 f"{whoami[0]:.0f} req/s   ratio to /healthz {whoami[0] / health[0]:.2f}   p99 {whoami[2]:.2f} ms   errors {whoami[3]}"))
print(row.format("serve: GET /v1/deployments (2,100 records, 525 KB):",
                 f"{deployments[0]:.0f} req/s   ratio to /healthz {deployments[0] / health[0]:.2f}   p99 {deployments[2]:.2f} ms"))
print(row.format("serve: GET /v1/deployments, Accept-Encoding: gzip:",
                 f"{deployments_gzip[0]:.0f} req/s   ratio to /healthz {deployments_gzip[0] / health[0]:.2f}   p99 {deployments_gzip[2]:.2f} ms"))
print(row.format("serve: GET /v1/deployments, If-None-Match (304):",
                 f"{deployments_304[0]:.0f} req/s   ratio to /healthz {deployments_304[0] / health[0]:.2f}   p99 {deployments_304[2]:.2f} ms"))
for path, (result, size) in pages.items():
    print(row.format(f"serve: GET {path}:",
                     f"{result[0]:.0f} req/s   ratio to /healthz {result[0] / health[0]:.2f}   p50 {result[1]:.2f} ms   p99 {result[2]:.2f} ms   {size / 1024:.0f} KB"))
print(row.format("serve: /v1/whoami while the branch moves 10 times:",
                 f"{moving[0]:.0f} req/s   p99 {moving[2]:.2f} ms   failed requests {moving[3]}   moves {len(moves_done)}"))
print(row.format("serve: GET /healthz, 5,000 idle connections open:",
                 f"{health_idle[0]:.0f} req/s   p99 {health_idle[2]:.2f} ms (without them: {health[2]:.2f} ms)   errors {health_idle[3]}   goal p99 < 100 ms"))
print(row.format("serve: GET /v1/whoami, 5,000 idle connections open:",
                 f"{whoami_idle[0]:.0f} req/s   p99 {whoami_idle[2]:.2f} ms (without them: {whoami[2]:.2f} ms)   errors {whoami_idle[3]}   goal p99 < 100 ms"))
print(row.format("serve: commit -> served (20 commits):",
                 f"median {statistics.median(latencies):.0f} ms   max {max(latencies):.0f} ms"))
print(row.format("serve: peak memory (VmHWM):", f"{peak:.0f} MiB"))
