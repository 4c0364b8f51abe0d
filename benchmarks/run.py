"""xcap-wsgi and Kamailio's xcap_server side by side on one private MariaDB (issue 9).

    python benchmarks/run.py --quick          # 3 s per row (about 4 minutes per deployment)
    python benchmarks/run.py --full --duration 6 --connections 8,32 --deployments serve,serve-uwsgi:3x2,serve-granian:2x2 \
        --db-socket --kamailio-tcp --kamailio-close   # the headline of docs/benchmarks.md
    python benchmarks/run.py --sweep waitress:2x4,uwsgi11:4x8 --ops get_doc,put_el --duration 5   # deployments only

One command starts everything on 127.0.0.1 and stops it again:

* a private MariaDB (own datadir and port, latin1 database ``kamailio`` as kamdbctl creates it,
  Kamailio's own DDL from the kamailio package);
* Kamailio 5.6 with xcap_server's sample config (benchmarks/kamailio-xcap.cfg) at its best:
  keep-alive (the sample's set_reply_close commented out, as an operator would run it) and
  ``tcp_children`` chosen by a sweep in the same run (``--kamailio-sweep 4,8,16``, the default of
  ``--full``: each value runs GET document, PUT document and PUT element at the largest
  connection count, twice, taking turns; the best geometric mean wins), and with ``--db-socket``
  MariaDB over its Unix socket, as Kamailio's usual ``db_url`` (``...@localhost/...``) reaches it
  (every server then uses the socket; ``--kamailio-tcp`` adds Kamailio over TCP as a labelled
  column). ``--kamailio-close`` adds the unmodified sample (closes the connection after every
  reply) as another labelled column;
* each xcap-wsgi deployment of ``--deployments``: ``serve`` is ``python -m xcap_wsgi serve
  --db mysql://... --anonymous`` with its default processes and threads (what the README's first
  command starts); ``waitress:WxT`` is the same with ``--workers W --threads T``; ``serve-uwsgi:WxT`` and
  ``serve-granian:WxT`` the same with ``--server uwsgi`` / ``--server granian``
  (xcap_wsgi.backends); ``uwsgi:WxT`` is uWSGI's HTTP router
  in front of W processes x T threads running the PasteDeploy app, reached over a Unix socket
  (needs ``pip install pyuwsgi``); a suffix ``@pymysql`` or ``@mysqlclient`` names the MySQL
  driver (URL option ``driver``; default: mysqlclient when installed);
  ``uwsgi11:WxT`` is the same app with uWSGI's workers speaking HTTP/1.1 themselves
  (``--http11-socket``, keep-alive; each thread serves one client connection at a time, so W x T
  must be at least the number of connections);
* 100 resource-lists documents of about 1.2 KiB, PUT through xcap-wsgi (both servers read the
  same rows).

Then wrk (keep-alive, random document per request, fixed duration, bounded connections) runs
every row against both servers: GET document, GET element, GET attribute, PUT document, PUT
element, and a 90/10 mix of document GET/PUT, at 1, 8 and 32 connections. A row's time is cut
into slices of ``--slice`` seconds (default 2); in each slice every server gets one wrk run, in
an order that turns round from slice to slice, and a server's runs of the row are merged (counts
summed, percentiles of the pooled latencies). Last, the ceiling: the same primary-key SELECT on
the same table without HTTP, from a C client (``mysqlslap``, 100 documents' SELECTs in turn, 1, 2
and 8 connections) and from Python loops with PyMySQL and with mysqlclient (1 and 2 processes). The table gives requests/s,
p50 and p99 and the ratio xcap-wsgi / Kamailio per row, then the CPU time per request of each
server's processes and of MariaDB. Client, servers and database share the machine's cores, so
compare figures of one run only.

Every table states the recall-cache setting and whether serve's access log is on.

Kamailio's sample config closes the connection after every reply (set_reply_close); wrk
reconnects and counts each close as a socket "read" error, which is therefore not an error
there. Without ``--kamailio-sweep``, ``--kamailio-children`` and ``--kamailio-keepalive`` pick
one Kamailio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Stack, cpu_seconds, doc_path, document, http, merge_runs, process_tree, wrk  # noqa: E402

OPS = {
    "get_doc": "GET document",
    "get_el": "GET element",
    "get_att": "GET attribute",
    "put_doc": "PUT document",
    "put_el": "PUT element",
    "mix": "90/10 GET/PUT document",
}
DOCS = 100


# -- the ceiling --------------------------------------------------------------------------------


def _select_loop(where: dict, seconds: float, queue, driver: str = "pymysql") -> None:
    args = dict(**where, user="xcap", password="xcap", database="kamailio", autocommit=True, charset="utf8mb4")
    if driver == "mysqlclient":
        import MySQLdb

        conn = MySQLdb.connect(**args)
    else:
        import pymysql

        conn = pymysql.connect(**args)
    keys = [("user%d" % n, "example.com", doc_path(n)) for n in range(DOCS)]
    sql = "SELECT doc, etag FROM xcap WHERE username=%s AND domain=%s AND doc_uri=%s"
    done = 0
    end = time.perf_counter() + seconds
    cur = conn.cursor()
    while time.perf_counter() < end:
        for _ in range(100):
            cur.execute(sql, random.choice(keys))
            cur.fetchone()
        done += 100
    cur.close()
    conn.close()
    queue.put(done)


def ceiling(where: dict, processes: int, seconds: float, driver: str = "pymysql") -> float:
    """Primary-key SELECTs per second of a raw Python loop (no HTTP) in ``processes`` processes;
    ``where``: ``host`` and ``port``, or ``unix_socket``."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_select_loop, args=(where, seconds, queue, driver)) for _ in range(processes)]
    for p in procs:
        p.start()
    total = sum(queue.get(timeout=seconds + 30) for _ in procs)
    for p in procs:
        p.join(10)
    return total / seconds


def c_ceiling(stack: Stack, concurrency: int, seconds: float, socket: bool = False) -> float:
    """The same SELECTs per second from mysqlslap (MariaDB's C client, libmariadb), ``concurrency``
    connections, each running the 100 documents' SELECTs in turn; sized to take about ``seconds``."""
    queries = stack.dir / "select.sql"
    queries.write_text("".join(
        f"SELECT doc, etag FROM xcap WHERE username='user{n}' AND domain='example.com' AND "
        f"doc_uri='{doc_path(n)}';\n" for n in range(DOCS)))
    total = 2000 * concurrency
    rate = 0.0
    for _ in range(2):  # a probe, then a run of about ``seconds``
        out = subprocess.run(
            ["mysqlslap", *(["-S", stack.db_socket] if socket else ["-h", "127.0.0.1", "-P", str(stack.db_port)]),
             "-u", "xcap", "-pxcap",
             "--create-schema=kamailio", f"--query={queries}", f"--concurrency={concurrency}",
             "--iterations=1", f"--number-of-queries={total}"],
            capture_output=True, text=True, timeout=seconds * 4 + 60)
        line = next((l for l in out.stdout.splitlines() if "Average number of seconds" in l), None)
        if line is None:
            raise RuntimeError(f"mysqlslap: {out.stdout[-500:]} {out.stderr[-500:]}")
        elapsed = float(line.split(":")[1].split()[0])
        rate = total / max(elapsed, 1e-3)
        total = max(1000, int(rate * seconds))
    return rate


# -- checks -------------------------------------------------------------------------------------

LIST = "/~~/resource-lists/list%5B@name=%22friends%22%5D"
SAMPLES = {
    "get_doc": ("GET", "", None, None),
    "get_el": ("GET", LIST + "/entry%5B3%5D", None, None),
    "get_att": ("GET", LIST + "/entry%5B3%5D/@uri", None, None),
    "put_doc": ("PUT", "", document(1), "application/resource-lists+xml"),
    "put_el": ("PUT", LIST + "/entry%5B@uri=%22sip:bench@example.com%22%5D",
               b'<entry uri="sip:bench@example.com"><display-name>Bench 1</display-name></entry>',
               "application/xcap-el+xml"),
}


def measured(port: int, root_pid: int, db_pid: int, op: str, conns: int, duration: float, template: Path) -> dict:
    """One wrk run plus the CPU time the server's processes and MariaDB spent per request."""
    server = process_tree(root_pid)
    before = cpu_seconds(server), cpu_seconds([db_pid])
    result = wrk(port, op, conns, duration, template=template)
    after = cpu_seconds(server), cpu_seconds([db_pid])
    requests = max(result["requests"], 1)
    result["server_cpu_us"] = (after[0] - before[0]) / requests * 1e6
    result["db_cpu_us"] = (after[1] - before[1]) / requests * 1e6
    return result


def check_servers(ports: dict[str, int]) -> None:
    """Every operation answers 200 on both servers before anything is timed."""
    for name, port in ports.items():
        for op, (method, suffix, body, ctype) in SAMPLES.items():
            status, _, data = http(port, method, doc_path(7) + suffix, body, {"Content-Type": ctype} if ctype else {})
            if status != 200:
                raise RuntimeError(f"{name}: {op} answered {status}: {data[:300]!r}")


# -- output -------------------------------------------------------------------------------------


def _installed(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def versions() -> dict:
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except Exception:  # noqa: BLE001 - informational only
            return "?"

    import pymysql
    import waitress  # noqa: F401
    from importlib.metadata import version

    mem_kib = int(next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1])
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {
        "cpus": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "os": out(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]), "python": platform.python_version(),
        "waitress": version("waitress"), "pymysql": version("PyMySQL"), "uwsgi": _installed("pyuwsgi"),
        "granian": _installed("granian"), "mysqlclient": _installed("mysqlclient"),
        "mariadb": out(["mariadbd", "--version"]).replace("mariadbd  Ver ", ""),
        "kamailio": out(["kamailio", "-v"]), "wrk": out(["sh", "-c", "wrk -v 2>&1"]),
    }


def _cells(r: dict | None) -> list[str]:
    if r is None:
        return ["–", "–", "–"]
    return [f"{r['rps']:,.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}"]


def _errors(name: str, r: dict, closes_are_normal: bool) -> str | None:
    socket_errors = r["connect"] + r["write"] + (0 if closes_are_normal else r["read"])
    if r["status"] or r["timeout"] or socket_errors:
        return f"{name}: {r['status']} non-2xx, {r['timeout']} timeouts, {socket_errors} socket errors"
    return None


KAMAILIO = "Kamailio"  # the reference: keep-alive, best tcp_children
KAMAILIO_CLOSE = "Kamailio sample (closes)"
KAMAILIO_TCP = "Kamailio over TCP"


def header(names: list[str], kamailio: str, others: list[str]) -> str:
    cols = ["operation", "conns"]
    for name in names:
        cols += [f"{name} req/s", "p50 ms", "p99 ms", "ratio"]
    cols += [f"{kamailio} req/s", "p50 ms", "p99 ms"]
    for other in others:  # Kamailio's other configurations, for reference
        cols += [f"{other} req/s", "p99 ms"]
    cols += ["errors"]
    return "| " + " | ".join(cols) + " |\n|---|" + "---:|" * (len(cols) - 2) + "---|"


def fmt_row(label: str, conns: int, xs: dict[str, dict], k: dict, others: dict[str, dict]) -> str:
    cells = [label, str(conns)]
    errors = []
    for name, x in xs.items():
        ratio = f"{x['rps'] / k['rps']:.2f}" if k["rps"] else "–"
        cells += [*_cells(x), ratio]
        errors.append(_errors(name, x, False))
    cells += _cells(k)
    errors.append(_errors(KAMAILIO, k, False))
    for name, other in others.items():
        cells += [f"{other['rps']:,.0f}", f"{other['p99_ms']:.1f}"]
        errors.append(_errors(name, other, name == KAMAILIO_CLOSE))
    cells.append("; ".join(e for e in errors if e) or "0")
    return "| " + " | ".join(cells) + " |"


KINDS = ("serve", "waitress", "serve-uwsgi", "serve-granian", "uwsgi", "uwsgi11")


def parse_deployment(spec: str) -> tuple[str, str, int, int, str | None]:
    """``waitress:2x4`` / ``serve-uwsgi:3x2@pymysql`` -> (label, kind, processes, threads, driver)."""
    body, _, driver = spec.partition("@")
    kind, _, size = body.partition(":")
    if kind == "serve" and not size and driver in ("", "pymysql", "mysqlclient"):
        return spec, kind, 0, 0, driver or None  # serve's defaults: no --workers / --threads
    if kind not in KINDS or "x" not in size or driver not in ("", "pymysql", "mysqlclient"):
        raise ValueError(f"deployment {spec!r}: expected KIND:WxT[@pymysql|@mysqlclient], KIND one of "
                         + ", ".join(KINDS))
    workers, threads = (int(v) for v in size.lower().split("x"))
    return spec, kind, workers, threads, driver or None


def start_deployment(stack: Stack, kind: str, workers: int, threads: int, env: dict, driver: str | None = None):
    db_url = stack.db_url + (("&" if "?" in stack.db_url else "?") + f"driver={driver}" if driver else "")
    if kind in ("uwsgi", "uwsgi11"):
        return stack.start_uwsgi(workers, threads, router=kind == "uwsgi", db_url=db_url)
    extra = ("--server", kind.split("-", 1)[1]) if kind.startswith("serve-") else ()
    return stack.start_xcap_wsgi(workers, threads, env=env, extra=extra, db_url=db_url)


def take_turns(servers: dict, runs: dict, op: str, conns: int, seconds: float, slices: int, turn: int,
               db_pid: int, template: Path) -> None:
    """Every server of ``servers`` (name -> (port, pid)) runs ``op`` once per slice, in an order that
    turns round from slice to slice (a drift in background load then reaches every server alike)."""
    for n in range(slices):
        order = list(servers)
        shift = (n + turn) % len(order)
        for name in order[shift:] + order[:shift]:
            port, pid = servers[name]
            runs[name].append(measured(port, pid, db_pid, op, conns, seconds / slices, template))


def kamailio_sweep(stack: Stack, children: list[int], conns: int, template: Path, db_pid: int,
                   seconds: float = 2.0) -> tuple[int, int, int, list[str]]:
    """Keep-alive Kamailio with each ``tcp_children`` value: GET document, PUT document and PUT
    element at ``conns`` connections, twice each, taking turns; the best geometric mean of the
    three rates wins. Returns (children, port, pid, table lines); the others are stopped."""
    started = {}
    for n in children:
        port = stack.start_kamailio(n, keepalive=True)
        started[f"tcp_children={n}"] = (port, stack.kamailio_proc.pid, stack.kamailio_proc, n)
    servers = {name: (port, pid) for name, (port, pid, _, _) in started.items()}
    for port, _ in servers.values():
        wrk(port, "mix", conns, 1.0, template=template)
    ops = ("get_doc", "put_doc", "put_el")
    rates: dict[str, dict[str, float]] = {name: {} for name in servers}
    for turn, op in enumerate(ops):
        runs = {name: [] for name in servers}
        take_turns(servers, runs, op, conns, 2 * seconds, 2, turn, db_pid, template)
        for name, r in runs.items():
            rates[name][op] = merge_runs(r)["rps"]
    score = {name: (r["get_doc"] * r["put_doc"] * r["put_el"]) ** (1 / 3) for name, r in rates.items()}
    best = max(score, key=score.get)
    lines = [f"Kamailio keep-alive, tcp_children sweep at {conns} connections ({2 * seconds:g} s per cell "
             "in 2 slices; req/s):", "",
             "| tcp_children | GET document | PUT document | PUT element | geometric mean |",
             "|---:|---:|---:|---:|---:|"]
    for name, (_, _, proc, n) in started.items():
        r = rates[name]
        lines.append(f"| {n}{' (chosen)' if name == best else ''} | {r['get_doc']:,.0f} | {r['put_doc']:,.0f} | "
                     f"{r['put_el']:,.0f} | {score[name]:,.0f} |")
        if name != best:
            stack.stop_proc(proc)
    port, pid, _, n = started[best]
    return n, port, pid, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per row (default)")
    parser.add_argument("--full", action="store_true", help="10 s per row; --kamailio-sweep 4,8,16 unless given")
    parser.add_argument("--duration", type=float, help="seconds per row (overrides --quick/--full)")
    parser.add_argument("--connections", default="1,8,32", help="comma-separated connection counts (max 64)")
    parser.add_argument("--ops", default=",".join(OPS), help="comma-separated rows: " + ",".join(OPS))
    parser.add_argument("--deployments", default="waitress:2x4",
                        help="xcap-wsgi deployments measured side by side, comma-separated: waitress:WxT is "
                             "`xcap-wsgi serve --workers W --threads T`; serve-uwsgi:WxT / serve-granian:WxT "
                             "the same with --server uwsgi / granian; uwsgi:WxT is uWSGI's HTTP router with "
                             "W processes x T threads, uwsgi11:WxT uWSGI workers on --http11-socket "
                             "(both need pyuwsgi); suffix @pymysql / @mysqlclient: the MySQL driver")
    parser.add_argument("--slice", type=float, default=2.0,
                        help="seconds per slice: each row is cut into slices of about this length, and "
                             "the servers take turns within every slice (default 2; 0: one run per row)")
    parser.add_argument("--log-requests", action="store_true", help="keep serve's per-request access log on")
    parser.add_argument("--recall-cache", action="store_true",
                        help="turn the recall cache on (setting recall_cache, off by default; stated in the output)")
    parser.add_argument("--kamailio-sweep", metavar="N,N,..",
                        help="Kamailio keep-alive with each tcp_children value; the best is the reference "
                             "(default with --full: 4,8,16)")
    parser.add_argument("--kamailio-children", type=int, default=8, help="Kamailio tcp_children (no sweep)")
    parser.add_argument("--kamailio-keepalive", action="store_true",
                        help="no sweep: drop set_reply_close from the sample (always so with a sweep)")
    parser.add_argument("--kamailio-close", action="store_true",
                        help="also the unmodified sample (set_reply_close, --kamailio-children), a labelled column")
    parser.add_argument("--sweep", help="xcap-wsgi only: compare deployments (same syntax as --deployments) "
                                         "on --ops at the largest of --connections")
    parser.add_argument("--db-socket", action="store_true",
                        help="every server (and the ceiling's clients) reaches MariaDB over its Unix socket, "
                             "not TCP on 127.0.0.1")
    parser.add_argument("--kamailio-tcp", action="store_true",
                        help="with --db-socket: also Kamailio as chosen, over TCP, as a reference column")
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--json", help="also write all figures to this file")
    args = parser.parse_args()
    duration = args.duration or (10.0 if args.full else 3.0)
    slices = max(1, round(duration / args.slice)) if args.slice > 0 else 1
    connections = [int(c) for c in args.connections.split(",")]
    if max(connections) > 64 or duration > 60:
        parser.error("bounded load: at most 64 connections and 60 s per row")
    ops = [op for op in args.ops.split(",") if op]
    for op in ops:
        if op not in OPS:
            parser.error(f"unknown row {op}")
    sweep_children = args.kamailio_sweep or ("4,8,16" if args.full else None)
    children = [int(n) for n in sweep_children.split(",")] if sweep_children else []
    specs = [parse_deployment(spec) for spec in args.deployments.split(",")]

    info = versions()
    print(f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['ram_gib']} GiB, {info['os']}; Python {info['python']}, "
          f"waitress {info['waitress']}, uWSGI (pyuwsgi) {info['uwsgi']}, granian {info['granian']}, "
          f"PyMySQL {info['pymysql']}, mysqlclient {info['mysqlclient']}; {info['mariadb']}; {info['kamailio']}; "
          f"{info['wrk']}", flush=True)
    print(f"command: {' '.join(sys.argv)}; started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
          flush=True)
    stack = Stack()
    # Every server started below (waitress, uWSGI, granian) inherits the settings; the figures depend on them.
    os.environ["XCAP_RECALL_CACHE"] = "true" if args.recall_cache else "false"
    env = {} if args.log_requests else {"XCAP_LOG_REQUESTS": "0"}
    conditions = (f"recall_cache={'on' if args.recall_cache else 'off'}, access log "
                  f"{'on' if args.log_requests else 'off'}, MariaDB over "
                  f"{'its Unix socket' if args.db_socket else 'TCP on 127.0.0.1'}")
    results: dict = {"machine": info, "duration": duration, "rows": [], "command": " ".join(sys.argv),
                     "recall_cache": args.recall_cache, "log_requests": args.log_requests,
                     "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    try:
        stack.start_mariadb()
        if args.db_socket:
            stack.use_db_socket()
        template = stack.dir / "template.xml"
        template.write_bytes(document("@N@"))

        if args.sweep:
            print(f"xcap-wsgi: {conditions}", flush=True)
            return sweep(stack, args.sweep, ops, max(connections), duration, env, template)

        db_pid = stack.mariadb_proc.pid
        ports, pids, drivers = {}, {}, {}
        for label, kind, workers, threads, driver in specs:
            ports[label], proc = start_deployment(stack, kind, workers, threads, env, driver)
            pids[label] = proc.pid
            drivers[label] = driver or ("mysqlclient" if info["mysqlclient"] != "not installed" else "pymysql")
        stack.seed(next(iter(ports.values())), DOCS)
        lines: list[str] = []
        if children:
            n, kport, kpid, sweep_lines = kamailio_sweep(stack, children, max(connections), template, db_pid)
            print("\n".join(sweep_lines), flush=True)
            lines += sweep_lines + [""]
            kdesc = f"keep-alive, tcp_children={n} (best of {','.join(map(str, children))})"
        else:
            kport = stack.start_kamailio(args.kamailio_children, keepalive=args.kamailio_keepalive)
            kpid = stack.kamailio_proc.pid
            n = args.kamailio_children
            kdesc = f"tcp_children={n}, " + ("keep-alive" if args.kamailio_keepalive else "sample set_reply_close")
        kdesc += ", MariaDB over " + ("its Unix socket" if args.db_socket else "TCP on 127.0.0.1")
        servers = {**{label: (port, pids[label]) for label, port in ports.items()}, KAMAILIO: (kport, kpid)}
        others: list[str] = []
        if args.kamailio_close:
            cport = stack.start_kamailio(args.kamailio_children, keepalive=False)
            servers[KAMAILIO_CLOSE] = (cport, stack.kamailio_proc.pid)
            others.append(KAMAILIO_CLOSE)
            kdesc += f"; {KAMAILIO_CLOSE}: tcp_children={args.kamailio_children}, set_reply_close"
        if args.kamailio_tcp:
            tport = stack.start_kamailio(n, keepalive=True, over_tcp=True)
            servers[KAMAILIO_TCP] = (tport, stack.kamailio_proc.pid)
            others.append(KAMAILIO_TCP)
            kdesc += f"; {KAMAILIO_TCP}: the same, MariaDB over TCP on 127.0.0.1"
        check_servers({name: port for name, (port, _) in servers.items()})
        caption = (f"xcap-wsgi ({conditions}): " + ", ".join(f"{label} (driver {drivers[label]})" for label in ports)
                   + f"; waitress:WxT = xcap-wsgi serve --workers W --threads T, serve-uwsgi/serve-granian = the "
                   f"same with --server uwsgi/granian; {KAMAILIO}: {kdesc}; {DOCS} documents of "
                   f"{len(document(0))} bytes; wrk {duration:g} s per row and server"
                   f"{f', in {slices} slices of {duration / slices:g} s taking turns' if slices > 1 else ''}")
        print(caption, flush=True)
        results["kamailio"] = kdesc
        for port, _ in servers.values():  # warm up every worker thread's connections, caches, InnoDB pages
            wrk(port, "mix", max(connections), 2.0, template=template)
        lines += [caption, "", header(list(ports), KAMAILIO, others)]
        print(lines[-1], flush=True)
        for conns in connections:
            for op in ops:
                runs: dict[str, list[dict]] = {name: [] for name in servers}
                take_turns(servers, runs, op, conns, duration, slices, len(results["rows"]), db_pid, template)
                merged = {name: merge_runs(r) for name, r in runs.items()}
                k = merged.pop(KAMAILIO)
                other = {name: merged.pop(name) for name in others}
                row = fmt_row(OPS[op], conns, merged, k, other)
                lines.append(row)
                print(row, flush=True)
                results["rows"].append({"op": op, "connections": conns, "xcap_wsgi": merged, "kamailio": k,
                                        "kamailio_close": other.get(KAMAILIO_CLOSE), "kamailio_others": other})
        refs = [KAMAILIO, *others]
        cpu_lines = ["", f"CPU time per request, microseconds: server processes / MariaDB (from /proc, all cores; "
                         f"{conditions})",
                     "", "| operation | conns | " + " | ".join(list(ports) + refs) + " |",
                     "|---|---:|" + "---:|" * (len(ports) + len(refs))]
        for r in results["rows"]:
            refs_r = [r["kamailio"], *r["kamailio_others"].values()]
            cells = [f"{x['server_cpu_us']:.0f} / {x['db_cpu_us']:.0f}" for x in (*r["xcap_wsgi"].values(), *refs_r)]
            cpu_lines.append(f"| {OPS[r['op']]} | {r['connections']} | " + " | ".join(cells) + " |")
        print("\n".join(cpu_lines), flush=True)
        lines.extend(cpu_lines)
        if not args.no_ceiling:
            seconds = min(duration, 5.0)
            where = ({"unix_socket": stack.db_socket} if args.db_socket
                     else {"host": "127.0.0.1", "port": stack.db_port})
            ceil = {}
            for c in (1, 2, 8):
                ceil[f"C client (mysqlslap), {c} connection{'s' if c > 1 else ''}"] = c_ceiling(stack, c, seconds,
                                                                                                 args.db_socket)
            for driver in ("pymysql", "mysqlclient"):
                if driver == "mysqlclient" and info["mysqlclient"] == "not installed":
                    continue
                for procs in (1, 2):
                    ceil[f"{'PyMySQL' if driver == 'pymysql' else 'mysqlclient'} loop, {procs} process"
                         f"{'es' if procs > 1 else ''}"] = ceiling(where, procs, seconds, driver)
            results["ceiling"] = ceil
            best_c = max(v for k, v in ceil.items() if k.startswith("C client"))
            gets = next((r["xcap_wsgi"] for r in results["rows"]
                         if r["op"] == "get_doc" and r["connections"] == max(connections)), {})
            ceil_lines = ["", f"The ceiling: the primary-key SELECT of a document GET on the same table, no HTTP "
                              f"({seconds:g} s each; xcap-wsgi {conditions}):", "",
                          "| client | SELECTs/s |", "|---|---:|"]
            ceil_lines += [f"| {k} | {v:,.0f} |" for k, v in ceil.items()]
            ceil_lines.append("")
            ceil_lines.append(f"GET document at {max(connections)} connections against the best C-client rate "
                              f"({best_c:,.0f}/s; goal: half): " + "; ".join(
                                  f"{label} {r['rps']:,.0f}/s = {r['rps'] / best_c:.0%}" for label, r in gets.items()))
            print("\n".join(ceil_lines), flush=True)
            lines.extend(ceil_lines)
        verdicts = []
        for label in ports:
            misses = [f"{r['op']}@{r['connections']}" for r in results["rows"] if r["connections"] >= 8
                      and r["kamailio"]["rps"] and r["xcap_wsgi"][label]["rps"] / r["kamailio"]["rps"] < 1.0]
            slow = [f"{r['op']}" for r in results["rows"] if r["connections"] >= 32
                    and r["xcap_wsgi"][label]["p99_ms"] >= 50]
            verdicts.append(f"{label}: ratio < 1.0 in {len(misses)} rows {misses or ''}, p99 >= 50 ms at 32 "
                            f"connections in {len(slow)} rows {slow or ''}")
        verdict = ("target (ratio >= 1.0 against Kamailio " + kdesc.split(";")[0] + " at 8 and 32 connections, "
                   "p99 < 50 ms at 32): " + "; ".join(verdicts))
        print("", verdict, sep="\n")
        results["verdict"] = verdict
        results["table"] = "\n".join(lines)
        results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    finally:
        stack.close()
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def sweep(stack: Stack, spec: str, ops: list[str], conns: int, duration: float, env: dict, template: Path) -> int:
    """xcap-wsgi deployments only, one after the other: ``ops`` at ``conns`` connections."""
    seeded = False
    print("| deployment | " + " | ".join(f"{OPS[op]} req/s | p99 ms | SELECT+UPDATE per request" for op in ops) + " |")
    print("|---|" + "---:|---:|---:|" * len(ops))
    for item in spec.split(","):
        label, kind, workers, threads, driver = parse_deployment(item)
        port, proc = start_deployment(stack, kind, workers, threads, env, driver)
        if not seeded:
            stack.seed(port, DOCS)
            seeded = True
        wrk(port, "mix", conns, 2.0, template=template)
        cells = []
        for op in ops:
            before = stack.statement_counts()
            r = wrk(port, op, conns, duration, template=template)
            after = stack.statement_counts()
            errors = r["errors"]
            per = [(after[c] - before[c]) / max(r["requests"], 1) for c in ("Com_select", "Com_update")]
            cells += [f"{r['rps']:,.0f}" + (f" ({errors} errors)" if errors else ""), f"{r['p99_ms']:.1f}",
                      f"{per[0]:.2f} + {per[1]:.2f}"]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
        stack.stop_proc(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
