"""A live ``xcap-wsgi serve`` with Digest (one account) on a free port, and a raw-socket HTTP
client with its own MD5 Digest, for the connection and request-target tests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable

ACCOUNT, PASSWORD, REALM = "alice@example.com", "secret pw", "example.com"
DOC = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
RL_MIME = "application/resource-lists+xml"
RL_DOC = (b'<?xml version="1.0" encoding="UTF-8"?>\n<resource-lists '
          b'xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="friends"/></resource-lists>')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_server(process: subprocess.Popen, pids: Iterable[int] = (), wait: float = 15) -> None:
    """Stop ``serve`` (SIGTERM: the parent stops its workers), SIGKILL it after ``wait`` seconds,
    then SIGKILL any of ``pids`` (its workers) still there: never leave a worker behind."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def raise_own_open_files_limit() -> None:
    """The tests hold thousands of client sockets: lift this process' soft limit too."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


class Server:
    def __init__(self, process: subprocess.Popen, port: int, output: list[str]):
        self.process, self.port, self.output = process, port, output

    @property
    def log(self) -> str:
        return "".join(self.output)


@contextlib.contextmanager
def running_serve(tmp_path, *options: str, db: str | None = None, account: bool = True,
                  adduser_db: str | None = None):
    """``xcap-wsgi serve`` (Digest, access log on) with ``alice@example.com`` as an account."""
    url = db or f"sqlite:///{tmp_path / 'xcap.sqlite3'}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if account:
        subprocess.run([sys.executable, "-m", "xcap_wsgi", "adduser", ACCOUNT, "--password", PASSWORD, "--db",
                        adduser_db or url],
                       check=True, capture_output=True, env=env, cwd=tmp_path, timeout=60)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "xcap_wsgi", "serve", "--port", str(port), "--db", url,
         "--default-domain", "example.com", *options],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()
    server = Server(process, port, output)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"serve stopped: {server.log}"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.1"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"serve did not answer: {server.log}"
            time.sleep(0.1)
        yield server
    finally:
        stop_server(process, wait=20)


# -- a raw HTTP/1.1 client ------------------------------------------------------------------------


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, raw_headers: list[tuple[str, str]]):
        self.status, self.headers, self.body, self.raw_headers = status, headers, body, raw_headers


def read_response(sock: socket.socket, *, head_only: bool = False) -> Response:
    """One response from ``sock`` (Content-Length bodies; the socket's timeout bounds the wait)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    raw_headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
    headers = {name.lower(): value for name, value in raw_headers}
    length = int(headers.get("content-length", "0"))
    while not head_only and len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return Response(status, headers, rest[:length], raw_headers)


def request_bytes(method: str, target: bytes, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode("latin-1"))
    if body or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class DigestClient:
    """MD5 Digest (qop=auth, RFC 7616) over one keep-alive connection, reconnecting when closed."""

    def __init__(self, port: int, username: str = ACCOUNT, password: str = PASSWORD, timeout: float = 10.0):
        self.port, self.username, self.password, self.timeout = port, username, password, timeout
        self.sock: socket.socket | None = None
        self.challenge: dict[str, str] | None = None
        self.nc = 0

    def _connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def authorization(self, method: str, target: bytes) -> str:
        c = self.challenge
        self.nc += 1
        nc, cnonce, uri = f"{self.nc:08x}", os.urandom(8).hex(), target.decode("latin-1")
        md5 = lambda text: hashlib.md5(text.encode("latin-1", "replace")).hexdigest()  # noqa: E731
        ha1 = md5(f"{self.username}:{c['realm']}:{self.password}")
        ha2 = md5(f"{method}:{uri}")
        response = md5(f"{ha1}:{c['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        uri_param = uri.replace("\\", "\\\\").replace('"', '\\"')
        return (f'Digest username="{self.username}", realm="{c["realm"]}", nonce="{c["nonce"]}", '
                f'uri="{uri_param}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}", '
                f'response="{response}", opaque="{c["opaque"]}"')

    def _exchange(self, data: bytes, method: str) -> Response:
        sock = self._connect()
        try:
            sock.sendall(data)
            response = read_response(sock, head_only=method == "HEAD")
        except (ConnectionError, BrokenPipeError):
            self.close()
            sock = self._connect()
            sock.sendall(data)
            response = read_response(sock, head_only=method == "HEAD")
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def request(self, method: str, target: bytes | str, body: bytes = b"", headers: dict | None = None) -> Response:
        target = target.encode("latin-1") if isinstance(target, str) else target
        for _ in range(3):
            extra = dict(headers or {})
            if self.challenge is not None:
                extra["Authorization"] = self.authorization(method, target)
            response = self._exchange(request_bytes(method, target, extra, body), method)
            if response.status != 401:
                return response
            self.challenge = parse_md5_challenge(response)
            self.nc = 0
        return response


def parse_md5_challenge(response: Response) -> dict[str, str]:
    for name, value in response.raw_headers:
        if name.lower() == "www-authenticate" and "algorithm=MD5" in value:
            return dict(re.findall(r'(\w+)="?([^",]*)"?', value.split(" ", 1)[1]))
    raise AssertionError(f"no MD5 challenge in {response.raw_headers}")
