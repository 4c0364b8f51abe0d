"""Every setting once: a frozen ``Settings`` dataclass, in the style of waitress' ``Adjustments``.

Each field has its type, its default, a converter from strings and a one-line help; the command
line (``xcap-wsgi serve --help``), the ini file, the ``XCAP_*`` environment variables, PasteDeploy
sections and the docs' Settings page are all derived from the fields, and the public keyword
defaults of ``XCAPMiddleware``, ``DigestAuthMiddleware`` and ``DefaultPolicy`` refer to
``DEFAULTS`` (a ``Settings()``), so a default is stated here and nowhere else.

A host application builds one object and hands it on::

    settings = Settings.from_sources({"db": "sqlite:///xcap.sqlite3"}, config="xcap.ini")
    settings = Settings(db="sqlite:///xcap.sqlite3", default_domain="example.com")  # no environment
    app = xcap_wsgi.build_middleware(host_app, settings)

Precedence in ``from_sources``: the given values (command line) > the ``[xcap-wsgi]`` section of
the ``config`` ini file > ``XCAP_<NAME>`` environment variables > ``defaults`` (the standalone
server's own: the access log on) > the field defaults. Values are converted by each field's
converter whether they arrive as strings or typed (``Settings(max_body_size="4m")`` works), an
unknown name is an error, and ``__post_init__`` refuses contradicting combinations. Booleans
read ``true/false``, ``yes/no``, ``on/off``, ``1/0`` everywhere, and have an ``--x``/``--no-x``
pair on the command line. This module imports no WSGI code; ``xcap_wsgi.build`` turns a
``Settings`` into the running parts.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from .storage import DEFAULT_DATABASE_URL
from .usages import DEFAULT_USAGES

#: The ini section ``--config FILE`` reads.
CONFIG_SECTION = "xcap-wsgi"
#: What the standalone server (``serve``, the PasteDeploy app) changes among the defaults.
STANDALONE_DEFAULTS: Mapping[str, Any] = MappingProxyType({"log_requests": True})


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def parse_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return tuple(part.strip() for part in str(value).replace("\n", ",").split(",") if part.strip())


_AUID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
_MIME = re.compile(r"^[A-Za-z0-9][\w!#$&^.+\-]*/[A-Za-z0-9][\w!#$&^.+\-]*$")


def parse_usages(value: Any) -> tuple[str, ...]:
    """Generic application usages, ``AUID=NAMESPACE;MIME-TYPE`` each: a list (repeated
    ``--usage``), or one string with entries separated by commas or newlines (ini, environment).
    Returns the entries normalised; a malformed one is a ``ValueError`` naming it."""
    items = value if isinstance(value, (list, tuple)) else (value,)
    entries = [part.strip() for item in items for part in str(item).replace("\n", ",").split(",") if part.strip()]
    parsed = [parse_usage(entry) for entry in entries]
    if parsed:
        shipped = {usage.auid for usage in DEFAULT_USAGES}
        auids = [auid for auid, _, _ in parsed]
        for auid in auids:
            if auid in shipped:
                raise ValueError(f"usage {auid}: already an application usage of xcap-wsgi (it has its own rules)")
            if auids.count(auid) > 1:
                raise ValueError(f"usage {auid}: given more than once")
    return tuple(f"{auid}={namespace};{mime_type}" for auid, namespace, mime_type in parsed)


def parse_usage(entry: str) -> tuple[str, str, str]:
    """``AUID=NAMESPACE;MIME-TYPE`` -> ``(auid, namespace, mime_type)``. The namespace may hold
    ``=`` (split at the first) but not ``;`` or ``,`` (the MIME type follows the last ``;``)."""
    auid, equals, rest = entry.strip().partition("=")
    namespace, semicolon, mime_type = rest.rpartition(";")
    auid, namespace, mime_type = auid.strip(), namespace.strip(), mime_type.strip().lower()
    if not (equals and semicolon and auid and namespace and mime_type):
        raise ValueError(f"usage {entry!r}: expected AUID=NAMESPACE;MIME-TYPE, e.g. "
                         "org.example.notes=urn:example:notes;application/vnd.example.notes+xml")
    if not _AUID.match(auid):
        raise ValueError(f"usage {entry!r}: AUID {auid!r} must be letters, digits, '.', '-' or '_'")
    if not _MIME.match(mime_type):
        raise ValueError(f"usage {entry!r}: {mime_type!r} is not a MIME type (type/subtype)")
    if any(c.isspace() for c in namespace) or ";" in namespace:
        raise ValueError(f"usage {entry!r}: namespace {namespace!r} must be a URI without spaces or ';'")
    return auid, namespace, mime_type


def parse_size(value: Any) -> int:
    """An integer byte count; accepts ``k``/``m`` suffixes (``4m`` = 4 MiB)."""
    text = str(value).strip().lower()
    factor = {"k": 1024, "m": 1024 * 1024}.get(text[-1:], 1)
    return int(text[:-1] if factor > 1 else text) * factor


def parse_positive(value: Any) -> float:
    """A number of seconds (or a count) above zero: a zero timeout would close every connection."""
    number = float(value)
    if not number > 0:
        raise ValueError(f"timeouts must be above zero, got {value!r}")
    return number


def parse_count(value: Any) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"connection_limit must be at least 1, got {value!r}")
    return number


def parse_text(value: Any) -> str | None:
    """Optional text: ``None`` or blank is unset."""
    return None if value is None else (str(value).strip() or None)


def parse_raw(value: Any) -> str | None:
    """Optional text kept as written (URLs, secrets): ``None`` or empty is unset."""
    return None if value is None else (str(value) or None)


def parse_int(value: Any) -> int:
    return int(value)


def parse_server(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("waitress", "uwsgi", "granian", "auto"):
        raise ValueError(f"server must be waitress, uwsgi, granian or auto, not {value!r}")
    return text


def setting(default: Any, parse: Callable[[Any], Any], help: str, scope: str = "middleware", *,
            repeatable: bool = False) -> Any:
    """A ``Settings`` field: its default, its converter from strings, a one-line help and who
    uses it ("middleware" settings go to XCAPMiddleware, "server" ones to the standalone server,
    "store", "health", "usages", "notify", "auth" to those parts)."""
    return field(default=default, metadata={"parse": parse, "help": help, "scope": scope,
                                            "repeatable": repeatable})


@dataclass(frozen=True)
class Settings:
    """Every setting of xcap-wsgi, typed, converted and checked (see the module docstring)."""

    db: str = setting(DEFAULT_DATABASE_URL, str,
                      "database URL: sqlite:///path (embedded default) or mysql://user:pass@host[:port]/db", "server")
    recall_cache: bool = setting(False, parse_bool,
                                 "MySQL only: keep each document's last write in a private file on this host "
                                 "(/dev/shm) so the next element edit skips its read; a copy of users' documents "
                                 "outside the database, hence off", "store")
    host: str = setting("127.0.0.1", str, "address the standalone server listens on", "server")
    port: int = setting(8080, parse_int, "TCP port the standalone server listens on", "server")
    server: str = setting("waitress", parse_server,
                          "HTTP server of the standalone server: waitress (serve's own core, with the connection "
                          "limits and timeouts below), uwsgi (uWSGI's router; pip install pyuwsgi), granian "
                          "(pip install granian) or auto (waitress where epoll exists, else granian, else uwsgi); "
                          "see xcap_wsgi.backends for what the others lack", "server")
    threads: int = setting(0, parse_int, "threads of each process of the standalone server: requests it serves at "
                           "once; 0: one when every database is on this host (SQLite, a Unix socket, a loopback "
                           "address), else two (a second thread pays off only while the other waits for a "
                           "distant database; on this host it costs more in interpreter lock hand-overs than it "
                           "gains: docs/benchmarks.md)", "server")
    workers: int = setting(0, parse_int, "processes of the standalone server sharing one listening socket "
                           "(each with --threads threads); 0: one per CPU this process may run on, at most 8 "
                           "(Python threads share one core; each process has its own database connections)", "server")
    # -- connection limits of the standalone server (xcap_wsgi.httpserver) ------------------------
    connection_limit: int = setting(5000, parse_count,
                                    "open client connections per process of the standalone server (idle "
                                    "keep-alive ones included); new connections wait in the listen backlog beyond "
                                    "it; lowered to the open files limit, whose soft value serve raises to the "
                                    "hard one", "server")
    idle_timeout: float = setting(30.0, parse_positive,
                                  "seconds a keep-alive connection may stay silent between requests before it is "
                                  "closed", "server")
    header_timeout: float = setting(10.0, parse_positive,
                                    "seconds from the first byte of a request head to its end; slower heads "
                                    "(slowloris) get 408 and are closed", "server")
    body_timeout: float = setting(10.0, parse_positive,
                                  "seconds a request body may stop arriving before the connection gets 408 and is "
                                  "closed", "server")
    # -- unauthenticated health endpoints (xcap_wsgi.health), in front of Digest ------------------
    health_path: str | None = setting("/healthz", parse_text,
                                      "liveness path: GET answers 200 whenever the process serves (no "
                                      "authentication, no database); empty disables it", "health")
    ready_path: str | None = setting("/readyz", parse_text,
                                     "readiness path: GET answers 200 when the document store and the subscriber "
                                     "table answer, else 503 with Retry-After (no authentication); empty disables "
                                     "it", "health")
    # -- the middleware ---------------------------------------------------------------------------
    root: tuple[str, ...] = setting(("/xcap-root",), parse_list,
                                    "XCAP root path(s) below the mount point; several comma-separated aliases "
                                    "allowed, the first is the one stored in doc_uri")
    default_domain: str = setting("localhost", str,
                                  "SIP domain for XUIs and identities that carry none (e.g. users/alice/...)")
    anonymous: bool = setting(False, parse_bool,
                              "development only: serve without authentication, everyone may read and write "
                              "everything")
    admins: tuple[str, ...] = setting((), parse_list, "identities allowed to write the global tree")
    max_body_size: int = setting(4 * 1024 * 1024, parse_size,
                                 "largest accepted request body in bytes (413 beyond)")
    max_uri_length: int = setting(4096, parse_int, "longest accepted request URI (414 beyond)")
    public_url: str | None = setting(None, parse_raw,
                                     "scheme://host[:port] clients use to reach the server, for absolute URIs "
                                     "behind a proxy")
    doc_uri_root: str | None = setting(None, parse_raw,
                                       "path stored in doc_uri before the AUID (default: mount point + first "
                                       "root), set it to Kamailio's xcap_root when a proxy rewrites paths")
    log_requests: bool = setting(False, parse_bool,
                                 "log one access line per XCAP request (on by default in serve and the "
                                 "PasteDeploy app)")
    # -- application usages -----------------------------------------------------------------------
    no_schema_validation: tuple[str, ...] = setting((), parse_list,
                                                    "AUIDs whose resulting documents are not checked against "
                                                    "their XML schema (RFC 4826/OMA constraints still apply)",
                                                    "usages")
    usage: tuple[str, ...] = setting((), parse_usages,
                                     "generic application usage without a schema, AUID=NAMESPACE;MIME-TYPE (repeat "
                                     "the option, or separate entries with commas or newlines): documents of any "
                                     "name, checked for well-formed UTF-8 only, stored with doc_type 64", "usages",
                                     repeatable=True)
    external_references: bool = setting(True, parse_bool,
                                        "allow references (entry-ref, external, resource-list, OMA external-list) "
                                        "to other users' lists and other servers, as the RFCs do; false keeps every "
                                        "reference inside the owner's own lists", "usages")
    kamailio_rpc: str | None = setting(None, parse_text,
                                       "Kamailio JSON-RPC URL (jsonrpcs over xhttp, e.g. "
                                       "http://127.0.0.1:5071/RPC) told about every change so presence and rls "
                                       "re-evaluate watchers", "notify")
    # -- authentication and authorization (xcap_wsgi.auth, xcap_wsgi.digest) ----------------------
    trusted_readers: tuple[str, ...] = setting((), parse_list,
                                               "identities that may read every user's documents (presence server, "
                                               "RLS)", "auth")
    public_read: tuple[str, ...] = setting(("org.openmobilealliance.pres-content",), parse_list,
                                           "AUIDs whose documents every authenticated user may read", "auth")
    identity_header: str | None = setting(None, parse_text,
                                          "asserted-identity header set by a trusted front proxy (e.g. "
                                          "X-3GPP-Intended-Identity); believed only from --trusted-proxies", "auth")
    trusted_proxies: tuple[str, ...] = setting((), parse_list,
                                               "addresses/networks (CIDR) of front proxies whose identity header "
                                               "is believed", "auth")
    realm: str | None = setting(None, parse_text,
                                "one fixed Digest realm for serve (default: the domain of the XUI in each request "
                                "URI, default_domain for the global tree; Kamailio's ha1/ha1b need realm = SIP "
                                "domain)", "auth")
    auth_db: str | None = setting(None, parse_text,
                                  "database URL holding Kamailio's subscriber table for Digest (default: db)", "auth")
    password_column: str = setting("auto", str,
                                   "subscriber column Digest checks: auto (password if set, else ha1/ha1b), "
                                   "password, ha1, ha1b", "auth")
    digest_algorithms: tuple[str, ...] = setting(("MD5", "SHA-256"), parse_list,
                                                 "Digest algorithms offered, in this order (MD5 first: urllib-based "
                                                 "clients such as xcaplib/Blink read only the first challenge; "
                                                 "SHA-256 needs cleartext passwords)", "auth")
    nonce_lifetime: float = setting(300.0, parse_positive,
                                    "seconds a Digest nonce stays valid (then stale=true)", "auth")
    nonce_secret: str | None = setting(None, parse_raw,
                                       "HMAC key for Digest nonces (default: one per user and host, kept in the "
                                       "private runtime directory; set it when processes on several hosts share "
                                       "clients)", "auth")
    metrics_path: str | None = setting("/metrics", parse_text,
                                       "Prometheus metrics, unauthenticated, in front of Digest (needs the extra "
                                       "xcap-wsgi[metrics]: else 501); empty disables it", "metrics")
    metrics_dir: str | None = setting(None, parse_text,
                                      "an empty directory the processes of one server share for Prometheus "
                                      "multiprocess mode (PROMETHEUS_MULTIPROC_DIR): set it under uWSGI with "
                                      "several processes; serve --workers makes one", "metrics")
    basic_auth: bool = setting(False, parse_bool,
                               "also accept HTTP Basic (checked against the subscriber table); only over TLS",
                               "auth")

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            try:
                object.__setattr__(self, spec.name, spec.metadata["parse"](value))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{spec.name}: {exc}") from None
        self._check()

    def _check(self) -> None:
        """Refuse combinations that cannot work (each message names the settings involved)."""
        if not self.root:
            raise ValueError("root: at least one XCAP root is required")
        if self.identity_header and not self.trusted_proxies:
            raise ValueError("identity_header needs trusted_proxies (the proxies allowed to assert identities)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port: {self.port} is not a TCP port")
        if self.max_uri_length < 1:
            raise ValueError(f"max_uri_length: must be at least 1, got {self.max_uri_length}")
        if self.threads < 0:
            raise ValueError(f"threads: must be at least 1 (0: chosen by where the database is), got {self.threads}")
        if self.workers < 0:
            raise ValueError(f"workers: must be at least 1 (0: one per CPU), got {self.workers}")
        if self.max_body_size < 0:
            raise ValueError(f"max_body_size: must not be negative, got {self.max_body_size}")

    # -- building ---------------------------------------------------------------------------------

    @classmethod
    def from_strings(cls, values: Mapping[str, Any], *, base: Settings | None = None) -> Settings:
        """``base`` (default: the defaults) with ``values`` applied: strings or typed values, names
        with ``_`` or ``-``; ``None`` values are skipped; an unknown name is a ``ValueError``."""
        changes = _known(values)
        return replace(base, **changes) if base is not None else cls(**changes)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, *, base: Settings | None = None) -> Settings:
        """``base`` with every ``XCAP_<NAME>`` variable of ``environ`` (default ``os.environ``) applied."""
        environ = os.environ if environ is None else environ
        return cls.from_strings({s.name: environ[s.env] for s in SETTINGS if s.env in environ}, base=base)

    @classmethod
    def from_sources(cls, given: Mapping[str, Any] | None = None, *, config: str | os.PathLike[str] | None = None,
                     environ: Mapping[str, str] | None = None,
                     defaults: Mapping[str, Any] | None = None) -> Settings:
        """Command line (``given``) > ``config`` ini file > environment > ``defaults`` > field defaults."""
        settings = cls.from_strings(defaults or {})
        settings = cls.from_environ(environ, base=settings)
        if config is not None:
            settings = cls.from_strings(read_config(config), base=settings)
        return cls.from_strings(given or {}, base=settings)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (converted and checked like every value)."""
        return self.from_strings(changes, base=self)

    # -- reading ----------------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __getitem__(self, name: str) -> Any:
        """Mapping-style reading (``settings["db"]``), for code written against a dict of values."""
        if name not in BY_NAME:
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in BY_NAME else default

    def middleware_arguments(self) -> dict[str, Any]:
        """The ``XCAPMiddleware`` keyword arguments among the settings (store, policy excluded)."""
        return {s.name: getattr(self, s.name) for s in SETTINGS if s.scope == "middleware"}

    def store_arguments(self) -> dict[str, Any]:
        """``open_store`` keyword arguments for ``db``. The recall cache is never used with SQLite
        (the database is a file of its own beside the documents' users)."""
        if self.recall_cache and self.db.split(":", 1)[0].lower() != "sqlite":
            return {"recall_cache": True}
        return {}


@dataclass(frozen=True)
class Setting:
    """One field of ``Settings`` as the command line, the environment and the docs show it."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    scope: str = "middleware"
    #: The command-line option may be given several times (its values are collected in a list).
    repeatable: bool = False

    @property
    def env(self) -> str:
        return "XCAP_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def negative_flag(self) -> str | None:
        """``--no-NAME`` for a boolean (argparse.BooleanOptionalAction), else None."""
        return "--no-" + self.name.replace("_", "-") if self.is_bool else None

    @property
    def is_bool(self) -> bool:
        return self.parse is parse_bool


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(spec.name, spec.metadata["parse"], spec.default, spec.metadata["help"], spec.metadata["scope"],
            spec.metadata["repeatable"])
    for spec in fields(Settings)
)
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
#: Every default, typed: what keyword defaults elsewhere refer to (``DEFAULTS.max_body_size``).
DEFAULTS = Settings()


def _known(values: Mapping[str, Any]) -> dict[str, Any]:
    known = {}
    for name, value in values.items():
        key = name.replace("-", "_")
        if key not in BY_NAME:
            raise ValueError(f"unknown setting {name!r}")
        if value is not None:
            known[key] = value
    return known


def read_config(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``[xcap-wsgi]`` section of an ini file (names as in ``Settings``, dashes accepted)."""
    config = configparser.ConfigParser()
    if not config.read(path):
        raise ValueError(f"cannot read config file {path}")
    if not config.has_section(CONFIG_SECTION):
        raise ValueError(f"{path} has no [{CONFIG_SECTION}] section")
    return dict(config.items(CONFIG_SECTION))


def resolve(given: Mapping[str, Any] | None = None, *, environ: Mapping[str, str] | None = None,
            defaults: Mapping[str, Any] | None = None) -> Settings:
    """``Settings.from_sources`` under its earlier name (values given > environment > defaults)."""
    return Settings.from_sources(given, environ=environ, defaults=defaults)


# -- the settings reference (docs/settings.md) ----------------------------------------------------


def _show_default(value: Any) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, tuple):
        return "`" + ",".join(value) + "`" if value else "(none)"
    if value is None:
        return "(none)"
    return f"`{value}`"


def reference_markdown() -> str:
    """The table of every setting for docs/settings.md (docs/hooks.py puts it in at build time).
    Booleans also have the ``--no-`` spelling of their option (not a column of its own)."""
    lines = ["| Setting (ini / PasteDeploy) | `serve` option | Environment | Default | Used by | Meaning |",
             "|---|---|---|---|---|---|"]
    for s in SETTINGS:
        help_text = s.help.replace("|", "\\|")
        if s.is_bool:
            help_text += f" (off: `{s.negative_flag}`)"
        lines.append(f"| `{s.name}` | `{s.flag}` | `{s.env}` | {_show_default(s.default)} | {s.scope} | {help_text} |")
    return "\n".join(lines) + "\n"
