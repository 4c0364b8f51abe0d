"""Account aliasing (issue 16 part 1): an account whose name only *looks like* bob's never reaches
bob's documents.

Real Digest (``DigestAuthMiddleware``) over a real SQLite subscriber table, in front of a real
``XCAPMiddleware`` on a real SQLite store. The look-alike accounts are inserted as ``kamctl add``
would (cleartext password and Kamailio's ha1/ha1b), because ``xcap-wsgi adduser`` now refuses
their names; each logs in with its own correct password and then tries bob's home.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3

import pytest
from webob import Request
from webob.exc import HTTPForbidden, HTTPUnauthorized

from xcap_wsgi import SQLiteStore, XCAPMiddleware
from xcap_wsgi.auth import DefaultPolicy, account
from xcap_wsgi.cli import main as cli
from xcap_wsgi.digest import DigestAuthMiddleware
from xcap_wsgi.subscribers import kamailio_hashes, split_account
from xcap_wsgi.uri import parse_xcap_path

REALM = "example.com"
RL_MIME = "application/resource-lists+xml"
BOB_DOC = "/xcap-root/resource-lists/users/sip:bob@example.com/index"
BOB_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists '
            b'xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="bob"/></resource-lists>')
EVIL_BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists '
             b'xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="evil"/></resource-lists>')

#: (username, domain) rows that only look like bob@example.com. The first group aliased bob before
#: the fix (the policy re-parsed "user@domain" with the lossy XUI parser); the rest are other
#: ambiguous spellings. None of them may log in.
LOOK_ALIKES = [
    ("bob:evil", "example.com"),  # "password" part dropped
    ("tel:bob", "example.com"),  # scheme dropped
    ("sip:bob", "example.com"),  # what `adduser sip:sip:bob@example.com` created
    ("SIP:bob", "example.com"),  # scheme case
    ("sips:bob", "example.com"),
    ("bob", "example.com:5060"),  # port dropped
    ("bob", "example.com:"),
    ("bob", "example.com;x"),  # URI parameters dropped
    ("bob", "example.com?x"),  # URI headers dropped
    (" bob", "example.com"),  # whitespace stripped
    ("bob", "example.com "),
    ("bob\t", "example.com"),
    # not aliases of bob before the fix, but ambiguous all the same
    ("bob", "example.com."),  # trailing dot: the same DNS name
    ("bob@example.com", "evil.org"),
    ("bob", "::1"),  # IPv6 without brackets
    ("bob", "[0:0::1]"),  # IPv6 not in its compressed form
    ("bob", "127.000.000.001"),
    ("bob", "exa mple.com"),
    ("bob", "exämple.com"),  # IDN domains are spelled in punycode
]

#: Names that are unambiguous (own home, nobody else's) but that adduser does not create: a SIP
#: URI would have to escape or would split them. Rows made by kamctl still log in, as themselves.
ODD_BUT_DISTINCT = [
    ("bob;x", "example.com", "sip:bob%3Bx@example.com"),
    ("bob%3Aevil", "example.com", "sip:bob%253Aevil@example.com"),
    ("böb", "example.com", "sip:b%C3%B6b@example.com"),
    ("bob x", "example.com", "sip:bob%20x@example.com"),
]


def add_row(path, username, domain, password):
    """INSERT the row as ``kamctl add`` does (cleartext password and both hashes)."""
    ha1, ha1b = kamailio_hashes(username, domain, password)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?, ?, ?, ?, ?)",
                     (username, domain, password, ha1, ha1b))
        conn.commit()


@pytest.fixture
def server(tmp_path):
    """(app, auth db path): Digest over XCAPMiddleware; alice, bob and +15551234 added with adduser."""
    auth = tmp_path / "auth.sqlite3"
    for who, password in (("alice@example.com", "wonder land"), ("bob@example.com", "builder"),
                          ("+15551234@example.com", "e164")):
        assert cli(["adduser", who, "--password", password, "--db", f"sqlite:///{auth}"]) == 0
    store = SQLiteStore(str(tmp_path / "xcap.sqlite3"))
    xcap = XCAPMiddleware(None, store=store, default_domain=REALM)
    app = DigestAuthMiddleware(xcap, subscribers=f"sqlite:///{auth}", realm=REALM, algorithms=("MD5",))
    yield app, str(auth)
    store.close()


def digest_request(app, method, path, username, password, body=None):
    """One request answered with a fresh challenge: RFC 7616 MD5, qop=auth, computed here."""
    challenge = Request.blank(path, method=method).get_response(app)
    assert challenge.status_int == 401
    params = dict(part.strip().split("=", 1) for part in
                  challenge.headers["WWW-Authenticate"][len("Digest "):].split(", "))
    params = {k: v.strip('"') for k, v in params.items()}
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731
    ha1 = md5(f"{username}:{params['realm']}:{password}")
    response = md5(f"{ha1}:{params['nonce']}:00000001:c0ffee:auth:{md5(f'{method}:{path}')}")
    quoted = username.replace("\\", "\\\\").replace('"', '\\"')
    header = (f'Digest username="{quoted}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
              f'uri="{path}", algorithm=MD5, response="{response}", qop=auth, nc=00000001, '
              f'cnonce="c0ffee", opaque="{params["opaque"]}"')
    headers = {"Authorization": header}
    if body is not None:
        headers["Content-Type"] = RL_MIME
    request = Request.blank(path, method=method, headers=headers, body=body or b"")
    request.environ["REQUEST_URI"] = path
    return request.get_response(app)


def test_bob_has_a_document(server):
    app, _ = server
    assert digest_request(app, "PUT", BOB_DOC, "bob", "builder", BOB_BODY).status_int == 201
    assert digest_request(app, "GET", BOB_DOC, "bob", "builder").body == BOB_BODY


@pytest.mark.parametrize("user, domain", LOOK_ALIKES)
def test_look_alike_account_cannot_log_in_or_reach_bobs_documents(server, user, domain):
    app, auth = server
    assert digest_request(app, "PUT", BOB_DOC, "bob", "builder", BOB_BODY).status_int == 201
    add_row(auth, user, domain, "evil")
    login = f"{user}@{domain}"
    for method, body in (("GET", None), ("PUT", EVIL_BODY), ("DELETE", None)):
        response = digest_request(app, method, BOB_DOC, login, "evil", body)
        # refused at login: the row's name is ambiguous
        assert response.status_int == 401, (method, response.status, response.text)
    assert digest_request(app, "GET", BOB_DOC, "bob", "builder").body == BOB_BODY


@pytest.mark.parametrize("user, domain, home", ODD_BUT_DISTINCT)
def test_odd_kamctl_names_log_in_as_themselves_only(server, user, domain, home):
    app, auth = server
    assert digest_request(app, "PUT", BOB_DOC, "bob", "builder", BOB_BODY).status_int == 201
    add_row(auth, user, domain, "odd")
    own = f"/xcap-root/resource-lists/users/{home}/index"
    assert digest_request(app, "PUT", own, f"{user}@{domain}", "odd", EVIL_BODY).status_int == 201
    assert digest_request(app, "GET", own, f"{user}@{domain}", "odd").body == EVIL_BODY
    for method, body in (("GET", None), ("PUT", EVIL_BODY), ("DELETE", None)):
        assert digest_request(app, method, BOB_DOC, f"{user}@{domain}", "odd", body).status_int == 403
    assert digest_request(app, "GET", own, "bob", "builder").status_int == 403
    assert digest_request(app, "GET", BOB_DOC, "bob", "builder").body == BOB_BODY


@pytest.mark.parametrize("user, domain", LOOK_ALIKES + [(u, d) for u, d, _ in ODD_BUT_DISTINCT])
def test_adduser_refuses_look_alike_names(tmp_path, capsys, user, domain):
    url = f"sqlite:///{tmp_path / 'auth.sqlite3'}"
    spelled = f"sip:{user}@{domain}" if user.lower().startswith(("sip:", "sips:")) else f"{user}@{domain}"
    assert cli(["adduser", spelled, "--password", "evil", "--db", url]) == 2, spelled
    assert "xcap-wsgi:" in capsys.readouterr().err
    with contextlib.closing(sqlite3.connect(tmp_path / "auth.sqlite3")) as conn:
        with contextlib.suppress(sqlite3.OperationalError):  # the table may not even be created
            assert conn.execute("SELECT COUNT(*) FROM subscriber").fetchone() == (0,)


@pytest.mark.parametrize("text, expected", [
    ("bob@example.com", ("bob", "example.com")),
    ("sip:bob@EXAMPLE.com", ("bob", "example.com")),
    ("SIPS:bob@example.com", ("bob", "example.com")),
    ("+15551234@example.com", ("+15551234", "example.com")),
    ("bob@[2001:DB8::1]", ("bob", "[2001:db8::1]")),
    ("bob@192.0.2.1", ("bob", "192.0.2.1")),
])
def test_adduser_accepts_canonical_names(text, expected):
    assert split_account(text) == expected


def test_adduser_refuses_a_case_variant_of_an_existing_domain(server, capsys):
    _, auth = server
    add_row(auth, "carol", "EXAMPLE.com", "kamctl")  # kamctl keeps the case it was given
    assert cli(["adduser", "carol@example.com", "--password", "x", "--db", f"sqlite:///{auth}"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_adduser_refuses_a_case_variant_of_an_existing_user(server, capsys):
    """On a latin1_swedish_ci document store "Bob" would read bob's rows: no such twin is created."""
    _, auth = server
    assert cli(["adduser", "Bob@example.com", "--password", "x", "--db", f"sqlite:///{auth}"]) == 1
    assert "already exists as bob@example.com" in capsys.readouterr().err


@pytest.mark.parametrize("xui", ["sip:bob@example.com", "sip:bob@EXAMPLE.com", "sip%3Abob%40example.com",
                                 "sips:bob@example.com", "bob@example.com"])
def test_legitimate_spellings_of_bobs_home_still_work(server, xui):
    app, _ = server
    path = f"/xcap-root/resource-lists/users/{xui}/index"
    assert digest_request(app, "PUT", path, "bob", "builder", BOB_BODY).status_int in (200, 201)
    assert digest_request(app, "GET", path, "bob@example.com", "builder").body == BOB_BODY
    assert digest_request(app, "GET", path, "alice", "wonder land").status_int == 403


@pytest.mark.parametrize("xui", ["sip:+15551234@example.com", "tel:+15551234"])
def test_e164_user_reaches_its_sip_and_tel_homes(server, xui):
    app, _ = server
    path = f"/xcap-root/resource-lists/users/{xui}/index"
    assert digest_request(app, "PUT", path, "+15551234", "e164", BOB_BODY).status_int == 201
    assert digest_request(app, "GET", path, "+15551234@example.com", "e164").body == BOB_BODY
    assert digest_request(app, "GET", path, "bob", "builder").status_int == 403


@pytest.mark.parametrize("name, xui", [("carol@[2001:db8::1]", "sip:carol@[2001:db8::1]"),
                                       ("carol@192.0.2.1", "sip:carol@192.0.2.1")])
def test_accounts_in_ip_address_domains(server, name, xui):
    app, auth = server
    assert cli(["adduser", name, "--password", "ip", "--db", f"sqlite:///{auth}"]) == 0
    path = f"/xcap-root/resource-lists/users/{xui}/index"
    assert digest_request(app, "PUT", path, name, "ip", BOB_BODY).status_int == 201
    assert digest_request(app, "GET", path, name, "ip").body == BOB_BODY
    assert digest_request(app, "GET", BOB_DOC, name, "ip").status_int == 403


def test_uppercase_domain_row_is_still_its_own_account(server):
    """kamctl may store the domain as typed: the host is case-insensitive, so it is dave@example.com."""
    app, auth = server
    add_row(auth, "dave", "Example.COM", "pw")
    path = "/xcap-root/resource-lists/users/sip:dave@example.com/index"
    assert digest_request(app, "PUT", path, "dave", "pw", BOB_BODY).status_int == 201
    assert digest_request(app, "GET", BOB_DOC, "dave", "pw").status_int == 403


# -- the identity -> account mapping on its own ------------------------------------------------


@pytest.mark.parametrize("identity", [
    "bob:evil@example.com", "tel:bob@example.com", "sip:sip:bob@example.com", "sip:bob:pw@example.com",
    "bob@example.com:5060", "bob@example.com;x", "bob@example.com?x", " bob@example.com", "bob@example.com ",
    "bob@example.com.", "sip:bob?x@example.com", "bob@evil.org@example.com", "@example.com", "sip:@example.com",
    "sip:example.com", "bob@", "",
    "bob@::1", "tel:", "pres:bob@example.com", "bob@exa\x00mple.com",
])
def test_ambiguous_identities_map_to_no_account(identity):
    assert account(identity, "example.com") is None
    policy = DefaultPolicy(default_domain="example.com")
    uri = parse_xcap_path("/xcap-root", "/resource-lists/users/sip:bob@example.com/index")
    with pytest.raises((HTTPForbidden, HTTPUnauthorized)):
        policy.authorize(identity, uri, write=False)


@pytest.mark.parametrize("identity, expected", [
    ("bob@example.com", ("bob", "example.com")),
    ("bob@EXAMPLE.com", ("bob", "example.com")),
    ("sip:bob@example.com", ("bob", "example.com")),
    ("SIP:bob@example.com", ("bob", "example.com")),
    ("sips:bob@example.com:5061;transport=tls", ("bob", "example.com")),  # a URI: port and params are not the account
    ("bob", ("bob", "example.com")),
    ("tel:+15551234", ("+15551234", "example.com")),
    ("tel:+15551234;phone-context=example.com", ("+15551234", "example.com")),
    ("bob@[::1]", ("bob", "[::1]")),
    ("bob;x@example.com", ("bob;x", "example.com")),  # odd, but nobody else's
    ("sip:bob;x@example.com", ("bob;x", "example.com")),
    ("bob%3Aevil@example.com", ("bob%3Aevil", "example.com")),
    ("sip:bob@[::1]:5060", ("bob", "[::1]")),
])
def test_unambiguous_identities(identity, expected):
    assert account(identity, "example.com") == expected


def test_policy_refuses_ambiguous_admin_or_trusted_names():
    with pytest.raises(ValueError):
        DefaultPolicy(default_domain="example.com", admins=["bob:evil@example.com"])
    with pytest.raises(ValueError):
        DefaultPolicy(default_domain="example.com", trusted=["presence@example.com:5060"])


# -- end to end: xcap-wsgi serve (waitress), raw HTTP, Digest computed here ----------------------


def test_look_alikes_through_serve(tmp_path):
    import subprocess
    import sys

    from mysql_support import REPO, free_port, http_request, stop_process, wait_for_http

    auth = tmp_path / "xcap.sqlite3"
    url = f"sqlite:///{auth}"
    assert cli(["adduser", "bob@example.com", "--password", "builder", "--db", url]) == 0
    look_alikes = [("bob:evil", "example.com"), ("tel:bob", "example.com"), ("sip:bob", "example.com"),
                   ("bob", "example.com:5060"), ("bob", "example.com;x"), (" bob", "example.com")]
    for user, domain in look_alikes:
        add_row(str(auth), user, domain, "evil")
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "xcap_wsgi", "serve", "--db", url, "--host", "127.0.0.1",
                                 "--port", str(port), "--default-domain", REALM, "--digest-algorithms", "MD5"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=str(REPO))
    md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731

    def request(method, username, password, body=None):
        status, headers, _ = http_request(method, port, BOB_DOC)
        assert status == 401
        params = {k: v.strip('"') for k, v in (p.strip().split("=", 1) for p in
                                               headers["www-authenticate"][len("Digest "):].split(", "))}
        ha1 = md5(f"{username}:{params['realm']}:{password}")
        response = md5(f"{ha1}:{params['nonce']}:00000001:c0ffee:auth:{md5(f'{method}:{BOB_DOC}')}")
        send = {"Authorization": f'Digest username="{username}", realm="{params["realm"]}", '
                                 f'nonce="{params["nonce"]}", uri="{BOB_DOC}", algorithm=MD5, response="{response}", '
                                 f'qop=auth, nc=00000001, cnonce="c0ffee", opaque="{params["opaque"]}"'}
        if body is not None:
            send["Content-Type"] = RL_MIME
        return http_request(method, port, BOB_DOC, body, send)

    try:
        wait_for_http(port, proc, path="/xcap-root/xcap-caps/global/index")
        assert request("PUT", "bob", "builder", BOB_BODY)[0] == 201
        for user, domain in look_alikes:
            for method, body in (("GET", None), ("PUT", EVIL_BODY), ("DELETE", None)):
                assert request(method, f"{user}@{domain}", "evil", body)[0] == 401, (user, domain, method)
        status, _, data = request("GET", "bob", "builder")
        assert (status, data) == (200, BOB_BODY)
    finally:
        stop_process(proc)
    assert "Traceback" not in log.read_text(errors="replace")
