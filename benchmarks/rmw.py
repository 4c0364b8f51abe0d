"""Correctness under load: read-modify-write with If-Match on one shared document, 2 server processes.

    python benchmarks/rmw.py [--seconds 30] [--clients 8] [--servers 2] [--workers 1]

Starts a private MariaDB and ``--servers`` separate ``xcap-wsgi serve`` processes (different
ports, same database; each with ``--workers`` processes). ``--clients`` threads each loop, for a
fixed time: GET the shared resource-lists document -> append one ``<entry>`` with a URI unique
to this client and attempt -> PUT it back with ``If-Match: <etag>`` to one of the servers (they
alternate) -> on 412 GET again and retry. At the end the document is read once more and every
entry whose PUT was answered 200 must be in it, and nothing else.

Prints requests, 200s, 412s, other 4xx, 5xx, retries and the final entry count; exits 1 on a
lost (or phantom) update, any 5xx, or a 412 that was not retried.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import RL_NS, Stack  # noqa: E402

PATH = "/xcap-root/resource-lists/users/sip:shared@example.com/index"
CTYPE = "application/resource-lists+xml"
INITIAL = (f'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="{RL_NS}">\n'
           '  <list name="shared">\n  </list>\n</resource-lists>\n').encode()
CLOSE = b"  </list>\n</resource-lists>\n"
ENTRY = re.compile(rb'<entry uri="(sip:[^"]+)"')


class Client(threading.Thread):
    def __init__(self, number: int, ports: list[int], deadline: float, counts: dict, lock: threading.Lock):
        super().__init__(daemon=True)
        self.number, self.ports, self.deadline = number, ports, deadline
        self.counts, self.lock = counts, lock
        self.added: list[bytes] = []
        self.conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=30) for p in ports]
        self.turn = number

    def request(self, method, body=None, headers=None):
        conn = self.conns[self.turn % len(self.conns)]
        self.turn += 1
        try:
            conn.request(method, PATH, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()  # reconnects on the next request
            self.count("socket errors")
            return None, None, b""
        self.count("requests")
        status = response.status
        if status >= 500:
            self.count("5xx")
        return status, response.getheader("ETag"), data

    def count(self, name, n=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def run(self):
        attempt = 0
        while time.monotonic() < self.deadline:
            attempt += 1
            uri = f'sip:c{self.number}a{attempt}@example.com'.encode()
            while time.monotonic() < self.deadline:
                status, etag, doc = self.request("GET")
                if status != 200:
                    self.count(f"GET {status}")
                    continue
                new = doc.replace(CLOSE, b'    <entry uri="' + uri + b'"/>\n' + CLOSE)
                status, _, body = self.request("PUT", new, {"Content-Type": CTYPE, "If-Match": etag})
                if status == 200:
                    self.added.append(uri)
                    self.count("PUT 200")
                    break
                if status == 412:
                    self.count("PUT 412")
                    self.count("retries after 412")
                    continue  # re-GET and retry the same addition
                self.count(f"PUT {status}")
                if status is None:
                    continue  # socket error: was it applied? re-read decides (see below)
                break
        for conn in self.conns:
            conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--servers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="processes per server (serve --workers)")
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    if args.seconds > 300 or args.clients > 64:
        parser.error("bounded load: at most 300 s and 64 clients")
    stack = Stack()
    try:
        stack.start_mariadb()
        ports = [stack.start_xcap_wsgi(args.workers, args.threads, env={"XCAP_LOG_REQUESTS": "0"})[0]
                 for _ in range(args.servers)]
        conn = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=10)
        conn.request("PUT", PATH, body=INITIAL, headers={"Content-Type": CTYPE})
        assert conn.getresponse().status == 201
        conn.close()
        counts: dict = {}
        lock = threading.Lock()
        deadline = time.monotonic() + args.seconds
        clients = [Client(n, ports, deadline, counts, lock) for n in range(args.clients)]
        started = time.monotonic()
        for c in clients:
            c.start()
        for c in clients:
            c.join(args.seconds + 60)
        elapsed = time.monotonic() - started
        conn = http.client.HTTPConnection("127.0.0.1", ports[-1], timeout=30)
        conn.request("GET", PATH)
        final = conn.getresponse().read()
        conn.close()
    finally:
        stack.close()

    present = ENTRY.findall(final)
    added = [uri for c in clients for uri in c.added]
    lost = set(added) - set(present)
    phantom = set(present) - set(added)
    duplicates = len(present) - len(set(present))
    print(f"{args.servers} xcap-wsgi servers (--workers {args.workers} --threads {args.threads}) on one MariaDB, "
          f"{args.clients} clients, {elapsed:.1f} s, one shared document")
    for name in sorted(counts):
        print(f"  {name:>20}: {counts[name]}")
    print(f"  successful additions: {len(added)} ({len(added) / elapsed:.0f}/s); entries in the final document: "
          f"{len(present)}; lost: {len(lost)}; not acknowledged but present: {len(phantom)}; duplicated: {duplicates}")
    failed = bool(lost) or duplicates or counts.get("5xx", 0) or counts.get("PUT 412", 0) != counts.get(
        "retries after 412", 0) or counts.get("socket errors", 0)
    # A PUT whose answer was lost to a socket error may or may not have landed; none are expected here.
    if phantom and not counts.get("socket errors"):
        failed = True
    print("RESULT:", "FAIL" if failed else "OK (no lost update, no 5xx, every 412 retried)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
