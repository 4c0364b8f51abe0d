"""The operator commands' command line: ``xcap-wsgi export|import|purge|check`` (wired by ``cli.py``).

Each ``_cmd_*`` resolves the settings (``--db``, ``--config``, ``--default-domain``), opens the
store and calls the Python function of its module with explicit options.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ..build import usage_registry
from ..settings import Settings, read_config, resolve
from ..storage import Store, StoreError
from .archive import AdminError
from .check import iter_problems
from .export import export_documents
from .importer import import_documents
from .progress import Progress
from .purge import purge_documents


def add_progress_options(parser) -> None:
    """``--quiet`` and ``--progress-every`` (also used by ``initdb`` and ``adduser``: ``--quiet``)."""
    parser.add_argument("--progress-every", type=int, default=None, metavar="N",
                        help="without a terminal, print a progress line every N documents "
                        "(default: every 5 seconds)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print no progress and no summary (errors and results only)")


def add_commands(commands) -> None:
    """Register export, import, purge and check on the ``xcap-wsgi`` sub-command parser."""

    def common(parser, *, user: str):
        parser.add_argument("--db", default=None, help="database URL (default: $XCAP_DB, the config file or "
                            "the embedded SQLite file)")
        parser.add_argument("--config", metavar="FILE",
                            help="ini file with an [xcap-wsgi] section (db, default_domain)")
        parser.add_argument("--default-domain", default=None, help="domain of XUIs without one (default: setting)")
        add_progress_options(parser)
        if user == "required":
            parser.add_argument("--user", required=True, metavar="XUI",
                                help="the user: sip:alice@example.com, alice@example.com or alice (default domain)")
        elif user == "optional":
            parser.add_argument("--user", metavar="XUI", help="only this user's documents (default: everyone's)")

    export = commands.add_parser("export", help="export a user's documents (exact bytes and ETags) to a folder or tar",
                                 description="Write a user's documents to DESTINATION: a new folder, or a .tar, "
                                 ".tar.gz or .tgz file, with manifest.json, index/*.jsonl (doc_uri, doc_type, etag, "
                                 "username, domain, size, sha256 of each document), one file per document under "
                                 "documents/, and end.json. Streams: memory does not grow with the documents.")
    export.add_argument("destination", metavar="DESTINATION")
    common(export, user="optional")
    export.add_argument("--all", action="store_true", help="export every user's documents (instead of --user)")
    export.set_defaults(handler=_cmd_export)

    restore_cmd = commands.add_parser("import", help="restore exported documents byte for byte with their ETags",
                                      description="Verify the whole export (sizes, SHA-256, ETags), then create or "
                                      "overwrite each document with its exact bytes and ETag. Re-running an "
                                      "interrupted import resumes it: restored documents count as unchanged.")
    restore_cmd.add_argument("source", metavar="SOURCE", help="export folder or tar file")
    common(restore_cmd, user="optional")
    restore_cmd.add_argument("--resume-after", type=int, default=0, metavar="N",
                             help="skip the first N documents of the restore (an interrupted run's count)")
    restore_cmd.add_argument("--batch-size", type=int, default=None, metavar="N",
                             help="documents restored per transaction (default 200)")
    restore_cmd.set_defaults(handler=_cmd_import)

    purge = commands.add_parser("purge", help="delete all documents of a user (needs --yes)",
                                description="Delete every document of a user. Without --yes, only lists them.")
    common(purge, user="required")
    purge.add_argument("--yes", action="store_true", help="really delete")
    purge.set_defaults(handler=_cmd_purge)

    check = commands.add_parser("check", help="validate every stored document against its usage; non-zero on problems",
                                description="Check each row: UTF-8, well-formed, the usage's validators (XML Schema), "
                                "doc_type and account matching doc_uri, ETag length. Exit 1 if any problem is found.")
    common(check, user="optional")
    check.add_argument("--usage", action="append", metavar="AUID=NAMESPACE;MIME-TYPE",
                       help="a generic application usage whose documents are stored (repeatable; default: setting)")
    check.set_defaults(handler=_cmd_check)


def progress_of(args, label: str) -> Progress:
    """The progress display a command's ``--quiet``/``--progress-every`` ask for, on stderr."""
    return Progress(label, every=args.progress_every, quiet=args.quiet)


def _say(args, text: str) -> None:
    if not args.quiet:
        print(text)


def _values(args) -> Settings:
    given: dict[str, Any] = {}
    if getattr(args, "config", None):
        given.update(read_config(args.config))
    if args.db:
        given["db"] = args.db
    if args.default_domain:
        given["default_domain"] = args.default_domain
    if getattr(args, "usage", None):
        given["usage"] = args.usage
    return resolve(given)


def _account(xui: str, default_domain: str) -> tuple[str, str]:
    from ..uri import xui_account

    return xui_account(xui.strip(), default_domain)


def run_command(args, body: Callable[[Settings, Store], int]) -> int:
    """Resolve the settings of ``args``, open the store, run ``body(values, store)``, close it; the
    exit status (errors printed, 1; bad settings, 2). Shared by every command on the store."""
    from ..storage import open_store

    try:
        values = _values(args)
    except ValueError as exc:
        print(f"xcap-wsgi: {exc}", file=sys.stderr)
        return 2
    try:
        store = open_store(values["db"])
    except (StoreError, ValueError, OSError) as exc:
        print(f"xcap-wsgi: cannot open the database {values['db']}: {exc}", file=sys.stderr)
        return 1
    try:
        return body(values, store)
    except (AdminError, StoreError, ValueError, OSError) as exc:
        print(f"xcap-wsgi {args.command}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _cmd_export(args) -> int:
    if bool(args.user) == bool(args.all):
        print("xcap-wsgi export: give --user XUI or --all", file=sys.stderr)
        return 2

    def body(values, store):
        account = _account(args.user, values["default_domain"]) if args.user else (None, None)
        manifest = export_documents(store, args.destination, username=account[0], domain=account[1],
                                    progress=progress_of(args, "export"))
        _say(args, f"exported {manifest['documents']} document(s) to {args.destination}")
        return 0

    return run_command(args, body)


def _cmd_import(args) -> int:
    def body(values, store):
        account = _account(args.user, values["default_domain"]) if args.user else (None, None)
        counts = import_documents(store, args.source, username=account[0], domain=account[1],
                                  progress=progress_of(args, "import"), verify=progress_of(args, "verify"),
                                  resume_after=args.resume_after,
                                  **({"batch_size": max(1, args.batch_size)} if args.batch_size else {}))
        _say(args, "imported {created} created, {replaced} replaced, {unchanged} unchanged".format(**counts)
             + (f", {counts['skipped']} skipped" if "skipped" in counts else ""))
        from ..rls_index import rebuild, side_table

        if side_table(store) is not None:  # imported rls-services rows bypass the side table
            services = rebuild(store)
            _say(args, f"{store.rls_index.side}: rebuilt, {services} service URI(s)")
        return 0

    return run_command(args, body)


def _cmd_purge(args) -> int:
    def body(values, store):
        username, domain = _account(args.user, values["default_domain"])
        if not args.yes:
            documents = store.list_documents(username, domain)
            for info in documents:
                print(f"would delete {info.doc_uri} ({info.size} bytes, etag {info.etag})")
            print(f"{len(documents)} document(s) of {username}@{domain}; nothing deleted: add --yes to delete them",
                  file=sys.stderr)
            return 1
        deleted = purge_documents(store, username, domain, progress=progress_of(args, "purge"))
        _say(args, f"deleted {deleted} document(s) of {username}@{domain}")
        return 0

    return run_command(args, body)


def _cmd_check(args) -> int:
    def body(values, store):
        account = _account(args.user, values["default_domain"]) if args.user else (None, None)
        progress = progress_of(args, "check")
        try:
            registry = usage_registry(values)
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        found = 0
        for problem in iter_problems(store, registry, values["default_domain"], username=account[0],
                                     domain=account[1], progress=progress):
            found += 1
            print(problem, flush=True)
        if not args.user:  # the rls-services side table against the rows (xcap_wsgi/rls_index.py)
            from ..rls_index import drift

            for message in drift(store):
                found += 1
                print(f"rls-index: {message} (xcap-wsgi rls-index --rebuild repairs it)", flush=True)
        _say(args, f"{progress.count} document(s) checked, {found} problem(s)")
        return 1 if found else 0

    return run_command(args, body)
