"""rls-services at scale (issue 19.3): the service-URI uniqueness check and the global index with
1,000 and 1,000,000 rows in the ``xcap`` table, with and without xcap-wsgi's side table.

    python benchmarks/rls_scale.py [--rows 1000,1000000] [--rls-share 0.01] [--mysql-url URL] [--no-sqlite]

For each size and backend (SQLite file; MariaDB: a scratch database on ``--mysql-url`` or
``$XCAP_TEST_MYSQL_URL``, dropped afterwards) it bulk-loads the table (multi-row INSERTs, Kamailio's
layout: ``--rls-share`` of the rows are rls-services documents with one service each, the rest
resource-lists), fills the side table (``rls-index --rebuild``), then prints:

* EXPLAIN of the uniqueness lookup, of the global index's two statements, and of the scan they
  replace (what the server runs without the side table);
* the uniqueness check's time (median of ``--lookups`` calls of ``rls_index.claimed`` for a taken
  URI), the same check by scanning (``--scans`` calls), and one global-index listing.

The uniqueness check must cost the same at both sizes (primary-key lookup). The global index lists
every service, so it grows with the number of services, not with the table's other rows.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from xcap_wsgi import rls_index  # noqa: E402
from xcap_wsgi.usages.rls_services import _scanned_service_uris  # noqa: E402
from xcap_wsgi.storage import open_store  # noqa: E402

RL = (b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
      b'<list name="friends"><entry uri="sip:bob@example.com"/></list></resource-lists>')


def rls(n: int) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<rls-services xmlns="urn:ietf:params:xml:ns:rls-services">'
            f'<service uri="sip:list{n}@example.com"><list/><packages><package>presence</package></packages>'
            f'</service></rls-services>').encode()


def rows(count: int, share: float):
    every = max(1, round(1 / share))
    for n in range(count):
        user = f"user{n}"
        if n % every == 0:
            yield user, "example.com", rls(n), 8, f"e{n}", f"/xcap-root/rls-services/users/sip:{user}@example.com/index"
        else:
            yield user, "example.com", RL, 4, f"e{n}", f"/xcap-root/resource-lists/users/sip:{user}@example.com/index"


def load(store, count: int, share: float, batch: int = 5000) -> float:
    """Bulk INSERT ``count`` rows; seconds taken."""
    started = time.perf_counter()
    sql = ("INSERT INTO xcap (username, domain, doc, doc_type, etag, source, doc_uri, port) "
           "VALUES ({p}, {p}, {p}, {p}, {p}, 0, {p}, 0)")
    pending = []
    if hasattr(store, "_execute"):  # SQLite
        connection = store._connection()
        connection.execute("BEGIN")
        connection.executemany(sql.format(p="?"), rows(count, share))
        connection.execute("COMMIT")
    else:
        def flush(cursor):
            cursor.executemany(sql.format(p="%s"), pending)

        for row in rows(count, share):
            pending.append(row)
            if len(pending) >= batch:
                store._run(flush, write=True)
                pending = []
        if pending:
            store._run(flush, write=True)
    return time.perf_counter() - started


def timed(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(label: str, url: str, count: int, args) -> dict:
    store = open_store(url)
    try:
        loaded = load(store, count, args.rls_share)
        started = time.perf_counter()
        entries = rls_index.rebuild(store)
        rebuilt = time.perf_counter() - started
        print(f"\n== {label}, {count:,} rows ({entries:,} rls-services documents): load {loaded:.1f}s, "
              f"rls-index --rebuild {rebuilt:.1f}s")
        for name, plan in store.rls_index.explain().items():
            print(f"  EXPLAIN {name}:")
            for line in plan:
                print("    " + " | ".join("NULL" if v is None else str(v) for v in line))
        taken = [rls_index.service_key("sip:list0@example.com")]
        assert rls_index.claimed(store, taken, "/nowhere") == set(taken)
        lookup = timed(lambda: rls_index.claimed(store, taken, "/nowhere"), args.lookups)
        scan = timed(lambda: _scanned_service_uris(store, "/nowhere"), args.scans)
        listing = timed(lambda: sum(1 for _ in rls_index.documents(store)), 1)
        print(f"  uniqueness check, side table: {lookup * 1e3:.3f} ms (median of {args.lookups})")
        print(f"  uniqueness check, scan (no side table): {scan * 1e3:.1f} ms (median of {args.scans})")
        print(f"  global index documents via side table ({entries:,} documents): {listing * 1e3:.1f} ms")
        return {"lookup": lookup, "scan": scan, "listing": listing}
    finally:
        store.close()


@contextlib.contextmanager
def mysql_database(server: str):
    import pymysql
    from xcap_wsgi.storage.mysql import initdb, parse_url

    name = f"xcapw_rls_{uuid.uuid4().hex[:8]}"
    connect = dict(parse_url(server)["connect"], database="")
    with contextlib.closing(pymysql.connect(**connect, autocommit=True)) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET latin1")
    base, _, _ = server.rpartition("/")
    url = f"{base}/{name}"
    try:
        initdb(url)
        yield url
    finally:
        with contextlib.closing(pymysql.connect(**connect, autocommit=True)) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000,1000000", help="table sizes, comma-separated")
    parser.add_argument("--rls-share", type=float, default=0.01, help="share of rls-services rows (default 0.01)")
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--scans", type=int, default=3)
    parser.add_argument("--mysql-url", default=os.environ.get("XCAP_TEST_MYSQL_URL", ""))
    parser.add_argument("--no-sqlite", action="store_true")
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.rows.split(",")]
    for count in sizes:
        if not args.no_sqlite:
            with tempfile.TemporaryDirectory() as tmp:
                measure("SQLite", f"sqlite:///{tmp}/xcap.sqlite3", count, args)
        if args.mysql_url:
            with mysql_database(args.mysql_url) as url:
                measure("MariaDB", url, count, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
