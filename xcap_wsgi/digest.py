"""HTTP Digest authentication (RFC 7616) as plain WSGI middleware, against Kamailio's subscriber table.

``DigestAuthMiddleware(app, subscribers=...)`` sits in front of ``XCAPMiddleware`` (or any WSGI
app). It offers an MD5 and a SHA-256 challenge (qop=auth, an ``opaque``), checks the client's
answer against the account in Kamailio's ``subscriber`` table and, on success, sets
``REMOTE_USER=user@domain`` and ``AUTH_TYPE=Digest`` before calling the app.

* **MD5 first**: CPython's ``urllib.request.HTTPDigestAuthHandler`` (python3-xcaplib, Blink) reads
  only the first ``WWW-Authenticate`` header and knows only MD5 and SHA; the others (requests,
  httpx, curl) answer either. ``algorithms=("SHA-256",)`` offers SHA-256 alone.
* **Realm**: a fixed ``realm`` when one is given. Otherwise the realm of each request is the domain
  of the XUI in its URI (``users/sip:alice@example.com/...`` -> ``example.com``), found with the
  same parser XCAPMiddleware uses (``roots``); the global tree and URIs without a domain get
  ``default_domain``. So every SIP domain in one subscriber table logs in with no setting, and
  Kamailio's ha1/ha1b hashes (computed with realm = the account's domain) work.

* **Nonces** are stateless: ``base64url(issue time, random, HMAC-SHA256(secret, ...))``. A nonce
  older than ``nonce_lifetime`` is refused; when the response to it was nevertheless correct, the
  new challenge says ``stale=true`` so the client retries without asking for the password.
* **Replay protection**: each nonce's nonce-counts are tracked (sliding 64-value window) in a
  bounded, thread-safe table: this process's own for a random secret, the host's (shared by all
  processes with the same ``secret``, see nonces.py) for a configured one. When the table is
  full, the oldest nonces are forgotten and every nonce issued up to the newest forgotten one
  counts as stale from then on: replays are never accepted, at worst a client re-authenticates.
* **Credentials**: the ``password`` column (cleartext) gives HA1 for any algorithm; ``ha1``
  (MD5(user:domain:password)) and ``ha1b`` (MD5(user@domain:domain:password)) give MD5 HA1 only,
  and only when the challenge realm is the account's domain (that is how Kamailio computes them).
  ``password_column``: ``auto`` (password when non-empty, else ha1/ha1b by the username form),
  ``password``, ``ha1`` or ``ha1b``. SHA-256 needs cleartext passwords.
* The username in the Authorization header may be ``user`` (then the domain is the realm's) or
  ``user@domain`` (taken as is).
* **Basic** (RFC 7617) only when ``basic=True``, checked against the same row; use it over TLS only.
* Comparisons of secrets are constant-time (``hmac.compare_digest``).

``required=True`` (default): a request without valid credentials is answered 401 with the
challenges and never reaches the app. ``required=False``: such requests reach the app without
``REMOTE_USER`` (so a trusted-proxy identity or public resources can work), and any 401 the app
answers gets the challenges added.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import struct
import time
from collections.abc import Callable, Iterable
from urllib.parse import unquote, urlsplit

from .accounts import account_problem
from .auth import PUBLIC_GLOBAL
from .digest_rfc import ALGORITHMS, H, MalformedCredentials, compute_ha1, compute_response, parse_auth_params
from .middleware import raw_request_target
from .nonces import NonceTracker, host_secret, open_host_table
from .settings import DEFAULTS, Settings
from .storage import StoreError, StoreUnavailable
from .subscribers import Subscriber, open_subscribers
from .uri import XCAPURI, URIError, match_root, parse_xcap_path, xui_account

log = logging.getLogger("xcap_wsgi.digest")

#: Re-exported: the RFC 7616 computations and header syntax (digest_rfc), the per-process tracker.
__all__ = ["ALGORITHMS", "H", "MalformedCredentials", "compute_ha1", "compute_response", "parse_auth_params",
           "NonceTracker", "Credentials", "DigestAuthMiddleware", "from_settings"]

PASSWORD_COLUMNS = ("auto", "password", "ha1", "ha1b")
_NONCE_RAW = 8 + 8 + 16  # issue time (µs), random, MAC
#: A realm taken from an XUI must fit in a quoted-string as is (RFC 7616 §3.3) and in a latin-1 header.
_SAFE_REALM = re.compile(r"[!#-\[\]-~]+")


class Credentials:
    """The outcome of checking one Authorization header."""

    __slots__ = ("identity", "stale", "error", "bad_request", "scheme")

    def __init__(self, identity: str | None = None, *, stale: bool = False, error: str = "",
                 bad_request: bool = False, scheme: str = "Digest"):
        self.identity, self.stale, self.error, self.bad_request = identity, stale, error, bad_request
        self.scheme = scheme


class DigestAuthMiddleware:
    """RFC 7616 Digest (MD5 and SHA-256, qop=auth) in front of ``app``; see the module docstring."""

    def __init__(
        self,
        app: Callable,
        *,
        subscribers,  # an object with lookup(user, domain) -> Subscriber | None, or a database URL
        realm: str | None = None,
        default_domain: str = DEFAULTS.default_domain,
        roots: Iterable[str] = DEFAULTS.root,
        max_uri_length: int = DEFAULTS.max_uri_length,
        algorithms: Iterable[str] = DEFAULTS.digest_algorithms,
        password_column: str = DEFAULTS.password_column,
        nonce_lifetime: float = DEFAULTS.nonce_lifetime,
        secret: bytes | str | None = None,
        basic: bool = False,
        required: bool = True,
        max_tracked_nonces: int = 10000,
        clock: Callable[[], float] = time.time,
    ):
        self.app = app
        self.subscribers = open_subscribers(subscribers) if isinstance(subscribers, str) else subscribers
        for name, value in (("realm", realm), ("default_domain", default_domain)):
            if (value is not None or name != "realm") and (not value or '"' in value or "\\" in value):
                raise ValueError(f"invalid {name} {value!r}: it is used as the Digest realm")
        self.realm = realm  # None: the domain of the XUI in each request's URI (see realm_for)
        self.default_domain = default_domain
        self.roots = tuple(roots)
        self.max_uri_length = max_uri_length
        self.algorithms = tuple(a.strip().upper() for a in algorithms if a.strip())
        unknown = [a for a in self.algorithms if a not in ALGORITHMS]
        if unknown or not self.algorithms:
            raise ValueError(f"unsupported Digest algorithms {unknown or '(none)'}: use SHA-256 and/or MD5")
        if password_column not in PASSWORD_COLUMNS:
            raise ValueError(f"password_column must be one of {', '.join(PASSWORD_COLUMNS)}")
        if password_column in ("ha1", "ha1b") and "SHA-256" in self.algorithms:
            log.warning("password_column=%s holds MD5 hashes: SHA-256 challenges are not offered", password_column)
        self.algorithms = offered_algorithms(self.algorithms, password_column)
        self.password_column = password_column
        self.nonce_lifetime = float(nonce_lifetime)
        shared_secret = secret is not None  # other processes may hold it: count nonces host-wide
        if secret is None:
            secret = os.urandom(32)
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        self.basic = basic
        self.required = required
        # Nonces of a random secret are valid in this process only; a configured secret's are valid
        # in every process that has it, so their counts go to the host's table (nonces.py).
        # One table for every realm: nonces are unique strings, whichever realm they were issued for.
        shared = open_host_table(self._secret, realm or "", max_tracked_nonces,
                                 lifetime=self.nonce_lifetime) if shared_secret else None
        self.tracker = NonceTracker(max_tracked_nonces) if shared is None else shared
        self.clock = clock
        self._last_purge = 0.0

    # -- realm -----------------------------------------------------------------------------------

    def realm_for(self, environ: dict) -> str:
        """The fixed realm, else the domain of the request URI's XUI, else ``default_domain``."""
        if self.realm is not None:
            return self.realm
        uri = self._xcap_uri(environ)
        if uri is not None and uri.xui is not None:
            domain = xui_account(uri.xui, self.default_domain)[1]
            if _SAFE_REALM.fullmatch(domain):
                return domain
        return self.default_domain

    def _xcap_uri(self, environ: dict) -> XCAPURI | None:
        """The request's XCAP URI, or None when it is not one (or too long to look at)."""
        # Over-long URIs get XCAPMiddleware's 414 after login; before it, nothing of them is parsed
        # or remembered (the URI functions cache their results). The decoded length is checked first.
        decoded = len(environ.get("SCRIPT_NAME", "")) + len(environ.get("PATH_INFO", ""))
        if decoded + len(environ.get("QUERY_STRING", "")) > self.max_uri_length:
            return None
        raw_path, raw_query = raw_request_target(environ)
        if len(raw_path) + len(raw_query) > self.max_uri_length:
            return None
        matched = match_root(raw_path, self.roots)
        if matched is None:
            return None
        try:
            return parse_xcap_path(*matched, raw_query)
        except URIError:
            return None  # XCAPMiddleware answers it (400/404) once the client has authenticated

    def _public(self, environ: dict) -> bool:
        """A read of a global document everyone may read without logging in (``PUBLIC_GLOBAL``).

        xcap-caps says only what the server supports. Clients fetch it first, before they know
        the realm their account answers: python3-xcaplib (Blink) gives its password for the realm
        equal to its SIP domain only, and the global tree's realm is ``default_domain``, so in a
        multi-domain server it could never read xcap-caps if it needed a login.
        """
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return False
        uri = self._xcap_uri(environ)
        return uri is not None and uri.tree == "global" and uri.auid in PUBLIC_GLOBAL

    def opaque(self, realm: str) -> str:
        return base64.urlsafe_b64encode(
            hmac.new(self._secret, b"opaque:" + realm.encode(), hashlib.sha256).digest()[:18]).decode()

    # -- nonces --------------------------------------------------------------------------------

    def _now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def make_nonce(self, realm: str | None = None) -> str:
        """A nonce bound to ``realm`` (default: the fixed realm or ``default_domain``)."""
        realm = realm or self.realm or self.default_domain
        head = struct.pack(">Q", self._now_us()) + os.urandom(8)
        mac = hmac.new(self._secret, head + realm.encode(), hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(head + mac).decode()

    def _check_nonce(self, nonce: str, realm: str) -> tuple[bool, int, bool]:
        """``(authentic, issued_us, expired)``."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return False, 0, False
        if len(raw) != _NONCE_RAW or base64.urlsafe_b64encode(raw).decode() != nonce:
            return False, 0, False  # one spelling per nonce: the replay tracker is keyed by the string
        head, mac = raw[:16], raw[16:]
        expected = hmac.new(self._secret, head + realm.encode(), hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expected):
            return False, 0, False
        issued = struct.unpack(">Q", head[:8])[0]
        age = (self._now_us() - issued) / 1_000_000
        return True, issued, not (-5 <= age <= self.nonce_lifetime)

    # -- challenge -----------------------------------------------------------------------------

    def challenges(self, stale: bool = False, realm: str | None = None) -> list[tuple[str, str]]:
        """One ``WWW-Authenticate`` per algorithm, all with the same nonce (requests and httpx
        merge the headers into one dict), then Basic when enabled."""
        realm = realm or self.realm or self.default_domain
        nonce = self.make_nonce(realm)
        headers = []
        for algorithm in self.algorithms:
            headers.append(("WWW-Authenticate",
                            f'Digest realm="{realm}", qop="auth", algorithm={algorithm}, '
                            f'nonce="{nonce}", opaque="{self.opaque(realm)}"' + (", stale=true" if stale else "")))
        if self.basic:
            headers.append(("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'))
        return headers

    def _challenge(self, environ, start_response, realm: str, stale: bool = False,
                   detail: str = "authentication required"):
        body = f"401 Unauthorized\n\n{detail}\n".encode()
        headers = [("Content-Type", "text/plain; charset=UTF-8"), ("Content-Length", str(len(body))),
                   ("Cache-Control", "no-cache")] + self.challenges(stale, realm)
        start_response("401 Unauthorized", headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    @staticmethod
    def _unavailable(environ, start_response, exc: StoreError):
        """503 + Retry-After while the subscriber lookup fails, like the document store's; one log
        line, no traceback, no database details to the client."""
        from . import metrics

        metrics.unavailable("subscribers")
        retry_after = getattr(exc, "retry_after", 5)
        if isinstance(exc, StoreUnavailable):
            log.warning("subscriber table unavailable: %s", exc)
        else:
            log.error("subscriber table failed: %s", exc)
        body = b"503 Service Unavailable\n\nthe account database is unavailable; retry later\n"
        start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=UTF-8"),
                                                   ("Content-Length", str(len(body))),
                                                   ("Retry-After", str(retry_after))])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    @staticmethod
    def _bad_request(environ, start_response, detail: str):
        body = f"400 Bad Request\n\n{detail}\n".encode()
        start_response("400 Bad Request", [("Content-Type", "text/plain; charset=UTF-8"),
                                           ("Content-Length", str(len(body)))])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    # -- WSGI ----------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        header = environ.get("HTTP_AUTHORIZATION", "")
        self._purge()
        realm = self.realm_for(environ)
        if header.strip():
            try:
                result = self.authenticate(environ, header, realm)
            except StoreError as exc:  # the subscriber table is down or unusable: retry later
                return self._unavailable(environ, start_response, exc)
            if result.bad_request:
                return self._bad_request(environ, start_response, result.error)
            if result.identity is None:
                if result.error:
                    log.info("authentication failed from %s: %s", environ.get("REMOTE_ADDR", "?"), result.error)
                return self._challenge(environ, start_response, realm, stale=result.stale)
            environ["REMOTE_USER"] = result.identity
            environ["AUTH_TYPE"] = result.scheme
            return self.app(environ, start_response)
        if self.required and not self._public(environ):
            return self._challenge(environ, start_response, realm)
        return self.app(environ, self._add_challenges(start_response, realm))

    def _add_challenges(self, start_response, realm: str):
        def wrapped(status, headers, exc_info=None):
            if status.startswith("401") and not any(k.lower() == "www-authenticate" for k, _ in headers):
                headers = list(headers) + self.challenges(realm=realm)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return wrapped

    def _purge(self) -> None:
        now = self.clock()
        if now - self._last_purge > max(self.nonce_lifetime, 1.0):
            self._last_purge = now
            self.tracker.forget_older_than(int((now - self.nonce_lifetime - 5) * 1_000_000))

    # -- checking credentials ------------------------------------------------------------------

    def authenticate(self, environ: dict, header: str, realm: str | None = None) -> Credentials:
        """Check one Authorization header for the request ``environ`` (realm: ``realm_for``)."""
        realm = realm or self.realm_for(environ)
        scheme, _, rest = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "digest":
            try:
                params = parse_auth_params(rest)
            except MalformedCredentials as exc:
                return Credentials(error=str(exc), bad_request=True)
            return self._digest(environ, params, realm)
        if scheme == "basic" and self.basic:
            return self._basic(rest.strip(), realm)
        return Credentials(error=f"authentication scheme {scheme!r} is not accepted")

    def _digest(self, environ: dict, p: dict[str, str], realm: str) -> Credentials:
        for name in ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce"):
            if name not in p:
                return Credentials(error=f"Digest parameter {name} missing", bad_request=name in ("username", "uri"))
        algorithm = p.get("algorithm", "MD5").upper()
        if algorithm not in self.algorithms:
            return Credentials(error=f"algorithm {algorithm} not offered")
        if p["qop"] != "auth":
            return Credentials(error="only qop=auth is supported")
        if p.get("userhash", "false").lower() == "true":
            return Credentials(error="userhash is not supported")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", p["nc"]):
            return Credentials(error="malformed nc", bad_request=True)
        if p["realm"] != realm:
            return Credentials(error=f"realm {p['realm']!r} is not {realm!r}")
        if not hmac.compare_digest(p.get("opaque", "").encode(), self.opaque(realm).encode()):
            return Credentials(error="opaque missing or not ours")
        if not self._uri_matches(environ, p["uri"]):
            return Credentials(error="the digest uri does not match the request-target", bad_request=True)
        authentic, issued, expired = self._check_nonce(p["nonce"], realm)
        if not authentic:
            return Credentials(error="nonce not issued by this server")

        username = p["username"]
        user, domain = self._account(username, realm)
        subscriber = self._lookup(user, domain)
        ha1 = self._ha1(subscriber, username, algorithm, realm) if subscriber is not None else None
        if subscriber is None or ha1 is None:
            # Same work as a real check, so timing does not tell which accounts exist.
            compute_response(algorithm, "0" * 32, p["nonce"], p["nc"], p["cnonce"], p["qop"],
                             environ.get("REQUEST_METHOD", "GET"), p["uri"])
            return Credentials(error=f"unknown account or no usable credentials for {username!r}")
        expected = compute_response(algorithm, ha1, p["nonce"], p["nc"], p["cnonce"], p["qop"],
                                    environ.get("REQUEST_METHOD", "GET"), p["uri"])
        if not hmac.compare_digest(expected.encode(), p["response"].lower().encode("utf-8", "replace")):
            return Credentials(error=f"wrong Digest response for {username!r}")
        if expired:
            return Credentials(stale=True, error="stale nonce")
        state = self.tracker.use(p["nonce"], issued, int(p["nc"], 16))
        if state != "ok":
            why = "replayed" if state == "replay" else "of a forgotten nonce"
            return Credentials(stale=True, error=f"nonce-count {p['nc']} {why}")
        return Credentials(subscriber.identity)

    @staticmethod
    def _account(username: str, realm: str) -> tuple[str, str]:
        """``user@domain`` as is; a bare ``user`` belongs to the realm's domain."""
        if "@" in username:
            user, _, domain = username.rpartition("@")
            return user, domain.lower()
        return username, realm.lower()

    def _lookup(self, user: str, domain: str) -> Subscriber | None:
        """The subscriber row, or None; a row whose name is ambiguous never logs in: its identity
        could read as another account's (issue 16, ``xcap_wsgi.accounts.account_problem``)."""
        if account_problem(user, domain):
            return None  # no account may have that name: not even a database query
        subscriber = self.subscribers.lookup(user, domain)
        if subscriber is not None and account_problem(subscriber.username, subscriber.domain):
            log.warning("refusing login as %r@%r: %s", subscriber.username, subscriber.domain,
                        account_problem(subscriber.username, subscriber.domain))
            return None
        return subscriber

    def _ha1(self, s: Subscriber, username: str, algorithm: str, realm: str) -> str | None:
        column = self.password_column
        if column == "auto":
            column = "password" if s.password else ("ha1b" if "@" in username else "ha1")
        if column == "password":
            return compute_ha1(algorithm, username, realm, s.password) if s.password else None
        if algorithm != "MD5" or realm.lower() != s.domain.lower():
            return None  # stored hashes are MD5 over realm = the account's domain
        if column == "ha1" and username == s.username:
            return s.ha1.lower() or None
        if column == "ha1b" and username == f"{s.username}@{s.domain}":
            return s.ha1b.lower() or None
        return None

    def _basic(self, token: str, realm: str) -> Credentials:
        try:
            decoded = base64.b64decode(token.encode("ascii"), validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeError):
            return Credentials(error="malformed Basic credentials", bad_request=True)
        username, colon, password = decoded.partition(":")
        if not colon:
            return Credentials(error="malformed Basic credentials", bad_request=True)
        user, domain = self._account(username, realm)
        s = self._lookup(user, domain)
        ok = False
        if s is not None:
            column = self.password_column
            if column == "auto":
                column = "password" if s.password else "ha1"
            if column == "password":
                ok = bool(s.password) and hmac.compare_digest(s.password.encode(), password.encode())
            else:
                stored = s.ha1 if column == "ha1" else s.ha1b
                who = s.username if column == "ha1" else f"{s.username}@{s.domain}"
                ok = bool(stored) and hmac.compare_digest(
                    stored.lower().encode(), compute_ha1("MD5", who, s.domain, password).encode())
        if s is None or not ok:
            return Credentials(error=f"wrong Basic credentials for {username!r}")
        return Credentials(s.identity, scheme="Basic")

    @staticmethod
    def _uri_matches(environ: dict, digest_uri: str) -> bool:
        """RFC 7616 §3.4.6: the ``uri`` parameter names the request-target (raw or decoded form)."""
        raw = environ.get("REQUEST_URI") or environ.get("RAW_URI")
        if raw and digest_uri == raw:
            return True
        parts = urlsplit(digest_uri)
        path, query = (parts.path, parts.query) if parts.scheme else tuple(
            (digest_uri.split("?", 1) + [""])[:2])
        expected_path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        try:
            decoded = unquote(path, encoding="latin-1")
        except Exception:
            return False
        return decoded == expected_path and query == environ.get("QUERY_STRING", "")


def offered_algorithms(algorithms: Iterable[str], password_column: str) -> tuple[str, ...]:
    """The Digest algorithms challenged with: ``algorithms`` but SHA-256 when the password column
    holds MD5 hashes (ha1, ha1b)."""
    wanted = tuple(a.strip().upper() for a in algorithms if a.strip())
    if password_column in ("ha1", "ha1b"):
        return tuple(a for a in wanted if a != "SHA-256") or ("MD5",)
    return wanted


def describe(settings: Settings) -> str:
    """serve's start-up description of the Digest set-up of ``settings``."""
    realm = settings.realm or f"<domain of the XUI>, else {settings.default_domain}"
    algorithms = offered_algorithms(settings.digest_algorithms, settings.password_column)
    return f"Digest ({'/'.join(algorithms)}{', Basic' if settings.basic_auth else ''}) realm={realm}"


def from_settings(app, settings: Settings, *, required: bool | None = None) -> DigestAuthMiddleware:
    """``DigestAuthMiddleware`` around ``app`` from ``settings`` (see ``xcap_wsgi.settings``);
    ``required`` defaults to "no trusted identity header is set"."""
    return DigestAuthMiddleware(
        app,
        subscribers=open_subscribers(settings.auth_db or settings.db, create=True),
        realm=settings.realm,
        default_domain=settings.default_domain,
        roots=settings.root,
        max_uri_length=settings.max_uri_length,
        algorithms=settings.digest_algorithms,
        password_column=settings.password_column,
        nonce_lifetime=settings.nonce_lifetime,
        # No setting: the host's secret, so every process of this user on the host (uWSGI, several
        # serve) accepts the others' nonces and counts them in one table; else one per process.
        secret=settings.nonce_secret or host_secret(),
        basic=settings.basic_auth,
        required=not settings.identity_header if required is None else required,
    )
