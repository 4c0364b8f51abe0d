"""Scale: document GET/PUT latency with 1,000 rows vs 1,000,000 rows; query plans; a 10,000-entry list.

    python benchmarks/scale.py [--rows 1000000] [--seconds 5] [--insert-limit 480]

Starts a private MariaDB (``--buffer-pool``, 4 GiB: the 1,000,000-row table takes ~2.3 GB) and
``xcap-wsgi serve --workers 2``, then:

1. loads 1,000 rows (100 users x 10 resource-lists documents of ~1.2 KiB) and measures document
   GET and PUT with wrk at 1 and 8 connections (random user, document ``index``);
2. bulk-loads the table up to ``--rows`` rows (100,000 users x 10 documents: multi-row INSERTs,
   stopped after ``--insert-limit`` seconds), waits until InnoDB has written back what the load
   left dirty, and measures the same rows again, now over all users; each row also gives the
   InnoDB pages read from disk per request (0: the rows requested are in memory);
3. prints ``EXPLAIN`` of every statement xcap-wsgi issues for a document (SELECT, UPDATE, INSERT's
   duplicate check, DELETE) and of Kamailio's two GET statements: none may be a table scan;
4. element PUT (replace one entry by its URI) on a document with a 10,000-entry list, p50/p99
   over ``--element-puts`` sequential requests (the whole ~0.9 MB document is read, edited,
   validated and written each time).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import RL_NS, Stack, doc_path, document, wrk  # noqa: E402

DOCS_PER_USER = 10
NAMES = ["index"] + [f"list{n}" for n in range(1, DOCS_PER_USER)]


def load_rows(stack: Stack, first_user: int, last_user: int, deadline: float, batch: int = 1000) -> int:
    """Insert users first_user..last_user-1 with DOCS_PER_USER documents each; returns rows inserted."""
    body = document(0)
    inserted = 0
    with contextlib.closing(stack.connect()) as conn, conn.cursor() as cur:
        doc_literal = conn.escape(body)
        cur.execute("SET SESSION unique_checks=0")
        rows = []
        for user in range(first_user, last_user):
            for name in NAMES:
                uri = f"/xcap-root/resource-lists/users/sip:user{user}@example.com/{name}"
                rows.append(f"('user{user}','example.com',4,'{uri}',{doc_literal},'s{user}x{name}',0,0)")
            if len(rows) >= batch:
                cur.execute("INSERT INTO xcap (username, domain, doc_type, doc_uri, doc, etag, source, port) VALUES "
                            + ",".join(rows))
                inserted += len(rows)
                rows = []
                if time.monotonic() > deadline:
                    print(f"  insert time limit reached after {inserted:,} rows", flush=True)
                    return inserted
        if rows:
            cur.execute("INSERT INTO xcap (username, domain, doc_type, doc_uri, doc, etag, source, port) VALUES "
                        + ",".join(rows))
            inserted += len(rows)
    return inserted


def count_rows(stack: Stack) -> int:
    with contextlib.closing(stack.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM xcap")
        return cur.fetchone()[0]


def innodb_status(stack: Stack) -> dict[str, int]:
    return stack.global_status(("Innodb_buffer_pool_reads", "Innodb_buffer_pool_pages_dirty",
                                "Innodb_buffer_pool_pages_total"))


def settle(stack: Stack, limit: float = 180.0) -> float:
    """Wait until InnoDB has written back what the bulk load left dirty (at most 1 % of the pool),
    so that the measurement sees a table at rest, not one still being flushed; returns seconds."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        status = innodb_status(stack)
        if status["Innodb_buffer_pool_pages_dirty"] <= status["Innodb_buffer_pool_pages_total"] // 100:
            break
        time.sleep(1)
    return time.monotonic() - started


def measure(stack: Stack, port: int, users: int, seconds: float, template) -> dict:
    """Each row's wrk figures plus ``disk_reads``: InnoDB pages read from disk per request
    (0 when the rows requested are in the buffer pool)."""
    out = {}
    wrk(port, "get_doc", 8, 2, docs=users, template=template)  # warm up
    for op in ("get_doc", "put_doc"):
        for conns in (1, 8):
            before = innodb_status(stack)["Innodb_buffer_pool_reads"]
            r = wrk(port, op, conns, seconds, docs=users, template=template)
            r["disk_reads"] = (innodb_status(stack)["Innodb_buffer_pool_reads"] - before) / max(r["requests"], 1)
            out[(op, conns)] = r
    return out


def explain(stack: Stack, users: int) -> list[str]:
    user = min(4242, users - 1)  # an existing row: EXPLAIN of a missing unique key is "Impossible WHERE"
    key = (f"user{user}", "example.com", doc_path(user))
    statements = [
        ("xcap-wsgi GET / PUT read", "SELECT doc, etag FROM xcap WHERE username=%s AND domain=%s AND doc_uri=%s", key),
        ("xcap-wsgi PUT document (one statement)",
         "UPDATE xcap SET doc='x', etag='e', source=0, port=0 WHERE username=%s AND domain=%s AND doc_uri=%s "
         "AND doc <> 'x'", key),
        ("xcap-wsgi PUT element / If-Match (compare-and-swap)",
         "UPDATE xcap SET doc='x', etag='e', source=0, port=0 WHERE username=%s AND domain=%s AND doc_uri=%s "
         "AND etag=%s", key + ("e",)),
        ("xcap-wsgi PUT (create: duplicate check)", "SELECT 1 FROM xcap WHERE username=%s AND domain=%s AND doc_uri=%s",
         key),
        ("xcap-wsgi DELETE", "DELETE FROM xcap WHERE username=%s AND domain=%s AND doc_uri=%s AND etag=%s",
         key + ("e",)),
        ("xcap-wsgi directory", "SELECT doc_uri, doc_type, etag, LENGTH(doc) FROM xcap WHERE username=%s AND "
         "domain=%s ORDER BY doc_type, doc_uri", key[:2]),
        ("Kamailio GET (1st)", "SELECT doc,etag FROM xcap WHERE doc_uri=%s AND username=%s AND domain=%s",
         (key[2], key[0], key[1])),
    ]
    lines = []
    with contextlib.closing(stack.connect()) as conn, conn.cursor() as cur:
        for label, sql, params in statements:
            cur.execute("EXPLAIN " + sql, params)
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                r = dict(zip(names, row))
                lines.append(f"| {label} | {r.get('type')} | {r.get('possible_keys')} | {r.get('key')} | "
                             f"{r.get('rows')} | {r.get('Extra') or ''} |")
    return lines


def element_put(port: int, count: int) -> tuple[float, float, int]:
    entries = "".join(f'    <entry uri="sip:member{n}@example.com"><display-name>Member {n}</display-name></entry>\n'
                      for n in range(10_000))
    big = (f'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="{RL_NS}">\n  <list name="big">\n'
           f'{entries}  </list>\n</resource-lists>\n').encode()
    path = "/xcap-root/resource-lists/users/sip:biglist@example.com/index"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("PUT", path, body=big, headers={"Content-Type": "application/resource-lists+xml"})
    assert conn.getresponse().read() is not None
    selector = "/~~/resource-lists/list%5B@name=%22big%22%5D/entry%5B@uri=%22sip:member5000@example.com%22%5D"
    times = []
    for n in range(count + 3):
        body = f'<entry uri="sip:member5000@example.com"><display-name>Renamed {n}</display-name></entry>'.encode()
        started = time.perf_counter()
        conn.request("PUT", path + selector, body=body, headers={"Content-Type": "application/xcap-el+xml"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"element PUT answered {response.status}")
        if n >= 3:
            times.append((time.perf_counter() - started) * 1000)
    conn.close()
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))], len(big)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--insert-limit", type=float, default=480.0, help="seconds the bulk load may take")
    parser.add_argument("--element-puts", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--buffer-pool", default="4G",
                        help="InnoDB buffer pool: the 1,000,000-row table takes ~2.3 GB, and a server holding "
                             "it is given its working set in memory")
    args = parser.parse_args()
    stack = Stack()
    results = {}
    try:
        stack.start_mariadb(buffer_pool=args.buffer_pool)
        template = stack.dir / "template.xml"
        template.write_bytes(document("@N@"))
        port, _ = stack.start_xcap_wsgi(args.workers, args.threads, env={"XCAP_LOG_REQUESTS": "0"})

        load_rows(stack, 0, 100, time.monotonic() + 60)
        small = count_rows(stack)
        print(f"{small:,} rows: measuring", flush=True)
        results[small] = measure(stack, port, 100, args.seconds, template)

        users = args.rows // DOCS_PER_USER
        started = time.monotonic()
        load_rows(stack, 100, users, started + args.insert_limit)
        large = count_rows(stack)
        print(f"{large:,} rows loaded in {time.monotonic() - started:.0f} s", flush=True)
        with contextlib.closing(stack.connect()) as conn, conn.cursor() as cur:
            cur.execute("ANALYZE TABLE xcap")
            cur.fetchall()
        waited = settle(stack)
        print(f"InnoDB flushed what the load left dirty in {waited:.0f} s: measuring", flush=True)
        loaded_users = large // DOCS_PER_USER
        results[large] = measure(stack, port, loaded_users, args.seconds, template)

        print("\n| rows | operation | conns | req/s | p50 ms | p99 ms | InnoDB disk reads per request |\n"
              "|---:|---|---:|---:|---:|---:|---:|")
        for rows, figures in results.items():
            for (op, conns), r in figures.items():
                label = {"get_doc": "GET document", "put_doc": "PUT document"}[op]
                errors = f" ({r['errors']} errors)" if r["errors"] else ""
                print(f"| {rows:,} | {label} | {conns} | {r['rps']:,.0f}{errors} | {r['p50_ms']:.2f} | "
                      f"{r['p99_ms']:.2f} | {r['disk_reads']:.2f} |")

        print(f"\nEXPLAIN at {large:,} rows:\n\n| statement | type | possible_keys | key | rows | Extra |\n"
              "|---|---|---|---|---:|---|")
        plans = explain(stack, loaded_users)
        print("\n".join(plans))
        scans = [p for p in plans if "| ALL |" in p]
        print(f"table scans: {len(scans)}")

        p50, p99, size = element_put(port, args.element_puts)
        print(f"\nelement PUT on a 10,000-entry list ({size:,}-byte document), {args.element_puts} sequential "
              f"requests: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    finally:
        stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
