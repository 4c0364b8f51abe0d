"""The HTTP layer alone: one trivial WSGI app (a fixed 1,284-byte answer) under serve's core
(xcap_wsgi.httpcore), under waitress' own loop with the same limits (httpserver.create_server,
the fallback where epoll is missing, and what serve ran before the core), and under granian.

    python benchmarks/http_layer.py [--threads 2,4] [--connections 8,32] [--duration 3] [--rounds 2]

One process per server, wrk on 127.0.0.1 (keep-alive); servers take turns round after round, so
a drift in the machine's speed reaches all alike. Prints requests/s, p99 and the server's CPU
time per request (from /proc: user + system, all threads).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time

BODY = b"x" * 1284


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/xml"), ("Content-Length", str(len(BODY)))])
    return [BODY]


def _serve(kind: str, port: int, threads: int) -> None:
    from xcap_wsgi import httpcore
    from xcap_wsgi.httpserver import Limits, create_server

    if kind == "core":
        httpcore.serve(hello, limits=Limits(), host="127.0.0.1", port=port, threads=threads)
    else:
        create_server(hello, limits=Limits(), host="127.0.0.1", port=port, threads=threads).run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(kind: str, threads: int) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    if kind == "granian":
        argv = [sys.executable, "-m", "granian", "--interface", "wsgi", "--http", "1", "--workers", "1",
                "--blocking-threads", str(threads), "--port", str(port), "--no-access-log", "http_layer:hello"]
    else:
        argv = [sys.executable, __file__, "--serve", kind, str(port), str(threads)]
    proc = subprocess.Popen(argv, cwd=os.path.dirname(os.path.abspath(__file__)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{kind} did not start")


def _cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its children (granian forks its worker)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                                                   text=True).stdout.split()]
    for p in pids:
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            pass
    return total


def _wrk(port: int, connections: int, duration: float) -> tuple[float, str]:
    out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration:g}s", "--latency",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"\s99%\s+(\S+)", out).group(1)
    return rps, p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="2,4")
    parser.add_argument("--connections", default="8,32")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, port, threads = args.serve
        _serve(kind, int(port), int(threads))
        return 0
    kinds = ["core", "waitress-loop"]
    try:
        import granian  # noqa: F401

        kinds.append("granian")
    except ImportError:
        pass
    servers = {}
    try:
        for threads in (int(t) for t in args.threads.split(",")):
            for kind in kinds:
                servers[f"{kind} x{threads}"] = _start(kind, threads)
        results: dict[tuple[str, int], list[tuple[float, str, float]]] = {}
        for n in range(args.rounds):
            for conns in (int(c) for c in args.connections.split(",")):
                names = list(servers)
                names = names[n % len(names):] + names[:n % len(names)]
                for name in names:
                    proc, port = servers[name]
                    before = _cpu(proc.pid)
                    rps, p99 = _wrk(port, conns, args.duration)
                    used = _cpu(proc.pid) - before
                    results.setdefault((name, conns), []).append((rps, p99, used / (rps * args.duration) * 1e6))
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}: trivial app, 1 process, wrk -t2, "
              f"{args.duration:g} s x {args.rounds} rounds per cell (taking turns)")
        print("| server x threads | connections | req/s (each round) | p99 | server CPU us/request |")
        print("|---|---:|---:|---:|---:|")
        for (name, conns), runs in results.items():
            print(f"| {name} | {conns} | {' / '.join(f'{r[0]:,.0f}' for r in runs)} | "
                  f"{' / '.join(r[1] for r in runs)} | {' / '.join(f'{r[2]:.0f}' for r in runs)} |")
    finally:
        for proc, _ in servers.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
