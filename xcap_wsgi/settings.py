"""Every setting once: name, type, default, environment variable and help text.

The CLI builds its options from this table, an ini file or the environment can supply the same
names, and ``build_middleware`` turns the values into ``XCAPMiddleware`` arguments, so a setting
is never defined twice.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from .storage import DEFAULT_DATABASE_URL


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
        from .usages import DEFAULT_USAGES

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


@dataclass(frozen=True)
class Setting:
    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    #: "middleware" settings go to XCAPMiddleware; "server" ones to the standalone server only.
    scope: str = "middleware"
    #: The command-line option may be given several times (its values are collected in a list).
    repeatable: bool = False

    @property
    def env(self) -> str:
        return "XCAP_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("db", str, DEFAULT_DATABASE_URL,
            "database URL: sqlite:///path (embedded default) or mysql://user:pass@host[:port]/db", "server"),
    Setting("recall_cache", parse_bool, False,
            "MySQL only: keep each document's last write in a private file on this host (/dev/shm) so the "
            "next element edit skips its read; a copy of users' documents outside the database, hence off",
            "store"),
    Setting("host", str, "127.0.0.1", "address the standalone server listens on", "server"),
    Setting("port", int, 8080, "TCP port the standalone server listens on", "server"),
    Setting("threads", int, 8, "worker threads of the standalone (waitress) server", "server"),
    Setting("workers", int, 1,
            "processes of the standalone server sharing one listening socket (each with --threads threads)",
            "server"),
    Setting("root", parse_list, ("/xcap-root",),
            "XCAP root path(s) below the mount point; several comma-separated aliases allowed, "
            "the first is the one stored in doc_uri"),
    Setting("default_domain", str, "localhost",
            "SIP domain for XUIs and identities that carry none (e.g. users/alice/...)"),
    Setting("anonymous", parse_bool, False,
            "development only: serve without authentication, everyone may read and write everything"),
    Setting("admins", parse_list, (), "identities allowed to write the global tree"),
    Setting("max_body_size", parse_size, 4 * 1024 * 1024, "largest accepted request body in bytes (413 beyond)"),
    Setting("max_uri_length", int, 4096, "longest accepted request URI (414 beyond)"),
    Setting("public_url", lambda v: str(v) or None, None,
            "scheme://host[:port] clients use to reach the server, for absolute URIs behind a proxy"),
    Setting("doc_uri_root", lambda v: str(v) or None, None,
            "path stored in doc_uri before the AUID (default: mount point + first root), "
            "set it to Kamailio's xcap_root when a proxy rewrites paths"),
    Setting("log_requests", parse_bool, False, "log one access line per XCAP request (on by default in serve)"),
    Setting("no_schema_validation", parse_list, (),
            "AUIDs whose resulting documents are not checked against their XML schema (RFC 4826/OMA "
            "constraints still apply)", "usages"),
    Setting("usage", parse_usages, (),
            "generic application usage without a schema, AUID=NAMESPACE;MIME-TYPE (repeat the option, or separate "
            "entries with commas or newlines): documents of any name, checked for well-formed UTF-8 only, stored "
            "with doc_type 64", "usages", repeatable=True),
    Setting("external_references", parse_bool, True,
            "allow references (entry-ref, external, resource-list, OMA external-list) to other users' lists "
            "and other servers, as the RFCs do; false keeps every reference inside the owner's own lists", "usages"),
    Setting("kamailio_rpc", lambda v: str(v).strip() or None, None,
            "Kamailio JSON-RPC URL (jsonrpcs over xhttp, e.g. http://127.0.0.1:5071/RPC) told about every "
            "change so presence and rls re-evaluate watchers", "notify"),
    # -- authentication and authorization (xcap_wsgi.auth, xcap_wsgi.digest) -------------------------
    Setting("trusted_readers", parse_list, (),
            "identities that may read every user's documents (presence server, RLS)", "auth"),
    Setting("public_read", parse_list, ("org.openmobilealliance.pres-content",),
            "AUIDs whose documents every authenticated user may read", "auth"),
    Setting("identity_header", lambda v: str(v).strip() or None, None,
            "asserted-identity header set by a trusted front proxy (e.g. X-3GPP-Intended-Identity); "
            "believed only from --trusted-proxies", "auth"),
    Setting("trusted_proxies", parse_list, (),
            "addresses/networks (CIDR) of front proxies whose identity header is believed", "auth"),
    Setting("realm", lambda v: str(v).strip() or None, None,
            "one fixed Digest realm for serve (default: the domain of the XUI in each request URI, "
            "default_domain for the global tree; Kamailio's ha1/ha1b need realm = SIP domain)", "auth"),
    Setting("auth_db", lambda v: str(v).strip() or None, None,
            "database URL holding Kamailio's subscriber table for Digest (default: db)", "auth"),
    Setting("password_column", str, "auto",
            "subscriber column Digest checks: auto (password if set, else ha1/ha1b), password, ha1, ha1b", "auth"),
    Setting("digest_algorithms", parse_list, ("MD5", "SHA-256"),
            "Digest algorithms offered, in this order (MD5 first: urllib-based clients such as xcaplib/Blink "
            "read only the first challenge; SHA-256 needs cleartext passwords)", "auth"),
    Setting("nonce_lifetime", float, 300.0, "seconds a Digest nonce stays valid (then stale=true)", "auth"),
    Setting("nonce_secret", lambda v: str(v) or None, None,
            "HMAC key for Digest nonces (default: random per process; set it when processes share clients)", "auth"),
    Setting("basic_auth", parse_bool, False,
            "also accept HTTP Basic (checked against the subscriber table); only over TLS", "auth"),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}


def read_config(path: str) -> dict[str, str]:
    """The ``[xcap-wsgi]`` section of an ini file; ``SystemExit`` with the reason when it cannot be read."""
    import configparser

    config = configparser.ConfigParser()
    if not config.read(path):
        raise SystemExit(f"xcap-wsgi: cannot read config file {path}")
    if not config.has_section("xcap-wsgi"):
        raise SystemExit(f"xcap-wsgi: {path} has no [xcap-wsgi] section")
    return dict(config.items("xcap-wsgi"))


def resolve(given: dict[str, Any] | None = None, *, environ: dict | None = None,
            defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge values: ``given`` (command line, ini) over environment variables over defaults.

    Unknown names are an error, so a typo in a config file does not pass silently.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        values[setting.name] = (defaults or {}).get(setting.name, setting.default)
        if setting.env in environ:
            values[setting.name] = setting.parse(environ[setting.env])
    for name, value in (given or {}).items():
        key = name.replace("-", "_")
        if key not in BY_NAME:
            raise ValueError(f"unknown setting {name!r}")
        if value is not None:
            values[key] = BY_NAME[key].parse(value)
    return values


def middleware_arguments(values: dict[str, Any]) -> dict[str, Any]:
    """The ``XCAPMiddleware`` keyword arguments among resolved settings (store excluded)."""
    return {s.name: values[s.name] for s in SETTINGS if s.scope == "middleware"}


def store_arguments(values: dict[str, Any]) -> dict[str, Any]:
    """``open_store`` keyword arguments for ``db`` from the "store" settings. The recall cache is
    never used with SQLite (the database is a file of its own beside the documents' users)."""
    from urllib.parse import urlsplit

    if values.get("recall_cache") and urlsplit(values["db"]).scheme.lower() != "sqlite":
        return {"recall_cache": True}
    return {}


def authorization_arguments(values: dict[str, Any]) -> dict[str, Any]:
    """``policy`` and ``identity`` for ``XCAPMiddleware`` from the "auth" settings."""
    from .auth import DefaultPolicy, TrustedProxyIdentity, remote_user

    identity = remote_user
    if values.get("identity_header"):
        if not values.get("trusted_proxies"):
            raise ValueError("identity_header needs trusted_proxies (the proxies allowed to assert identities)")
        identity = TrustedProxyIdentity(values["identity_header"], values["trusted_proxies"])
    policy = DefaultPolicy(default_domain=values["default_domain"], admins=values.get("admins", ()),
                           trusted=values.get("trusted_readers", ()),
                           public_read=values.get("public_read", ()))
    return {"policy": policy, "identity": identity}


def usage_registry(values: dict[str, Any]):
    """The application usages as configured: the shipped ones plus the generic ``usage`` entries,
    schema validation off for the AUIDs in ``no_schema_validation``, references kept local when
    ``external_references`` is false."""
    from .usages import default_registry, generic_usage
    from .validation import without_schema_validation

    registry = default_registry()
    for entry in values.get("usage") or ():
        auid, namespace, mime_type = parse_usage(entry)
        if auid in registry:
            raise ValueError(f"usage {entry!r}: {auid} is already an application usage of xcap-wsgi")
        registry.register(generic_usage(auid, namespace, mime_type))
    if values.get("no_schema_validation"):
        registry = without_schema_validation(registry, values["no_schema_validation"])
    if not values.get("external_references", True):
        from .constraints import with_local_references_only

        registry = with_local_references_only(registry)
    return registry


def build_middleware(app, values: dict[str, Any], **overrides):
    """An ``XCAPMiddleware`` around ``app`` from resolved settings (opens the store from ``db``)."""
    from .middleware import XCAPMiddleware
    from .storage import open_store

    arguments = middleware_arguments(values)
    arguments.update(authorization_arguments(values))
    arguments["usages"] = usage_registry(values)
    if values.get("kamailio_rpc"):
        from .notify import KamailioNotifier

        arguments["on_change"] = [KamailioNotifier(values["kamailio_rpc"])]
    arguments.update(overrides)
    store = arguments.pop("store", None) or open_store(values["db"], **store_arguments(values))
    return XCAPMiddleware(app, store=store, **arguments)
