"""How many SQL statements each server issues per request (MariaDB's Com_* counters).

    python benchmarks/statements.py [--requests 200]

Starts a private MariaDB, Kamailio's xcap_server (sample config) and ``xcap-wsgi serve``, seeds
10 documents, then for each operation sends the same requests to each server and prints the
statements MariaDB counted per request (SELECT / UPDATE / INSERT). xcap-wsgi should issue exactly
one SELECT per GET, one UPDATE per document PUT that replaces a document, and one UPDATE per
element PUT, plus one SELECT per element PUT; with ``--recall-cache`` (setting ``recall_cache``,
off by default) only the first edit of each document reads it (the seed wrote it with a document
PUT; later edits start from the copy the write turn recalls): 10 of 200, 0.05 per request. The
output states the setting.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import COUNTERS, Stack, doc_path, document, http  # noqa: E402

LIST = "/~~/resource-lists/list%5B@name=%22friends%22%5D"
OPS = {
    "GET document": ("GET", "", None, None),
    "GET element": ("GET", LIST + "/entry%5B3%5D", None, None),
    "PUT document": ("PUT", "", "doc", "application/resource-lists+xml"),
    "PUT element": ("PUT", LIST + "/entry%5B@uri=%22sip:bench@example.com%22%5D", "el", "application/xcap-el+xml"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--recall-cache", action="store_true", help="turn the recall cache on (off by default)")
    args = parser.parse_args()
    recall = "true" if args.recall_cache else "false"
    stack = Stack()
    try:
        stack.start_mariadb()
        kport = stack.start_kamailio(2)
        xport, _ = stack.start_xcap_wsgi(1, 4, env={"XCAP_LOG_REQUESTS": "0", "XCAP_RECALL_CACHE": recall})
        stack.seed(xport, 10)
        print(f"xcap-wsgi: recall_cache={'on' if args.recall_cache else 'off'}")
        print("| operation | server | SELECT | UPDATE | INSERT | DELETE |\n|---|---|---:|---:|---:|---:|")
        for label, (method, suffix, kind, ctype) in OPS.items():
            for name, port in (("xcap-wsgi", xport), ("Kamailio", kport)):
                before = stack.statement_counts()
                for n in range(args.requests):
                    if kind == "doc":
                        body = document(n + 1)
                    elif kind == "el":
                        body = f'<entry uri="sip:bench@example.com"><display-name>S {n}</display-name></entry>'.encode()
                    else:
                        body = None
                    status, _, data = http(port, method, doc_path(n % 10) + suffix, body,
                                           {"Content-Type": ctype} if ctype else {})
                    if status != 200:
                        raise RuntimeError(f"{name} {label}: {status} {data[:200]!r}")
                after = stack.statement_counts()
                # the counter query itself is one SELECT (SHOW counts as Com_show_status, not select)
                per = [(after[c] - before[c]) / args.requests for c in COUNTERS]
                print(f"| {label} | {name} | " + " | ".join(f"{v:.2f}" for v in per) + " |", flush=True)
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
