"""Paired A/B of the WSGI hot path of two git revisions, in one process, on a noisy machine.

    python benchmarks/ab_wsgi.py --db mysql://xcap:xcap@127.0.0.1:PORT/DB BASE [NEW] [--op put_el ...]
        [-n 500] [--rounds 20]

Each revision's ``xcap_wsgi`` is extracted (``git archive``) under another package name, both apps
are built in this process against the same database, and rounds of ``n`` requests take turns
(A B, B A, ...). CPU per request (time.process_time) is printed per side, with the median of the
per-round ratios NEW/BASE: neighbours that load the machine load both sides of a pair alike, so
the ratio is far steadier than separate runs (which differed by 30 % from one minute to the next
on the shared 2-core machine). NEW defaults to the working tree. No HTTP server, no client.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from _common import doc_path, document  # noqa: E402
from profile_wsgi import call, environ, request_factory  # noqa: E402


def extract(revision: str | None, name: str, into: str) -> None:
    """``xcap_wsgi`` of ``revision`` (None: the working tree) as package ``name`` under ``into``
    (the package imports itself relatively only, so it works under any name)."""
    target = os.path.join(into, name)
    if revision is None:
        shutil.copytree(os.path.join(ROOT, "xcap_wsgi"), target)
        return
    archive = subprocess.run(["git", "-C", ROOT, "archive", revision, "xcap_wsgi"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    os.rename(os.path.join(into, "xcap_wsgi"), target)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("new", nargs="?")
    parser.add_argument("--db", required=True)
    parser.add_argument("--op", action="append", help="get_doc, get_el, get_att, put_doc, put_el (repeatable)")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as packages:
        extract(args.base, "xcap_wsgi_base", packages)
        extract(args.new, "xcap_wsgi_new", packages)
        sys.path.insert(0, packages)
        apps = {}
        for name in ("xcap_wsgi_base", "xcap_wsgi_new"):
            build, settings = importlib.import_module(f"{name}.build"), importlib.import_module(f"{name}.settings")
            apps[name] = build.build_middleware(None, settings.resolve({"db": args.db, "anonymous": True,
                                                                        "log_requests": False}))
        for op in args.op or ["put_el", "put_doc", "get_el", "get_doc"]:
            for app in apps.values():
                for n in range(100):
                    call(app, environ("PUT", doc_path(n), document(0), "application/resource-lists+xml"))
            make = request_factory(op)
            for app in apps.values():
                for _ in range(300):  # warm up
                    call(app, make())
            times: dict[str, list[float]] = {name: [] for name in apps}
            for turn in range(args.rounds):
                order = list(apps.items()) if turn % 2 == 0 else list(apps.items())[::-1]
                for name, app in order:
                    envs = [make() for _ in range(args.n)]
                    started = time.process_time()
                    for env in envs:
                        call(app, env)
                    times[name].append((time.process_time() - started) / args.n * 1e6)
            base, new = times["xcap_wsgi_base"], times["xcap_wsgi_new"]
            ratios = sorted(b / a for a, b in zip(base, new, strict=True))
            print(f"{op:8s} CPU us/request base min {min(base):6.1f} median {statistics.median(base):6.1f} | "
                  f"new min {min(new):6.1f} median {statistics.median(new):6.1f} | new/base median of "
                  f"{len(ratios)} pairs {statistics.median(ratios):.3f} "
                  f"(quartiles {ratios[len(ratios) // 4]:.3f}-{ratios[3 * len(ratios) // 4]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
