"""Operating many documents (issue 19): export/import/check stream in bounded memory, an
interrupted import is resumed by running it again, progress has total/rate/ETA, ``--quiet``.

Real SQLite files and, with ``XCAP_TEST_MYSQL_URL``, Kamailio's table in MariaDB; real
subprocesses for the memory bound and the kill. Nothing here is timed.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from mysql_support import db_url, kamailio_database, mysql_store  # noqa: F401  (fixtures)

from xcap_wsgi import SQLiteStore
from xcap_wsgi.admin import (
    AdminError,
    Progress,
    check_documents,
    export_documents,
    import_documents,
    iter_rows,
)
from xcap_wsgi.cli import main
from xcap_wsgi.storage import DocumentKey

REPO = Path(__file__).resolve().parent.parent
RL = "urn:ietf:params:xml:ns:resource-lists"


def key(n: int) -> DocumentKey:
    return DocumentKey(f"user{n}", "example.com",
                       f"/xcap-root/resource-lists/users/sip:user{n}@example.com/index", 4)


def document(n: int, padding: int = 0) -> bytes:
    """A valid resource-lists document with bytes a re-serialisation would change (CRLF, quotes)."""
    return (f"<?xml version='1.0' encoding='UTF-8'?>\r\n<resource-lists xmlns='{RL}'>\r\n"
            f"  <list name='n{n}'><display-name>{'x' * padding}</display-name></list>\r\n"
            "</resource-lists>").encode()


def populate(store, count: int, padding: int = 0) -> dict[str, tuple[bytes, str]]:
    """``count`` documents restored with known ETags; returns {doc_uri: (content, etag)}."""
    expected = {}
    for n in range(count):
        etag = f"xw-test-{n}"
        store.restore(key(n), document(n, padding), etag)
        expected[key(n).doc_uri] = (document(n, padding), etag)
    return expected


def stored(store) -> dict[str, tuple[bytes, str]]:
    return {row.doc_uri: (row.content, row.etag) for row in iter_rows(store)}


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def store(request, tmp_path):
    if request.param == "mysql":
        yield request.getfixturevalue("mysql_store")
        return
    store = SQLiteStore(str(tmp_path / "xcap.sqlite3"))
    yield store
    store.close()


class CountingSQLiteStore(SQLiteStore):
    """A real SQLite store that records the size of every page of rows it hands out."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pages: list[tuple[int, int]] = []  # (limit asked, rows returned)

    def rows_after(self, after_id, limit, username=None, domain=None):
        rows = super().rows_after(after_id, limit, username, domain)
        self.pages.append((limit, len(rows)))
        return rows


# -- round trip ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["export", "export.tar", "export.tgz"])
def test_streamed_round_trip_is_byte_exact_with_etags_across_many_batches(store, tmp_path, name):
    expected = populate(store, 23)
    manifest = export_documents(store, tmp_path / name, batch=5)  # 5 batches, the last one partial
    assert manifest["documents"] == 23
    for n in range(23):
        store.delete(key(n), f"xw-test-{n}")
    assert import_documents(store, tmp_path / name) == {"created": 23, "replaced": 0, "unchanged": 0}
    assert stored(store) == expected
    assert import_documents(store, tmp_path / name) == {"created": 0, "replaced": 0, "unchanged": 23}


def test_a_tar_is_written_and_read_in_order_index_before_its_documents(store, tmp_path):
    populate(store, 7)
    export_documents(store, tmp_path / "x.tar", batch=3)
    with tarfile.open(tmp_path / "x.tar") as tar:
        names = tar.getnames()
    assert names[0] == "manifest.json" and names[-1] == "end.json"
    assert [n for n in names if n.startswith("index/")] == ["index/000001.jsonl", "index/000002.jsonl",
                                                            "index/000003.jsonl"]
    assert names.index("index/000002.jsonl") == 1 + 1 + 3  # manifest, index 1, its 3 documents
    assert json.loads(tarfile.open(tmp_path / "x.tar").extractfile("end.json").read()) == {
        "documents": 7, "batches": 3}


def test_a_truncated_tar_is_refused_before_any_write(store, tmp_path):
    populate(store, 9)
    export_documents(store, tmp_path / "x.tar", batch=4)
    with tarfile.open(tmp_path / "x.tar") as source, tarfile.open(tmp_path / "cut.tar", "w") as cut:
        for member in source.getmembers():
            if member.name != "end.json":  # as if the copy of the export stopped before its end
                cut.addfile(member, source.extractfile(member))
    for n in range(9):
        store.delete(key(n), f"xw-test-{n}")
    with pytest.raises(AdminError, match="incomplete"):
        import_documents(store, tmp_path / "cut.tar")
    assert store.count_rows() == 0


def test_a_version_1_export_still_imports(store, tmp_path):
    """Exports made before streaming (one manifest.json listing every document) stay readable."""
    out = tmp_path / "v1"
    (out / "documents").mkdir(parents=True)
    import hashlib

    entries = []
    for n in range(3):
        (out / "documents" / f"d{n}").write_bytes(document(n))
        entries.append({"file": f"documents/d{n}", "doc_uri": key(n).doc_uri, "username": key(n).username,
                        "domain": "example.com", "doc_type": 4, "etag": f"xw-old-{n}", "size": len(document(n)),
                        "sha256": hashlib.sha256(document(n)).hexdigest()})
    (out / "manifest.json").write_text(json.dumps({"format": "xcap-wsgi-export", "version": 1,
                                                   "documents": entries}))
    assert import_documents(store, out)["created"] == 3
    assert stored(store) == {key(n).doc_uri: (document(n), f"xw-old-{n}") for n in range(3)}


# -- memory bound ----------------------------------------------------------------------------------


def test_export_import_and_check_read_rows_in_bounded_batches(tmp_path):
    store = CountingSQLiteStore(str(tmp_path / "x.sqlite3"))
    try:
        populate(store, 1203)
        export_documents(store, tmp_path / "x.tgz")
        assert len(store.pages) == 3 and all(limit == 500 and got <= 500 for limit, got in store.pages)
        store.pages.clear()
        assert check_documents(store, default_domain="example.com") == []
        assert len(store.pages) == 3 and max(got for _, got in store.pages) == 500
    finally:
        store.close()


# Peak RSS from /proc (VmHWM, this process's own), not getrusage's ru_maxrss, which a child
# inherits from its parent's (pytest's, larger) at fork and keeps across exec.
_MEASURE = textwrap.dedent("""
    import sys
    from xcap_wsgi.admin import export_documents, import_documents
    from xcap_wsgi.storage import SQLiteStore

    def peak_kib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

    command, db, path = sys.argv[1:4]
    store = SQLiteStore(db)
    store.get  # everything imported, the database open
    before = peak_kib()
    if command == "export":
        export_documents(store, path)
    else:
        import_documents(store, path)
    print(peak_kib() - before)  # KiB of peak RSS growth
""")


def _peak_growth_kib(command: str, db: Path, path: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", _MEASURE, command, str(db), str(path)], env=env, cwd=REPO,
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def test_peak_memory_of_export_and_import_does_not_grow_with_the_documents(tmp_path):
    """N and 4N documents of 4 KB (12 MB more content at 4N): the peak RSS growth of export and
    import differs by less than 6 MB (holding the rows would add well over 12 MB)."""
    growth = {}
    for count in (1000, 4000):
        db, empty = tmp_path / f"{count}.sqlite3", tmp_path / f"{count}-empty.sqlite3"
        source = SQLiteStore(str(db))
        populate(source, count, padding=4000)
        source.close()
        SQLiteStore(str(empty)).close()
        growth[count] = (_peak_growth_kib("export", db, tmp_path / f"{count}.tgz"),
                         _peak_growth_kib("import", empty, tmp_path / f"{count}.tgz"))
    assert growth[4000][0] - growth[1000][0] < 6 * 1024, growth
    assert growth[4000][1] - growth[1000][1] < 6 * 1024, growth


# -- interrupted import ----------------------------------------------------------------------------


class CrashingStore(SQLiteStore):
    """A real store whose process 'dies' (an exception) at the batch that would pass ``limit`` restores."""

    limit = 10**9

    def restore_many(self, documents):
        if self.limit < len(documents):
            raise KeyboardInterrupt("crash")
        self.limit -= len(documents)
        return super().restore_many(documents)


def test_an_interrupted_import_run_again_leaves_exactly_the_documents(tmp_path):
    source = SQLiteStore(str(tmp_path / "source.sqlite3"))
    expected = populate(source, 40)
    export_documents(source, tmp_path / "x.tgz", batch=7)
    source.close()
    target = CrashingStore(str(tmp_path / "target.sqlite3"))
    try:
        target.limit = 17
        with pytest.raises(KeyboardInterrupt):
            import_documents(target, tmp_path / "x.tgz", batch_size=5)
        assert target.count_rows() == 15  # three whole batches
        target.limit = 10**9
        assert import_documents(target, tmp_path / "x.tgz") == {"created": 25, "replaced": 0, "unchanged": 15}
        assert stored(target) == expected and target.count_rows() == 40
        counts = import_documents(target, tmp_path / "x.tgz", resume_after=30)
        assert counts == {"created": 0, "replaced": 0, "unchanged": 10, "skipped": 30}
    finally:
        target.close()


def _db_url(kind: str, tmp_path: Path, request) -> str:
    if kind == "mysql":
        return request.getfixturevalue("db_url")
    return f"sqlite:///{tmp_path / 'target.sqlite3'}"


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def test_an_import_killed_mid_way_and_run_again_has_no_duplicate_and_no_loss(kind, tmp_path, request):
    """``xcap-wsgi import`` killed with SIGKILL mid-way (held there: it blocks writing progress lines
    to a pipe nobody reads), then run again: exactly the exported documents, bytes and ETags."""
    count = 3000
    source = SQLiteStore(str(tmp_path / "source.sqlite3"))
    expected = populate(source, count)
    export_documents(source, tmp_path / "x.tgz")
    source.close()
    url = _db_url(kind, tmp_path, request)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-m", "xcap_wsgi", "import", "--db", url, "--progress-every", "1",
                              "--batch-size", "1", str(tmp_path / "x.tgz")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for line in child.stderr:  # read until 300 documents are restored, then stop reading
            if line.startswith(b"import: 300/"):
                break
        else:
            pytest.fail("the import ended before restoring 300 documents")
        # the child now fills the pipe (64 KiB, under 1,200 lines of ~60 bytes) and blocks in a write
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    from xcap_wsgi.storage import open_store

    target = open_store(url)
    try:
        restored = target.count_rows()
        assert 300 <= restored < count
        assert main(["import", "--quiet", "--db", url, str(tmp_path / "x.tgz")]) == 0
        assert target.count_rows() == count
        assert stored(target) == expected
    finally:
        target.close()


# -- progress and --quiet --------------------------------------------------------------------------


def test_progress_lines_carry_total_rate_and_eta_without_a_terminal():
    out = io.StringIO()
    progress = Progress("export", every=25, stream=out)
    progress.start(100)
    progress.step(60)
    progress.step(40)
    progress.done("exported")
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines[:2]] == ["export: 60/100 documents (60.0%)",
                                                         "export: 100/100 documents (100.0%)"]
    assert all("/s" in line and "ETA " in line for line in lines[:2])
    assert lines[2].startswith("export: 100 documents exported in ") and lines[2].endswith("/s)")


def test_a_terminal_gets_a_progress_bar():
    pytest.importorskip("tqdm")  # the 'progress' extra (in the test extra too)
    out = io.StringIO()
    progress = Progress("import", stream=out, bar=True)
    progress.start(10)
    progress.step(10)
    progress.done()
    assert "import: 100%" in out.getvalue() and "10/10" in out.getvalue()


def test_cli_progress_lines_on_stderr_and_quiet_silences_them(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    store = SQLiteStore(str(tmp_path / "x.sqlite3"))
    populate(store, 7)
    store.close()
    assert main(["export", "--db", url, "--all", "--progress-every", "3", str(tmp_path / "a.tar")]) == 0
    captured = capsys.readouterr()
    progress, final = captured.err.splitlines()  # one batch of 7 rows: one progress line, then the total
    assert progress.startswith("export: 7/7 documents (100.0%), ") and "/s, ETA 0:00:00" in progress
    assert final.startswith(f"export: 7 documents exported to {tmp_path / 'a.tar'} in ")
    assert "exported 7 document(s)" in captured.out
    for argv in (["export", "--all", str(tmp_path / "b.tar")], ["import", str(tmp_path / "a.tar")],
                 ["check", "--default-domain", "example.com"], ["purge", "--user", "user1@example.com", "--yes"]):
        assert main([*argv, "--db", url, "--quiet", "--progress-every", "1"]) == 0, argv
        captured = capsys.readouterr()
        assert (captured.out, captured.err) == ("", ""), argv


def test_initdb_and_adduser_take_quiet(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'x.sqlite3'}"
    assert main(["initdb", "--db", url]) == 0
    assert "is ready" in capsys.readouterr().out
    assert main(["initdb", "--db", url, "--quiet"]) == 0
    assert main(["adduser", "--db", url, "--password", "secret", "--quiet", "alice@example.com"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["adduser", "--db", url, "--password", "secret", "bob@example.com"]) == 0
    assert "added bob@example.com" in capsys.readouterr().out


# -- the storage boundary (issue 18 item 1) --------------------------------------------------------


def test_both_stores_implement_every_method_of_the_store_protocol():
    from xcap_wsgi.storage import Store
    from xcap_wsgi.storage.mysql import MySQLStore

    declared = {name for name, value in vars(Store).items() if callable(value) and not name.startswith("_")}
    assert {"get", "put", "write", "delete", "write_turn", "forget_recalled", "list_documents", "lock", "ping",
            "rows_after", "count_rows", "restore", "restore_many", "close"} <= declared
    for store_type in (SQLiteStore, MySQLStore):
        assert not {name for name in declared if not callable(getattr(store_type, name, None))}, store_type


def test_no_sql_outside_storage_and_no_store_internals_in_the_engine_or_the_commands():
    """Only storage/ speaks SQL to the xcap table; the engine (operations, middleware) and the
    operator commands (admin/) use the Store protocol, never a store's private members, its type,
    or a method looked up with getattr."""
    import re

    sql = re.compile(r"\b(SELECT \w|INSERT INTO|UPDATE `|UPDATE xcap|DELETE FROM)")
    internals = re.compile(r"store\._\w|isinstance\([^)]*Store\b|getattr\(store")
    engine = {"operations.py", "middleware.py"}
    for path in (REPO / "xcap_wsgi").rglob("*.py"):
        parts = path.relative_to(REPO).parts
        if "storage" in parts:
            continue
        code = re.sub(r'""".*?"""', "", path.read_text(encoding="utf-8"), flags=re.S)  # docstrings may quote SQL
        assert not sql.search(code), path
        if "admin" in parts or path.name in engine:
            assert not internals.search(code), path


@pytest.mark.mysql
def test_mysql_batch_restore_with_case_variants_falls_back_to_one_by_one(mysql_store):
    """On Kamailio's latin1 (case-insensitive) table, two doc_uris of one batch that differ only in
    case are one row for MariaDB: the multi-row INSERT fast path collides, is rolled back, and the
    batch is restored one document at a time, exactly as the database's '=' sees it."""
    upper = DocumentKey("user1", "example.com", key(1).doc_uri.upper(), 4)
    outcomes = mysql_store.restore_many([(key(0), document(0), "e0"), (key(1), document(1), "e1"),
                                         (upper, document(2), "e2")])
    assert outcomes == ["created", "created", "replaced"]
    assert mysql_store.count_rows() == 2
    assert mysql_store.get(key(1)).etag == "e2"
