"""Who is asking, and may they? Identity comes from the host's WSGI stack; policy decides.

The host authenticates (Flask-Login, Pyramid security, a front proxy, or xcap-wsgi's own Digest
middleware) and leaves the identity in ``REMOTE_USER``, or the middleware is given a callable
``identity(environ) -> str | None``. ``DefaultPolicy`` is RFC 4825's default authorization: a
user reads and writes their own home directory; the global tree is readable by any
authenticated user and writable only by configured admins.
"""

from __future__ import annotations

from typing import Callable, Iterable, Protocol

from webob.exc import HTTPForbidden, HTTPUnauthorized

from .uri import XCAPURI, xui_account

IdentityResolver = Callable[[dict], "str | None"]


def remote_user(environ: dict) -> str | None:
    """The default identity resolver: ``REMOTE_USER`` as set by the host stack."""
    return environ.get("REMOTE_USER") or None


class Policy(Protocol):
    def authorize(self, identity: str | None, uri: XCAPURI, *, write: bool) -> None:
        """Return if allowed; raise HTTPUnauthorized (no identity) or HTTPForbidden (not allowed)."""


class DefaultPolicy:
    """RFC 4825 §5.7 default policy. ``admins`` (identities) may also write the global tree."""

    def __init__(self, *, default_domain: str = "localhost", admins: Iterable[str] = ()):
        self.default_domain = default_domain
        self.admins = {xui_account(a, default_domain) for a in admins}

    def account(self, identity_or_xui: str) -> tuple[str, str]:
        return xui_account(identity_or_xui, self.default_domain)

    def authorize(self, identity: str | None, uri: XCAPURI, *, write: bool) -> None:
        if identity is None:
            raise HTTPUnauthorized(detail="authentication required")
        who = self.account(identity)
        if uri.tree == "global":
            if write and who not in self.admins:
                raise HTTPForbidden(detail="the global tree is read-only")
            return
        if who != self.account(uri.xui):
            raise HTTPForbidden(detail=f"{identity} may not access the documents of {uri.xui}")


class AllowAll:
    """Development policy for ``--anonymous``: everyone may do everything. Never in production."""

    def authorize(self, identity: str | None, uri: XCAPURI, *, write: bool) -> None:
        return None
