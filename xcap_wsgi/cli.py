"""The ``xcap-wsgi`` command: ``serve`` runs a standalone server under waitress, ``initdb``
prepares a database. Options come from ``xcap_wsgi.settings``; ``--config FILE`` reads the same
names from the ``[xcap-wsgi]`` section of an ini file, and ``XCAP_*`` environment variables
work too (command line > config file > environment > defaults).
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__
from .settings import SETTINGS, build_middleware, read_config, resolve
from .storage import StoreError, open_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xcap-wsgi", description="XCAP server (RFC 4825) over Kamailio's xcap table")
    parser.add_argument("--version", action="version", version=f"xcap-wsgi {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a standalone XCAP server (waitress)",
                                description="Run a standalone XCAP server under waitress.")
    serve.add_argument("--config", metavar="FILE", help="ini file with an [xcap-wsgi] section of settings")
    for setting in SETTINGS:
        kind = {"parse_bool": "flag"}.get(getattr(setting.parse, "__name__", ""), "value")
        env_help = f" [env {setting.env}; default {_show(setting.default)}]"
        if kind == "flag":
            serve.add_argument(setting.flag, dest=setting.name, action="store_const", const=True, default=None,
                               help=setting.help + env_help)
        else:
            serve.add_argument(setting.flag, dest=setting.name, default=None, metavar=setting.name.upper(),
                               action="append" if setting.repeatable else "store", help=setting.help + env_help)

    initdb = commands.add_parser("initdb", help="create Kamailio's xcap table (and version row) if absent")
    initdb.add_argument("--db", default=None, help="database URL (default: $XCAP_DB or the embedded SQLite file)")
    initdb.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")

    adduser = commands.add_parser("adduser", help="add a SIP account to Kamailio's subscriber table (Digest login)",
                                  description="Add USER@DOMAIN to Kamailio's subscriber table, with the password "
                                  "and its ha1/ha1b hashes as kamctl add stores them. SQLite: the table is created "
                                  "with Kamailio's DDL if absent. MySQL: created with Kamailio's DDL if absent, "
                                  "provided Kamailio's version table exists (xcap-wsgi initdb or kamdbctl create).")
    adduser.add_argument("account", metavar="USER@DOMAIN")
    adduser.add_argument("--password", default=None, help="the password (default: prompt, or $XCAP_PASSWORD)")
    adduser.add_argument("--no-cleartext", action="store_true",
                         help="store only ha1/ha1b, not the cleartext password (then Digest is MD5 only)")
    adduser.add_argument("--db", default=None, help="database URL (default: $XCAP_AUTH_DB, $XCAP_DB or the embedded SQLite file)")
    adduser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors (and the prompt)")

    from .admin.commands import add_commands  # export, import, purge, check (xcap_wsgi.admin)

    add_commands(commands)

    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is not None:
        return args.handler(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "initdb":
        return _initdb(args)
    if args.command == "adduser":
        return _adduser(args)
    parser.print_help()
    return 2


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    return "none" if value is None else str(value)


def _serve(args: argparse.Namespace) -> int:
    from .waitress_server import serve

    given = {}
    if args.config:
        given.update(_read_config(args.config))
    given.update({s.name: getattr(args, s.name) for s in SETTINGS if getattr(args, s.name) is not None})
    try:
        values = resolve(given, defaults={"log_requests": True})
    except ValueError as exc:
        print(f"xcap-wsgi: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    if values["workers"] > 1:
        return _serve_workers(values)
    try:
        app, mode = _build_app(values)
    except SystemExit as exc:
        return exc.code
    _banner(values["host"], values["port"], values, mode)
    serve(app, host=values["host"], port=values["port"], threads=values["threads"], ident="xcap-wsgi")
    return 0


def _serve_workers(values: dict) -> int:
    """``--workers N``: N waitress processes on one socket (xcap_wsgi.server)."""
    import secrets

    from .server import serve_workers

    if not values.get("nonce_secret"):
        values["nonce_secret"] = secrets.token_hex(32)  # one secret for all workers: nonces work in any

    def ready(host, port):
        auth = "ANONYMOUS (no authentication: development only)" if values["anonymous"] else "Digest"
        _banner(host, port, values, auth, f" workers={values['workers']} threads={values['threads']}")

    return serve_workers(lambda: _build_app(values)[0], host=values["host"], port=values["port"],
                         workers=values["workers"], threads=values["threads"], on_ready=ready,
                         ident="xcap-wsgi")


def _banner(host: str, port: int, values: dict, auth: str, extra: str = "") -> None:
    """The one start-up line: URL, database (never its password), roots, authentication."""
    url = f"http://{host}:{port}{values['root'][0]}/"
    print(f"xcap-wsgi {__version__} serving XCAP at {url} database={_redact(values['db'])} "
          f"roots={','.join(values['root'])} auth={auth}{extra}", flush=True)


def _build_app(values: dict):
    """The WSGI app of ``serve`` and a description of its authentication; ``SystemExit(1)`` after
    printing the reason when the database or the authentication set-up fails."""
    try:
        app = build_middleware(None, values)
    except (StoreError, ValueError, OSError) as exc:
        print(f"xcap-wsgi: cannot open the database {_redact(values['db'])}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if values["anonymous"]:
        mode = "ANONYMOUS (no authentication: development only)"
    else:
        from .digest import from_settings
        from .subscribers import SubscriberError

        try:
            app = from_settings(app, values)
            if hasattr(app.subscribers, "table_exists") and not app.subscribers.table_exists():
                raise SubscriberError("Kamailio's subscriber table does not exist (kamdbctl create, or xcap-wsgi adduser)")
        except (SubscriberError, StoreError, ValueError, OSError) as exc:
            print(f"xcap-wsgi: cannot set up Digest authentication: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        realm = app.realm or f"<domain of the XUI>, else {app.default_domain}"
        mode = (f"Digest ({'/'.join(app.algorithms)}{', Basic' if app.basic else ''}) realm={realm} "
                f"against {_redact(values['auth_db'] or values['db'])}")
        if values["identity_header"]:
            mode += f"; {values['identity_header']} from {','.join(values['trusted_proxies'])}"
    return app, mode


def _initdb(args: argparse.Namespace) -> int:
    url = args.db or resolve()["db"]
    try:
        if url.split(":", 1)[0].lower().startswith(("mysql", "mariadb")):
            from .storage.mysql_schema import initdb

            done = initdb(url)
            if not args.quiet:
                print(done)
        else:
            open_store(url).close()  # SQLite creates Kamailio's table and version row on first use
            if not args.quiet:
                print(f"xcap-wsgi: {url} is ready (xcap table, version 4)")
    except (StoreError, ValueError, OSError) as exc:
        print(f"xcap-wsgi: initdb failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _redact(url: str) -> str:
    """A database URL without its password, for log lines."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    credentials, at, host = netloc.rpartition("@")
    if not sep or not at:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}@{host}{slash}{path}"


def _adduser(args: argparse.Namespace) -> int:
    import getpass
    import os

    from .subscribers import SubscriberError, open_subscribers, split_account

    url = args.db or resolve()["auth_db"] or resolve()["db"]
    try:
        user, domain = split_account(args.account)
    except ValueError as exc:
        print(f"xcap-wsgi: {exc}", file=sys.stderr)
        return 2
    password = args.password if args.password is not None else os.environ.get("XCAP_PASSWORD")
    if password is None:
        password = getpass.getpass(f"password for {user}@{domain}: ")
        if getpass.getpass("again: ") != password:
            print("xcap-wsgi: the passwords differ", file=sys.stderr)
            return 1
    if not password:
        print("xcap-wsgi: empty password refused", file=sys.stderr)
        return 1
    try:
        subscribers = open_subscribers(url)
        if hasattr(subscribers, "create_table") and subscribers.create_table() and not args.quiet:
            print(f"xcap-wsgi: created Kamailio's subscriber table in {url.split('@')[-1]}")
        subscribers.add(user, domain, password, store_password=not args.no_cleartext)
        subscribers.close()
    except (SubscriberError, StoreError, ValueError, OSError) as exc:
        print(f"xcap-wsgi: adduser failed: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"xcap-wsgi: added {user}@{domain}")
    return 0


_read_config = read_config  # the name this module used before settings.read_config


if __name__ == "__main__":
    sys.exit(main())
