"""Profile the WSGI hot path in-process (no HTTP server, no client): CPU per request, and where it goes.

    python benchmarks/profile_wsgi.py --db mysql://xcap:xcap@127.0.0.1:PORT/kamailio [--op get_doc] [-n 5000]
        [--profile cprofile|pyinstrument|none]

Seeds 100 documents through the app, then calls it ``n`` times with WSGI environs like waitress
builds them. CPU time (time.process_time) is what a 2-core machine shared with MariaDB and the
client cares about; wall time includes the database round trip.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import doc_path, document  # noqa: E402
from xcap_wsgi.build import build_middleware  # noqa: E402
from xcap_wsgi.settings import resolve  # noqa: E402

LIST = "/~~/resource-lists/list%5B@name=%22friends%22%5D"
EL = LIST + "/entry%5B3%5D"
PUT_EL = LIST + "/entry%5B@uri=%22sip:bench@example.com%22%5D"


def environ(method: str, path: str, body: bytes = b"", content_type: str = "") -> dict:
    from urllib.parse import unquote

    env = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": unquote(path).encode().decode("latin-1"),
        "REQUEST_URI": path, "RAW_URI": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8080",
        "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
        "wsgi.input_terminated": True,
    }
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = content_type
    return env


def request_factory(op: str):
    counter = iter(range(10**9))

    def make():
        path = doc_path(random.randrange(100))
        if op == "get_doc":
            return environ("GET", path)
        if op == "get_el":
            return environ("GET", path + EL)
        if op == "get_att":
            return environ("GET", path + EL + "/@uri")
        if op == "put_doc":
            return environ("PUT", path, document(next(counter)), "application/resource-lists+xml")
        if op == "put_el":
            body = f'<entry uri="sip:bench@example.com"><display-name>Bench {next(counter):09d}</display-name></entry>'
            return environ("PUT", path + PUT_EL, body.encode(), "application/xcap-el+xml")
        raise ValueError(op)

    return make


def call(app, env) -> str:
    status = []
    body = b"".join(app(env, lambda s, h, e=None: status.append(s)))
    if not status[0].startswith(("200", "201")):
        raise RuntimeError(f"{status[0]} {body[:300]!r}")
    return status[0]


#: Where a function's own CPU time goes, by the first matching piece of its file or name.
AREAS = (
    ("MySQL driver", ("MySQLdb", "pymysql", "_mysql", "Connection.query")),
    ("storage layer (pool, SQL, turns)", ("xcap_wsgi/storage", "xcap_wsgi/turns")),
    ("XML edit (selector, editor, parse)", ("xcap_wsgi/editor", "xcap_wsgi/selector", "xcap_wsgi/xmlsafe",
                                            "lxml", "etree", "XMLParser", "fromstring")),
    ("validation (schema, RFC 4826 constraints)", ("xcap_wsgi/validation", "xcap_wsgi/constraints",
                                                   "xcap_wsgi/usages", "XMLSchema")),
    ("request handling (middleware, operations, WebOb)", ("xcap_wsgi/", "webob")),
)


def _area(filename: str, name: str) -> str:
    where = f"{filename} {name}"
    return next((label for label, keys in AREAS if any(k in where for k in keys)), "other")


def areas(stats) -> str:
    """The profile's own time (tottime) summed by area (AREAS). A built-in's time (regex, len,
    lxml's C calls...) goes to the area of the Python function that called it."""
    totals: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, tottime, _ct, callers) in stats.stats.items():
        area = _area(filename, name)
        if filename == "~" and area == "other" and callers:
            for (cfile, _cline, cname), caller in callers.items():
                carea = _area(cfile, cname)
                totals[carea] = totals.get(carea, 0.0) + caller[2]
            continue
        totals[area] = totals.get(area, 0.0) + tottime
    whole = sum(totals.values()) or 1.0
    lines = ["CPU by area (share of the profiled time; cProfile inflates Python-heavy parts):"]
    lines += [f"  {share / whole:6.1%}  {label}" for label, share in sorted(totals.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--op", default="get_doc")
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--profile", default="cprofile", choices=("cprofile", "pyinstrument", "none"))
    parser.add_argument("--log-requests", action="store_true")
    args = parser.parse_args()
    app = build_middleware(None, resolve({"db": args.db, "anonymous": True, "log_requests": args.log_requests}))
    for n in range(100):
        call(app, environ("PUT", doc_path(n), document(0), "application/resource-lists+xml"))
    make = request_factory(args.op)
    for _ in range(300):  # warm up caches
        call(app, make())
    envs = [make() for _ in range(args.n)]
    profiler = None
    if args.profile == "cprofile":
        import cProfile

        profiler = cProfile.Profile(timer=time.process_time)  # CPU, not time spent waiting for MariaDB
        profiler.enable()
    elif args.profile == "pyinstrument":
        import pyinstrument

        profiler = pyinstrument.Profiler(interval=0.0002)
        profiler.start()
    cpu, wall = time.process_time(), time.perf_counter()
    for env in envs:
        call(app, env)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if args.profile == "cprofile":
        import pstats

        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(45)
        print(areas(stats))
    elif args.profile == "pyinstrument":
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False))
    print(f"{args.op}: {args.n} requests, CPU {cpu / args.n * 1e6:.0f} us/request, wall {wall / args.n * 1e6:.0f} "
          f"us/request ({args.profile})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
