"""Shared pieces of the benchmarks: a private MariaDB, Kamailio's xcap_server, xcap-wsgi, wrk.

Everything listens on 127.0.0.1 only, in its own temporary folder, and is stopped by
``Stack.close()`` (also on Ctrl-C): the benchmarks leave nothing running.
"""

from __future__ import annotations

import contextlib
import http.client as httpclient
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pymysql

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

KAMAILIO_CONFIG = HERE / "kamailio-xcap.cfg"
KAMAILIO_SQL_DIR = Path("/usr/share/kamailio/mysql")
KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
WRK_SCRIPT = HERE / "xcap.lua"
#: MariaDB's statement counters (SHOW GLOBAL STATUS) that Stack.statement_counts reads.
COUNTERS = ("Com_select", "Com_update", "Com_insert", "Com_delete")
RL_NS = "urn:ietf:params:xml:ns:resource-lists"
XCAP_CAPS = "/xcap-root/xcap-caps/global/index"  # answers once a server is up


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (threads included)."""
    ticks = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def document(counter: int | str = 0, friends: int = 11) -> bytes:
    """The ~1 KiB resource-lists document of the benchmark ("@N@" as counter gives the wrk template)."""
    number = counter if isinstance(counter, str) else f"{counter:09d}"
    entries = [f'    <entry uri="sip:bench@example.com"><display-name>Bench {number}</display-name></entry>\n']
    for n in range(1, friends + 1):
        entries.append(f'    <entry uri="sip:friend{n}@example.com"><display-name>Friend number {n}'
                       f'</display-name></entry>\n')
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="{RL_NS}">\n'
            f'  <list name="friends">\n{"".join(entries)}  </list>\n</resource-lists>\n').encode()


def doc_path(n: int, user: str = "user") -> str:
    return f"/xcap-root/resource-lists/users/sip:{user}{n}@example.com/index"


def http(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 10.0):
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def wait_http(port: int, proc: subprocess.Popen, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} during start-up")
        try:
            http(port, "GET", path, timeout=2)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} within {timeout}s")


def stop(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group we started (start_new_session=True), then SIGKILL."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group (Kamailio's children)


class Stack:
    """The processes of one benchmark run; ``close()`` stops them all, newest first."""

    def __init__(self, keep: bool = False):
        self.dir = Path(tempfile.mkdtemp(prefix="xcapw-bench-"))
        self.keep = keep
        self.procs: list[subprocess.Popen] = []
        self.db_url = ""
        self.db_socket = ""  # MariaDB's Unix socket
        self.tcp_url = ""  # MariaDB over TCP on 127.0.0.1
        self.kamailio_db_url = ""  # as Kamailio's db_url wants it (same transport as db_url)
        self.kamailio_env: dict[str, str] = {}
        self.kamailio_port = self.xcap_port = 0

    # -- MariaDB ------------------------------------------------------------------------------

    def start_mariadb(self, buffer_pool: str = "256M") -> str:
        datadir = self.dir / "mysql"
        port = free_port()
        subprocess.run(["mariadb-install-db", f"--datadir={datadir}", "--user=root",
                        "--auth-root-authentication-method=socket", "--skip-test-db"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sock = self.dir / "mysqld.sock"
        proc = subprocess.Popen(
            [shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={datadir}",
             f"--socket={sock}", f"--pid-file={self.dir / 'mysqld.pid'}", f"--port={port}",
             "--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve",
             f"--log-error={self.dir / 'mysqld.err'}", f"--innodb-buffer-pool-size={buffer_pool}",
             "--innodb-log-file-size=256M", "--max-connections=400", "--innodb-flush-log-at-trx-commit=2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        self.mariadb_proc = proc
        deadline = time.monotonic() + 60
        while True:
            try:
                root = pymysql.connect(unix_socket=str(sock), user="root", autocommit=True)
                break
            except pymysql.err.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("MariaDB did not start: " + (self.dir / "mysqld.err").read_text()[-2000:])
                time.sleep(0.3)
        with contextlib.closing(root), root.cursor() as cur:
            cur.execute("CREATE DATABASE kamailio CHARACTER SET latin1")  # as kamdbctl does
            for host in ("127.0.0.1", "localhost"):  # localhost: the Unix socket (use_db_socket)
                cur.execute(f"CREATE USER 'xcap'@'{host}' IDENTIFIED BY 'xcap'")
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO 'xcap'@'{host}'")
        self.db_url = self.kamailio_db_url = self.tcp_url = f"mysql://xcap:xcap@127.0.0.1:{port}/kamailio"
        self.db_port = port
        self.db_socket = str(sock)
        self._load_kamailio_tables()
        return self.db_url

    def use_db_socket(self) -> None:
        """Servers started from now on reach MariaDB over its Unix socket instead of TCP on
        loopback: xcap-wsgi by ``?unix_socket=``, Kamailio (libmariadb) by the host ``localhost``
        and ``MYSQL_UNIX_PORT``. The benchmark's own queries stay on TCP."""
        self.db_url = f"mysql://xcap:xcap@localhost/kamailio?unix_socket={self.db_socket}"
        self.kamailio_db_url = "mysql://xcap:xcap@localhost/kamailio"
        self.kamailio_env = {"MYSQL_UNIX_PORT": self.db_socket}

    def _load_kamailio_tables(self) -> None:
        files = [KAMAILIO_SQL_DIR / "standard-create.sql", KAMAILIO_SQL_DIR / "presence-create.sql"]
        if not all(f.exists() for f in files):
            from xcap_wsgi.storage.mysql import initdb

            initdb(self.db_url)
            return
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            for f in files:
                for statement in f.read_text().split(";\n"):
                    if statement.strip() and not statement.strip().startswith("--"):
                        cur.execute(statement)

    def connect(self, **extra):
        return pymysql.connect(host="127.0.0.1", port=self.db_port, user="xcap", password="xcap",
                               database="kamailio", autocommit=True, **extra)

    def statement_counts(self) -> dict[str, int]:
        """MariaDB's global statement counters (Com_select/update/insert/delete): differences
        taken around a load show how many statements a request cost, retries included."""
        return self.global_status(COUNTERS)

    def global_status(self, names) -> dict[str, int]:
        """These numeric variables of MariaDB's SHOW GLOBAL STATUS."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN (%s)" % ",".join(["%s"] * len(names)), names)
            return {name: int(value) for name, value in cur.fetchall()}

    def _launch(self, name: str, argv: list[str], log_path: Path, port: int, ready_path: str,
                cwd: Path = REPO, env: dict | None = None) -> subprocess.Popen:
        """Start ``argv`` in its own process group, logging to ``log_path``; wait until it answers
        HTTP on ``port``, else raise with the log's tail."""
        log = open(log_path, "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=cwd, env=env)
        self.procs.append(proc)
        try:
            wait_http(port, proc, ready_path)
        except RuntimeError as exc:
            raise RuntimeError(f"{name}: {exc}\n{log_path.read_text()[-3000:]}") from None
        return proc

    # -- Kamailio -----------------------------------------------------------------------------

    def start_kamailio(self, tcp_children: int = 8, keepalive: bool = False, over_tcp: bool = False) -> int:
        """Kamailio's xcap_server (``tcp_children`` TCP workers; ``keepalive``: the sample's
        set_reply_close commented out; ``over_tcp``: to MariaDB over TCP even after
        ``use_db_socket``); returns the port, ``self.kamailio_proc`` is the process."""
        binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        port = free_port()
        rundir = self.dir / f"kamailio-{port}"
        rundir.mkdir()
        config = (KAMAILIO_CONFIG.read_text()
                  .replace("@HTTP_PORT@", str(port))
                  .replace("@DB_URL@", self.tcp_url if over_tcp else self.kamailio_db_url)
                  .replace("@MPATH@", str(KAMAILIO_MODULES) + "/")
                  .replace("@RUNDIR@", str(rundir))
                  .replace("@TCP_CHILDREN@", str(tcp_children))
                  .replace("@KEEPALIVE@", "# " if keepalive else ""))
        cfg = rundir / "kamailio.cfg"
        cfg.write_text(config)
        self.kamailio_proc = self._launch(
            "Kamailio", [binary, "-f", str(cfg), "-DD", "-E", "-Y", str(rundir), "-w", str(rundir),
                         "-m", "128", "-M", "16"], rundir / "kamailio.log", port, "/", cwd=rundir,
            env={**os.environ, **({} if over_tcp else self.kamailio_env)})
        self.kamailio_port = port
        return port

    # -- xcap-wsgi ----------------------------------------------------------------------------

    def start_xcap_wsgi(self, workers: int = 2, threads: int = 8, extra: tuple = (), env: dict | None = None,
                        port: int | None = None, db_url: str | None = None) -> tuple[int, subprocess.Popen]:
        """``xcap-wsgi serve`` (``extra``: more options, e.g. ``--server uwsgi``; ``workers`` 0: serve's
        default processes and threads)."""
        port = port or free_port()
        size = ("--workers", str(workers), "--threads", str(threads)) if workers else ()
        proc = self._launch(
            "xcap-wsgi",
            [sys.executable, "-m", "xcap_wsgi", "serve", "--db", db_url or self.db_url, "--anonymous", "--host", "127.0.0.1",
             "--port", str(port), *size, *extra],
            self.dir / f"xcap-wsgi-{port}.log", port, XCAP_CAPS, env={**os.environ, **(env or {})})
        self.xcap_port = port
        return port, proc

    def start_gunicorn(self, workers: int = 2, worker_class: str = "sync", threads: int = 1,
                       port: int | None = None) -> tuple[int, subprocess.Popen]:
        """The same app under gunicorn (``app_factory`` of xcap_wsgi.paste), for deployment comparisons."""
        port = port or free_port()
        factory = f"xcap_wsgi.paste:app_factory({{}}, db={self.db_url!r}, anonymous='true')"
        proc = self._launch(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
             "--worker-class", worker_class, "--threads", str(threads), "--keep-alive", "30",
             "--backlog", "1024", factory],
            self.dir / f"gunicorn-{port}.log", port, XCAP_CAPS)
        return port, proc

    def start_uwsgi(self, processes: int = 2, threads: int = 4, port: int | None = None,
                    router: bool = True, db_url: str | None = None) -> tuple[int, subprocess.Popen]:
        """The same app under uWSGI (pyuwsgi wheel) from a PasteDeploy ini, lazy apps (one pool per process).

        ``router``: uWSGI's asynchronous HTTP router process (``--http``) holds the keep-alive client
        connections and passes each request on to a worker over a Unix socket (~60 us of CPU per
        request less than uWSGI's default, a TCP socket on loopback: it connects anew for every
        request); otherwise the workers speak HTTP/1.1 themselves (``--http11-socket``, keep-alive
        included) and each worker thread serves one client connection at a time, so processes x
        threads must cover the connections.
        """
        port = port or free_port()
        ini = self.dir / f"uwsgi-{port}.ini"  # the PasteDeploy app xcap-wsgi ships (egg:xcap-wsgi)
        ini.write_text(f"[app:main]\nuse = egg:xcap-wsgi\ndb = {db_url or self.db_url}\nanonymous = true\n"
                       "log_requests = false\n")
        backend = str(self.dir / f"uwsgi-{port}.sock")
        listen = (["--http", f"127.0.0.1:{port}", "--http-keepalive", "--socket", backend, "--http-to", backend]
                  if router else ["--http11-socket", f"127.0.0.1:{port}"])
        proc = self._launch(
            "uwsgi",
            [shutil.which("uwsgi") or os.path.join(os.path.dirname(sys.executable), "uwsgi"), *listen,
             "--processes", str(processes), "--threads", str(threads), "--lazy-apps", "--master",
             "--die-on-term", "--disable-logging", "--listen", "1024", "--paste", f"config:{ini}"],
            self.dir / f"uwsgi-{port}.log", port, XCAP_CAPS)
        return port, proc

    def stop_proc(self, proc: subprocess.Popen) -> None:
        stop(proc)
        if proc in self.procs:
            self.procs.remove(proc)

    # -- seeding ------------------------------------------------------------------------------

    def seed(self, port: int, count: int = 100, user: str = "user") -> None:
        """``count`` documents PUT through the server at ``port`` (so they pass validation)."""
        for n in range(count):
            status, _, body = http(port, "PUT", doc_path(n, user), document(0),
                                   {"Content-Type": "application/resource-lists+xml"})
            if status not in (200, 201):
                raise RuntimeError(f"seeding {doc_path(n, user)}: {status} {body[:300]!r}")

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        self.procs.clear()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


# -- wrk --------------------------------------------------------------------------------------


def merge_runs(runs: list[dict]) -> dict:
    """One wrk summary from several runs against the same server (slices of one row): counts
    add up, and each percentile is that of the runs' latencies pooled, from their quantile grids
    weighted by request count (exact to the grid: 1 % steps up to 90, 0.1 % up to 99.9)."""
    if len(runs) == 1:
        return runs[0]
    merged = {k: sum(r[k] for r in runs) for k in ("requests", "duration_us", "connect", "read", "write",
                                                  "status", "timeout", "errors")}
    for k in ("server_cpu_us", "db_cpu_us"):
        if all(k in r for r in runs):
            merged[k] = sum(r[k] * r["requests"] for r in runs) / max(merged["requests"], 1)
    total = max(merged["requests"], 1)
    merged["max_us"] = max(r["max_us"] for r in runs)
    merged["mean_us"] = sum(r["mean_us"] * r["requests"] for r in runs) / total
    candidates = sorted({value for r in runs for _, value in r["quantiles"]})

    def share_at_most(value: float) -> float:  # fraction of all requests with latency <= value
        below = 0.0
        for r in runs:
            percent = max((p for p, v in r["quantiles"] if v <= value), default=0.0)
            below += r["requests"] * percent / 100
        return below / total

    for percent in (50, 90, 99):  # the smallest latency with that share at or below it (the share only grows)
        low, high = 0, len(candidates) - 1
        while low < high:
            middle = (low + high) // 2
            if share_at_most(candidates[middle]) >= percent / 100 - 1e-9:
                high = middle
            else:
                low = middle + 1
        merged[f"p{percent}_us"] = candidates[low]
    seconds = merged["duration_us"] / 1e6
    merged["rps"] = merged["requests"] / seconds if seconds else 0.0
    merged["p50_ms"] = merged["p50_us"] / 1000
    merged["p99_ms"] = merged["p99_us"] / 1000
    merged["slices"] = len(runs)
    return merged


def wrk(port: int, op: str, connections: int, duration: float, *, docs: int = 100, template: Path,
        user: str = "user", threads: int | None = None) -> dict:
    """One bounded wrk run (keep-alive, loopback); returns the XCAPJSON summary plus rps and ms."""
    threads = threads or min(2, connections)
    env = {**os.environ, "XCAP_OP": op, "XCAP_DOCS": str(docs), "XCAP_TEMPLATE": str(template), "XCAP_USER": user}
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s", "--timeout", "5s",
           "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration + 60)
    for line in out.stdout.splitlines():
        if line.startswith("XCAPJSON "):
            result = json.loads(line[len("XCAPJSON "):])
            break
    else:
        raise RuntimeError(f"wrk printed no summary: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds if seconds else 0.0
    result["p50_ms"] = result["p50_us"] / 1000
    result["p99_ms"] = result["p99_us"] / 1000
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result
