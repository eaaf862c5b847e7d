#!/usr/bin/env python3
"""Slow-body flood against `ledgit serve`, for its test and its benchmark.

Holds connections from several loopback addresses (127.0.0.2, 127.0.0.3, ...), each sending a
webhook delivery's head with `Content-Length: 16000` and then one byte, and reconnects whenever
the server answers or closes one, for as long as asked. With --probe, a client from 127.0.0.1
meanwhile asks for /healthz every 100 ms on a new connection and the script prints, beside the
same probe measured before the flood, the median and p99 latency and how many probes failed.

    python3 bench/flood.py --port 8080 --addresses 5 --per-address 830 --seconds 30 --probe
"""

import argparse
import selectors
import socket
import statistics
import threading
import time

HEAD = (
    b"POST /v1/hooks/generic HTTP/1.1\r\n"
    b"Host: ledgit\r\n"
    b"Content-Type: application/json\r\n"
    b"X-Signature: sha256=00\r\n"
    b"Content-Length: 16000\r\n\r\n{"
)


def connect(address, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((address, 0))
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(HEAD)
    except OSError:
        s.close()
        return None
    s.setblocking(False)
    return s


def flood(port, addresses, per_address, seconds, stop):
    sel = selectors.DefaultSelector()
    opened = 0
    end = time.monotonic() + seconds
    want = {a: per_address for a in addresses}
    held = {a: 0 for a in addresses}
    while time.monotonic() < end and not stop.is_set():
        for a in addresses:
            while held[a] < want[a]:
                s = connect(a, port)
                if s is None:
                    break
                sel.register(s, selectors.EVENT_READ, a)
                held[a] += 1
                opened += 1
        for key, _ in sel.select(timeout=0.05):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                held[key.data] -= 1
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return opened


def probe(port, timeout=5.0):
    """Seconds for GET /healthz on a new connection from 127.0.0.1, or None when it failed."""
    start = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: ledgit\r\nConnection: close\r\n\r\n")
            answer = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return None
    if not answer.startswith(b"HTTP/1.1 200"):
        return None
    return time.monotonic() - start


def probes(port, seconds):
    times, failed = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = probe(port)
        if t is None:
            failed += 1
        else:
            times.append(t)
        time.sleep(0.1)
    return times, failed


def summary(times):
    if not times:
        return "no answer"
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return f"median {statistics.median(times) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--addresses", type=int, default=5)
    p.add_argument("--per-address", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--probe", action="store_true")
    a = p.parse_args()
    addresses = [f"127.0.0.{i + 2}" for i in range(a.addresses)]
    stop = threading.Event()
    if not a.probe:
        opened = flood(a.port, addresses, a.per_address, a.seconds, stop)
        print(f"opened {opened} connections")
        return
    before, before_failed = probes(a.port, 3)
    result = {}
    t = threading.Thread(
        target=lambda: result.setdefault(
            "opened", flood(a.port, addresses, a.per_address, a.seconds + 3, stop)
        )
    )
    t.start()
    time.sleep(3)  # the table fills
    during, failed = probes(a.port, a.seconds)
    stop.set()
    t.join()
    print(f"/healthz before the flood: {summary(before)}, {before_failed} failed")
    print(
        f"/healthz during the flood ({len(addresses)} addresses x {a.per_address}, "
        f"{result.get('opened', 0)} connections opened in {a.seconds:.0f}s): "
        f"{summary(during)}, {failed} of {len(during) + failed} failed"
    )


if __name__ == "__main__":
    main()
