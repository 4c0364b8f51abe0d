"""``mysql://`` URLs: pymysql connection arguments and the options of the connection layer.

Shared by the document store (``storage.mysql``) and the subscriber table
(``storage.subscribers``); the URL forms and options are documented in ``storage.mysql``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["parse_url", "safe_url"]


def parse_url(url: str) -> dict:
    """pymysql connection arguments and store options from a ``mysql://`` URL."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("mysql", "mysql+pymysql", "mariadb"):
        raise ValueError(f"not a MySQL URL: {url!r}")
    hosts = _hosts(url, parts.netloc.rpartition("@")[2])
    if len(hosts) > 1:  # urlsplit's hostname/port do not know host lists; parse them ourselves
        parts = urlsplit(url.replace(parts.netloc, parts.netloc.rpartition("@")[0] + "@" + "h", 1))
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ValueError(f"MySQL URL {url!r} must name one database: mysql://user:pass@host/database")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    connect: dict[str, Any] = {  # keyword arguments of pymysql.connect
        "user": unquote(parts.username) if parts.username else "",
        "password": unquote(parts.password) if parts.password is not None else "",
        "database": database,
    }
    unix_socket = options.pop("unix_socket", None)
    if unix_socket:
        connect["unix_socket"] = unix_socket
    else:
        connect["host"] = parts.hostname or "localhost"
        connect["port"] = parts.port or 3306
    result: dict[str, Any] = {"connect": connect}
    if len(hosts) > 1:
        if unix_socket:
            raise ValueError(f"MySQL URL {url!r}: unix_socket and several hosts exclude each other")
        connect["host"], connect["port"] = hosts[0]
        result["hosts"] = hosts
    ssl_ca = options.pop("ssl_ca", None)
    ssl_mode = options.pop("ssl", "required" if ssl_ca else "disabled")
    if ssl_mode not in ("disabled", "preferred", "required") or (ssl_ca and ssl_mode != "required"):
        raise ValueError(f"MySQL URL {url!r}: ssl must be disabled, preferred or required "
                         f"(ssl_ca only with required), not {ssl_mode!r}")
    if ssl_mode == "disabled":
        connect["ssl_disabled"] = True
    elif ssl_mode == "preferred":  # PyMySQL's own default: TLS when the server offers it, unverified
        connect["ssl_disabled"] = False
    elif ssl_mode == "required":  # PyMySQL requires TLS for any non-empty ssl dict
        connect["ssl"] = {"ca": ssl_ca} if ssl_ca else {"check_hostname": False}
    ints = ("pool_size", "retry_after", "deadlock_retries", "lock_wait_timeout", "wsrep_sync_wait")
    floats = ("pool_timeout", "connect_timeout", "read_timeout", "write_timeout")
    for name, value in options.items():
        try:
            if name in ints:
                result[name] = int(value)
            elif name in floats:
                result[name] = float(value)
            elif name in ("table", "charset"):
                result[name] = value
            elif name == "driver":  # auto (the C driver mysqlclient when installed) / pymysql / mysqlclient
                if value not in ("auto", "pymysql", "mysqlclient"):
                    raise ValueError("expected auto, pymysql or mysqlclient")
                result[name] = value
            else:
                raise ValueError(f"unknown option {name!r}")
        except ValueError as exc:
            raise ValueError(f"MySQL URL {url!r}: bad option {name}={value!r}: {exc}") from None
    return result


def _hosts(url: str, hostlist: str) -> list[tuple[str, int]]:
    """``h1[:p1],[v6]:p2,...`` -> [(host, port), ...] (port 3306 by default)."""
    hosts = []
    for item in hostlist.split(","):
        match = re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]*)(?::(\d*))?", item)
        if not match or (len(hostlist.split(",")) > 1 and not match.group(1)):
            raise ValueError(f"MySQL URL {url!r}: bad host {item!r}")
        port = int(match.group(2)) if match.group(2) else 3306
        if not 0 < port < 65536:
            raise ValueError(f"MySQL URL {url!r}: bad port in {item!r}")
        hosts.append((match.group(1).strip("[]") or "localhost", port))
    return hosts


def safe_url(connect: dict) -> str:
    """The URL without its password, for messages and logs."""
    where = connect.get("unix_socket") or f"{connect.get('host')}:{connect.get('port')}"
    return f"mysql://{connect.get('user')}@{where}/{connect.get('database')}"
