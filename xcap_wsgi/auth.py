"""Who is asking, and may they? Identity comes from the host's WSGI stack; policy decides.

The host authenticates (Flask-Login, Pyramid security, a front proxy, or xcap-wsgi's own
``DigestAuthMiddleware``) and leaves the identity in ``REMOTE_USER``, or the middleware is given a
callable ``identity(environ) -> str | None`` (``TrustedProxyIdentity`` reads an asserted-identity
header from trusted front proxies only).

``DefaultPolicy`` is RFC 4825's default authorization (§5.7): a user reads and writes their own
home directory; the global tree is readable by any authenticated user and writable only by
configured admins. On top of it: trusted readers (the presence server, the RLS) may read every
user's documents; public-read AUIDs (OMA pres-content: status icons) may be read by any
*authenticated* user; per-AUID overrides replace the whole decision for one AUID.

No identity gives 401 (authenticate and retry); an identity without the right gives 403, never
401. Identities and XUIs are compared as Kamailio accounts ``(user, domain)``: the host is
case-insensitive, the user part is case-sensitive, and a missing domain means the default domain.
An XUI is mapped as Kamailio parses a URI (``uri.xui_account``: scheme, port and URI parameters
dropped); the URI parser has already percent-decoded it (exactly once), so
``sip%3Aalice%40EXAMPLE.com`` *is* ``sip:alice@example.com``. An identity is mapped strictly
(``accounts.identity_account``): ``user@domain`` exactly, ``user`` (default domain), or a
``sip:``/``sips:``/``tel:`` URI, and only when the user part has no ``:`` or ``@``, no control
characters or surrounding whitespace and the host is a plain host name or IP address; anything
else (``bob:evil@example.com``, ``bob@example.com:5060``, ``tel:bob@example.com``...) names no
account and gets 403, so two different accounts never own the same XUI (issue 16).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Callable, Iterable, Mapping, Protocol

from webob.exc import HTTPForbidden, HTTPNotFound, HTTPUnauthorized

from .accounts import identity_account
from .settings import DEFAULTS
from .uri import XCAPURI, xui_account

log = logging.getLogger("xcap_wsgi.auth")

IdentityResolver = Callable[[dict], "str | None"]

#: AUIDs whose documents any authenticated user may read (OMA presence content: status icons).
DEFAULT_PUBLIC_READ = DEFAULTS.public_read


def remote_user(environ: dict) -> str | None:
    """The default identity resolver: ``REMOTE_USER`` as set by the host stack."""
    return environ.get("REMOTE_USER") or None


def account(identity: str, default_domain: str) -> tuple[str, str] | None:
    """The ``(user, domain)`` an identity names, or None when it is not an unambiguous account name
    (see the module doc and ``xcap_wsgi.accounts``)."""
    return identity_account(identity, default_domain)


class Policy(Protocol):
    def authorize(self, identity: str | None, uri: XCAPURI, *, write: bool) -> None:
        """Return if allowed; raise HTTPUnauthorized (no identity) or HTTPForbidden (not allowed)."""


def _unauthorized() -> HTTPUnauthorized:
    return HTTPUnauthorized(detail="authentication required")


#: AUIDs whose global documents hold every user's data: readable by trusted principals and admins
#: only (RFC 4826 §4.4.7: the rls-services global index is for the RLS, not for users).
RESTRICTED_GLOBAL = ("rls-services",)
#: AUIDs whose global documents anyone may read, without logging in: xcap-caps (RFC 4825 §12) only
#: says what the server supports, and clients read it before they log in (see digest._public).
PUBLIC_GLOBAL = ("xcap-caps",)
#: Bound of each DefaultPolicy's account cache (emptied when full).
_ACCOUNTS_MAX = 1024


class DefaultPolicy:
    """RFC 4825 §5.7 default policy, plus trusted readers, public-read AUIDs and per-AUID overrides.

    * ``admins``: identities that may also write the global tree.
    * ``trusted``: identities that may read (not write) every user's documents (presence server, RLS).
    * ``public_read``: AUIDs whose users-tree documents every authenticated user may read.
    * ``restricted_global``: AUIDs whose global documents only trusted principals and admins read
      (anyone else gets 404: the document is hidden, not forbidden).
    * ``overrides``: ``{auid: policy}``; that policy alone decides for its AUID (including the
      no-identity case: it may allow anonymous access).
    """

    def __init__(
        self,
        *,
        default_domain: str = DEFAULTS.default_domain,
        admins: Iterable[str] = (),
        trusted: Iterable[str] = (),
        public_read: Iterable[str] = DEFAULT_PUBLIC_READ,
        overrides: Mapping[str, Policy] | None = None,
        restricted_global: Iterable[str] = RESTRICTED_GLOBAL,
    ):
        self.default_domain = default_domain
        self._accounts: dict = {}  # see account()
        self.admins = frozenset(self._configured(a, "admins") for a in admins if a.strip())
        self.trusted = frozenset(self._configured(t, "trusted") for t in trusted if t.strip())
        self.public_read = frozenset(public_read)
        self.overrides = dict(overrides or {})
        self.restricted_global = frozenset(restricted_global)

    def _configured(self, name: str, setting: str) -> tuple[str, str]:
        found = account(name.strip(), self.default_domain)
        if found is None:
            raise ValueError(f"{setting}: {name!r} is not an unambiguous account name (user@domain, user, "
                             "or sip:user@domain; see xcap_wsgi.accounts)")
        return found

    def account(self, identity: str) -> tuple[str, str] | None:
        """``account()`` in this policy's default domain, remembered: every request maps its
        identity, and clients repeat the same few."""
        return self._remembered("identity", identity, account)

    def owner(self, xui: str) -> tuple[str, str]:
        """The account whose home ``xui`` is, as the store keys it (``uri.xui_account``)."""
        return self._remembered("xui", xui, xui_account)

    def _remembered(self, kind: str, text: str, mapping) -> tuple[str, str] | None:
        key = (kind, text, self.default_domain)
        try:
            return self._accounts[key]
        except KeyError:
            pass
        found = mapping(text, self.default_domain)
        if len(self._accounts) >= _ACCOUNTS_MAX:
            self._accounts.clear()
        self._accounts[key] = found
        return found

    def authorize(self, identity: str | None, uri: XCAPURI, *, write: bool) -> None:
        override = self.overrides.get(uri.auid)
        if override is not None:
            return override.authorize(identity, uri, write=write)
        if not identity:
            if not write and uri.tree == "global" and uri.auid in PUBLIC_GLOBAL:
                return
            raise _unauthorized()
        who = self.account(identity)
        if who is None:
            log.warning("refusing identity %r: not an unambiguous account name", identity[:200])
            raise HTTPForbidden(detail="the authenticated identity is not an unambiguous account name")
        if uri.tree == "global":
            if uri.auid in self.restricted_global and who not in self.trusted | self.admins:
                # Hidden rather than forbidden: RFC 9110 §15.5.4 (403) lets a server answer 404 for a
                # resource it will not show, and clients treat a 404 index as "none for me".
                raise HTTPNotFound(detail=f"no global {uri.auid} document")
            if write and who not in self.admins:
                raise HTTPForbidden(detail="the global tree is read-only")
            return
        if uri.xui is not None and who == self.owner(uri.xui):
            return
        if not write and (who in self.trusted or uri.auid in self.public_read):
            return
        raise HTTPForbidden(detail=f"{identity} may not {'modify' if write else 'read'} the documents of {uri.xui}")


class ReadOnlyPolicy:
    """A per-AUID override: everyone authenticated reads, nobody writes (e.g. a provisioned AUID)."""

    def authorize(self, identity: str | None, uri: XCAPURI, *, write: bool) -> None:
        if not identity:
            raise _unauthorized()
        if write:
            raise HTTPForbidden(detail=f"{uri.auid} is read-only")


class AllowAll:
    """Development policy for ``--anonymous``: everyone may do everything. Never in production."""

    def authorize(self, identity: str | None, uri: XCAPURI, *, write: bool) -> None:
        return None


# -- identity from a trusted front proxy -------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_asserted_identity(value: str) -> str | None:
    """The URI in an asserted-identity header value, or None when it is not usable.

    Accepts ``sip:alice@example.com``, ``"sip:alice@example.com"``, ``<sip:alice@example.com>``
    and ``"Alice" <sip:alice@example.com>`` (the first URI only when several are listed).
    """
    text = value.strip()
    if not text or _CONTROL.search(text):
        return None
    if "<" in text:
        inner = text[text.index("<") + 1:]
        if ">" not in inner:
            return None
        text = inner[: inner.index(">")]
    else:
        text = text.split(",", 1)[0].strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            text = text[1:-1]
    text = text.strip()
    if not text or any(ch in text for ch in ' "<>,'):
        return None
    lowered = text.lower()
    if lowered.startswith(("sip:", "sips:", "tel:")) or "@" in text:
        return text
    return None


def parse_networks(items: Iterable[str]) -> tuple:
    """``ipaddress`` networks from addresses or CIDR blocks (``10.0.0.0/8``, ``::1``, ``127.0.0.1``)."""
    networks = []
    for item in items:
        item = item.strip()
        if item:
            networks.append(ipaddress.ip_network(item, strict=False))
    return tuple(networks)


def address_in(address: str, networks: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


class TrustedProxyIdentity:
    """Identity resolver: an asserted-identity header, believed only from trusted proxy addresses.

    ``header`` is the HTTP header name (e.g. ``X-3GPP-Intended-Identity``); ``proxies`` lists
    addresses or networks. The header is used only when ``REMOTE_ADDR`` (the TCP peer as the WSGI
    server saw it) is in ``proxies``; from anyone else it is ignored and logged, and the identity
    falls back to ``fallback(environ)`` (``REMOTE_USER`` by default, e.g. set by Digest).
    """

    def __init__(self, header: str, proxies: Iterable[str], *, fallback: IdentityResolver | None = remote_user):
        if not header.strip():
            raise ValueError("an asserted-identity header name is required")
        self.header = header.strip()
        self.environ_key = "HTTP_" + self.header.upper().replace("-", "_")
        self.networks = parse_networks(proxies)
        self.fallback = fallback

    def __call__(self, environ: dict) -> str | None:
        value = environ.get(self.environ_key)
        if value is not None:
            peer = environ.get("REMOTE_ADDR", "")
            if not address_in(peer, self.networks):
                log.warning("ignoring %s header from untrusted peer %s", self.header, peer or "?")
            else:
                identity = parse_asserted_identity(value)
                if identity is not None:
                    return identity
                log.warning("ignoring malformed %s header %r from %s", self.header, value[:200], peer)
        return self.fallback(environ) if self.fallback is not None else None

    def is_asserted(self, environ: dict) -> bool:
        """Whether this request carries an identity asserted by a trusted proxy."""
        value = environ.get(self.environ_key)
        return (value is not None and address_in(environ.get("REMOTE_ADDR", ""), self.networks)
                and parse_asserted_identity(value) is not None)
