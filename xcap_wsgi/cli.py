"""The ``xcap-wsgi`` command: ``serve`` runs a standalone server under waitress, ``initdb``
prepares a database, ``adduser`` adds a Digest account; the document commands (export, import,
purge, check) come from ``xcap_wsgi.admin``. Options come from ``xcap_wsgi.settings``: every
command takes ``--config FILE`` (the ``[xcap-wsgi]`` section of an ini file), ``--db`` and
``--default-domain``, and ``XCAP_*`` environment variables work too (command line > config file
> environment > defaults). Every boolean setting has an on and an off option
(``--log-requests``/``--no-log-requests``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from . import __version__
from .build import build_middleware, standalone_app
from .logsetup import configure as configure_logging
from .settings import DEFAULTS, SETTINGS, STANDALONE_DEFAULTS, Setting, Settings
from .storage import StoreError, open_store


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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


def build_parser() -> argparse.ArgumentParser:
    """The ``xcap-wsgi`` parser: ``serve`` has one option per setting, the other commands
    ``--config``, ``--db`` and ``--default-domain`` (``admin.add_commands`` adds its own)."""
    parser = argparse.ArgumentParser(prog="xcap-wsgi", description="XCAP server (RFC 4825) over Kamailio's xcap table")
    parser.add_argument("--version", action="version", version=f"xcap-wsgi {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a standalone XCAP server (waitress)",
                                description="Run a standalone XCAP server under waitress.")
    serve.add_argument("--config", metavar="FILE", help="ini file with an [xcap-wsgi] section of settings")
    for setting in SETTINGS:
        _add_setting(serve, setting)

    initdb = commands.add_parser("initdb", help="create Kamailio's xcap table (and version row) if absent")
    _add_common(initdb, db_help="database URL (default: the db setting: $XCAP_DB, the config file or the "
                "embedded SQLite file)")
    initdb.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")

    adduser = commands.add_parser("adduser", help="add a SIP account to Kamailio's subscriber table (Digest login)",
                                  description="Add USER@DOMAIN to Kamailio's subscriber table, with the password "
                                  "and its ha1/ha1b hashes as kamctl add stores them. SQLite: the table is created "
                                  "with Kamailio's DDL if absent. MySQL: created with Kamailio's DDL if absent, "
                                  "provided Kamailio's version table exists (xcap-wsgi initdb or kamdbctl create).")
    adduser.add_argument("account", metavar="USER@DOMAIN",
                         help="the account; a bare USER takes the configured default_domain (if one is set)")
    adduser.add_argument("--password", default=None, help="the password (default: prompt, or $XCAP_PASSWORD)")
    adduser.add_argument("--cleartext", action=argparse.BooleanOptionalAction, default=True,
                         help="store the cleartext password besides ha1/ha1b (--no-cleartext: hashes only, "
                         "then Digest is MD5 only)")
    _add_common(adduser, db_help="database URL of the subscriber table (default: the auth_db setting, else db)")
    adduser.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors (and the prompt)")

    from .admin.commands import add_commands  # export, import, purge, check (xcap_wsgi.admin)
    from .rls_index_command import add_command as add_rls_index_command

    add_commands(commands)
    add_rls_index_command(commands)
    return parser


def _add_setting(parser: argparse.ArgumentParser, setting: Setting) -> None:
    """One ``serve`` option per setting: ``--x``/``--no-x`` for a boolean, repeatable ``--x V``
    for a list given entry by entry, ``--x V`` otherwise (converted by the setting itself)."""
    env_help = f" [env {setting.env}; default {_show(STANDALONE_DEFAULTS.get(setting.name, setting.default))}]"
    if setting.is_bool:
        parser.add_argument(setting.flag, dest=setting.name, action=argparse.BooleanOptionalAction, default=None,
                            help=setting.help + env_help)
    elif setting.repeatable:
        parser.add_argument(setting.flag, dest=setting.name, action="append", default=None,
                            metavar=setting.name.upper(), help=setting.help + env_help)
    else:
        parser.add_argument(setting.flag, dest=setting.name, default=None, metavar=setting.name.upper(),
                            help=setting.help + env_help)


def _add_common(parser: argparse.ArgumentParser, *, db_help: str) -> None:
    """The options every command takes: --config, --db, --default-domain."""
    parser.add_argument("--config", metavar="FILE", help="ini file with an [xcap-wsgi] section of settings")
    parser.add_argument("--db", default=None, help=db_help)
    parser.add_argument("--default-domain", default=None,
                        help=f"domain of XUIs and accounts given without one (default: setting, "
                        f"{DEFAULTS.default_domain})")


def _settings(args: argparse.Namespace, given: dict, defaults=None) -> Settings | None:
    """The one ``Settings`` of a command (printing the reason and returning None when refused)."""
    try:
        return Settings.from_sources(given, config=getattr(args, "config", None), defaults=defaults)
    except ValueError as exc:
        print(f"xcap-wsgi: {exc}", file=sys.stderr)
        return None


def _show(value) -> str:
    if isinstance(value, tuple):
        return ",".join(value) or "none"
    return "none" if value is None else str(value)


def serve_settings(args: argparse.Namespace) -> Settings:
    """The ``Settings`` of ``serve`` from its parsed options (``ValueError`` when refused):
    options given > ``--config`` > environment > the standalone defaults > the field defaults."""
    given = {s.name: getattr(args, s.name) for s in SETTINGS}
    return Settings.from_sources(given, config=args.config, defaults=STANDALONE_DEFAULTS)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = serve_settings(args)
    except ValueError as exc:
        print(f"xcap-wsgi: {exc}", file=sys.stderr)
        return 2
    if settings.workers == 0:
        settings = settings.replace(workers=usable_cpus())
    if settings.threads == 0:
        settings = settings.replace(threads=auto_threads(settings))
    configure_logging()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    from . import backends

    try:
        server = backends.choose(settings.server)
    except ValueError as exc:
        print(f"xcap-wsgi: {exc}", file=sys.stderr)
        return 2
    if server != "waitress":
        return _serve_backend(server, settings)
    if settings.workers > 1:
        if settings.metrics_path:
            from .metrics import prepare_multiprocess

            # one PROMETHEUS_MULTIPROC_DIR for every worker (xcap_wsgi.metrics)
            prepare_multiprocess(settings.metrics_dir)
        return _serve_workers(settings)
    try:
        app, mode = _build_app(settings)
    except SystemExit as exc:  # the reason is printed (_build_app raises SystemExit(1))
        if isinstance(exc.code, int):
            return exc.code
        raise
    from .httpcore import serve
    from .httpserver import limits_from_settings

    _banner(settings.host, settings.port, settings, mode)
    serve(app, limits=limits_from_settings(settings), host=settings.host, port=settings.port,
          threads=settings.threads, ident="xcap-wsgi")
    return 0


#: ``workers = 0`` starts at most this many processes: each holds database connections of its own
#: (MariaDB allows 151 by default, shared with Kamailio); set ``workers`` for more.
AUTO_WORKERS_MAX = 8


def usable_cpus() -> int:
    """The CPUs this process may run on, at most ``AUTO_WORKERS_MAX`` (``workers = 0``)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, AUTO_WORKERS_MAX))


def auto_threads(settings: Settings) -> int:
    """``threads = 0``: 1 when every database is on this host, else 2 (docs/deployment.md).

    On this host a statement takes tens of microseconds, during which the thread keeps its core
    (docs/benchmarks.md: 2 threads cost 12-48 us more CPU per request in interpreter-lock
    hand-overs and served 4-23 % fewer requests); a distant database leaves a thread waiting a
    network round trip per statement, which a second thread fills.
    """
    from .storage import on_this_host

    urls = [settings.db] + ([settings.auth_db] if settings.auth_db else [])
    try:
        local = all(on_this_host(url) for url in urls)
    except ValueError:  # a malformed URL: opening the store reports it
        local = True
    return 1 if local else 2


def _serve_backend(server: str, settings: Settings) -> int:
    """``server = uwsgi|granian``: that server runs the same app in its workers (xcap_wsgi.backends)."""
    import secrets

    from . import backends

    if not settings.nonce_secret:
        settings = settings.replace(nonce_secret=secrets.token_hex(32))  # one secret: nonces work in any worker
    if settings.metrics_path:
        from .metrics import prepare_multiprocess

        prepare_multiprocess(settings.metrics_dir)  # uWSGI and granian run several processes
    try:  # fail here, with serve's message, rather than in every worker
        _app, auth = _build_app(settings)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    _banner(settings.host, settings.port, settings, auth,
            f" server={server} workers={settings.workers} threads={settings.threads}")
    return backends.run(server, settings)


def _serve_workers(settings: Settings) -> int:
    """``--workers N``: N waitress processes on one socket (xcap_wsgi.server)."""
    import secrets

    from .httpserver import limits_from_settings
    from .server import serve_workers

    if not settings.nonce_secret:
        settings = settings.replace(nonce_secret=secrets.token_hex(32))  # one secret: nonces work in any worker

    def ready(host, port):
        _banner(host, port, settings, _auth_mode(settings), f" workers={settings.workers} threads={settings.threads}")

    return serve_workers(lambda: _build_app(settings)[0], host=settings.host, port=settings.port,
                         workers=settings.workers, threads=settings.threads, on_ready=ready,
                         limits=limits_from_settings(settings), ident="xcap-wsgi")


def _banner(host: str, port: int, settings: Settings, auth: str, extra: str = "") -> None:
    """The one start-up line: URL, database (never its password), roots, authentication."""
    url = f"http://{host}:{port}{settings.root[0]}/"
    print(f"xcap-wsgi {__version__} serving XCAP at {url} database={_redact(settings.db)} "
          f"roots={','.join(settings.root)} auth={auth}{extra}", flush=True)


def _build_app(settings: Settings):
    """The WSGI app of ``serve`` (``xcap_wsgi.build.standalone_app``) and a description of its
    authentication; ``SystemExit(1)`` after printing the reason when the database or the
    authentication set-up fails."""
    try:
        middleware = build_middleware(None, settings)
    except (StoreError, ValueError, OSError) as exc:
        print(f"xcap-wsgi: cannot open the database {_redact(settings.db)}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    if settings.anonymous:
        return standalone_app(settings, middleware), _auth_mode(settings)
    from .digest import from_settings
    from .subscribers import SubscriberError, check_table

    try:
        digest = from_settings(middleware, settings)
        check_table(digest.subscribers)
    except (SubscriberError, StoreError, ValueError, OSError) as exc:
        print(f"xcap-wsgi: cannot set up Digest authentication: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    return standalone_app(settings, middleware, digest), _auth_mode(settings)


def _auth_mode(settings: Settings) -> str:
    """What the start-up line says of authentication."""
    if settings.anonymous:
        return "ANONYMOUS (no authentication: development only)"
    from .digest import describe

    mode = f"{describe(settings)} against {_redact(settings.auth_db or settings.db)}"
    if settings.identity_header:
        mode += f"; {settings.identity_header} from {','.join(settings.trusted_proxies)}"
    return mode


def _initdb(args: argparse.Namespace) -> int:
    settings = _settings(args, {"db": args.db, "default_domain": args.default_domain})
    if settings is None:
        return 2
    url = settings.db
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
        _initdb_rls_index(url, quiet=args.quiet)
    except (StoreError, ValueError, OSError) as exc:
        print(f"xcap-wsgi: initdb failed: {exc}", file=sys.stderr)
        return 1
    return 0


def _initdb_rls_index(url: str, *, quiet: bool = False) -> None:
    """Create xcap-wsgi's optional rls-services side table if absent, filled from the rows."""
    from .rls_index import rebuild

    store = open_store(url)
    try:
        if store.rls_index.create() and not quiet:
            print(f"xcap-wsgi: created {store.rls_index.side} ({rebuild(store)} service URIs)")
    finally:
        store.close()


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

    settings = _settings(args, {"default_domain": args.default_domain})
    if settings is None:
        return 2
    url = args.db or settings.auth_db or settings.db
    account = args.account
    configured = args.default_domain is not None or settings.default_domain != DEFAULTS.default_domain
    if "@" not in account and configured:
        account = f"{account}@{settings.default_domain}"
    try:
        user, domain = split_account(account)
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
        subscribers.add(user, domain, password, store_password=args.cleartext)
        subscribers.close()
    except (SubscriberError, StoreError, ValueError, OSError) as exc:
        print(f"xcap-wsgi: adduser failed: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"xcap-wsgi: added {user}@{domain}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
