"""Account names: which ``(user, domain)`` pairs may log in or be created, and what an identity names.

Why: the authorization layer compares the authenticated identity with the XUI's owner as
``(user, domain)`` pairs. If two different accounts of Kamailio's ``subscriber`` table could be
read as the same pair (``bob:evil@example.com``, ``sip:bob@example.com`` as a *user* name, bob in
domain ``example.com:5060``...), one would own the other's documents (issue 16). Two rules:

* **unambiguous** (``account_problem``), for logging in and for identities: the user part is not
  empty, has no ``:`` or ``@`` (so it never reads as a URI scheme, a password or a domain), no
  control characters and no surrounding whitespace; the domain is a host name (letters, digits,
  ``-``, ``_``, dots; no trailing dot, port or parameters), a dotted-quad IPv4 address, or an IPv6
  address in brackets in its compressed form. Under this rule ``user@domain`` splits one way only,
  so distinct accounts give distinct pairs (the domain compared case-insensitively);
* **canonical** (``name_problem``), for creating accounts (``adduser``): unambiguous, at most 64
  characters each (Kamailio's columns), and a user part of RFC 3261 user characters other than
  ``%`` (escapes), ``;``, ``?`` and ``/``: names that are also plain in a SIP URI.

``identity_account`` maps an identity string to its pair, or None when it is not unambiguous.
``user@domain`` (what Digest sets) must be exactly that; a ``sip:``/``sips:`` URI (an asserted
identity from a trusted proxy) may carry a port and parameters, which are not part of the account
(RFC 3261 §10.3: an address-of-record has none); ``tel:NUMBER`` and a bare ``user`` are users of the
default domain. A Digest identity has no ``:`` in its user part, so it can never read as a URI.
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
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def user_problem(user: str) -> str | None:
    """Why ``user`` is not an unambiguous user part, or None."""
    if not user:
        return "the user part is empty"
    if ":" in user or "@" in user:
        return f"the user part {user!r} contains ':' or '@' (it would read as a URI scheme, password or domain)"
    if _CONTROL.search(user) or user.strip() != user:
        return f"the user part {user!r} has control characters or surrounding whitespace"
    return None


def name_problem(user: str, domain: str) -> str | None:
    """Why ``(user, domain)`` may not be *created* (the canonical rule, see the module doc), or None."""
    problem = account_problem(user, domain)
    if problem:
        return problem
    if len(user) > MAX_PART:
        return f"the user part is longer than {MAX_PART} characters"
    if not _USER.fullmatch(user):
        return (f"the user part {user!r} may only contain letters, digits and - _ . ! ~ * ' ( ) & = + $ , "
                "(no ';' '?' '/' '%', spaces or other characters that a SIP URI must escape)")
    return None


def host_problem(host: str) -> str | None:
    """Why ``host`` is not a canonical host (case aside: hosts compare case-insensitively), or None."""
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
    """Why ``(user, domain)`` is not an unambiguous account name (may not log in), or None."""
    return user_problem(user) or host_problem(domain)


def identity_account(identity: str, default_domain: str) -> tuple[str, str] | None:
    """The ``(user, lower-cased domain)`` an identity names, or None when it is not unambiguous.

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
        if not _PORT.fullmatch(port) or "?" in user or account_problem(user, host):
            return None  # "?" in a URI's user part would start its headers for another parser
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
