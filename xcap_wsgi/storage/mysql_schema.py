"""Kamailio's ``xcap`` table schema in MySQL/MariaDB: the start-up check and ``initdb``.

The store (``mysql.py``) checks the ``version`` row ``('xcap', 4)`` and the table's columns at
start-up (``check_xcap_schema``) and raises ``SchemaMismatch`` otherwise. ``initdb(url)`` creates
``version`` and ``xcap`` with Kamailio's exact DDL (``kamailio_ddl.py``) when they are absent; it
never alters an existing table, so a database Kamailio created stays exactly Kamailio's.
"""

from __future__ import annotations

import pymysql
from pymysql.constants import ER

from . import kamailio_ddl
from .base import SchemaMismatch, StoreUnavailable
from .kamailio import XCAP_TABLE_VERSION as KAMAILIO_XCAP_TABLE_VERSION
from .mysql_connection import error_code as _error_code
from .mysql_url import parse_url, safe_url as _safe_url

__all__ = ["check_xcap_schema", "initdb"]


def check_xcap_schema(connection, table: str, url: str) -> int:
    """Raise ``SchemaMismatch`` unless the version row of ``table`` is 4 and Kamailio's columns are
    there; return the server's ``max_allowed_packet`` (the store refuses larger documents early)."""
    with connection.cursor() as cursor:
        try:
            cursor.execute("SELECT table_version FROM version WHERE table_name=%s", (table,))
        except pymysql.err.ProgrammingError as exc:
            if _error_code(exc) == ER.NO_SUCH_TABLE:
                raise SchemaMismatch(
                    f"{url}: no 'version' table; create Kamailio's tables (kamdbctl create) "
                    f"or run 'xcap-wsgi initdb --db <url>'"
                ) from exc
            raise
        rows = cursor.fetchall()
        if not rows:
            raise SchemaMismatch(
                f"{url}: the version table has no row for {table!r}; Kamailio's xcap table "
                f"version {KAMAILIO_XCAP_TABLE_VERSION} is required (run 'xcap-wsgi initdb --db <url>')"
            )
        if int(rows[0][0]) != KAMAILIO_XCAP_TABLE_VERSION:
            raise SchemaMismatch(
                f"{url}: table {table!r} has version {rows[0][0]}, xcap-wsgi shares Kamailio's "
                f"xcap table version {KAMAILIO_XCAP_TABLE_VERSION} only"
            )
        cursor.execute("SELECT @@max_allowed_packet")
        max_allowed_packet = int(cursor.fetchone()[0])
        try:
            cursor.execute(f"SELECT {', '.join(kamailio_ddl.XCAP_COLUMNS)} FROM `{table}` LIMIT 0")
        except (pymysql.err.ProgrammingError, pymysql.err.OperationalError) as exc:
            if _error_code(exc) in (ER.NO_SUCH_TABLE, ER.BAD_FIELD_ERROR):
                raise SchemaMismatch(
                    f"{url}: table {table!r} is missing or lacks Kamailio's columns: {exc}"
                ) from exc
            raise
    return max_allowed_packet


def initdb(url: str) -> str:
    """Create Kamailio's ``version`` and ``xcap`` tables if absent; return what was done.

    Uses Kamailio 5.6's exact DDL (no ENGINE/CHARSET: the database defaults apply, as with
    kamdbctl). Never alters an existing table. Raises ``SchemaMismatch`` when an existing table
    or version row is not Kamailio's xcap version 4, ``StoreUnavailable`` when the server is down.
    """
    parsed = parse_url(url)
    connect = parsed["connect"]
    table = parsed.get("table", "xcap")
    if table != "xcap":
        raise ValueError("initdb creates Kamailio's default table name 'xcap' only")
    try:
        connection = pymysql.connect(
            **connect,
            charset=parsed.get("charset", "utf8mb4"),
            connect_timeout=parsed.get("connect_timeout", 5),
            autocommit=True,
        )
    except (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError) as exc:
        raise StoreUnavailable(f"{_safe_url(connect)}: cannot connect: {exc}") from exc
    done = []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW TABLES")
            tables = {row[0] for row in cursor.fetchall()}
            if "version" not in tables:
                cursor.execute(kamailio_ddl.VERSION_TABLE_DDL)
                cursor.execute(kamailio_ddl.VERSION_ROW_VERSION)
                done.append("created table 'version'")
            cursor.execute("SELECT table_version FROM version WHERE table_name='xcap'")
            row = cursor.fetchone()
            if "xcap" in tables:
                if row is None:
                    raise SchemaMismatch(
                        f"{_safe_url(connect)}: table 'xcap' exists but the version table has no 'xcap' row; "
                        "refusing to guess its layout (Kamailio's xcap table is version 4)"
                    )
                if int(row[0]) != KAMAILIO_XCAP_TABLE_VERSION:
                    raise SchemaMismatch(
                        f"{_safe_url(connect)}: table 'xcap' has version {row[0]}; xcap-wsgi needs "
                        f"version {KAMAILIO_XCAP_TABLE_VERSION} (upgrade it with Kamailio's tools)"
                    )
            else:
                if row is not None and int(row[0]) != KAMAILIO_XCAP_TABLE_VERSION:
                    raise SchemaMismatch(
                        f"{_safe_url(connect)}: the version table says 'xcap' is version {row[0]} "
                        "but there is no xcap table"
                    )
                cursor.execute(kamailio_ddl.XCAP_TABLE_DDL)
                for statement in kamailio_ddl.XCAP_INDEXES_DDL:
                    cursor.execute(statement)
                done.append("created table 'xcap'")
                if row is None:
                    cursor.execute(kamailio_ddl.XCAP_VERSION_ROW)
                    done.append("inserted version row ('xcap', 4)")
    finally:
        connection.close()
    if not done:
        return f"{_safe_url(connect)}: Kamailio's xcap table (version 4) is already there; nothing to do"
    return f"{_safe_url(connect)}: " + "; ".join(done)
