"""Operator commands at scale: time and peak memory of ``xcap-wsgi export`` and ``import``.

    python benchmarks/admin_scale.py [--sizes 10000,100000] [--million] [--backends sqlite,mariadb]

For each backend and size: bulk-loads N resource-lists documents of ~1.2 KiB (the benchmark's
usual document, N users with one ``index`` each), then runs in a fresh Python process

* ``xcap-wsgi export --all --quiet DB N.tgz`` and
* ``xcap-wsgi import --quiet`` of that file into an empty table,

and prints each one's wall time, rate and peak RSS (``VmHWM`` of the process, read from /proc when
it ends; ``base`` is the same figure right after start-up, before the command ran). The import is
then checked: as many rows as were exported. ``--million`` adds 1,000,000 documents (MariaDB's
buffer pool is sized for it; expect several minutes per backend). MariaDB is a private server
started for the run (``benchmarks/_common.py``), SQLite a file in a temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import Stack, document  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

#: Runs one xcap-wsgi command in this process and prints its peak RSS before and after (KiB).
RUNNER = """
import json, sys, time
from xcap_wsgi.cli import main

def peak():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

base = peak()
started = time.monotonic()
code = main(sys.argv[1:])
print(json.dumps({"code": code, "seconds": time.monotonic() - started, "base_kib": base, "peak_kib": peak()}))
"""

INSERT = "INSERT INTO xcap (username, domain, doc_type, doc_uri, doc, etag, source, port) VALUES "


def rows(first: int, last: int):
    body = document(0)
    for n in range(first, last):
        yield (f"user{n}", "example.com", 4, f"/xcap-root/resource-lists/users/sip:user{n}@example.com/index",
               body, f"xw-bench-{n}", 0, 0)


def load_sqlite(path: Path, count: int) -> None:
    """N rows in one transaction (fixture loading, not what is measured)."""
    from xcap_wsgi.storage import SQLiteStore

    SQLiteStore(str(path)).close()  # Kamailio's table and version row
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executemany(INSERT + "(?, ?, ?, ?, ?, ?, ?, ?)", rows(0, count))
        conn.commit()


def load_mariadb(stack: Stack, count: int, batch: int = 2000) -> None:
    with contextlib.closing(stack.connect()) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE TABLE xcap")
        for first in range(0, count, batch):
            cur.executemany(INSERT + "(%s, %s, %s, %s, %s, %s, %s, %s)", list(rows(first, min(first + batch, count))))


def empty_mariadb(stack: Stack) -> None:
    with contextlib.closing(stack.connect()) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE TABLE xcap")


def run(*argv: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", RUNNER, *argv], env=env, cwd=REPO, capture_output=True,
                          text=True)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"xcap-wsgi {' '.join(argv)} failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        raise RuntimeError(f"xcap-wsgi {' '.join(argv)} exited {result['code']}: {done.stderr[-2000:]}")
    return result


def count_of(url: str) -> int:
    from xcap_wsgi.storage import open_store

    store = open_store(url)
    try:
        return store.count_rows()
    finally:
        store.close()


def line(backend: str, size: int, command: str, result: dict) -> str:
    return (f"{backend:8} {size:>9,} {command:7} {result['seconds']:8.1f} s {size / result['seconds']:9,.0f}/s "
            f"peak RSS {result['peak_kib'] / 1024:6.1f} MB (base {result['base_kib'] / 1024:5.1f} MB, "
            f"+{(result['peak_kib'] - result['base_kib']) / 1024:5.1f} MB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated document counts")
    parser.add_argument("--million", action="store_true", help="also 1,000,000 documents (several minutes)")
    parser.add_argument("--backends", default="sqlite,mariadb")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s] + ([1_000_000] if args.million else [])
    backends = args.backends.split(",")
    work = Path(tempfile.mkdtemp(prefix="xcapw-admin-scale-"))
    stack = Stack(keep=args.keep) if "mariadb" in backends else None
    print(f"document: {len(document(0))} bytes; Python {sys.version.split()[0]}; folder {work}", flush=True)
    try:
        if stack is not None:
            stack.start_mariadb(buffer_pool="2G" if max(sizes) > 100_000 else "512M")
        for backend in backends:
            for size in sizes:
                if backend == "sqlite":
                    source, target = work / f"{size}.sqlite3", work / f"{size}-import.sqlite3"
                    load_sqlite(source, size)
                    source_url, target_url = f"sqlite:///{source}", f"sqlite:///{target}"
                else:
                    load_mariadb(stack, size)
                    source_url = target_url = stack.db_url
                archive = work / f"{backend}-{size}.tgz"
                result = run("export", "--all", "--quiet", "--db", source_url, str(archive))
                print(line(backend, size, "export", result) + f"  ({archive.stat().st_size / 2**20:.1f} MB tgz)",
                      flush=True)
                if backend == "mariadb":
                    empty_mariadb(stack)
                result = run("import", "--quiet", "--db", target_url, str(archive))
                restored = count_of(target_url)
                print(line(backend, size, "import", result) + f"  ({restored:,} rows)", flush=True)
                if restored != size:
                    print(f"  MISMATCH: {restored} rows after import, {size} exported", flush=True)
                    return 1
                for path in (archive, work / f"{size}.sqlite3", work / f"{size}-import.sqlite3"):
                    for leftover in path.parent.glob(path.name + "*"):
                        leftover.unlink()
    finally:
        if stack is not None:
            stack.close()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
