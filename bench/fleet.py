#!/usr/bin/env python3
"""Benchmarks of replicas on a shared PostgreSQL store, each beside its reference in one run.

  fleet.py LEDGIT WORKDIR

1. Initial sync of N agents x 3 environments (LEDGIT_BENCH_AGENTS, default 10,000) with a no-op
   actuator (`true`): the PostgreSQL store beside the SQLite store (goal: within 1.5x), and the
   database transactions per action.
2. A steady pass with nothing to do: database transactions for 30 records and for all of them
   (goal: the same, O(1) whatever the number of records).
3. Failover: two `watch` replicas (--lease-ttl 3s); 20 times the leader is killed (-9) and a
   change committed at once; the time from the kill to the follower's actuator starting on it:
   median and max (goal: max < TTL + 2 s).
4. `serve` with sync states from PostgreSQL beside the same from SQLite: the page and its JSON
   twin under wrk, 64 connections, p50 and p99 (goal: p99 < 50 ms).

Starts a throw-away PostgreSQL cluster (initdb, pg_ctl; as the `postgres` user when root).
"""
import glob
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BIN, WORK = sys.argv[1], sys.argv[2]
AGENTS = int(os.environ.get("LEDGIT_BENCH_AGENTS", "10000"))
ENV = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1", NO_COLOR="1",
           GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com",
           GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com")
ENV.pop("LEDGIT_STATE", None)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self):
        found = shutil.which("initdb")
        bins = [os.path.dirname(found)] if found else sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            sys.exit("bench fleet needs PostgreSQL (apt-get install postgresql)")
        self.bin = bins[-1]
        self.dir = tempfile.mkdtemp(prefix="ledgit-pg-")
        os.chmod(self.dir, 0o777)
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.port = free_port()
        self.pg("initdb", "-D", f"{self.dir}/data", "-U", "ledgit", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.pg("pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", "-w", "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200", "start")
        self.url = f"postgres://ledgit@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def pg(self, program, *args):
        subprocess.run([*self.as_user, f"{self.bin}/{program}", *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir)

    def sql(self, query):
        return subprocess.run(["psql", "-X", "-A", "-t", "-d", self.url, "-c", query], check=True,
                              capture_output=True, text=True).stdout.strip()

    def transactions(self):
        return int(self.sql("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'postgres'"))

    def stop(self):
        self.pg("pg_ctl", "-D", f"{self.dir}/data", "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def ledgit(repo, *args, check=True):
    r = subprocess.run([BIN, "-C", repo, *args], env=ENV, capture_output=True, text=True)
    if check and r.returncode not in (0, 1):
        sys.exit(f"ledgit {' '.join(args)} failed: {r.stderr}")
    return r


def repo_of(name, agents):
    d = os.path.join(WORK, name)
    if not os.path.isdir(os.path.join(d, ".git")):
        shutil.rmtree(d, ignore_errors=True)
        subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "generate.py"), "fleet", d, str(agents)],
                       check=True)
    shutil.rmtree(os.path.join(d, ".git", "ledgit"), ignore_errors=True)
    ledgit(d, "status")  # the history index, not timed
    return d


def stat_settle(pg):
    # pg_stat_database is updated by backends when they go idle: let it catch up.
    time.sleep(0.7)
    return pg.transactions()


pg = Cluster()
try:
    big = repo_of(f"fleet-{AGENTS}", AGENTS)
    small = repo_of("fleet-10", 10)
    actions = AGENTS * 3

    # 1. Initial sync.
    t = time.perf_counter()
    ledgit(big, "reconcile", "--exec", "true")
    sqlite = time.perf_counter() - t
    before = stat_settle(pg)
    t = time.perf_counter()
    ledgit(big, "reconcile", "--exec", "true", "--state", pg.url)
    shared = time.perf_counter() - t
    per_action = (stat_settle(pg) - before) / actions
    print(f"initial sync, {actions:,} actions, no-op actuator, SQLite store:  {sqlite:7.2f} s  {actions / sqlite:7.0f} actions/s (reference)")
    print(f"initial sync, {actions:,} actions, no-op actuator, PostgreSQL:    {shared:7.2f} s  {actions / shared:7.0f} actions/s  "
          f"{shared / sqlite:.2f}x (goal: within 1.5x); {per_action:.2f} transactions per action")

    # 2. A steady pass.
    ledgit(small, "reconcile", "--exec", "true", "--state", pg.url)
    counts = {}
    for name, repo in (("30", small), (f"{actions:,}", big)):
        before = stat_settle(pg)
        ledgit(repo, "reconcile", "--exec", "true", "--state", pg.url)
        counts[name] = stat_settle(pg) - before
    (n1, c1), (n2, c2) = counts.items()
    print(f"steady pass with nothing to do: {c1} transactions for {n1} records, {c2} for {n2} "
          f"(goal: the same){'' if c1 == c2 else '  DIFFERENT'}")

    # 3. Failover.
    log = os.path.join(WORK, "failover.log")
    if os.path.exists(log):
        os.remove(log)
    actuator = f"sh -c 'echo $(date +%s.%N) $LEDGIT_VERSION $PPID >> {log}'"

    def replica():
        return subprocess.Popen([BIN, "-C", small, "watch", "--state", pg.url, "--exec", actuator,
                                 "--interval", "1h", "--lease-ttl", "3s", "--environment", "staging"],
                                env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def leader():
        for _ in range(200):
            r = ledgit(small, "leases", "--state", pg.url, "--format", "json")
            live = [l for l in json.loads(r.stdout) if l["live"] and l["environment"] == "staging"]
            if live:
                return int(re.search(r"pid (\d+)", live[0]["holder"]).group(1))
            time.sleep(0.05)
        sys.exit("no leader")

    replicas = {}
    for _ in range(2):
        p = replica()
        replicas[p.pid] = p
    path = os.path.join(small, "deployments", "agent-00001", "staging.yaml")
    waits = []
    try:
        time.sleep(2)
        for i in range(1, 21):
            victim = leader()
            version = f"7.{i}.0"
            text = open(path).read()
            open(path, "w").write(re.sub(r"version: .*", f"version: {version}", text))
            replicas[victim].kill()
            killed = time.time()
            replicas.pop(victim).wait()
            subprocess.run(["git", "-C", small, "commit", "-qam", f"bench {version}"], check=True, env=ENV)
            started = None
            while started is None and time.time() - killed < 30:
                time.sleep(0.02)
                if os.path.exists(log):
                    for line in open(log):
                        stamp, v, _ = line.split()
                        if v == version:
                            started = float(stamp)
            if started is None:
                sys.exit(f"no replica applied {version}")
            waits.append(started - killed)
            p = replica()
            replicas[p.pid] = p
            time.sleep(0.5)
    finally:
        for p in replicas.values():
            p.kill()
    print(f"failover, 20 kills of the leader (TTL 3 s): median {statistics.median(waits):.2f} s, "
          f"max {max(waits):.2f} s (goal: max < TTL + 2 s = 5 s)")

    # 4. serve with sync states from PostgreSQL, beside SQLite.
    if shutil.which("wrk"):
        def serve(extra):
            port = free_port()
            p = subprocess.Popen([BIN, "-C", big, "serve", "--listen", f"127.0.0.1:{port}", "--quiet", *extra],
                                 env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(300):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            time.sleep(1)
            return p, port

        def wrk(port, path):
            out = subprocess.run(["wrk", "-t2", "-c64", "-d10s", "--latency", f"http://127.0.0.1:{port}{path}"],
                                 capture_output=True, text=True).stdout
            lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
            rate = re.search(r"Requests/sec:\s+(\S+)", out).group(1)
            return lat.get("50"), lat.get("99"), rate

        for label, extra in (("SQLite (reference)", []), ("PostgreSQL", ["--state", pg.url])):
            p, port = serve(extra)
            try:
                for path in ("/", "/v1/agents"):
                    p50, p99, rate = wrk(port, path)
                    print(f"serve {path:11} sync states from {label:19} p50 {p50:>8}  p99 {p99:>8}  {rate:>8} req/s (goal: p99 < 50 ms)")
            finally:
                p.terminate()
                p.wait()
    else:
        print("serve: skipped (needs wrk: apt-get install wrk)")
finally:
    pg.stop()
