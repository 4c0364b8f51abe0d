"""Read-modify-write load across a 3-node Galera cluster, steady and while a node is killed (issue 10).

    python galera/run.py [--seconds 30] [--clients 8] [--servers 3] [--kill-node 1]

Starts a 3-node MariaDB Galera cluster on 127.0.0.1 (``galera/cluster.sh``) and ``--servers``
``xcap-wsgi serve`` processes; process *i* gets the multi-host URL with node *i* first, so the
processes start on different nodes (``wsrep_sync_wait=1``). Then two phases, each on its own
document:

1. **steady** for ``--seconds``: ``--clients`` threads each loop GET the shared resource-lists
   document -> append one ``<entry>`` with a URI unique to the client and attempt -> PUT with
   ``If-Match`` to the next server (round robin) -> on 412 (or 503, after min(Retry-After, 0.5) s)
   GET again and retry the same addition;
2. **failover**: the same load while node ``--kill-node`` is killed with SIGKILL at a quarter of the
   phase and started again right after it has been evicted; the phase lasts at least until it is
   Synced again.

After each phase the document is read from every node (SQL) and through every process (HTTP): all
must be equal, and every addition answered 200 must be in it exactly once (zero lost updates).
After the failover phase all 3 nodes must be Synced in one cluster and every process must answer a
GET and a conditional PUT again. Prints the figures (requests, 200s, 412s, 503s, retries, final
count against expected) and exits 1 when anything failed: a lost, duplicated or phantom update,
any 500 (or other 5xx but 503), a 503 without Retry-After, or a node/process not serving at the end.
Everything started is stopped at the end (also on Ctrl-C); nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pymysql

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CLUSTER_SH = HERE / "cluster.sh"
PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")

RL_NS = "urn:ietf:params:xml:ns:resource-lists"
CTYPE = "application/resource-lists+xml"
INITIAL = (f'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="{RL_NS}">\n'
           '  <list name="shared">\n  </list>\n</resource-lists>\n').encode()
CLOSE = b"  </list>\n</resource-lists>\n"
ENTRY = re.compile(rb'<entry uri="(sip:[^"]+)"')
#: Options of the store in every process: causal reads across nodes, small pools, quick connects.
STORE_OPTIONS = "wsrep_sync_wait=1&pool_size=8&connect_timeout=2&read_timeout=20&write_timeout=20&retry_after=2"


def missing_requirements() -> str | None:
    """Why the rig cannot run here (None when it can)."""
    if not (shutil.which("mariadbd") or os.path.exists("/usr/sbin/mariadbd")):
        return "mariadb-server is not installed"
    if not PROVIDER.exists():
        return f"galera-4 is not installed ({PROVIDER})"
    if not shutil.which("rsync"):
        return "rsync (the SST method) is not installed"
    try:
        import pwd

        pwd.getpwnam("mysql")
    except KeyError:
        return "there is no 'mysql' user (installed by mariadb-server)"
    return None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_base() -> int:
    """A base port with the 12 ports the cluster needs free on loopback."""
    for _ in range(200):
        base = random.randrange(20000, 32000, 4)  # below the ephemeral range (32768-60999)
        if all(_port_free(base + i) for i in range(12)):
            return base
    raise RuntimeError("no 12 free consecutive ports found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """``galera/cluster.sh`` on a private folder; ``stop()`` (also from ``with``) ends every node."""

    def __init__(self, base: int | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="xcapw-galera-", dir="/tmp"))
        os.chmod(self.dir, 0o755)  # the servers run as 'mysql'
        self.base = base or pick_base()
        self.url = ""

    def sh(self, *args: str, timeout: float = 180) -> str:
        result = subprocess.run(["bash", str(CLUSTER_SH), args[0], str(self.dir), *args[1:]],
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed ({result.returncode}):\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
        return result.stdout

    def start(self) -> str:
        self.url = self.sh("start", str(self.base)).strip().splitlines()[-1]
        return self.url

    def port(self, node: int) -> int:
        return self.base + 4 * (node - 1)

    def hosts(self, first: int) -> str:
        """The host list with node ``first`` first, then the others in order."""
        order = [(first - 1 + i) % 3 + 1 for i in range(3)]
        return ",".join(f"127.0.0.1:{self.port(n)}" for n in order)

    def connect(self, node: int, **extra):
        return pymysql.connect(host="127.0.0.1", port=self.port(node), user="xcap", password="xcap",
                               database="kamailio", autocommit=True, connect_timeout=3, read_timeout=20,
                               init_command="SET SESSION wsrep_sync_wait=1", **extra)

    def status(self, node: int) -> dict:
        with contextlib.closing(self.connect(node)) as conn, conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_%'")
            return {name: value for name, value in cur.fetchall()}

    def counters(self) -> dict:
        """Galera's conflict counters per live node: certification failures, brute-force aborts."""
        out = {}
        for node in (1, 2, 3):
            try:
                st = self.status(node)
            except pymysql.err.MySQLError:
                continue
            out[node] = (int(st.get("wsrep_local_cert_failures", 0)), int(st.get("wsrep_local_bf_aborts", 0)))
        return out

    def kill(self, node: int, how: str = "kill") -> None:
        """``kill``: SIGKILL (a crash); ``term``: a clean shutdown (SIGTERM, as for maintenance)."""
        self.sh("term" if how == "term" else "kill", str(node))

    def restart(self, node: int) -> None:
        self.sh("restart", str(node), "120", timeout=150)

    def wait(self, seconds: int = 60) -> None:
        self.sh("wait", str(seconds), timeout=seconds * 3 + 10)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.sh("stop", timeout=90)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Server:
    """One ``python -m xcap_wsgi serve`` process on its own port."""

    def __init__(self, url: str, logdir: Path, threads: int = 8):
        self.port = free_port()
        self.log_path = logdir / f"xcap-wsgi-{self.port}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "xcap_wsgi", "serve", "--db", url, "--anonymous", "--host", "127.0.0.1",
                 "--port", str(self.port), "--threads", str(threads)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=str(REPO), env={**os.environ, "XCAP_LOG_REQUESTS": "0"})
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"xcap-wsgi exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if http_request(self.port, "GET", "/xcap-root/xcap-caps/global/index", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"xcap-wsgi did not answer on {self.port}:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def log(self, since: int = 0) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def http_request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                 timeout: float = 30.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def doc_path(phase: str) -> str:
    return f"/xcap-root/resource-lists/users/sip:galera-{phase}@example.com/index"


class Client(threading.Thread):
    """GET -> append own entry -> PUT If-Match, retried after 412/503 until it is answered 200."""

    def __init__(self, number: int, phase: str, ports: list[int], deadline: float, stats: "Stats"):
        super().__init__(daemon=True)
        self.number, self.phase, self.ports, self.deadline, self.stats = number, phase, ports, deadline, stats
        self.path = doc_path(phase)
        self.conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=30) for p in ports]
        self.turn = number
        self.acknowledged: list[bytes] = []  # answered 200
        self.found_later: list[bytes] = []  # a PUT answered otherwise that had landed (seen on re-GET)
        self.uncertain: set[bytes] = set()  # a PUT with no clear answer not yet resolved by a re-GET

    def request(self, method, body=None, headers=None):
        conn = self.conns[self.turn % len(self.conns)]
        self.turn += 1
        t0 = time.monotonic()
        try:
            conn.request(method, self.path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self.stats.add("socket errors")
            return None, {}, b""
        self.stats.latency(time.monotonic() - t0)
        self.stats.add("requests")
        status = response.status
        self.stats.add(f"{method} {status}")
        if status == 503:
            self.stats.add("503")
            if not response.getheader("Retry-After"):
                self.stats.add("503 without Retry-After")
        elif status >= 500:
            self.stats.add("5xx other than 503")
        return status, {"etag": response.getheader("ETag"), "retry-after": response.getheader("Retry-After")}, data

    def pause(self, headers):
        with contextlib.suppress(TypeError, ValueError):
            time.sleep(min(float(headers.get("retry-after") or 0.2), 0.5))

    def run(self):
        attempt = 0
        try:
            while time.monotonic() < self.deadline:
                attempt += 1
                uri = f"sip:{self.phase}-c{self.number}a{attempt}@example.com".encode()
                while time.monotonic() < self.deadline:
                    status, headers, doc = self.request("GET")
                    if status != 200:
                        if status == 503:
                            self.pause(headers)
                        continue
                    if uri in ENTRY.findall(doc):  # an earlier try did land although not answered 200
                        self.uncertain.discard(uri)
                        self.found_later.append(uri)
                        self.stats.add("landed although not answered 200")
                        break
                    self.uncertain.discard(uri)
                    new = doc.replace(CLOSE, b'    <entry uri="' + uri + b'"/>\n' + CLOSE)
                    status, headers, _ = self.request("PUT", new, {"Content-Type": CTYPE, "If-Match": headers["etag"]})
                    if status == 200:
                        self.acknowledged.append(uri)
                        break
                    self.stats.add("retries")
                    if status != 412:
                        self.uncertain.add(uri)  # 503 / 5xx / no answer: it may or may not have landed
                    if status == 503:
                        self.pause(headers)
        finally:
            for conn in self.conns:
                conn.close()


class Stats:
    def __init__(self):
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.latencies: list[float] = []

    def latency(self, seconds: float) -> None:
        self.latencies.append(seconds)  # list.append is atomic

    def percentile(self, q: float) -> float:
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def get(self, name: str) -> int:
        return self.counts.get(name, 0)


def run_phase(name: str, cluster: Cluster, servers: list[Server], seconds: float, clients: int,
              kill_node: int | None = None, how: str = "kill", out=print) -> dict:
    """One phase of load on its own document; returns the figures and the failures found."""
    path = doc_path(name)
    status, _, body = http_request(servers[0].port, "PUT", path, INITIAL, {"Content-Type": CTYPE})
    if status != 201:
        raise RuntimeError(f"creating {path}: {status} {body[:300]!r}")
    before = cluster.counters()
    log_start = [s.log_size() for s in servers]
    stats = Stats()
    started = time.monotonic()
    deadline = started + seconds
    threads = [Client(n, name, [s.port for s in servers], deadline, stats) for n in range(clients)]
    for t in threads:
        t.start()
    events = []
    restarted_at = None
    if kill_node is not None:
        time.sleep(seconds / 4)
        cluster.kill(kill_node, how)
        events.append(f"node {kill_node} {'stopped (SIGTERM)' if how == 'term' else 'killed (SIGKILL)'} "
                      f"at {time.monotonic() - started:.1f} s")
        time.sleep(max(4.0, seconds / 8))  # long enough for the survivors to evict it (evs timeouts)
        restart_started = time.monotonic()
        cluster.restart(kill_node)
        restarted_at = time.monotonic() - started
        events.append(f"node {kill_node} restarted at {restart_started - started:.1f} s, Synced again at "
                      f"{restarted_at:.1f} s")
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()) + 60)
    elapsed = time.monotonic() - started
    if any(t.is_alive() for t in threads):
        raise RuntimeError("a client did not finish")
    failures: list[str] = []
    try:
        cluster.wait(60)
    except RuntimeError as exc:
        failures.append(f"cluster not whole again after the phase: {exc}")
    after = cluster.counters()
    conflict = [0, 0]
    for node, (cert, bf) in after.items():
        if node == kill_node or node not in before:
            conflict[0] += cert
            conflict[1] += bf
        else:
            conflict[0] += cert - before[node][0]
            conflict[1] += bf - before[node][1]

    # The document as every node and every process sees it.
    copies = {}
    for node in (1, 2, 3):
        try:
            with contextlib.closing(cluster.connect(node)) as conn, conn.cursor() as cur:
                cur.execute("SELECT doc, etag FROM xcap WHERE doc_uri=%s", (path,))
                row = cur.fetchone()
                copies[f"node {node}"] = (bytes(row[0]), row[1]) if row else (None, None)
        except pymysql.err.MySQLError as exc:
            failures.append(f"node {node} does not answer: {exc}")
    for i, server in enumerate(servers, 1):
        status, headers, doc = http_request(server.port, "GET", path)
        if status != 200:
            failures.append(f"process {i} answers GET with {status}")
            continue
        copies[f"process {i}"] = (doc, headers.get("etag", "").strip('"'))
    final = copies.get("node 1", (None, None))[0] or next(iter(copies.values()))[0]
    for where, (doc, etag) in copies.items():
        if doc != final:
            failures.append(f"{where} has a different document (etag {etag})")

    present = ENTRY.findall(final)
    acknowledged = [u for t in threads for u in t.acknowledged]
    found_later = [u for t in threads for u in t.found_later]
    uncertain = set().union(*(t.uncertain for t in threads))
    expected = set(acknowledged) | set(found_later)
    lost = expected - set(present)
    phantom = set(present) - expected - uncertain
    duplicates = len(present) - len(set(present))
    if lost:
        failures.append(f"{len(lost)} lost updates, e.g. {sorted(lost)[:3]}")
    if phantom:
        failures.append(f"{len(phantom)} entries present that no client added, e.g. {sorted(phantom)[:3]}")
    if duplicates:
        failures.append(f"{duplicates} duplicated entries")
    if stats.get("5xx other than 503"):
        failures.append(f"{stats.get('5xx other than 503')} answers 5xx other than 503 (500s)")
    if stats.get("503 without Retry-After"):
        failures.append(f"{stats.get('503 without Retry-After')} 503s without Retry-After")
    if stats.get("socket errors"):
        failures.append(f"{stats.get('socket errors')} requests without an HTTP answer")
    if kill_node is not None:
        # Every process serves again: a GET and a conditional PUT through each.
        for i, server in enumerate(servers, 1):
            status, headers, doc = http_request(server.port, "GET", path)
            if status == 200:
                new = doc.replace(CLOSE, f'    <entry uri="sip:{name}-check{i}@example.com"/>\n'.encode() + CLOSE)
                status, _, _ = http_request(server.port, "PUT", path, new,
                                            {"Content-Type": CTYPE, "If-Match": headers["etag"]})
            if status != 200:
                failures.append(f"process {i} does not serve writes after the failover: {status}")
    # What the processes logged: store failovers, the reasons of 503s, errors.
    logged: dict[str, list[str]] = {}
    for i, (server, since) in enumerate(zip(servers, log_start), 1):
        for line in server.log(since).splitlines():
            for kind, marker in (("failovers", "now using"), ("503 store unavailable", "store unavailable:"),
                                 ("503 store error", "store error:"), ("unhandled", "unhandled error"),
                                 ("tracebacks", "Traceback")):
                if marker in line:
                    logged.setdefault(kind, []).append(f"process {i}: {line.strip()[:300]}")
    if logged.get("503 store error") or logged.get("unhandled") or logged.get("tracebacks"):
        failures.append("the processes logged store errors or tracebacks: "
                        + "; ".join((logged.get("503 store error", []) + logged.get("unhandled", []))[:3]))
    figures = {
        "phase": name, "seconds": elapsed, "clients": clients, "requests": stats.get("requests"),
        "GET 200": stats.get("GET 200"), "PUT 200": stats.get("PUT 200"), "412": stats.get("PUT 412"),
        "503": stats.get("503"), "500": stats.get("GET 500") + stats.get("PUT 500"),
        "other 5xx": stats.get("5xx other than 503"), "retries": stats.get("retries"),
        "landed although not answered 200": len(found_later), "still uncertain": len(uncertain),
        "final count": len(present), "expected": len(expected), "lost": len(lost), "duplicates": duplicates,
        "cert failures": conflict[0], "bf aborts": conflict[1], "events": events,
        "failovers logged": len(logged.get("failovers", [])), "logged": logged, "failures": failures,
        "counts": dict(stats.counts), "p50 ms": stats.percentile(0.5) * 1000,
        "p99 ms": stats.percentile(0.99) * 1000, "max ms": stats.percentile(1.0) * 1000,
    }
    report(figures, out)
    return figures


def report(f: dict, out=print) -> None:
    out(f"== phase {f['phase']}: {f['clients']} clients, {f['seconds']:.1f} s, one shared document")
    for event in f["events"]:
        out(f"   {event}")
    out(f"   requests {f['requests']} ({f['requests'] / f['seconds']:.0f}/s): GET 200 {f['GET 200']}, "
        f"PUT 200 {f['PUT 200']} ({f['PUT 200'] / f['seconds']:.1f}/s), 412 {f['412']}, 503 {f['503']}, "
        f"500 {f['500']}, other 5xx {f['other 5xx']}, client retries {f['retries']}")
    out(f"   latency p50 {f['p50 ms']:.0f} ms, p99 {f['p99 ms']:.0f} ms, max {f['max ms']:.0f} ms")
    out(f"   Galera: certification failures {f['cert failures']}, brute-force aborts {f['bf aborts']}; "
        f"store failovers logged {f['failovers logged']}")
    for kind, lines in sorted(f["logged"].items()):
        for line in lines[:4]:
            out(f"   logged ({kind}): {line}")
        if len(lines) > 4:
            out(f"   ... {len(lines) - 4} more {kind} lines")
    out(f"   final entries {f['final count']}, expected {f['expected']} (answered 200: {f['PUT 200']}, landed "
        f"although not answered 200: {f['landed although not answered 200']}, unresolved: "
        f"{f['still uncertain']}); lost {f['lost']}, duplicated {f['duplicates']}")
    out("   RESULT: " + ("FAIL: " + "; ".join(f["failures"]) if f["failures"] else "OK"))


def cpu_seconds(pgid: int | None = None, pid: int | None = None) -> float:
    """utime + stime of one process, or of every process of a process group, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or (pid is not None and int(entry) != pid):
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if pgid is not None and int(fields[2]) != pgid:  # fields[0] is field 3 (state); pgrp is field 5
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15)
    return total


#: Extra rows inserted to measure the table's bytes per row.
BULK_ROWS = 20000


def friends_document(counter: int, friends: int = 11) -> bytes:
    """A ~1.2 KiB resource-lists document (as in the benchmarks of issue 9)."""
    entries = [f'    <entry uri="sip:self@example.com"><display-name>Counter {counter:09d}</display-name></entry>\n']
    entries += [f'    <entry uri="sip:friend{n}@example.com"><display-name>Friend number {n}</display-name>'
                f'</entry>\n' for n in range(1, friends + 1)]
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="{RL_NS}">\n'
            f'  <list name="friends">\n{"".join(entries)}  </list>\n</resource-lists>\n').encode()


def run_sizing(cluster: Cluster, servers: list[Server], seconds: float, clients: int, out=print) -> dict:
    """CPU cost per request: 90% GET / 10% PUT (If-Match) of ~1.2 KiB documents, one per user."""
    users = clients * 25
    paths = [f"/xcap-root/resource-lists/users/sip:sizing{n}@example.com/index" for n in range(users)]
    for n, path in enumerate(paths):
        status, _, body = http_request(servers[n % len(servers)].port, "PUT", path, friends_document(0),
                                       {"Content-Type": CTYPE})
        if status != 201:
            raise RuntimeError(f"creating {path}: {status} {body[:200]!r}")
    stats = Stats()
    mariadb_pids = [int((cluster.dir / f"node{n}" / "launcher.pid").read_text()) for n in (1, 2, 3)]
    cpu0 = ([cpu_seconds(pgid=s.proc.pid) for s in servers], [cpu_seconds(pid=p) for p in mariadb_pids])
    deadline = time.monotonic() + seconds

    def client(number: int):
        rnd = random.Random(number)
        conns = {s.port: http.client.HTTPConnection("127.0.0.1", s.port, timeout=30) for s in servers}
        ports = list(conns)
        try:
            while time.monotonic() < deadline:
                path = rnd.choice(paths[number::clients])  # each client its own users: no 412 expected
                conn = conns[rnd.choice(ports)]
                t0 = time.monotonic()
                conn.request("GET", path)
                response = conn.getresponse()
                doc, etag = response.read(), response.getheader("ETag")
                stats.latency(time.monotonic() - t0)
                stats.add("requests")
                stats.add(f"GET {response.status}")
                if rnd.random() < 1 / 9:  # one PUT per nine GETs: 10% of the requests
                    counter = int(re.search(rb"Counter (\d+)", doc).group(1)) + 1
                    t0 = time.monotonic()
                    conn.request("PUT", path, body=friends_document(counter),
                                 headers={"Content-Type": CTYPE, "If-Match": etag})
                    response = conn.getresponse()
                    response.read()
                    stats.latency(time.monotonic() - t0)
                    stats.add("requests")
                    stats.add(f"PUT {response.status}")
        finally:
            for c in conns.values():
                c.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.monotonic() - started
    xcap_cpu = sum(cpu_seconds(pgid=s.proc.pid) for s in servers) - sum(cpu0[0])
    db_cpu = sum(cpu_seconds(pid=p) for p in mariadb_pids) - sum(cpu0[1])
    # Bytes per row on disk: a small table is all page overhead, so measure with BULK_ROWS more rows
    # (copies of the sizing documents under other users), inserted in batches on node 1.
    with contextlib.closing(cluster.connect(1)) as conn, conn.cursor() as cur:
        doc = friends_document(0)
        for start in range(0, BULK_ROWS, 1000):
            cur.executemany(
                "INSERT INTO xcap (username, domain, doc_type, doc_uri, doc, etag, source, port) "
                "VALUES (%s, 'example.com', 8, %s, %s, %s, 0, 0)",
                [(f"bulk{n}", f"/xcap-root/resource-lists/users/sip:bulk{n}@example.com/index", doc,
                  f"{n:030x}") for n in range(start, min(start + 1000, BULK_ROWS))])
        cur.execute("ANALYZE TABLE xcap")
        cur.fetchall()
        cur.execute("SELECT COUNT(*), AVG(LENGTH(doc)) FROM xcap")
        rows, avg_doc = cur.fetchone()
        cur.execute("SELECT data_length + index_length FROM information_schema.TABLES "
                    "WHERE table_schema='kamailio' AND table_name='xcap'")
        table_bytes = cur.fetchone()[0]
    requests = stats.get("requests")
    ok = stats.get("GET 200") + stats.get("PUT 200")
    figures = {
        "seconds": elapsed, "requests": requests, "ok": ok, "puts": stats.get("PUT 200"),
        "xcap cpu": xcap_cpu, "db cpu": db_cpu, "rows": rows, "avg doc": float(avg_doc or 0),
        "table bytes": int(table_bytes or 0), "p50 ms": stats.percentile(0.5) * 1000,
        "p99 ms": stats.percentile(0.99) * 1000,
        "failures": [] if ok == requests else [f"{requests - ok} requests not answered 200: {stats.counts}"],
    }
    out(f"== sizing: {clients} clients, {users} users with one ~1.2 KiB document each, 90% GET / 10% PUT "
        f"(If-Match), {elapsed:.1f} s through {len(servers)} processes on 3 nodes")
    out(f"   requests {requests} ({requests / elapsed:.0f}/s, {stats.get('PUT 200')} PUTs), all 200: "
        f"{ok == requests}; latency p50 {figures['p50 ms']:.1f} ms, p99 {figures['p99 ms']:.1f} ms")
    out(f"   CPU: xcap-wsgi {xcap_cpu / requests * 1000:.2f} ms per request = {requests / xcap_cpu:.0f} requests/s "
        f"per core; MariaDB Galera {db_cpu / requests * 1000:.2f} ms per request over the 3 nodes "
        f"(every node applies every write)")
    out(f"   table: {rows} rows, average doc {figures['avg doc']:.0f} bytes, data+index "
        f"{figures['table bytes'] / max(rows, 1):.0f} bytes per row (InnoDB estimate)")
    return figures


def start_servers(cluster: Cluster, count: int) -> list[Server]:
    return [Server(f"mysql://xcap:xcap@{cluster.hosts(i % 3 + 1)}/kamailio?{STORE_OPTIONS}", cluster.dir)
            for i in range(count)]


def run(seconds: float, clients: int, servers: int, kill_node: int, sizing: float = 0, how: str = "kill",
        out=print) -> list[dict]:
    """The whole rig: cluster, processes, steady phase, failover phase; everything stopped at the end."""
    reason = missing_requirements()
    if reason:
        raise RuntimeError(reason)
    cluster = Cluster()
    procs: list[Server] = []
    try:
        t0 = time.monotonic()
        cluster.start()
        out(f"3-node Galera cluster on 127.0.0.1:{cluster.port(1)},{cluster.port(2)},{cluster.port(3)} "
            f"ready in {time.monotonic() - t0:.1f} s")
        from xcap_wsgi.storage.mysql import initdb

        out("   " + initdb(f"mysql://xcap:xcap@127.0.0.1:{cluster.port(1)}/kamailio"))
        procs = start_servers(cluster, servers)
        out(f"{servers} xcap-wsgi processes, process i starting on node i: "
            + ", ".join(f"127.0.0.1:{p.port}" for p in procs) + f" (store options {STORE_OPTIONS})")
        phases = [run_phase("steady", cluster, procs, seconds, clients, out=out),
                  run_phase("failover", cluster, procs, seconds, clients, kill_node=kill_node, how=how, out=out)]
        if sizing:
            phases.append(run_sizing(cluster, procs, sizing, clients, out=out))
        return phases
    finally:
        for p in procs:
            p.stop()
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--kill-node", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--stop", choices=("kill", "term"), default="kill",
                        help="how the node goes down: SIGKILL (crash, default) or SIGTERM (clean shutdown)")
    parser.add_argument("--sizing", type=float, default=15.0,
                        help="seconds of a last phase measuring CPU per request (0: skip)")
    args = parser.parse_args()
    if args.seconds > 120 or args.clients > 32 or args.servers > 6:
        parser.error("bounded load: at most 120 s per phase, 32 clients, 6 processes")
    sys.path.insert(0, str(REPO))
    if args.sizing > 120:
        parser.error("bounded load: at most 120 s of sizing")
    phases = run(args.seconds, args.clients, args.servers, args.kill_node, args.sizing, args.stop,
                 out=lambda s: print(s, flush=True))
    failed = any(p["failures"] for p in phases)
    print("RESULT:", "FAIL" if failed else "OK (zero lost updates, no 500s, cluster and processes serving)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
