"""CPU per request of serve's access line, in-process: requests on SQLite (document GETs unless
``--op`` says otherwise) with the log off, with logging.basicConfig (the set-up serve had before
xcap_wsgi.logsetup), and with serve's own.

    python benchmarks/access_log.py [--op get_doc|get_el|get_att|put_doc|put_el] [-n 4000] [--rounds 6]

An element operation's line costs about twice a document GET's (its node selector and target
need JSON quoting, and the line is longer).

Prints the best round of each (the least disturbed by the machine) and the difference to the
log off. The line goes to /dev/null: what is measured is making it, not the disk.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from profile_wsgi import call, doc_path, document, environ, request_factory  # noqa: E402

from xcap_wsgi import logsetup  # noqa: E402
from xcap_wsgi.build import build_middleware  # noqa: E402
from xcap_wsgi.settings import resolve  # noqa: E402


def _reset_logging() -> None:
    root = logging.getLogger()
    root.handlers.clear()
    logging._srcfile = os.path.normcase(logging.addLevelName.__code__.co_filename)
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = True


def _basic(stream) -> None:
    logging.basicConfig(level=logging.INFO, format=logsetup.LINE_FORMAT, stream=stream)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=4000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--op", default="get_doc", choices=("get_doc", "get_el", "get_att", "put_doc", "put_el"))
    args = parser.parse_args()
    sink = open(os.devnull, "w")
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/xcap.sqlite3"
        apps = {on: build_middleware(None, resolve({"db": url, "anonymous": True, "log_requests": on}))
                for on in (False, True)}
        for n in range(100):
            call(apps[False], environ("PUT", doc_path(n), document(0), "application/resource-lists+xml"))
        make = request_factory(args.op)
        setups = {"log off": (False, _basic), "basicConfig": (True, _basic),
                  "logsetup (serve)": (True, logsetup.configure)}
        best = {name: float("inf") for name in setups}
        for _ in range(args.rounds):
            for name, (on, configure) in setups.items():
                _reset_logging()
                configure(sink)
                envs = [make() for _ in range(args.n)]
                started = time.process_time()
                for env in envs:
                    call(apps[on], env)
                best[name] = min(best[name], (time.process_time() - started) / args.n * 1e6)
    _reset_logging()
    off = best["log off"]
    for name, us in best.items():
        extra = "" if name == "log off" else f"  (the line: {us - off:.1f} us)"
        print(f"{name:18} {us:6.1f} us CPU per {args.op} request{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
