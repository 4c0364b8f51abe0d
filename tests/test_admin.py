"""Operator commands (xcap_wsgi.admin): export, import, purge, check; in Python and via ``xcap-wsgi``.

Store-level tests run on SQLite and, when ``XCAP_TEST_MYSQL_URL`` is set, on Kamailio's table in
MariaDB (each store's ``restore``/``rows_after``).
"""

from __future__ import annotations

import json
import tarfile

import pytest
from conftest import ALICE_DOC, RL_DOC, RL_MIME, put_doc
from mysql_support import db_url, kamailio_database, mysql_store  # noqa: F401  (fixtures)

from xcap_wsgi import SQLiteStore, XCAPMiddleware
from xcap_wsgi.admin import (
    AdminError,
    check_documents,
    export_documents,
    import_documents,
    iter_entries,
    iter_rows,
    purge_documents,
    read_export,
    restore,
    settings_reference_markdown,
)
from xcap_wsgi.cli import main
from xcap_wsgi.storage import DocumentKey, StoreError

RL = "urn:ietf:params:xml:ns:resource-lists"
ROOT = "/xcap-root"
PRES_RULES = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
              b'<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy"/>\n')
#: Bytes a re-serialisation would change: CRLF, single quotes, non-ASCII, trailing blanks.
ODD_DOC = ("<?xml version='1.0' encoding='UTF-8'?>\r\n"
           f"<resource-lists xmlns='{RL}'>\r\n  <list name='caf\u00e9' >  </list>\r\n</resource-lists>  ").encode()


def key(user: str, auid: str = "resource-lists", doc: str = "index", domain: str = "example.com") -> DocumentKey:
    doc_type = {"resource-lists": 4, "pres-rules": 2, "rls-services": 8}[auid]
    return DocumentKey(user, domain, f"{ROOT}/{auid}/users/sip:{user}@{domain}/{doc}", doc_type)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def store(request, tmp_path):
    if request.param == "mysql":
        yield request.getfixturevalue("mysql_store")
        return
    store = SQLiteStore(str(tmp_path / "xcap.sqlite3"))
    yield store
    store.close()


@pytest.fixture
def populated(store):
    """alice: two documents (one with unusual bytes), bob: one; returns {doc_uri: etag}."""
    etags = {}
    for k, content in [(key("alice"), RL_DOC), (key("alice", "pres-rules"), PRES_RULES), (key("bob"), ODD_DOC)]:
        etags[k.doc_uri] = store.put(k, content, None)
    return etags


# -- export / import ------------------------------------------------------------------------------


def test_export_writes_exact_bytes_and_a_manifest(store, populated, tmp_path):
    out = tmp_path / "alice-export"
    manifest = export_documents(store, out, username="alice", domain="example.com")
    assert json.loads((out / "manifest.json").read_text()).items() <= manifest.items()
    assert manifest["documents"] == 2 and json.loads((out / "end.json").read_text())["documents"] == 2
    entries = list(iter_entries(out))  # index/*.jsonl: one line per document
    assert {d["doc_uri"] for d in entries} == {key("alice").doc_uri, key("alice", "pres-rules").doc_uri}
    for entry in entries:
        assert entry["etag"] == populated[entry["doc_uri"]]
        assert (entry["username"], entry["domain"]) == ("alice", "example.com")
        assert entry["file"] == "documents" + entry["doc_uri"]  # mirrors doc_uri
        expected = RL_DOC if entry["doc_type"] == 4 else PRES_RULES
        assert (out / entry["file"]).read_bytes() == expected
        assert entry["size"] == len(expected)


@pytest.mark.parametrize("name", ["export", "export.tar", "export.tar.gz", "export.tgz"])
def test_export_purge_import_restores_bytes_and_etags(store, populated, tmp_path, name):
    before = {row.doc_uri: row for row in iter_rows(store)}
    export_documents(store, tmp_path / name)
    for user in ("alice", "bob"):
        purge_documents(store, user, "example.com")
    assert list(iter_rows(store)) == []
    counts = import_documents(store, tmp_path / name)
    assert counts == {"created": 3, "replaced": 0, "unchanged": 0}
    after = {row.doc_uri: row for row in iter_rows(store)}
    assert after == before  # same accounts, doc_types, bytes and ETags
    assert import_documents(store, tmp_path / name) == {"created": 0, "replaced": 0, "unchanged": 3}


def test_import_replaces_a_changed_document_and_clients_etags_still_match(store, populated, tmp_path):
    export_documents(store, tmp_path / "backup.tar", username="alice", domain="example.com")
    exported_etag = populated[key("alice").doc_uri]
    store.put(key("alice"), RL_DOC.replace(b"Bob", b"Robert"), exported_etag)  # changed after the backup
    assert import_documents(store, tmp_path / "backup.tar") == {"created": 0, "replaced": 1, "unchanged": 1}
    stored = store.get(key("alice"))
    assert (stored.content, stored.etag) == (RL_DOC, exported_etag)
    # a client that read the document before the backup can still write conditionally
    app = XCAPMiddleware(None, store=store, default_domain="example.com")
    response = put_doc(app, ALICE_DOC, RL_DOC.replace(b"Bob", b"Bobby"), **{"If-Match": f'"{exported_etag}"'})
    assert response.status_int == 200


def test_import_only_one_user(store, populated, tmp_path):
    export_documents(store, tmp_path / "all")
    for user in ("alice", "bob"):
        purge_documents(store, user, "example.com")
    import_documents(store, tmp_path / "all", username="bob", domain="example.com")
    assert [row.username for row in iter_rows(store)] == ["bob"]


def test_damaged_export_is_refused_before_any_write(store, populated, tmp_path):
    out = tmp_path / "export"
    export_documents(store, out)
    for user in ("alice", "bob"):
        purge_documents(store, user, "example.com")
    last = out / list(iter_entries(out))[-1]["file"]
    last.write_bytes(last.read_bytes().replace(b"list", b"lost"))
    with pytest.raises(AdminError, match="does not match the manifest"):
        import_documents(store, out)
    assert list(iter_rows(store)) == []  # the intact documents before it were not written either


def test_manifest_cannot_point_outside_the_export(store, populated, tmp_path):
    out = tmp_path / "export"
    export_documents(store, out)
    (tmp_path / "secret").write_bytes(RL_DOC)
    _edit_first_entry(out, file="../secret")
    with pytest.raises(AdminError, match="not a file inside"):
        list(read_export(out))


@pytest.mark.parametrize("etag", ["", "x" * 118, 'a"b', "a b"])
def test_manifest_with_an_invalid_etag_is_refused(store, populated, tmp_path, etag):
    out = tmp_path / "export"
    export_documents(store, out)
    _edit_first_entry(out, etag=etag)
    with pytest.raises(AdminError, match="ETag"):
        list(read_export(out))


def _edit_first_entry(out, **changes):
    """Change the first document's line of an export folder's index (index/000001.jsonl)."""
    index = out / "index" / "000001.jsonl"
    lines = index.read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), **changes})
    index.write_text("\n".join(lines) + "\n")


def test_export_refuses_to_overwrite(store, populated, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("x")
    with pytest.raises(AdminError, match="refusing"):
        export_documents(store, tmp_path / "full")
    (tmp_path / "old.tar").write_bytes(b"")
    with pytest.raises(AdminError, match="refusing"):
        export_documents(store, tmp_path / "old.tar")
    assert (tmp_path / "old.tar").read_bytes() == b""


def test_export_paths_stay_inside_for_dot_segments_and_nested_names(store, tmp_path):
    weird = DocumentKey("carol", "example.com", f"{ROOT}/resource-lists/users/sip:carol@example.com/../../escape", 4)
    folder = DocumentKey("carol", "example.com", f"{ROOT}/resource-lists/users/sip:carol@example.com/a", 4)
    nested = DocumentKey("carol", "example.com", f"{ROOT}/resource-lists/users/sip:carol@example.com/a/b", 4)
    for k in (weird, folder, nested):
        store.put(k, RL_DOC, None)
    out = tmp_path / "export"
    manifest = export_documents(store, out, username="carol", domain="example.com")
    assert manifest["documents"] == 3
    files = [(out / d["file"]).resolve() for d in iter_entries(out)]
    assert all(out.resolve() in f.parents for f in files)
    assert len(set(files)) == 3
    purge_documents(store, "carol", "example.com")
    assert import_documents(store, out)["created"] == 3
    assert {r.doc_uri for r in iter_rows(store)} == {weird.doc_uri, folder.doc_uri, nested.doc_uri}


def test_tar_export_members(store, populated, tmp_path):
    export_documents(store, tmp_path / "x.tgz", username="bob", domain="example.com")
    with tarfile.open(tmp_path / "x.tgz") as tar:
        names = tar.getnames()
        assert names[0] == "manifest.json"
        assert tar.extractfile(f"documents{key('bob').doc_uri}").read() == ODD_DOC


def test_restore_refuses_another_accounts_doc_uri(store, populated):
    stolen = DocumentKey("mallory", "example.com", key("alice").doc_uri, 4)
    with pytest.raises(StoreError):
        restore(store, stolen, RL_DOC, "xw-forged")
    assert store.get(key("alice")).etag == populated[key("alice").doc_uri]


def test_iter_rows_pages_through_everything_in_id_order(store):
    keys = [key(f"user{n}") for n in range(7)]
    for k in keys:
        store.put(k, RL_DOC, None)
    assert [r.doc_uri for r in iter_rows(store, batch=3)] == [k.doc_uri for k in keys]
    assert [r.doc_uri for r in iter_rows(store, "user4", "example.com", batch=3)] == [keys[4].doc_uri]


# -- purge ----------------------------------------------------------------------------------------


def test_purge_deletes_one_users_documents_only(store, populated):
    assert purge_documents(store, "alice", "example.com") == 2
    assert store.list_documents("alice", "example.com") == []
    assert store.get(key("bob")).content == ODD_DOC


# -- check ----------------------------------------------------------------------------------------


def test_check_finds_nothing_wrong_in_valid_documents(store, populated):
    assert check_documents(store, default_domain="example.com") == []


def test_check_reports_each_kind_of_problem(store, populated):
    bad = {
        key("dave"): b"<resource-lists xmlns='urn:ietf:params:xml:ns:resource-lists'><list>",  # not well-formed
        key("erin"): f'<resource-lists xmlns="{RL}"><bogus/></resource-lists>'.encode(),  # schema
        key("frank"): f'<resource-lists xmlns="{RL}"><list name="\u00e9"/></resource-lists>'.encode("latin-1"),
        DocumentKey("gina", "example.com", key("gina").doc_uri, 8): RL_DOC,  # doc_type of rls-services
        DocumentKey("henry", "example.com", key("someone-else").doc_uri, 4): RL_DOC,  # account != XUI
        key("ivan", doc="buddies"): RL_DOC,  # resource-lists allows any name: fine
    }
    for k, content in bad.items():
        store.put(k, content, None)
    problems = {p.username: p.message for p in check_documents(store, default_domain="example.com")}
    assert set(problems) == {"dave", "erin", "frank", "gina", "henry"}
    assert problems["dave"].startswith("not-well-formed")
    assert problems["erin"].startswith("schema-validation-error")
    assert problems["frank"].startswith("not-utf-8")
    assert "doc_type 8" in problems["gina"]
    assert "does not match the XUI" in problems["henry"]


# -- the command line -----------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    store = SQLiteStore(str(tmp_path / "cli.sqlite3"))
    for n in range(5):
        store.put(key(f"user{n}"), RL_DOC, None)
    store.put(key("alice"), RL_DOC, None)
    store.put(key("alice", "pres-rules"), PRES_RULES, None)
    yield url, store
    store.close()


def test_cli_export_import_round_trip(db, tmp_path, capsys):
    url, store = db
    before = list(iter_rows(store, "alice", "example.com"))
    assert main(["export", "--db", url, "--user", "sip:alice@example.com", str(tmp_path / "a.tar.gz")]) == 0
    assert "exported 2 document(s)" in capsys.readouterr().out
    assert main(["purge", "--db", url, "--user", "alice@example.com", "--yes"]) == 0
    assert store.list_documents("alice", "example.com") == []
    assert main(["import", "--db", url, str(tmp_path / "a.tar.gz")]) == 0
    assert "2 created" in capsys.readouterr().out
    assert list(iter_rows(store, "alice", "example.com")) == before


def test_cli_export_needs_user_or_all(db, tmp_path, capsys):
    url, _ = db
    assert main(["export", "--db", url, str(tmp_path / "x")]) == 2
    assert main(["export", "--db", url, "--all", str(tmp_path / "x")]) == 0
    assert len(list(iter_entries(tmp_path / "x"))) == 7


def test_cli_purge_without_yes_deletes_nothing(db, capsys):
    url, store = db
    assert main(["purge", "--db", url, "--user", "sip:alice@example.com"]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("would delete") == 2
    assert "add --yes" in captured.err
    assert len(store.list_documents("alice", "example.com")) == 2


def test_cli_check_exit_status_and_progress(db, capsys):
    url, store = db
    assert main(["check", "--db", url, "--default-domain", "example.com", "--progress-every", "2"]) == 0
    captured = capsys.readouterr()
    assert "7 document(s) checked, 0 problem(s)" in captured.out
    assert [line.split(",")[0] for line in captured.err.splitlines() if "/7 documents" in line] == [
        "check: 2/7 documents (28.6%)", "check: 4/7 documents (57.1%)", "check: 6/7 documents (85.7%)"]
    store.put(key("zed"), b"<not xml", None)
    assert main(["check", "--db", url, "--default-domain", "example.com"]) == 1
    out = capsys.readouterr().out
    assert f"{key('zed').doc_uri} (zed@example.com): not-well-formed" in out


def test_cli_check_follows_no_schema_validation_like_the_server(db, tmp_path, capsys):
    url, store = db
    store.put(key("erin"), f'<resource-lists xmlns="{RL}"><bogus/></resource-lists>'.encode(), None)
    assert main(["check", "--db", url, "--default-domain", "example.com"]) == 1
    assert "schema-validation-error" in capsys.readouterr().out
    config = tmp_path / "xcap.ini"
    config.write_text(f"[xcap-wsgi]\ndb = {url}\ndefault_domain = example.com\nno_schema_validation = resource-lists\n")
    assert main(["check", "--config", str(config)]) == 0


def test_cli_admin_commands_read_the_config_file(db, tmp_path, capsys):
    url, store = db
    config = tmp_path / "xcap.ini"
    config.write_text(f"[xcap-wsgi]\ndb = {url}\ndefault_domain = example.com\n")
    assert main(["purge", "--config", str(config), "--user", "alice", "--yes"]) == 0  # alice@default_domain
    assert store.list_documents("alice", "example.com") == []


def test_cli_import_of_a_damaged_export_fails(db, tmp_path, capsys):
    url, _ = db
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"this is not a tar file")
    assert main(["import", "--db", url, str(broken)]) == 1
    assert "not a folder or a readable tar file" in capsys.readouterr().err


# -- the whole CLI through its settings ------------------------------------------------------------


def test_serve_help_lists_every_setting(capsys):
    from xcap_wsgi.settings import SETTINGS

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for setting in SETTINGS:
        assert setting.flag in text, setting.name
        assert setting.env in text, setting.name


def test_serve_reads_the_config_file(tmp_path, capsys):
    """``serve --config``: a bad value in the ini is reported by the settings table (no server starts)."""
    config = tmp_path / "xcap.ini"
    config.write_text("[xcap-wsgi]\nport = not-a-number\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "not-a-number" in capsys.readouterr().err
    config.write_text("[xcap-wsgi]\nmax_bdy_size = 1\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "max_bdy_size" in capsys.readouterr().err


def test_settings_reference_has_one_row_per_setting():
    from xcap_wsgi.settings import SETTINGS

    rows = [line for line in settings_reference_markdown().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [s.name for s in SETTINGS]


def test_serve_uses_the_config_file_over_the_environment_and_flags_over_both(tmp_path):
    """A real ``xcap-wsgi serve --config``: ini beats XCAP_* variables, the command line beats the ini."""
    import http.client
    import os
    import socket
    import subprocess
    import sys
    import time

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    ini_port, env_port = free_port(), free_port()
    config = tmp_path / "xcap.ini"
    config.write_text(f"[xcap-wsgi]\nport = {ini_port}\nroot = /from-ini\nanonymous = true\n"
                      f"db = sqlite:///{tmp_path / 'serve.sqlite3'}\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout, not another install
    env = {**os.environ, "PYTHONPATH": repo, "PYTHONUNBUFFERED": "1", "XCAP_PORT": str(env_port), "XCAP_ROOT": "/from-env",
           "XCAP_DEFAULT_DOMAIN": "env.example.com"}

    def start(*extra):
        return subprocess.Popen([sys.executable, "-m", "xcap_wsgi", "serve", "--config", str(config), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path, env=env)

    process = start()
    try:
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{ini_port}/from-ini/" in banner
        deadline = time.monotonic() + 10
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", ini_port, timeout=5)
                connection.request("PUT", "/from-ini/resource-lists/users/alice/index", RL_DOC,
                                   {"Content-Type": RL_MIME})
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not listen on the ini's port"
                time.sleep(0.05)
        assert connection.getresponse().status == 201
    finally:
        process.terminate()
        process.wait(timeout=10)
    # the environment still supplies what neither the ini nor the command line sets
    rows = list(iter_rows(SQLiteStore(str(tmp_path / "serve.sqlite3"))))
    assert [(r.username, r.domain, r.doc_uri) for r in rows] == [
        ("alice", "env.example.com", "/from-ini/resource-lists/users/alice/index")]

    flag_port = free_port()
    process = start("--port", str(flag_port), "--root", "/from-flag")
    try:
        assert f"http://127.0.0.1:{flag_port}/from-flag/" in process.stdout.readline()
    finally:
        process.terminate()
        process.wait(timeout=10)
