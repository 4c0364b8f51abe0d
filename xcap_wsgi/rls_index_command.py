"""``xcap-wsgi rls-index [--rebuild]``: report, or rebuild, the rls-services service-URI side
table (``xcap_wsgi.rls_index``). Kept apart from ``rls_index``, which the rls-services usage
imports, because the command runs through the operator commands' ``admin.commands.run_command``.
"""

from __future__ import annotations

from .admin.commands import run_command as _run
from .rls_index import drift, rebuild


def add_command(commands) -> None:
    """``xcap-wsgi rls-index [--rebuild]``: report, or rebuild, the service-URI side table."""
    parser = commands.add_parser(
        "rls-index", help="report or rebuild the rls-services service-URI side table",
        description="Compare the rls-services service-URI side table with a full scan of the rls-services "
        "rows and print every difference (exit 1 if any); with --rebuild, create the table if absent and "
        "refill it. Run --rebuild after tools other than xcap-wsgi (Kamailio's xcap_server, SQL) wrote "
        "rls-services documents.")
    parser.add_argument("--db", default=None, help="database URL (default: $XCAP_DB, the config file or "
                        "the embedded SQLite file)")
    parser.add_argument("--config", metavar="FILE", help="ini file with an [xcap-wsgi] section (db)")
    parser.add_argument("--default-domain", default=None, help="domain of XUIs without one (default: setting)")
    parser.add_argument("--rebuild", action="store_true", help="create the side table if absent and refill it")
    parser.set_defaults(handler=_cmd_rls_index)


def _cmd_rls_index(args) -> int:
    def body(values, store):
        if args.rebuild:
            count = rebuild(store)
            print(f"{store.rls_index.side}: rebuilt, {count} service URI(s)")
            return 0
        if not store.rls_index.available():
            print(f"no {store.rls_index.side} table: rls-services uniqueness checks and the global index scan "
                  "the table (xcap-wsgi initdb or rls-index --rebuild creates it)")
            return 0
        problems = drift(store)
        for problem in problems:
            print(problem)
        print(f"{store.rls_index.side}: {len(problems)} problem(s)"
              + (" (xcap-wsgi rls-index --rebuild repairs them)" if problems else ""))
        return 1 if problems else 0

    return _run(args, body)
