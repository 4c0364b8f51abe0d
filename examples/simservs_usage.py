"""A third-party application usage in a few lines: 3GPP/ETSI supplementary services (Ut interface).

``org.etsi.ngn.simservs`` (3GPP TS 24.623) is how VoLTE phones read and change call forwarding,
barring and caller-ID settings over XCAP. xcap-wsgi does not ship it; this is all it takes to add
it. Kamailio has no doc_type for it: 1024 is outside Kamailio's own numbers, so Kamailio's
presence modules ignore these rows (and Kamailio's own xcap_server directory listing, if it ever
serves the same table, would not know the type).

Run it: ``pip install . && python examples/simservs_usage.py`` serves on
http://127.0.0.1:8080/xcap-root/ (anonymous, for trying it out), with the usage listed in ``xcap-caps``.
"""

from __future__ import annotations

from lxml import etree

from xcap_wsgi import SQLiteStore, XCAPMiddleware
from xcap_wsgi.errors import SchemaValidationError
from xcap_wsgi.usages import ApplicationUsage, default_registry

SIMSERVS_NS = "http://uri.etsi.org/ngn/params/xml/simservs/xcap"


def simservs_root(tree: etree._ElementTree, context) -> None:
    """A minimal check in place of the full 3GPP schema: the root must be <simservs>."""
    if tree.getroot().tag != f"{{{SIMSERVS_NS}}}simservs":
        raise SchemaValidationError("the document root must be <simservs> in the simservs namespace")


SIMSERVS = ApplicationUsage(
    auid="org.etsi.ngn.simservs",
    mime_type="application/vnd.etsi.simservs+xml",
    default_namespace=SIMSERVS_NS,
    doc_type=1024,
    document_names=("simservs.xml",),
    validators=(simservs_root,),
)


def make_app(store) -> XCAPMiddleware:
    registry = default_registry()
    registry.register(SIMSERVS)
    return XCAPMiddleware(None, store=store, usages=registry, anonymous=True)


if __name__ == "__main__":
    import waitress

    waitress.serve(make_app(SQLiteStore("simservs.sqlite3")), host="127.0.0.1", port=8080)
