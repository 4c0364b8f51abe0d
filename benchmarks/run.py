"""xcap-wsgi and Kamailio's xcap_server side by side on one private MariaDB (issue 9).

    python benchmarks/run.py --quick          # 3 s per row (about 4 minutes per deployment)
    python benchmarks/run.py --full --deployments waitress:2x4,uwsgi:2x4,uwsgi11:4x8,uwsgi11:8x4   # 10 s per row (~17 min)
    python benchmarks/run.py --sweep waitress:2x4,uwsgi11:4x8 --ops get_doc,put_el --duration 5   # deployments only

One command starts everything on 127.0.0.1 and stops it again:

* a private MariaDB (own datadir and port, latin1 database ``kamailio`` as kamdbctl creates it,
  Kamailio's own DDL from the kamailio package);
* Kamailio 5.6 with xcap_server's sample config (benchmarks/kamailio-xcap.cfg, 8 TCP workers);
* each xcap-wsgi deployment of ``--deployments``: ``waitress:WxT`` is ``python -m xcap_wsgi serve
  --db mysql://... --anonymous --workers W --threads T``; ``uwsgi:WxT`` is uWSGI's HTTP router
  in front of W processes x T threads running the PasteDeploy app, reached over a Unix socket
  (needs ``pip install pyuwsgi``);
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
summed, percentiles of the pooled latencies). Last, the ceiling: a raw pymysql loop of the
primary-key SELECT on the same table, in one and in two processes. The table gives requests/s,
p50 and p99 and the ratio xcap-wsgi / Kamailio per row, then the CPU time per request of each
server's processes and of MariaDB. Client, servers and database share the machine's cores, so
compare figures of one run only.

Kamailio's sample config closes the connection after every reply (set_reply_close); wrk
reconnects and counts each close as a socket "read" error, which is therefore not an error
here. ``--kamailio-keepalive`` comments set_reply_close out, for comparison.
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


def _select_loop(db_port: int, seconds: float, queue) -> None:
    import pymysql

    conn = pymysql.connect(host="127.0.0.1", port=db_port, user="xcap", password="xcap", database="kamailio",
                           autocommit=True, charset="utf8mb4")
    keys = [("user%d" % n, "example.com", doc_path(n)) for n in range(DOCS)]
    sql = "SELECT doc, etag FROM xcap WHERE username=%s AND domain=%s AND doc_uri=%s"
    done = 0
    end = time.perf_counter() + seconds
    with conn.cursor() as cur:
        while time.perf_counter() < end:
            for _ in range(100):
                cur.execute(sql, random.choice(keys))
                cur.fetchone()
            done += 100
    conn.close()
    queue.put(done)


def ceiling(db_port: int, processes: int, seconds: float) -> float:
    """Primary-key SELECTs per second of a raw pymysql loop (no HTTP) in ``processes`` processes."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_select_loop, args=(db_port, seconds, queue)) for _ in range(processes)]
    for p in procs:
        p.start()
    total = sum(queue.get(timeout=seconds + 30) for _ in procs)
    for p in procs:
        p.join(10)
    return total / seconds


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


def header(names: list[str]) -> str:
    cols = ["operation", "conns"]
    for name in names:
        cols += [f"{name} req/s", "p50 ms", "p99 ms", "ratio"]
    cols += ["Kamailio req/s", "p50 ms", "p99 ms", "errors"]
    return "| " + " | ".join(cols) + " |\n|---|" + "---:|" * (1 + 4 * len(names) + 3) + "---|"


def fmt_row(label: str, conns: int, xs: dict[str, dict], k: dict) -> str:
    cells = [label, str(conns)]
    errors = []
    for name, x in xs.items():
        ratio = f"{x['rps'] / k['rps']:.2f}" if k["rps"] else "–"
        cells += [*_cells(x), ratio]
        errors.append(_errors(name, x, False))
    cells += _cells(k)
    errors.append(_errors("Kamailio", k, True))
    cells.append("; ".join(e for e in errors if e) or "0")
    return "| " + " | ".join(cells) + " |"


def parse_deployment(spec: str) -> tuple[str, str, int, int]:
    """``waitress:2x4`` / ``uwsgi:2x4`` -> (label, kind, processes, threads)."""
    kind, _, size = spec.partition(":")
    if kind not in ("waitress", "uwsgi", "uwsgi11") or "x" not in size:
        raise ValueError(f"deployment {spec!r}: expected waitress:WxT, uwsgi:WxT or uwsgi11:WxT")
    workers, threads = (int(v) for v in size.lower().split("x"))
    return spec, kind, workers, threads


def start_deployment(stack: Stack, kind: str, workers: int, threads: int, env: dict):
    if kind in ("uwsgi", "uwsgi11"):
        return stack.start_uwsgi(workers, threads, router=kind == "uwsgi")
    return stack.start_xcap_wsgi(workers, threads, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per row (default)")
    parser.add_argument("--full", action="store_true", help="10 s per row")
    parser.add_argument("--duration", type=float, help="seconds per row (overrides --quick/--full)")
    parser.add_argument("--connections", default="1,8,32", help="comma-separated connection counts (max 64)")
    parser.add_argument("--ops", default=",".join(OPS), help="comma-separated rows: " + ",".join(OPS))
    parser.add_argument("--deployments", default="waitress:2x4",
                        help="xcap-wsgi deployments measured side by side, comma-separated: waitress:WxT is "
                             "`xcap-wsgi serve --workers W --threads T`; uwsgi:WxT is uWSGI's HTTP router with "
                             "W processes x T threads, uwsgi11:WxT uWSGI workers on --http11-socket "
                             "(both need pyuwsgi)")
    parser.add_argument("--slice", type=float, default=2.0,
                        help="seconds per slice: each row is cut into slices of about this length, and "
                             "the servers take turns within every slice (default 2; 0: one run per row)")
    parser.add_argument("--log-requests", action="store_true", help="keep serve's per-request access log on")
    parser.add_argument("--recall-cache", action="store_true",
                        help="turn the recall cache on (setting recall_cache, off by default; stated in the output)")
    parser.add_argument("--kamailio-children", type=int, default=8, help="Kamailio tcp_children")
    parser.add_argument("--kamailio-keepalive", action="store_true", help="drop set_reply_close from the sample")
    parser.add_argument("--sweep", help="xcap-wsgi only: compare deployments (same syntax as --deployments) "
                                         "on --ops at the largest of --connections")
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

    info = versions()
    print(f"machine: {info['cpus']} CPUs ({info['cpu']}), {info['ram_gib']} GiB, {info['os']}; Python {info['python']}, "
          f"waitress {info['waitress']}, uWSGI (pyuwsgi) {info['uwsgi']}, PyMySQL {info['pymysql']}; {info['mariadb']}; {info['kamailio']}; "
          f"{info['wrk']}", flush=True)
    stack = Stack()
    results: dict = {"machine": info, "duration": duration, "rows": [], "command": " ".join(sys.argv),
                     "recall_cache": args.recall_cache}
    env = {} if args.log_requests else {"XCAP_LOG_REQUESTS": "0"}
    # Every server started below (waitress, uWSGI) inherits the setting; the figures depend on it.
    os.environ["XCAP_RECALL_CACHE"] = "true" if args.recall_cache else "false"
    recall = f"recall_cache={'on' if args.recall_cache else 'off'}"
    try:
        stack.start_mariadb()
        template = stack.dir / "template.xml"
        template.write_bytes(document("@N@"))

        if args.sweep:
            print(f"xcap-wsgi: {recall}", flush=True)
            return sweep(stack, args.sweep, ops, max(connections), duration, env, template)

        kport = stack.start_kamailio(args.kamailio_children, keepalive=args.kamailio_keepalive)
        kpid = stack.procs[-1].pid
        db_pid = stack.mariadb_proc.pid
        ports, pids = {}, {}
        for spec in args.deployments.split(","):
            label, kind, workers, threads = parse_deployment(spec)
            ports[label], proc = start_deployment(stack, kind, workers, threads, env)
            pids[label] = proc.pid
        stack.seed(next(iter(ports.values())), DOCS)
        check_servers({**ports, "Kamailio": kport})
        print(f"xcap-wsgi: {args.deployments} (waitress = xcap-wsgi serve --workers W --threads T"
              f"{'' if args.log_requests else ', XCAP_LOG_REQUESTS=0'}; {recall}); Kamailio: tcp_children="
              f"{args.kamailio_children}{', keep-alive' if args.kamailio_keepalive else ', sample set_reply_close'}; "
              f"{DOCS} documents of {len(document(0))} bytes; wrk {duration:g} s per row and server"
              f"{f', in {slices} slices of {duration / slices:g} s taking turns' if slices > 1 else ''}", flush=True)
        for port in (*ports.values(), kport):  # warm up every worker thread's connections, caches, InnoDB pages
            wrk(port, "mix", max(connections), 2.0, template=template)
        lines = [header(list(ports))]
        print(lines[0], flush=True)
        servers = {**{label: (port, pids[label]) for label, port in ports.items()}, "Kamailio": (kport, kpid)}
        for conns in connections:
            for op in ops:
                # The row's time is cut into slices, and every server runs once per slice, in an
                # order that turns round from slice to slice: a drift in background load (this
                # machine moves by 15-25 % within minutes) then reaches every server alike.
                runs: dict[str, list[dict]] = {name: [] for name in servers}
                for n in range(slices):
                    order = list(servers)
                    shift = (n + len(results["rows"])) % len(order)
                    for name in order[shift:] + order[:shift]:
                        port, pid = servers[name]
                        runs[name].append(measured(port, pid, db_pid, op, conns, duration / slices, template))
                merged = {name: merge_runs(r) for name, r in runs.items()}
                k = merged.pop("Kamailio")
                xs = merged
                row = fmt_row(OPS[op], conns, xs, k)
                lines.append(row)
                print(row, flush=True)
                results["rows"].append({"op": op, "connections": conns, "xcap_wsgi": xs, "kamailio": k})
        cpu_lines = ["", "CPU time per request, microseconds: server processes / MariaDB (from /proc, all cores)",
                     "", "| operation | conns | " + " | ".join(list(ports) + ["Kamailio"]) + " |",
                     "|---|---:|" + "---:|" * (len(ports) + 1)]
        for r in results["rows"]:
            cells = [f"{x['server_cpu_us']:.0f} / {x['db_cpu_us']:.0f}" for x in (*r["xcap_wsgi"].values(), r["kamailio"])]
            cpu_lines.append(f"| {OPS[r['op']]} | {r['connections']} | " + " | ".join(cells) + " |")
        print("\n".join(cpu_lines), flush=True)
        lines.extend(cpu_lines)
        if not args.no_ceiling:
            one = ceiling(stack.db_port, 1, duration)
            two = ceiling(stack.db_port, 2, duration)
            results["ceiling"] = {"1": one, "2": two}
            gets = next((r["xcap_wsgi"] for r in results["rows"]
                         if r["op"] == "get_doc" and r["connections"] == max(connections)), {})
            line = (f"ceiling (raw pymysql primary-key SELECT loop, no HTTP): {one:,.0f}/s in 1 process, "
                    f"{two:,.0f}/s in 2 processes")
            for label, r in gets.items():
                line += (f"; {label} GET document at {max(connections)} connections: {r['rps']:,.0f}/s = "
                         f"{r['rps'] / two:.0%} of the 2-process ceiling")
            print(line)
            lines.append("")
            lines.append(line)
        verdicts = []
        for label in ports:
            misses = [f"{r['op']}@{r['connections']}" for r in results["rows"] if r["connections"] >= 8
                      and r["kamailio"]["rps"] and r["xcap_wsgi"][label]["rps"] / r["kamailio"]["rps"] < 1.0]
            slow = [f"{r['op']}" for r in results["rows"] if r["connections"] >= 32
                    and r["xcap_wsgi"][label]["p99_ms"] >= 50]
            verdicts.append(f"{label}: ratio < 1.0 in {len(misses)} rows {misses or ''}, p99 >= 50 ms at 32 "
                            f"connections in {len(slow)} rows {slow or ''}")
        verdict = "target (ratio >= 1.0 at 8 and 32 connections, p99 < 50 ms at 32): " + "; ".join(verdicts)
        print(verdict)
        results["verdict"] = verdict
        results["table"] = "\n".join(lines)
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
        label, kind, workers, threads = parse_deployment(item)
        port, proc = start_deployment(stack, kind, workers, threads, env)
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
