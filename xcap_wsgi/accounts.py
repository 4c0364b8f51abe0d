"""Canonical account names: which ``(user, domain)`` pairs may log in, and what an identity names.

Why: the authorization layer compares the authenticated identity with the XUI's owner as
``(user, domain)`` pairs. If two different accounts of Kamailio's ``subscriber`` table could be
read as the same pair (``bob:evil@example.com``, ``sip:bob@example.com`` as a *user* name, bob in
domain ``example.com:5060``...), one would own the other's documents (issue 16). So:

* an account name is *canonical* when its user part is made of RFC 3261 user characters other
  than ``%`` (escapes), ``;``, ``?`` and ``/`` (URI syntax), and its domain is a host name
  (letters, digits, ``-``, ``_``, dots, no trailing dot), a dotted-quad IPv4 address, or an IPv6
  address in brackets in its compressed form; neither has whitespace or control characters;
* only canonical accounts are created (``adduser``) or logged in (``DigestAuthMiddleware``);
* ``identity_account`` maps an identity string to its pair and answers None for anything that is
  not canonical. ``user@domain`` (what Digest sets) must be exactly that; a ``sip:``/``sips:`` URI
  (an asserted identity from a trusted proxy) may carry a port and parameters, which are not part of
  the account (RFC 3261 §10.3: the address-of-record has none); ``tel:NUMBER`` and a bare ``user``
  are users of the default domain.

Since a canonical user part contains no ``:`` and no ``@``, an identity that Digest produced can
never be read as a URI or as another ``user@domain``: distinct accounts give distinct pairs.
"""

from __future__ import annotations

import ipaddress
import re

#: Kamailio's subscriber columns are VARCHAR(64).
MAX_PART = 64

# RFC 3261 §25.1 ``user`` = unreserved / escaped / user-unreserved, without escaped and ; ? /.
_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,]+")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PORT = re.compile(r"(?::[0-9]{1,5})?")


def user_problem(user: str) -> str | None:
    """Why ``user`` is not a canonical user part, or None."""
    if not user:
        return "the user part is empty"
    if len(user) > MAX_PART:
        return f"the user part is longer than {MAX_PART} characters"
    if not _USER.fullmatch(user):
        return (f"the user part {user!r} may only contain letters, digits and - _ . ! ~ * ' ( ) & = + $ , "
                "(no ':' '@' ';' '?' '/' '%', spaces or URI schemes)")
    return None


def host_problem(host: str) -> str | None:
    """Why ``host`` is not a canonical domain (case aside: hosts compare case-insensitively), or None."""
    if not host:
        return "the domain is empty"
    if len(host) > MAX_PART:
        return f"the domain is longer than {MAX_PART} characters"
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1]) if host.endswith("]") else None
        except ValueError:
            address = None
        if address is None or f"[{address.compressed}]" != host.lower():
            return f"the domain {host!r} is not an IPv6 address in brackets in its compressed form"
        return None
    if not _HOSTNAME.fullmatch(host):
        return (f"the domain {host!r} must be a host name (letters, digits, '-', '_', dots; no trailing dot, "
                "port, ';' parameters or spaces) or an IP address")
    labels = host.split(".")
    if all(label.isdigit() for label in labels):
        try:
            if str(ipaddress.IPv4Address(host)) == host:
                return None
        except ValueError:
            pass
        return f"the domain {host!r} is not an IPv4 address in dotted-quad form"
    return None


def account_problem(user: str, domain: str) -> str | None:
    """Why ``(user, domain)`` is not a canonical account name, or None when it is."""
    return user_problem(user) or host_problem(domain)


def identity_account(identity: str, default_domain: str) -> tuple[str, str] | None:
    """The ``(user, lower-cased domain)`` an identity names, or None when it is not canonical.

    ``user@domain`` and ``user`` (default domain) exactly; ``sip:``/``sips:`` URIs (scheme case-
    insensitive) whose user and host are canonical, port and URI parameters ignored; ``tel:``
    numbers (parameters ignored) in the default domain. See the module docstring.
    """
    text = identity
    lowered = text[:5].lower()
    if lowered.startswith(("sip:", "sips:")):
        rest = text[text.index(":") + 1:]
        user, at, hostport = rest.partition("@")
        if not at:
            return None
        hostport = re.split(r"[;?]", hostport, maxsplit=1)[0]
        if hostport.startswith("["):
            end = hostport.find("]") + 1
            host, port = (hostport[:end], hostport[end:]) if end else (hostport, "")
        else:
            host, colon, port = hostport.partition(":")
            port = colon + port
        if not _PORT.fullmatch(port) or account_problem(user, host):
            return None
        return user, host.lower()
    if lowered.startswith("tel:"):
        number = text[4:].split(";", 1)[0]
        return None if user_problem(number) else (number, default_domain.lower())
    user, at, host = text.partition("@")
    if not at:
        return None if user_problem(user) else (user, default_domain.lower())
    if account_problem(user, host):
        return None
    return user, host.lower()
