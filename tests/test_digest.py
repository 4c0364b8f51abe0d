"""DigestAuthMiddleware (RFC 7616) against a real Kamailio ``subscriber`` table (SQLite file; MySQL when
``XCAP_TEST_MYSQL_URL`` is set). Client responses are computed here from the RFC formulas with hashlib,
independently of ``xcap_wsgi.digest``; the end-to-end test uses urllib's own Digest client.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import sqlite3
import threading
import urllib.error
import urllib.request

import pytest
from webob import Request

from xcap_wsgi.cli import main as cli
from xcap_wsgi.digest import DigestAuthMiddleware, NonceTracker, compute_ha1, compute_response, parse_auth_params
from xcap_wsgi.subscribers import SQLiteSubscribers, kamailio_hashes, open_subscribers

REALM = "example.com"
HASH = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def h(algorithm, text):
    return HASH[algorithm](text.encode()).hexdigest()


def client_response(algorithm, username, realm, password, method, uri, nonce, nc, cnonce, qop="auth"):
    """RFC 7616 §3.4.1, written out again on the client side."""
    ha1 = h(algorithm, f"{username}:{realm}:{password}")
    ha2 = h(algorithm, f"{method}:{uri}")
    return h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


# -- RFC 7616 §3.9.1 example ------------------------------------------------------------------

RFC = dict(username="Mufasa", realm="http-auth@example.org", password="Circle of Life", method="GET",
           uri="/dir/index.html", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc="00000001",
           cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")


@pytest.mark.parametrize("algorithm, expected", [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_example_vectors(algorithm, expected):
    ha1 = compute_ha1(algorithm, RFC["username"], RFC["realm"], RFC["password"])
    got = compute_response(algorithm, ha1, RFC["nonce"], RFC["nc"], RFC["cnonce"], "auth", RFC["method"], RFC["uri"])
    assert got == expected
    assert client_response(algorithm, RFC["username"], RFC["realm"], RFC["password"], RFC["method"], RFC["uri"],
                           RFC["nonce"], RFC["nc"], RFC["cnonce"]) == expected


def test_parse_auth_params_quoting():
    params = parse_auth_params('username="a\\"b", realm="x, y", nc=00000001, qop=auth')
    assert params == {"username": 'a"b', "realm": "x, y", "nc": "00000001", "qop": "auth"}
    with pytest.raises(ValueError):
        parse_auth_params('username="unterminated')
    with pytest.raises(ValueError):
        parse_auth_params("nc=1, nc=2")


# -- fixtures: a real subscriber table and a downstream app -------------------------------------


@pytest.fixture
def db_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'auth.sqlite3'}"
    assert cli(["adduser", "alice@example.com", "--password", "wonder land", "--db", url]) == 0
    assert cli(["adduser", "bob@example.com", "--password", "builder", "--db", url]) == 0
    assert cli(["adduser", "carol@example.com", "--password", "hashed only", "--no-cleartext", "--db", url]) == 0
    assert cli(["adduser", "dave@other.org", "--password", "elsewhere", "--db", url]) == 0
    return url


def whoami(environ, start_response):
    body = f"{environ.get('REMOTE_USER')}|{environ.get('AUTH_TYPE')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Clock:
    """Injected time source, so nonce expiry is tested without sleeping."""

    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def digest(db_url, clock):
    return DigestAuthMiddleware(whoami, subscribers=db_url, realm=REALM, clock=clock, nonce_lifetime=60)


def challenges(response):
    found = []
    for value in response.headers.getall("WWW-Authenticate"):
        scheme, _, rest = value.partition(" ")
        found.append((scheme, parse_auth_params(rest)))
    return found


def challenge(app, path="/xcap-root/x", method="GET", algorithm="SHA-256"):
    response = Request.blank(path, method=method).get_response(app)
    assert response.status_int == 401
    for scheme, params in challenges(response):
        if scheme == "Digest" and params["algorithm"] == algorithm:
            return params
    raise AssertionError(f"no {algorithm} challenge in {response.headers.getall('WWW-Authenticate')}")


def authorization(chal, username, password, *, method="GET", uri="/xcap-root/x", nc="00000001",
                  cnonce="0a4f113b", algorithm=None, realm=None, opaque=True, response=None, extra=""):
    algorithm = algorithm or chal["algorithm"]
    realm = realm or chal["realm"]
    response = response or client_response(algorithm, username, realm, password, method, uri, chal["nonce"], nc, cnonce)
    header = (f'Digest username="{username}", realm="{realm}", nonce="{chal["nonce"]}", uri="{uri}", '
              f'algorithm={algorithm}, response="{response}", qop=auth, nc={nc}, cnonce="{cnonce}"')
    if opaque:
        header += f', opaque="{chal["opaque"]}"'
    return header + extra


def send(app, header, path="/xcap-root/x", method="GET"):
    request = Request.blank(path, method=method, headers={"Authorization": header})
    request.environ["REQUEST_URI"] = path
    return request.get_response(app)


# -- challenges --------------------------------------------------------------------------------


def test_challenge_offers_md5_then_sha256_with_qop_auth_and_opaque(digest):
    # MD5 first: urllib's HTTPDigestAuthHandler (xcaplib, Blink) reads only the first challenge (issue 15)
    response = Request.blank("/anything").get_response(digest)
    assert response.status_int == 401
    found = challenges(response)
    assert [(s, p["algorithm"]) for s, p in found] == [("Digest", "MD5"), ("Digest", "SHA-256")]
    assert len({p["nonce"] for _, p in found}) == 1  # one nonce: requests and httpx merge the headers
    for _, params in found:
        assert params["realm"] == REALM and params["qop"] == "auth" and params["opaque"] and params["nonce"]
        assert "stale" not in params
    assert not any(s == "Basic" for s, _ in found)  # Basic only when enabled


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_correct_response_sets_remote_user(digest, algorithm):
    chal = challenge(digest, algorithm=algorithm)
    response = send(digest, authorization(chal, "alice", "wonder land"))
    assert response.status_int == 200
    assert response.text == "alice@example.com|Digest"


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_username_may_carry_the_domain(digest, algorithm):
    chal = challenge(digest, algorithm=algorithm)
    response = send(digest, authorization(chal, "alice@example.com", "wonder land"))
    assert response.status_int == 200 and response.text.startswith("alice@example.com|")


def test_wrong_password_is_401_without_stale(digest):
    chal = challenge(digest)
    response = send(digest, authorization(chal, "alice", "wrong"))
    assert response.status_int == 401
    assert all("stale" not in p for _, p in challenges(response))
    assert "alice" not in response.text  # nothing reached the app


def test_user_part_is_case_sensitive(digest):
    chal = challenge(digest)
    assert send(digest, authorization(chal, "Alice", "wonder land")).status_int == 401


def test_unknown_user_is_401(digest):
    chal = challenge(digest)
    assert send(digest, authorization(chal, "mallory", "x")).status_int == 401


def test_account_of_another_domain_cannot_log_into_this_realm_with_its_hashes(db_url, clock):
    # dave@other.org has a cleartext password: user@domain in the username works against this realm,
    # and the identity is his own account, not one in example.com.
    app = DigestAuthMiddleware(whoami, subscribers=db_url, realm=REALM, clock=clock)
    chal = challenge(app)
    response = send(app, authorization(chal, "dave@other.org", "elsewhere"))
    assert response.status_int == 200 and response.text.startswith("dave@other.org|")
    chal = challenge(app)
    assert send(app, authorization(chal, "dave", "elsewhere")).status_int == 401  # dave@example.com: no such account


# -- ha1 / ha1b columns --------------------------------------------------------------------------


def test_ha1_and_ha1b_columns_match_kamailio(db_url):
    path = db_url.split("///", 1)[1]
    row = sqlite3.connect(path).execute(
        "SELECT password, ha1, ha1b FROM subscriber WHERE username='carol'").fetchone()
    assert row == ("", hashlib.md5(b"carol:example.com:hashed only").hexdigest(),
                   hashlib.md5(b"carol@example.com:example.com:hashed only").hexdigest())


def test_hash_only_account_md5_via_ha1_and_ha1b(digest):
    chal = challenge(digest, algorithm="MD5")
    assert send(digest, authorization(chal, "carol", "hashed only")).status_int == 200  # ha1
    chal = challenge(digest, algorithm="MD5")
    response = send(digest, authorization(chal, "carol@example.com", "hashed only"))  # ha1b
    assert response.status_int == 200 and response.text.startswith("carol@example.com|")


def test_hash_only_account_cannot_use_sha256(digest):
    chal = challenge(digest, algorithm="SHA-256")
    assert send(digest, authorization(chal, "carol", "hashed only")).status_int == 401


def test_password_column_ha1_uses_the_hash_and_offers_md5_only(db_url, clock):
    app = DigestAuthMiddleware(whoami, subscribers=db_url, realm=REALM, password_column="ha1", clock=clock)
    response = Request.blank("/").get_response(app)
    assert [p["algorithm"] for _, p in challenges(response)] == ["MD5"]
    # alice has a cleartext password too, but the ha1 column decides: corrupt it and she is out
    path = db_url.split("///", 1)[1]
    chal = challenge(app, algorithm="MD5")
    assert send(app, authorization(chal, "alice", "wonder land")).status_int == 200
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("UPDATE subscriber SET ha1='0123456789abcdef0123456789abcdef' WHERE username='alice'")
        conn.commit()
    chal = challenge(app, algorithm="MD5")
    assert send(app, authorization(chal, "alice", "wonder land")).status_int == 401


def test_password_column_password_ignores_hashes(db_url, clock):
    app = DigestAuthMiddleware(whoami, subscribers=db_url, realm=REALM, password_column="password", clock=clock)
    chal = challenge(app, algorithm="MD5")
    assert send(app, authorization(chal, "carol", "hashed only")).status_int == 401  # no cleartext: no login


# -- nonce lifetime, replay --------------------------------------------------------------------


def test_expired_nonce_with_correct_response_is_stale(digest, clock):
    chal = challenge(digest)
    clock.now += 61
    response = send(digest, authorization(chal, "alice", "wonder land"))
    assert response.status_int == 401
    assert [p.get("stale") for _, p in challenges(response)] == ["true", "true"]
    fresh = challenges(response)[0][1]
    assert fresh["nonce"] != chal["nonce"]
    assert send(digest, authorization(fresh, "alice", "wonder land")).status_int == 200


def test_expired_nonce_with_wrong_response_is_not_stale(digest, clock):
    chal = challenge(digest)
    clock.now += 61
    response = send(digest, authorization(chal, "alice", "nope"))
    assert response.status_int == 401
    assert all("stale" not in p for _, p in challenges(response))


def test_nonce_within_lifetime_is_reusable_with_increasing_nc(digest, clock):
    chal = challenge(digest)
    for n in range(1, 6):
        clock.now += 10
        assert send(digest, authorization(chal, "alice", "wonder land", nc=f"{n:08x}")).status_int == 200


def test_replayed_nonce_count_is_refused(digest):
    chal = challenge(digest)
    header = authorization(chal, "alice", "wonder land", nc="00000001")
    assert send(digest, header).status_int == 200
    replay = send(digest, header)
    assert replay.status_int == 401 and "alice" not in replay.text


def test_out_of_order_nonce_counts_within_the_window(digest):
    chal = challenge(digest)

    def ok(nc: int) -> int:
        return send(digest, authorization(chal, "alice", "wonder land", nc=f"{nc:08x}")).status_int

    assert [ok(5), ok(3), ok(4), ok(3), ok(5), ok(6), ok(100), ok(36), ok(37), ok(36)] == \
           [200, 200, 200, 401, 401, 200, 200, 401, 200, 401]  # 36 is outside 100's 64-wide window


def test_forged_or_foreign_nonce_is_refused(digest, db_url, clock):
    chal = challenge(digest)
    raw = bytearray(base64.urlsafe_b64decode(chal["nonce"]))
    raw[0] ^= 1  # move the issue time: the MAC no longer matches
    forged = dict(chal, nonce=base64.urlsafe_b64encode(bytes(raw)).decode())
    assert send(digest, authorization(forged, "alice", "wonder land")).status_int == 401
    other = DigestAuthMiddleware(whoami, subscribers=db_url, realm=REALM, clock=clock)  # another secret
    foreign = challenge(other)
    assert send(digest, authorization(dict(foreign, opaque=chal["opaque"]), "alice", "wonder land")).status_int == 401
    garbage = dict(chal, nonce="not base64 !!")
    assert send(digest, authorization(garbage, "alice", "wonder land")).status_int == 401


def test_shared_secret_lets_two_instances_accept_each_others_nonces(db_url, clock):
    one = DigestAuthMiddleware(whoami, subscribers=db_url, realm=REALM, clock=clock, secret="s3cret")
    two = DigestAuthMiddleware(whoami, subscribers=db_url, realm=REALM, clock=clock, secret="s3cret")
    chal = challenge(one)
    assert send(two, authorization(chal, "alice", "wonder land")).status_int == 200


def test_tracker_memory_is_bounded_and_forgotten_nonces_are_stale(db_url, clock):
    app = DigestAuthMiddleware(whoami, subscribers=db_url, realm=REALM, clock=clock, max_tracked_nonces=3)
    chals = []
    for _ in range(5):
        clock.now += 0.001
        chal = challenge(app)
        chals.append(chal)
        assert send(app, authorization(chal, "alice", "wonder land")).status_int == 200
    assert len(app.tracker) == 3
    # the first nonce was evicted: a replay of its request is not accepted, and even a fresh nc is stale
    assert send(app, authorization(chals[0], "alice", "wonder land")).status_int == 401
    response = send(app, authorization(chals[0], "alice", "wonder land", nc="00000002"))
    assert response.status_int == 401 and challenges(response)[0][1].get("stale") == "true"
    # recent ones keep working
    assert send(app, authorization(chals[4], "alice", "wonder land", nc="00000002")).status_int == 200


def test_tracker_forgets_expired_nonces(db_url, clock):
    app = DigestAuthMiddleware(whoami, subscribers=db_url, realm=REALM, clock=clock, nonce_lifetime=60)
    chal = challenge(app)
    assert send(app, authorization(chal, "alice", "wonder land")).status_int == 200
    assert len(app.tracker) == 1
    clock.now += 200
    challenge(app)
    assert len(app.tracker) == 0


def test_nonce_tracker_is_thread_safe():
    tracker = NonceTracker(capacity=1000)
    results = []
    lock = threading.Lock()

    def worker(nc):
        state = tracker.use("n", 1, nc)
        with lock:
            results.append((nc, state))

    threads = [threading.Thread(target=worker, args=(1 + i % 10,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = sorted(nc for nc, state in results if state == "ok")
    assert accepted == list(range(1, 11))  # each nc exactly once


def test_concurrent_requests_same_nonce_count_only_one_wins(digest):
    chal = challenge(digest)
    header = authorization(chal, "alice", "wonder land", nc="00000007")
    statuses = []

    def go():
        statuses.append(send(digest, header).status_int)

    threads = [threading.Thread(target=go) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [401] * 15


# -- protocol details ----------------------------------------------------------------------------


def test_opaque_must_be_returned(digest):
    chal = challenge(digest)
    assert send(digest, authorization(chal, "alice", "wonder land", opaque=False)).status_int == 401
    chal = challenge(digest)
    assert send(digest, authorization(dict(chal, opaque="x"), "alice", "wonder land")).status_int == 401


def test_realm_must_be_ours(digest):
    chal = challenge(digest)
    assert send(digest, authorization(chal, "alice", "wonder land", realm="evil.org")).status_int == 401


def test_digest_uri_must_match_the_request(digest):
    chal = challenge(digest)
    header = authorization(chal, "alice", "wonder land", uri="/xcap-root/other")
    assert send(digest, header, path="/xcap-root/x").status_int == 400


def test_digest_uri_raw_or_decoded_form(digest):
    path = "/xcap-root/users/sip:alice@example.com/a%22b?xmlns(p=urn:x)"
    chal = challenge(digest)
    assert send(digest, authorization(chal, "alice", "wonder land", uri=path), path=path).status_int == 200


def test_method_is_part_of_the_response(digest):
    chal = challenge(digest)
    header = authorization(chal, "alice", "wonder land", method="GET")
    assert send(digest, header, method="DELETE").status_int == 401


def test_algorithm_not_offered_and_qop_required(db_url, clock):
    app = DigestAuthMiddleware(whoami, subscribers=db_url, realm=REALM, algorithms=("SHA-256",), clock=clock)
    chal = challenge(app)
    assert send(app, authorization(chal, "alice", "wonder land", algorithm="MD5")).status_int == 401
    chal = challenge(app)
    no_qop = authorization(chal, "alice", "wonder land").replace(", qop=auth", "")
    assert send(app, no_qop).status_int == 401


def test_malformed_header_is_400(digest):
    assert send(digest, 'Digest username="alice, realm=').status_int == 400
    assert send(digest, "Bearer abc").status_int == 401


def test_head_challenge_has_no_body(digest):
    response = Request.blank("/", method="HEAD").get_response(digest)
    assert response.status_int == 401 and response.body == b""


# -- Basic -----------------------------------------------------------------------------------------


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_refused_unless_enabled(digest):
    assert send(digest, basic("alice", "wonder land")).status_int == 401


def test_basic_when_enabled(db_url, clock):
    app = DigestAuthMiddleware(whoami, subscribers=db_url, realm=REALM, basic=True, clock=clock)
    response = Request.blank("/").get_response(app)
    assert ("Basic", {"realm": REALM, "charset": "UTF-8"}) in challenges(response)
    ok = send(app, basic("alice", "wonder land"))
    assert ok.status_int == 200 and ok.text == "alice@example.com|Basic"
    assert send(app, basic("alice", "wonder")).status_int == 401
    assert send(app, basic("carol", "hashed only")).status_int == 200  # checked against ha1
    assert send(app, basic("carol", "hashed")).status_int == 401
    assert send(app, "Basic !!!").status_int == 400


# -- lazy mode -------------------------------------------------------------------------------------


def test_not_required_passes_anonymous_requests_and_adds_challenges_to_401(db_url, clock):
    def app(environ, start_response):
        if environ.get("REMOTE_USER"):
            return whoami(environ, start_response)
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"who are you?"]

    lazy = DigestAuthMiddleware(app, subscribers=db_url, realm=REALM, required=False, clock=clock)
    response = Request.blank("/x").get_response(lazy)
    assert response.status_int == 401 and response.text == "who are you?"
    assert len(challenges(response)) == 2
    chal = challenges(response)[0][1]
    assert send(lazy, authorization(chal, "alice", "wonder land", uri="/x"), path="/x").status_int == 200
    assert send(lazy, authorization(challenge(lazy, "/x"), "alice", "bad", uri="/x"), path="/x").text != "who are you?"


# -- subscriber table ------------------------------------------------------------------------------


def test_sqlite_subscriber_table_is_kamailios(db_url):
    path = db_url.split("///", 1)[1]
    with contextlib.closing(sqlite3.connect(path)) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(subscriber)")]
        version = conn.execute("SELECT table_version FROM version WHERE table_name='subscriber'").fetchone()
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(subscriber)")}
    assert columns == ["id", "username", "domain", "password", "ha1", "ha1b"]
    assert version == (7,)
    assert "subscriber_username_idx" in indexes
    ddl = "/usr/share/kamailio/db_sqlite/auth_db-create.sql"
    if os.path.exists(ddl):  # kamailio-sqlite-modules installed: byte-for-byte the same statements
        from xcap_wsgi.subscribers import SQLITE_DDL

        text = open(ddl).read()
        for statement in SQLITE_DDL[1:]:
            assert re.sub(r"\s+", " ", statement) in re.sub(r"\s+", " ", text)


def test_adduser_refuses_duplicates_and_bad_accounts(db_url, capsys):
    assert cli(["adduser", "alice@example.com", "--password", "x", "--db", db_url]) == 1
    assert "already exists" in capsys.readouterr().err
    assert cli(["adduser", "nodomain", "--password", "x", "--db", db_url]) == 2
    assert cli(["adduser", "eve@example.com", "--password", "", "--db", db_url]) == 1


def test_adduser_creates_table_in_existing_xcap_database(tmp_path):
    from xcap_wsgi import SQLiteStore

    path = tmp_path / "xcap.sqlite3"
    SQLiteStore(str(path)).close()  # the xcap table and its version row exist already
    assert cli(["adduser", "sip:Eve@Example.COM", "--password", "pw", "--db", f"sqlite:///{path}"]) == 0
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT username, domain FROM subscriber").fetchall() == [("Eve", "example.com")]
        assert dict(conn.execute("SELECT table_name, table_version FROM version").fetchall()) == \
               {"xcap": 4, "subscriber": 7}


def test_kamailio_hashes():
    assert kamailio_hashes("alice", "example.com", "pw") == (
        hashlib.md5(b"alice:example.com:pw").hexdigest(), hashlib.md5(b"alice@example.com:example.com:pw").hexdigest())


# -- MySQL (real MariaDB when XCAP_TEST_MYSQL_URL is set) ------------------------------------------


@pytest.fixture
def mysql_db():
    from mysql_support import temporary_database

    with temporary_database(charset="latin1", tables="initdb") as url:
        yield url


def test_mysql_subscribers(mysql_db, clock):
    from mysql_support import KAMAILIO_SQL_DIR, connect

    assert cli(["adduser", "alice@example.com", "--password", "wonder land", "--db", mysql_db]) == 0
    assert cli(["adduser", "carol@example.com", "--password", "hashed only", "--no-cleartext", "--db", mysql_db]) == 0
    with contextlib.closing(connect(mysql_db)) as conn, conn.cursor() as cur:
        cur.execute("SHOW CREATE TABLE subscriber")
        ours = cur.fetchone()[1]
        cur.execute("SELECT table_version FROM version WHERE table_name='subscriber'")
        assert cur.fetchone() == (7,)
        ddl = KAMAILIO_SQL_DIR / "auth_db-create.sql"
        if ddl.exists():  # the same table as Kamailio's own DDL produces
            cur.execute(ddl.read_text().split(";")[0].replace("`subscriber`", "`k_subscriber`"))
            cur.execute("CREATE INDEX username_idx ON k_subscriber (`username`)")
            cur.execute("SHOW CREATE TABLE k_subscriber")
            theirs = cur.fetchone()[1].replace("k_subscriber", "subscriber")
            assert re.sub(r" AUTO_INCREMENT=\d+", "", ours) == theirs
    app = DigestAuthMiddleware(whoami, subscribers=mysql_db, realm=REALM, clock=clock)
    chal = challenge(app)
    response = send(app, authorization(chal, "alice", "wonder land"))
    assert response.status_int == 200 and response.text == "alice@example.com|Digest"
    # latin1_swedish_ci would match ALICE to alice; xcap-wsgi keeps the user part case-sensitive
    chal = challenge(app)
    assert send(app, authorization(chal, "ALICE", "wonder land")).status_int == 401
    chal = challenge(app, algorithm="MD5")
    assert send(app, authorization(chal, "carol", "hashed only")).status_int == 200
    # SQL metacharacters in the username are data
    chal = challenge(app)
    assert send(app, authorization(chal, "x' OR '1'='1", "x")).status_int == 401


def test_mysql_adduser_without_kamailio_tables_fails_clearly(capsys):
    from mysql_support import temporary_database

    with temporary_database(tables=None) as url:
        assert cli(["adduser", "alice@example.com", "--password", "x", "--db", url]) == 1
        assert "version" in capsys.readouterr().err


# -- end to end: xcap-wsgi serve under waitress, urllib's Digest client ----------------------------


def test_serve_uses_digest_by_default(tmp_path):
    import socket
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'xcap.sqlite3'}"
    assert cli(["adduser", "alice@example.com", "--password", "wonder land", "--db", url]) == 0
    assert cli(["adduser", "bob@example.com", "--password", "builder", "--db", url]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--port", str(port), "--db", url,
         "--default-domain", "example.com"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        banner = process.stdout.readline()
        # the defaults, with no --digest-algorithms (issue 15): MD5 first, realm from the XUI
        assert "Digest (MD5/SHA-256) realm=<domain of the XUI>, else example.com" in banner, banner
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        threading.Thread(target=process.stdout.read, daemon=True).start()
        base = f"http://127.0.0.1:{port}/xcap-root/resource-lists/users/"
        doc = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
               b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="f"/></resource-lists>')

        def opener(user, password):
            manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
            manager.add_password(None, f"http://127.0.0.1:{port}/", user, password)
            return urllib.request.build_opener(urllib.request.HTTPDigestAuthHandler(manager))

        put = urllib.request.Request(base + "sip:alice@example.com/index", data=doc, method="PUT",
                                     headers={"Content-Type": "application/resource-lists+xml"})
        assert opener("alice", "wonder land").open(put, timeout=10).status == 201
        get = urllib.request.Request(base + "sip:alice@example.com/index")
        assert opener("alice@example.com", "wonder land").open(get, timeout=10).read() == doc
        with pytest.raises(urllib.error.HTTPError) as forbidden:
            opener("bob", "builder").open(get, timeout=10)
        assert forbidden.value.code == 403
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(get, timeout=10)
        assert anonymous.value.code == 401 and "Digest" in anonymous.value.headers["WWW-Authenticate"]
        with pytest.raises(urllib.error.HTTPError) as wrong:
            opener("alice", "wrong").open(get, timeout=10)
        assert wrong.value.code == 401
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_open_subscribers_rejects_memory_and_unknown_urls():
    with pytest.raises(ValueError):
        open_subscribers("sqlite://")
    with pytest.raises(ValueError):
        open_subscribers("postgres://x/y")


def test_sqlite_subscribers_lookup_without_table_creation(tmp_path):
    path = str(tmp_path / "a.sqlite3")
    subs = SQLiteSubscribers(path)
    subs.add("alice", "example.com", "pw")
    assert subs.lookup("alice", "EXAMPLE.com").identity == "alice@example.com"
    assert subs.lookup("alice", "other.org") is None
    assert subs.lookup("alice' OR '1'='1", "example.com") is None


# -- serve's composition: Digest + trusted proxy, built from the settings table ------------------------


def test_settings_compose_digest_and_trusted_proxy(db_url, tmp_path):
    from xcap_wsgi import SQLiteStore
    from xcap_wsgi.build import build_middleware
    from xcap_wsgi.digest import from_settings
    from xcap_wsgi.settings import resolve

    values = resolve({"db": f"sqlite:///{tmp_path / 'xcap.sqlite3'}", "auth_db": db_url, "default_domain": REALM,
                      "identity_header": "X-3GPP-Intended-Identity", "trusted_proxies": "10.0.0.0/8"}, environ={})
    store = SQLiteStore(str(tmp_path / "xcap.sqlite3"))
    app = from_settings(build_middleware(None, values, store=store), values)
    assert app.required is False  # asserted identities need no Digest
    doc = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
    body = b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>'

    def req(peer, asserted=None, authorization=None, method="GET"):
        headers = {"Content-Type": "application/resource-lists+xml"}
        if asserted:
            headers["X-3GPP-Intended-Identity"] = asserted
        if authorization:
            headers["Authorization"] = authorization
        request = Request.blank(doc, method=method, headers=headers, remote_addr=peer,
                                body=body if method == "PUT" else b"")
        request.environ["REQUEST_URI"] = doc
        return request.get_response(app)

    assert req("10.9.9.9", '"sip:alice@example.com"', method="PUT").status_int == 201
    assert req("10.9.9.9", '"sip:bob@example.com"').status_int == 403
    untrusted = req("192.0.2.1", '"sip:alice@example.com"')  # header ignored: XCAP says 401, Digest challenges
    assert untrusted.status_int == 401 and len(challenges(untrusted)) == 2
    chal = challenges(untrusted)[0][1]
    assert req("192.0.2.1", authorization=authorization(chal, "alice", "wonder land", uri=doc)).body == body
    store.close()


def test_nonce_has_one_spelling(digest):
    """urlsafe_b64decode ignores stray characters; a respelled nonce must not get a fresh nc window."""
    chal = challenge(digest)
    assert send(digest, authorization(chal, "alice", "wonder land")).status_int == 200
    respelled = dict(chal, nonce=chal["nonce"] + "!")
    assert send(digest, authorization(respelled, "alice", "wonder land")).status_int == 401


def test_adduser_password_from_environment(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'a.sqlite3'}"
    monkeypatch.setenv("XCAP_PASSWORD", "from env")
    assert cli(["adduser", "frank@example.com", "--db", url]) == 0
    subscriber = open_subscribers(url).lookup("frank", "example.com")
    assert subscriber.password == "from env"
    assert subscriber.ha1 == hashlib.md5(b"frank:example.com:from env").hexdigest()


# -- realm from the XUI, usernames, raw quotes (issue 15) -------------------------------------------

ALICE_DOC = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
DAVE_DOC = "/xcap-root/resource-lists/users/sip:dave@other.org/index"


@pytest.fixture
def per_xui(db_url, clock):
    """No realm given: each request's realm is the domain of its XUI (what serve does by default)."""
    return DigestAuthMiddleware(whoami, subscribers=db_url, default_domain="localhost", clock=clock)


#: A global-tree document that needs a login (xcap-caps does not: see test_xcap_caps_needs_no_login).
GLOBAL_DOC = "/xcap-root/rls-services/global/index"


@pytest.mark.parametrize("path, realm", [
    (ALICE_DOC, "example.com"),
    (DAVE_DOC, "other.org"),
    ("/xcap-root/resource-lists/users/sip:alice@Example.COM:5060;transport=tcp/index", "example.com"),
    ("/xcap-root/resource-lists/users/alice@example.com/index/~~/resource-lists/list", "example.com"),
    ("/xcap-root/resource-lists/users/sip:alice%40example.com/index", "example.com"),
    ("/xcap-root/resource-lists/users/alice/index", "localhost"),  # no domain in the XUI
    (GLOBAL_DOC, "localhost"),  # global tree
    ("/xcap-root/resource-lists/users/sip:a@ex%22ample.com/index", "localhost"),  # unusable as a realm
    ("/xcap-root/resource-lists/users/sip:a@ex%20ample.com/index", "localhost"),
    ("/xcap-root/resource-lists/users/sip:a@%C3%A9xample.com/index", "localhost"),  # not latin-1-safe ASCII
    ("/xcap-root/resource-lists/users/sip:a@example.com", "localhost"),  # not an XCAP URI: 404 later
    ("/elsewhere", "localhost"),
])
def test_realm_is_the_domain_of_the_xui(per_xui, path, realm):
    response = Request.blank(path).get_response(per_xui)
    assert response.status_int == 401
    assert {p["realm"] for _, p in challenges(response)} == {realm}


def test_realm_of_an_over_long_uri_is_not_parsed(db_url, clock):
    from xcap_wsgi import middleware, uri

    app = DigestAuthMiddleware(whoami, subscribers=db_url, max_uri_length=100, clock=clock)
    long_doc = "/xcap-root/resource-lists/users/sip:alice@example.com/" + "d" * 100
    for cache in (uri._PARSED, uri._ROOT_MATCHES, middleware._RAW_TARGETS):
        cache.clear()
    assert challenge(app, long_doc)["realm"] == "localhost"  # XCAPMiddleware answers 414 after login
    # nothing an unauthenticated client sent was parsed and remembered
    assert not uri._PARSED and not uri._ROOT_MATCHES and not middleware._RAW_TARGETS
    assert challenge(app, ALICE_DOC)["realm"] == "example.com"


def test_realm_follows_the_configured_roots(db_url, clock):
    app = DigestAuthMiddleware(whoami, subscribers=db_url, default_domain="localhost", roots=("/xcap", "/x2"),
                               clock=clock)
    assert challenge(app, "/x2/resource-lists/users/sip:a@example.org/index")["realm"] == "example.org"
    assert challenge(app, ALICE_DOC)["realm"] == "localhost"  # /xcap-root is not a root here


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
@pytest.mark.parametrize("path, username, identity", [
    (ALICE_DOC, "alice", "alice@example.com"),
    (ALICE_DOC, "alice@example.com", "alice@example.com"),
    (DAVE_DOC, "dave", "dave@other.org"),
    (DAVE_DOC, "dave@other.org", "dave@other.org"),
    (ALICE_DOC, "dave@other.org", "dave@other.org"),  # user@domain is taken as is, whatever the realm
    (GLOBAL_DOC, "alice@example.com", "alice@example.com"),
])
def test_users_of_several_domains_log_in_without_settings(per_xui, algorithm, path, username, identity):
    password = {"alice": "wonder land", "dave": "elsewhere"}[username.split("@")[0]]
    chal = challenge(per_xui, path, algorithm=algorithm)
    response = send(per_xui, authorization(chal, username, password, uri=path), path=path)
    assert response.status_int == 200 and response.text == f"{identity}|Digest"


def test_bare_username_belongs_to_the_realm_of_the_request(per_xui):
    # dave exists only in other.org: on example.com's document (and the global tree) "dave" is someone else
    for path in (ALICE_DOC, GLOBAL_DOC):
        chal = challenge(per_xui, path)
        assert send(per_xui, authorization(chal, "dave", "elsewhere", uri=path), path=path).status_int == 401


def test_kamailio_hashes_work_where_the_realm_is_the_accounts_domain(per_xui):
    # carol (example.com) has only ha1/ha1b: they were computed with realm = example.com
    for username in ("carol", "carol@example.com"):
        chal = challenge(per_xui, ALICE_DOC, algorithm="MD5")
        assert send(per_xui, authorization(chal, username, "hashed only", uri=ALICE_DOC), path=ALICE_DOC).status_int == 200
    path = GLOBAL_DOC  # realm localhost: the stored hashes cannot answer it
    chal = challenge(per_xui, path, algorithm="MD5")
    assert send(per_xui, authorization(chal, "carol@example.com", "hashed only", uri=path), path=path).status_int == 401


def test_challenge_and_nonce_of_one_realm_do_not_serve_another(per_xui):
    chal = challenge(per_xui, ALICE_DOC)
    # answered for DAVE_DOC with the realm of ALICE_DOC: not this request's realm
    assert send(per_xui, authorization(chal, "dave@other.org", "elsewhere", uri=DAVE_DOC), path=DAVE_DOC).status_int == 401
    # realm rewritten to other.org: the nonce (and opaque) were issued for example.com
    forged = dict(chal, realm="other.org")
    assert send(per_xui, authorization(forged, "dave", "elsewhere", uri=DAVE_DOC), path=DAVE_DOC).status_int == 401
    forged = dict(forged, opaque=challenge(per_xui, DAVE_DOC)["opaque"])
    assert send(per_xui, authorization(forged, "dave", "elsewhere", uri=DAVE_DOC), path=DAVE_DOC).status_int == 401


def test_explicit_realm_is_one_realm_for_every_request(db_url, clock):
    app = DigestAuthMiddleware(whoami, subscribers=db_url, realm="xcap", clock=clock)
    assert challenge(app, DAVE_DOC)["realm"] == "xcap"
    chal = challenge(app, DAVE_DOC)
    assert send(app, authorization(chal, "dave@other.org", "elsewhere", uri=DAVE_DOC), path=DAVE_DOC).status_int == 200
    chal = challenge(app, DAVE_DOC)
    assert send(app, authorization(chal, "dave", "elsewhere", uri=DAVE_DOC), path=DAVE_DOC).status_int == 401  # dave@xcap


def test_basic_uses_the_realm_of_the_request(db_url, clock):
    app = DigestAuthMiddleware(whoami, subscribers=db_url, basic=True, clock=clock)
    request = Request.blank(DAVE_DOC, headers={"Authorization": basic("dave", "elsewhere")})
    assert request.get_response(app).text == "dave@other.org|Basic"
    assert ("Basic", {"realm": "other.org", "charset": "UTF-8"}) in challenges(Request.blank(DAVE_DOC).get_response(app))


def test_parse_auth_params_accepts_raw_quotes_in_uri():
    # what urllib (xcaplib) and curl -g send: the request target copied verbatim into uri="..."
    header = ('username="alice", realm="example.com", nonce="n", '
              'uri="/x/~~/resource-lists/list[@name="friends"]/entry[@uri="sip:b@x"]", '
              'response="r", opaque="o", algorithm=MD5, qop=auth, nc=00000001, cnonce="c"')
    params = parse_auth_params(header)
    assert params["uri"] == '/x/~~/resource-lists/list[@name="friends"]/entry[@uri="sip:b@x"]'
    assert params["response"] == "r" and params["cnonce"] == "c" and len(params) == 10
    assert parse_auth_params('uri="/a["b"]"') == {"uri": '/a["b"]'}  # last parameter
    with pytest.raises(ValueError):
        parse_auth_params('uri="/a["b"]", uri="/c"')
    with pytest.raises(ValueError):
        parse_auth_params('realm="a"b", uri="/x"')  # only uri gets this tolerance
    with pytest.raises(ValueError):
        parse_auth_params('uri="/a["b"] junk')


SELECTED = ALICE_DOC + '/~~/resource-lists/list[@name="friends"]'


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_raw_quotes_in_the_digest_uri_authenticate(per_xui, algorithm):
    chal = challenge(per_xui, SELECTED, algorithm=algorithm)
    header = authorization(chal, "alice", "wonder land", uri=SELECTED)
    assert f'uri="{SELECTED}"' in header  # unescaped, as the clients send it
    response = send(per_xui, header, path=SELECTED)
    assert response.status_int == 200 and response.text == "alice@example.com|Digest"


def test_raw_quoted_uri_is_still_hashed_and_compared(per_xui):
    other = ALICE_DOC + '/~~/resource-lists/list[@name="enemies"]'
    chal = challenge(per_xui, SELECTED)
    header = authorization(chal, "alice", "wonder land", uri=other)  # a valid answer for another target
    assert send(per_xui, header, path=SELECTED).status_int == 400
    chal = challenge(per_xui, SELECTED)
    response = client_response(chal["algorithm"], "alice", "example.com", "wonder land", "GET", other, chal["nonce"],
                               "00000001", "0a4f113b")  # hash over another uri than the one sent
    header = authorization(chal, "alice", "wonder land", uri=SELECTED, response=response)
    assert send(per_xui, header, path=SELECTED).status_int == 401


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_xcap_caps_needs_no_login(per_xui, method):
    """python3-xcaplib (Blink) answers only the realm of its own SIP domain, and reads xcap-caps
    before anything else: on a server whose default_domain is another domain, it must get it."""
    response = Request.blank("/xcap-root/xcap-caps/global/index", method=method).get_response(per_xui)
    assert response.status_int == 200
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize("path, method", [
    ("/xcap-root/xcap-caps/global/index", "PUT"),
    ("/xcap-root/xcap-caps/global/index", "DELETE"),
    ("/xcap-root/xcap-caps/users/sip:alice@example.com/index", "GET"),
    ("/xcap-root/rls-services/global/index", "GET"),
])
def test_only_reading_the_global_xcap_caps_skips_the_login(per_xui, path, method):
    assert Request.blank(path, method=method).get_response(per_xui).status_int == 401


def test_xcap_caps_with_credentials_still_checks_them(per_xui):
    path = "/xcap-root/xcap-caps/global/index"
    chal = challenge(per_xui, ALICE_DOC)
    wrong = authorization(dict(chal), "alice", "not the password", uri=path)
    assert send(per_xui, wrong, path=path).status_int == 401
