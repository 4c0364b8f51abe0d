"""Client compatibility: real HTTP client libraries against ``xcap-wsgi serve`` on its defaults.

The server is ``python -m xcap_wsgi serve --db sqlite:///... --host 127.0.0.1 --port P`` and nothing
else, with accounts made by ``xcap-wsgi adduser`` in two domains: no setting may be needed for any
client. Each client runs document, element and attribute GET/PUT/DELETE and conditional requests
(If-Match, If-None-Match) with Digest authentication:

* ``urllib`` with ``HTTPDigestAuthHandler`` and ``HTTPPasswordMgrWithDefaultRealm``, as python3-xcaplib
  and so Blink use it: the username is the local part (``alice``) and node selectors go into the URL
  raw, ``"`` included; urllib sends that target verbatim and copies it into ``uri="..."`` unescaped.
* ``requests`` with ``HTTPDigestAuth`` and ``httpx`` with ``DigestAuth`` (both percent-encode ``"``).
* ``curl --digest -u``: with ``-g`` and the raw selector (``"`` and brackets on the wire and in
  ``uri=``), without ``-g`` percent-encoded, and without ``-g`` with ``\\[``-escaped brackets.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from mysql_support import free_port, stop_process, unavailable, wait_for_http

REPO = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
ACCOUNTS = {"alice@example.com": "wonder land", "bob@example.org": "builder"}
RL_MIME = "application/resource-lists+xml"
EL_MIME = "application/xcap-el+xml"
ATT_MIME = "application/xcap-att+xml"
DOC = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
       b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">\n'
       b'  <list name="friends">\n'
       b'    <entry uri="sip:bob@example.org"><display-name>Bob</display-name></entry>\n'
       b'  </list>\n'
       b'  <list/>\n'
       b'</resource-lists>\n')
FRIENDS = '/~~/resource-lists/list[@name="friends"]'
BOB_ENTRY = FRIENDS + '/entry[@uri="sip:bob@example.org"]'
CAROL_ENTRY = FRIENDS + '/entry[@uri="sip:carol@example.com"]'
SECOND_NAME = "/~~/resource-lists/list[2]/@name"


@pytest.fixture(scope="module")
def server():
    """``serve`` with no options but the database and the address; yields its base URL."""
    directory = tempfile.mkdtemp(prefix="xcap-clients-")
    db = f"sqlite:///{directory}/x.sqlite3"
    for account, password in ACCOUNTS.items():
        subprocess.run([sys.executable, "-m", "xcap_wsgi", "adduser", "--db", db, account, "--password", password],
                       env=ENV, check=True, capture_output=True, timeout=60)
    port = free_port()
    log = open(Path(directory) / "serve.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "xcap_wsgi", "serve", "--db", db, "--host", "127.0.0.1",
                                "--port", str(port)], env=ENV, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        wait_for_http(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, {k.lower(): v for k, v in headers.items()}, body

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


# -- the clients: each sends one request as (user, password) and returns a Response ------------------


class Urllib:
    """python3-xcaplib's way (Blink): urllib's Digest handler, the URL given as is. Like xcaplib's
    HTTP client (from memory: Digest and Basic handlers on one password manager), Basic is there
    too; the server offers no Basic by default, so Digest does the work."""

    def __init__(self, base: str):
        self.base = base

    def send(self, method, url, user, password, body=None, headers=None) -> Response:
        manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        manager.add_password(None, self.base, user, password)
        opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(manager),
                                             urllib.request.HTTPDigestAuthHandler(manager))
        request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with opener.open(request, timeout=20) as response:
                return Response(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:  # urllib raises for 304 and every 4xx
            return Response(error.code, dict(error.headers), error.read())


class Requests:
    """requests with one HTTPDigestAuth per account (it re-uses the last challenge, nc counting up)."""

    def __init__(self, base: str):
        import requests

        self.requests, self.session, self.auths = requests, requests.Session(), {}

    def send(self, method, url, user, password, body=None, headers=None) -> Response:
        auth = self.auths.setdefault((user, password), self.requests.auth.HTTPDigestAuth(user, password))
        response = self.session.request(method, url, data=body, headers=headers or {}, auth=auth, timeout=20)
        return Response(response.status_code, dict(response.headers), response.content)


class Httpx:
    """httpx with one DigestAuth per account (it re-uses the last challenge too)."""

    def __init__(self, base: str):
        import httpx

        self.httpx, self.client, self.auths = httpx, httpx.Client(timeout=20), {}

    def send(self, method, url, user, password, body=None, headers=None) -> Response:
        auth = self.auths.setdefault((user, password), self.httpx.DigestAuth(user, password))
        response = self.client.request(method, url, content=body, headers=headers or {}, auth=auth)
        return Response(response.status_code, dict(response.headers), response.content)


class Curl:
    """The curl command. ``mode``: ``-g`` (raw selector, globbing off), ``encoded`` (selector
    percent-encoded, globbing on), ``escaped`` (globbing on, brackets escaped as ``\\[``, ``"`` raw)."""

    def __init__(self, base: str, mode: str):
        if shutil.which("curl") is None:
            unavailable("the curl command is not installed")
        self.mode = mode

    def send(self, method, url, user, password, body=None, headers=None) -> Response:
        head, sep, selector = url.partition("/~~/")
        if self.mode == "encoded":
            selector = quote(selector, safe="/@=:()")
        elif self.mode == "escaped":
            selector = selector.replace("[", "\\[").replace("]", "\\]")
        with tempfile.TemporaryDirectory() as directory:
            out, dump = Path(directory) / "body", Path(directory) / "headers"
            command = ["curl", "-sS", "--max-time", "20", "--digest", "-u", f"{user}:{password}", "-X", method,
                       "-o", str(out), "-D", str(dump), "-w", "%{http_code}"]
            if self.mode == "-g":
                command.append("-g")
            for name, value in (headers or {}).items():
                command += ["-H", f"{name}: {value}"]
            if body is not None:
                command += ["--data-binary", "@-"]
            command.append(head + sep + selector)
            done = subprocess.run(command, input=body or b"", capture_output=True, timeout=60)
            assert done.returncode == 0, done.stderr
            blocks = [b for b in dump.read_text("latin-1").split("\r\n\r\n") if b.strip()]
            fields = dict(line.split(":", 1) for line in blocks[-1].splitlines()[1:] if ":" in line)
            return Response(int(done.stdout), {k: v.strip() for k, v in fields.items()},
                            out.read_bytes() if out.exists() else b"")


CLIENTS = {
    "urllib-xcaplib": Urllib,
    "requests": Requests,
    "httpx": Httpx,
    "curl-g-raw": lambda base: Curl(base, "-g"),
    "curl-encoded": lambda base: Curl(base, "encoded"),
    "curl-escaped-brackets": lambda base: Curl(base, "escaped"),
}


class Session:
    """One client acting for one account: the username is the local part, as xcaplib sends it."""

    def __init__(self, client, base: str, account: str = "alice@example.com", username: str | None = None):
        self.client, self.base, self.account = client, base, account
        self.username = username or account.split("@")[0]
        self.password = ACCOUNTS[account]

    def doc(self, name: str) -> str:
        return f"{self.base}/xcap-root/resource-lists/users/sip:{self.account}/{name}"

    def __call__(self, method, url, body=None, content_type=None, **headers) -> Response:
        if content_type:
            headers["Content-Type"] = content_type
        return self.client.send(method, url, self.username, self.password, body, headers)


@pytest.fixture(params=list(CLIENTS), ids=list(CLIENTS))
def client(request, server):
    return request.param, CLIENTS[request.param](server)


@pytest.fixture
def alice(client, server):
    """Alice's session with this client, and a fresh document named after the client."""
    name, instance = client
    session = Session(instance, server)
    url = session.doc(f"{name}.xml")
    session("DELETE", url)
    created = session("PUT", url, DOC, RL_MIME)
    assert created.status == 201, created
    return session, url


# -- the exchanges -----------------------------------------------------------------------------------


def test_document_put_get_delete(alice):
    session, url = alice
    got = session("GET", url)
    assert got.status == 200 and got.body == DOC and got.headers["content-type"].startswith(RL_MIME)
    replaced = session("PUT", url, DOC.replace(b"Bob", b"Robert"), RL_MIME)
    assert replaced.status == 200
    assert session("GET", url).body == DOC.replace(b"Bob", b"Robert")
    assert session("DELETE", url).status == 200
    assert session("GET", url).status == 404


def test_element_get_put_delete(alice):
    session, url = alice
    got = session("GET", url + BOB_ENTRY)
    assert got.status == 200 and got.headers["content-type"].startswith(EL_MIME)
    assert got.body == b'<entry uri="sip:bob@example.org"><display-name>Bob</display-name></entry>'
    carol = b'<entry uri="sip:carol@example.com"/>'
    assert session("PUT", url + CAROL_ENTRY, carol, EL_MIME).status == 201
    assert session("GET", url + CAROL_ENTRY).body == carol
    named = b'<entry uri="sip:carol@example.com"><display-name>Carol</display-name></entry>'
    assert session("PUT", url + CAROL_ENTRY, named, EL_MIME).status == 200
    assert session("GET", url + CAROL_ENTRY).body == named
    assert session("DELETE", url + CAROL_ENTRY).status == 200
    assert session("GET", url + CAROL_ENTRY).status == 404
    assert session("GET", url).body == DOC  # back to the bytes first stored


def test_attribute_get_put_delete(alice):
    session, url = alice
    got = session("GET", url + FRIENDS + "/@name")
    assert got.status == 200 and got.body == b"friends" and got.headers["content-type"].startswith(ATT_MIME)
    assert session("GET", url + SECOND_NAME).status == 404
    assert session("PUT", url + SECOND_NAME, b"family", ATT_MIME).status == 201
    assert session("GET", url + '/~~/resource-lists/list[@name="family"]/@name').body == b"family"
    assert session("PUT", url + SECOND_NAME, b"relatives", ATT_MIME).status == 200
    assert session("GET", url + SECOND_NAME).body == b"relatives"
    assert session("DELETE", url + SECOND_NAME).status == 200
    assert session("GET", url + SECOND_NAME).status == 404
    assert session("GET", url).body == DOC


def test_conditional_requests(alice):
    session, url = alice
    etag = session("GET", url).headers["etag"]
    assert session("GET", url, **{"If-None-Match": etag}).status == 304
    assert session("GET", url + BOB_ENTRY, **{"If-None-Match": etag}).status == 304
    assert session("GET", url, **{"If-Match": etag}).status == 200
    carol = b'<entry uri="sip:carol@example.com"/>'
    put = session("PUT", url + CAROL_ENTRY, carol, EL_MIME, **{"If-Match": etag})
    assert put.status == 201 and put.headers["etag"] != etag
    fresh = put.headers["etag"]
    stale = etag
    assert session("PUT", url, DOC, RL_MIME, **{"If-Match": stale}).status == 412
    assert session("PUT", url + SECOND_NAME, b"x", ATT_MIME, **{"If-Match": stale}).status == 412
    assert session("DELETE", url + CAROL_ENTRY, **{"If-Match": stale}).status == 412
    assert session("GET", url, **{"If-None-Match": stale}).status == 200
    assert session("PUT", url + SECOND_NAME, b"family", ATT_MIME, **{"If-Match": fresh}).status == 201
    latest = session("GET", url).headers["etag"]
    assert session("DELETE", url, **{"If-Match": stale}).status == 412
    assert session("DELETE", url, **{"If-Match": latest}).status == 200
    assert session("PUT", url, DOC, RL_MIME, **{"If-None-Match": "*"}).status == 201
    assert session("PUT", url, DOC, RL_MIME, **{"If-None-Match": "*"}).status == 412


def test_wrong_password_is_refused(client, server):
    _, instance = client
    session = Session(instance, server)
    session.password = "wrong"
    assert session("GET", session.doc("index")).status == 401


# -- several domains in one subscriber table, no setting -----------------------------------------------


@pytest.mark.parametrize("account", list(ACCOUNTS))
@pytest.mark.parametrize("form", ["local-part", "user@domain"])
def test_users_of_two_domains_log_in(client, server, account, form):
    name, instance = client
    session = Session(instance, server, account, username=account if form == "user@domain" else None)
    url = session.doc(f"multi-{name}-{form}.xml")
    assert session("PUT", url, DOC, RL_MIME).status in (200, 201)
    assert session("GET", url + FRIENDS + "/@name").body == b"friends"
    assert session("DELETE", url).status == 200


def test_the_other_domains_user_is_not_a_local_part_here(client, server):
    _, instance = client
    url = Session(instance, server).doc("index")
    bob = Session(instance, server, "bob@example.org")
    assert bob("GET", url).status == 401  # "bob" on example.com's document is bob@example.com: no such account
    bob.username = "bob@example.org"
    assert bob("GET", url).status == 403  # authenticated as himself, but it is alice's document


def xcaplib_opener(root: str, account: str, password: str):
    """urllib set up as python3-xcaplib does it (from memory of xcaplib/httpclient.py): the password
    is given for the realm equal to the account's SIP domain and the username is the local part, so
    the handler answers no challenge of any other realm."""
    user, domain = account.split("@")
    manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    manager.add_password(domain, root, user, password)
    return urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(manager),
                                       urllib.request.HTTPDigestAuthHandler(manager))


@pytest.mark.parametrize("account", list(ACCOUNTS))
def test_xcaplib_reads_xcap_caps_then_its_documents(server, account):
    """What Blink does first: xcap-caps (global tree), then its own documents. default_domain is
    localhost, which is neither account's domain: xcap-caps must not need that realm's login."""
    root = server + "/xcap-root"
    opener = xcaplib_opener(root, account, ACCOUNTS[account])
    with opener.open(root + "/xcap-caps/global/index", timeout=20) as response:
        assert response.status == 200 and b"<xcap-caps" in response.read()
    doc = f"{root}/resource-lists/users/sip:{account}/xcaplib"
    request = urllib.request.Request(doc, data=DOC, method="PUT", headers={"Content-Type": RL_MIME})
    with opener.open(request, timeout=20) as response:
        assert response.status == 201
    with opener.open(doc + FRIENDS + "/@name", timeout=20) as response:
        assert response.read() == b"friends"
    with opener.open(urllib.request.Request(doc, method="DELETE"), timeout=20) as response:
        assert response.status == 200


# -- what the clients put on the wire --------------------------------------------------------------------


def capture_second_request(client_name: str) -> tuple[str, str]:
    """Let the client meet a bare socket that challenges once: the request line and Authorization of
    its answer to that challenge, exactly as they arrived."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    heads: list[bytes] = []

    def serve():
        challenge = (b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm="example.com", qop="auth", '
                     b'algorithm=MD5, nonce="bm9uY2U", opaque="b3BhcXVl"\r\nContent-Length: 0\r\n'
                     b'Connection: close\r\n\r\n')
        final = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        for answer in (challenge, final):
            connection, _ = listener.accept()
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                heads.append(data.split(b"\r\n\r\n")[0])
                connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    session = Session(CLIENTS[client_name](base), base)
    assert session("GET", session.doc("index") + FRIENDS).status == 200
    thread.join(10)
    listener.close()
    lines = heads[1].decode("latin-1").split("\r\n")
    authorization = next(line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("authorization:"))
    return lines[0], authorization


@pytest.mark.parametrize("client_name", ["urllib-xcaplib", "curl-g-raw", "curl-escaped-brackets"])
def test_these_clients_send_raw_quotes_in_the_target_and_in_uri(client_name):
    """The premise of the suite: these clients really send ``"`` unescaped (so the server must cope)."""
    target = "/xcap-root/resource-lists/users/sip:alice@example.com/index" + FRIENDS
    request_line, authorization = capture_second_request(client_name)
    assert request_line == f"GET {target} HTTP/1.1"
    assert f'uri="{target}"' in authorization
    assert 'username="alice"' in authorization
