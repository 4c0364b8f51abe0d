"""Change notifications against a real Kamailio 5.6 and a real SIP client (issue 8, item 3).

Kamailio runs from tests/kamailio/presence-rpc.cfg on 127.0.0.1: jsonrpcs over xhttp (POST /RPC),
presence + presence_xml (integrated_xcap_server=1, force_active=0), pua + rls, db_mysql on a
database of its own that Kamailio's package SQL laid out (presence-create.sql + rls-create.sql).
xcap-wsgi writes that database's xcap table and tells Kamailio over JSON-RPC (KamailioNotifier).

* Kamailio accepts every call the notifier makes for pres-rules, pidf-manipulation,
  resource-lists and rls-services (JSON-RPC results, no errors), and the pidf-manipulation call
  has its visible effect: Kamailio stores the document as alice's hard-state presentity.
* End to end with sipp: bob's SUBSCRIBE to alice gets a pending NOTIFY; a pres-rules PUT to
  ``xcap-wsgi serve --kamailio-rpc`` allowing bob makes Kamailio NOTIFY "active" twice: once for
  presence.updateWatchers (status change), once for presence.refreshWatchers type 1. Replacing
  an allow rule with block terminates an active watcher's subscription.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from mysql_support import (
    HERE,
    KAMAILIO_MODULES,
    KAMAILIO_SQL_DIR,
    Kamailio,
    connect,
    free_port,
    http_request,
    run_kamailio,
    run_xcap_wsgi,
    stop_process,
    temporary_database,
    truncate,
    unavailable,
)
from webob import Request

from xcap_wsgi import XCAPMiddleware
from xcap_wsgi.notify import KamailioNotifier, RPCError, kamailio_calls
from xcap_wsgi.storage import open_store

pytestmark = [pytest.mark.mysql, pytest.mark.kamailio]

CONFIG = HERE / "kamailio" / "presence-rpc.cfg"
SCENARIO = HERE / "sipp" / "presence-watcher.xml"
REVOKED_SCENARIO = HERE / "sipp" / "presence-watcher-revoked.xml"
PRESENCE_TABLES = ("xcap", "presentity", "active_watchers", "watchers", "pua", "rls_presentity", "rls_watchers")

ALICE, BOB = "sip:alice@example.com", "sip:bob@example.com"
ROOT = "/xcap-root"
RULES_PATH = f"{ROOT}/pres-rules/users/{ALICE}/index"
PIDF_PATH = f"{ROOT}/pidf-manipulation/users/{ALICE}/index"
LISTS_PATH = f"{ROOT}/resource-lists/users/{ALICE}/index"
RLS_PATH = f"{ROOT}/rls-services/users/{ALICE}/index"


def pres_rules(action: str = "allow", who: str = BOB) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" '
            f'xmlns:cr="urn:ietf:params:xml:ns:common-policy">\n'
            f'  <cr:rule id="allow-{action}">\n'
            f'    <cr:conditions><cr:identity><cr:one id="{who}"/></cr:identity></cr:conditions>\n'
            f'    <cr:actions><sub-handling>{action}</sub-handling></cr:actions>\n'
            f'    <cr:transformations/>\n'
            f'  </cr:rule>\n'
            f'</cr:ruleset>\n').encode()


PIDF = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">\n'
        b'  <tuple id="hard-state"><status><basic>open</basic></status>'
        b'<note>out of office until Monday</note></tuple>\n'
        b'</presence>\n')
LISTS = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
         b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
         b'  <list name="friends"><entry uri="sip:bob@example.com"/><entry uri="sip:carol@example.com"/></list>\n'
         b'</resource-lists>\n')
RLS = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
       b'<rls-services xmlns="urn:ietf:params:xml:ns:rls-services" '
       b'xmlns:rl="urn:ietf:params:xml:ns:resource-lists">\n'
       b'  <service uri="sip:alice-friends@example.com">\n'
       b'    <resource-list>http://127.0.0.1/xcap-root/resource-lists/users/sip:alice@example.com/index'
       b'/~~/resource-lists/list%5b@name=%22friends%22%5d</resource-list>\n'
       b'    <packages><package>presence</package></packages>\n'
       b'  </service>\n'
       b'</rls-services>\n')

CONTENT_TYPES = {
    RULES_PATH: "application/auth-policy+xml",
    PIDF_PATH: "application/pidf+xml",
    LISTS_PATH: "application/resource-lists+xml",
    RLS_PATH: "application/rls-services+xml",
}


# -- fixtures: a database and a Kamailio of this module's own ----------------------------------


@pytest.fixture(scope="module")
def presence_database():
    """A latin1 database with Kamailio's presence and rls tables (package SQL, as kamdbctl would)."""
    rls_sql = KAMAILIO_SQL_DIR / "rls-create.sql"
    if not rls_sql.exists():
        unavailable(f"Kamailio's {rls_sql} is not installed (package kamailio-mysql-modules)")
    with temporary_database(charset="latin1", tables="kamailio") as url:  # package SQL, rls-create.sql included
        yield url


class PresenceKamailio(Kamailio):
    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/RPC"

    def rpc(self, method: str, *params) -> dict:
        """One JSON-RPC call; returns the whole answer (``result`` or ``error``)."""
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}).encode()
        status, _, data = http_request("POST", self.http_port, "/RPC", body, {"Content-Type": "application/json"})
        answer = json.loads(data)
        assert status in (200, 500), (status, data)
        return answer


@contextlib.contextmanager
def run_presence_kamailio(database_url: str):
    missing = [m for m in ("jsonrpcs.so", "rls.so", "pua.so", "siputils.so", "maxfwd.so")
               if not (KAMAILIO_MODULES / m).exists()]
    if missing:
        unavailable(f"Kamailio modules missing: {missing}")
    with run_kamailio(database_url, config_file=CONFIG, kind=PresenceKamailio) as kam:
        yield kam


@pytest.fixture(scope="module")
def presence_kamailio(presence_database):
    """Kamailio 5.6 with jsonrpcs/xhttp, presence, presence_xml, pua and rls on 127.0.0.1."""
    with run_presence_kamailio(presence_database) as kam:
        yield kam


@pytest.fixture
def presence_db(presence_database, presence_kamailio):
    """The module database, empty before each test (Kamailio keeps running)."""
    truncate(presence_database, *PRESENCE_TABLES)
    return presence_database


@pytest.fixture
def notifier(presence_kamailio):
    notifier = KamailioNotifier(presence_kamailio.rpc_url, retries=1, backoff=0.05, timeout=5.0)
    try:
        yield notifier
    finally:
        notifier.close()


def xcap(app, method: str, path: str, body: bytes | None = None):
    request = Request.blank(path, method=method)
    request.environ["REQUEST_URI"] = path
    if body is not None:
        request.body = body
        request.content_type = CONTENT_TYPES[path]
    return request.get_response(app)


def select(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(connect(url)) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


# -- Kamailio accepts the calls ---------------------------------------------------------------


def test_kamailio_offers_every_method_the_notifier_calls(presence_kamailio):
    answer = presence_kamailio.rpc("system.listMethods")
    methods = set(answer["result"])
    called = {method for doc_type in (2, 4, 8, 16)
              for method, _ in kamailio_calls(_event(RULES_PATH), doc_type)}
    assert called == {"presence.updateWatchers", "presence.refreshWatchers", "rls.update_subs"}
    assert called <= methods, sorted(m for m in methods if m.startswith(("presence.", "rls.")))


def test_kamailio_accepts_every_call_for_every_document_type(presence_kamailio, presence_db, notifier):
    """PUTs through the real middleware on the MySQL table Kamailio reads; every RPC succeeds."""
    store = open_store(presence_db)
    seen = []
    app = XCAPMiddleware(None, store=store, anonymous=True, on_change=[seen.append, notifier])
    try:
        for path, body in ((RULES_PATH, pres_rules()), (PIDF_PATH, PIDF), (LISTS_PATH, LISTS), (RLS_PATH, RLS)):
            response = xcap(app, "PUT", path, body)
            assert response.status_int in (200, 201), (path, response.status, response.body)
        assert notifier.flush(20), notifier.stats()
    finally:
        store.close()
    assert [event.auid for event in seen] == ["pres-rules", "pidf-manipulation", "resource-lists", "rls-services"]
    # pres-rules: updateWatchers + refreshWatchers 1; pidf: refreshWatchers 2; lists, services: rls.update_subs
    assert notifier.stats() == {"sent": 5, "failed": 0, "dropped": 0, "retried": 0, "queued": 0}, \
        presence_kamailio.log()[-3000:]

    # refreshWatchers type 2 made presence read our pidf-manipulation row (doc_type=16 AND doc_uri=?)
    # and store it as alice's hard-state presentity, whose etag is the XCAP file name
    rows = select(presence_db, "SELECT username, domain, event, etag, body FROM presentity")
    assert rows == [("alice", "example.com", "presence", "index", PIDF)], (rows, presence_kamailio.log()[-3000:])
    log = presence_kamailio.log()
    assert "Hard-state file index (uri /xcap-root/pidf-manipulation/users/sip:alice@example.com/index)" in log

    # deleting the pidf-manipulation document: the same call makes presence drop the hard state
    store = open_store(presence_db)
    try:
        app = XCAPMiddleware(None, store=store, anonymous=True, on_change=[notifier])
        assert xcap(app, "DELETE", PIDF_PATH).status_int == 200
        assert notifier.flush(20), notifier.stats()
    finally:
        store.close()
    assert notifier.stats() == {"sent": 6, "failed": 0, "dropped": 0, "retried": 0, "queued": 0}
    assert select(presence_db, "SELECT username, etag FROM presentity") == [], presence_kamailio.log()[-2000:]


def test_kamailio_rpc_parameter_types(presence_kamailio, presence_db):
    """What Kamailio 5.6.3 accepts: the refresh type must be a JSON integer, not a string."""
    mysql_rules = open_store(presence_db)
    try:
        app = XCAPMiddleware(None, store=mysql_rules, anonymous=True)
        assert xcap(app, "PUT", RULES_PATH, pres_rules()).status_int in (200, 201)
        assert "result" in presence_kamailio.rpc("presence.updateWatchers", ALICE, "presence")
        assert "result" in presence_kamailio.rpc("presence.refreshWatchers", ALICE, "presence", 0)
        assert "result" in presence_kamailio.rpc("presence.refreshWatchers", ALICE, "presence", 1)
        # a string "1" is not read as 1 (jsonrpcs scans it as 0 -> re-apply rules, which then fails once
        # the rules are gone); with no rules doc, the rules-based calls are refused
        assert xcap(app, "DELETE", RULES_PATH).status_int == 200
        assert "error" in presence_kamailio.rpc("presence.refreshWatchers", ALICE, "presence", "1")
        assert "result" in presence_kamailio.rpc("presence.refreshWatchers", ALICE, "presence", 1)
        assert "error" in presence_kamailio.rpc("presence.updateWatchers", ALICE, "presence")
        assert "error" in presence_kamailio.rpc("presence.refreshWatchers", ALICE, "presence")  # < 3 params
        assert "error" in presence_kamailio.rpc("presence.updateWatchers", ALICE, "no-such-event")
    finally:
        mysql_rules.close()


def test_notifier_counts_kamailios_refusal_as_failed(presence_kamailio, presence_db, notifier):
    """A JSON-RPC error from the real Kamailio is an RPCError, counted as failed, never retried."""
    with pytest.raises(RPCError):
        notifier.call("presence.updateWatchers", [ALICE, "no-such-event"])
    notifier._queue.put(("presence.updateWatchers", [ALICE, "no-such-event"]))
    assert notifier.flush(10)
    assert notifier.stats()["failed"] == 1 and notifier.stats()["retried"] == 0


# -- end to end: sipp watcher, xcap-wsgi serve --kamailio-rpc, Kamailio -------------------------


def sipp_binary() -> str:
    binary = shutil.which("sipp")
    if not binary:
        unavailable("sipp is not installed (Debian package sip-tester)")
    return binary


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def received_notify_states(trace: str) -> list[str]:
    """Subscription-State values of the NOTIFYs in a sipp -trace_msg log, in order received."""
    states = []
    for block in re.split(r"^-{10,}.*$", trace, flags=re.M):
        if not re.search(r"^UDP message received \[", block, re.M):  # not sipp's "Unexpected ..." copies
            continue
        if not re.search(r"^NOTIFY ", block, re.M):
            continue
        match = re.search(r"^Subscription-State:\s*([A-Za-z-]+)", block, re.M | re.I)
        states.append(match.group(1).lower() if match else "")
    return states


class Sipp:
    """One sipp UAC run of a scenario in tests/sipp/ against the module's Kamailio, traced to files."""

    def __init__(self, scenario: Path, kamailio: PresenceKamailio, workdir: Path, server=None, **keys: str):
        self.kamailio, self.server = kamailio, server
        self.screen, self.errors = workdir / "sipp.out", workdir / "errors.log"
        self.messages, self.actions = workdir / "messages.log", workdir / "actions.log"
        keywords = [arg for key, value in keys.items() for arg in ("-key", key, value)]
        with open(self.screen, "wb") as out:
            self.proc = subprocess.Popen(
                [sipp_binary(), "-sf", str(scenario), f"127.0.0.1:{kamailio.sip_port}",
                 "-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)), "-t", "u1", *keywords,
                 "-m", "1", "-timeout", "60s", "-timeout_error", "-nostdin", "-default_behaviors", "abortunexp",
                 "-trace_msg", "-message_file", str(self.messages), "-trace_err", "-error_file", str(self.errors),
                 "-trace_logs", "-log_file", str(self.actions)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=str(workdir),
            )

    def report(self) -> str:
        parts = [f"sipp exit {self.proc.poll()}"]
        for f in (self.screen, self.errors, self.actions, self.messages):
            parts.append(f"--- {f.name}\n{read(f)[-3000:]}")
        parts.append(f"--- kamailio\n{self.kamailio.log()[-3000:]}")
        if self.server is not None:
            parts.append(f"--- xcap-wsgi\n{read(Path(self.server.log_path))[-2000:]}")
        return "\n".join(parts)

    def notify_states(self) -> list[str]:
        return received_notify_states(read(self.messages))

    def wait_for_notifies(self, count: int, timeout: float = 15.0) -> list[str]:
        """Wait until sipp received ``count`` NOTIFYs (it flushes its message trace as it goes)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None and len(self.notify_states()) < count:
            time.sleep(0.05)
        return self.notify_states()

    def finish(self, timeout: float = 40.0) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail("sipp did not finish\n" + self.report())
        assert self.proc.returncode == 0, self.report()

    def logged_states(self) -> list[str]:
        """The states the scenario's own checks matched (its <log> actions)."""
        return re.findall(r"NOTIFY Subscription-State:\s*(\w+)", read(self.actions))

    def stop(self) -> None:
        stop_process(self.proc)


def put_rules(server, body: bytes) -> None:
    status, _, answer = http_request("PUT", server.port, RULES_PATH, body, {"Content-Type": "application/auth-policy+xml"})
    assert status in (200, 201), (status, answer)


def assert_notifier_quiet(server) -> None:
    log = read(Path(server.log_path))
    assert "refused" not in log and "giving up" not in log, log[-2000:]


def test_sipp_watcher_goes_from_pending_to_active_after_pres_rules_put(presence_kamailio, presence_db, tmp_path):
    with run_xcap_wsgi(presence_db, "--kamailio-rpc", presence_kamailio.rpc_url) as server:
        sipp = Sipp(SCENARIO, presence_kamailio, tmp_path, server, watcher=BOB, presentity=ALICE)
        try:
            assert sipp.wait_for_notifies(1) == ["pending"], sipp.report()
            # presence keeps bob pending (2) in its watchers table until it is told otherwise
            assert select(presence_db, "SELECT watcher_username, status FROM watchers "
                          "WHERE presentity_uri=%s", (ALICE,)) == [("bob", 2)], sipp.report()

            put_rules(server, pres_rules("allow", BOB))
            sipp.finish()
            assert sipp.notify_states() == ["pending", "active", "active", "terminated"], sipp.report()
            assert sipp.logged_states() == ["pending", "active", "active", "terminated"], sipp.report()
            assert_notifier_quiet(server)
        finally:
            sipp.stop()


def test_sipp_watcher_is_terminated_when_a_pres_rules_put_blocks_it(presence_kamailio, presence_db, tmp_path):
    """Revocation: bob is active under an allow rule; replacing it with block ends his subscription."""
    with run_xcap_wsgi(presence_db, "--kamailio-rpc", presence_kamailio.rpc_url) as server:
        put_rules(server, pres_rules("allow", BOB))
        sipp = Sipp(REVOKED_SCENARIO, presence_kamailio, tmp_path, server, watcher=BOB, presentity=ALICE)
        try:
            assert sipp.wait_for_notifies(1) == ["active"], sipp.report()
            put_rules(server, pres_rules("block", BOB))
            sipp.finish()
            assert sipp.notify_states() == ["active", "terminated"], sipp.report()
            assert sipp.logged_states() == ["active", "terminated"], sipp.report()
            assert_notifier_quiet(server)
        finally:
            sipp.stop()


def _event(path: str):
    """A ChangeEvent for alice's document at ``path`` (only what kamailio_calls reads matters)."""
    from xcap_wsgi.events import ChangeEvent

    auid = path.split("/")[2]
    return ChangeEvent(auid=auid, xui=ALICE, username="alice", domain="example.com",
                       document_selector=f"{auid}/users/{ALICE}/index", doc_uri=path, node_selector=None,
                       operation="put", previous_etag=None, new_etag="x", xcap_root="http://127.0.0.1/xcap-root/")
