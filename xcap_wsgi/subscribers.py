"""Kamailio's ``subscriber`` table (module auth_db): SIP accounts for Digest login.

The table code (SQLite and MySQL, on the document store's connection layer) lives in
``xcap_wsgi.storage.subscribers``; this module re-exports it and adds the account naming rule of
``adduser``: ``split_account`` accepts canonical names only (``xcap_wsgi.accounts``).
"""

from __future__ import annotations

from .accounts import name_problem
from .storage.subscribers import (
    MYSQL_DDL,
    SQLITE_DDL,
    SUBSCRIBER_TABLE_VERSION,
    MySQLSubscribers,
    SQLiteSubscribers,
    Subscriber,
    SubscriberError,
    check_table,
    kamailio_hashes,
    open_subscribers,
)

__all__ = ["MYSQL_DDL", "SQLITE_DDL", "SUBSCRIBER_TABLE_VERSION", "MySQLSubscribers", "SQLiteSubscribers",
           "Subscriber", "SubscriberError", "check_table", "kamailio_hashes", "open_subscribers", "split_account"]


def split_account(text: str) -> tuple[str, str]:
    """``user@domain`` (or ``sip:user@domain``) as ``(user, lower-cased domain)``.

    Raises ValueError unless the name is canonical (``xcap_wsgi.accounts.name_problem``): an account whose name
    only looks like another's (``bob:evil@example.com``, ``sip:sip:bob@example.com``, bob in
    ``example.com:5060``) could otherwise be confused with it.
    """
    value = text
    if value[:5].lower().startswith(("sip:", "sips:")):
        value = value.split(":", 1)[1]
    user, at, domain = value.partition("@")
    if not at or not user or not domain:
        raise ValueError(f"expected USER@DOMAIN, got {text!r}")
    problem = name_problem(user, domain)
    if problem:
        raise ValueError(f"refusing {text!r}: {problem}")
    return user, domain.lower()
