"""The running parts from one ``Settings`` object: usage registry, policy, store, middleware and
the standalone application (health endpoints, then Digest, then the middleware).

``xcap_wsgi.settings`` only declares and checks settings; this module is where they meet the
WSGI code, so the settings module imports nothing that imports it back. ``build_middleware`` is
what a host application calls; ``standalone_app`` is what ``xcap-wsgi serve`` and the
PasteDeploy app run.
"""

from __future__ import annotations

from typing import Any, Callable

from .auth import DefaultPolicy, TrustedProxyIdentity, remote_user
from .constraints import with_local_references_only
from .digest import DigestAuthMiddleware, from_settings
from .health import with_health
from .metrics import with_metrics
from .middleware import XCAPMiddleware
from .notify import KamailioNotifier
from .settings import Settings, parse_usage
from .storage import open_store
from .usages import UsageRegistry, default_registry, generic_usage
from .validation import without_schema_validation

__all__ = ["authorization_arguments", "build_middleware", "standalone_app", "usage_registry"]


def usage_registry(settings: Settings) -> UsageRegistry:
    """The application usages as configured: the shipped ones plus the generic ``usage`` entries,
    schema validation off for the AUIDs in ``no_schema_validation``, references kept local when
    ``external_references`` is false."""
    registry = default_registry()
    for entry in settings.usage:
        auid, namespace, mime_type = parse_usage(entry)
        if auid in registry:
            raise ValueError(f"usage {entry!r}: {auid} is already an application usage of xcap-wsgi")
        registry.register(generic_usage(auid, namespace, mime_type))
    if settings.no_schema_validation:
        registry = without_schema_validation(registry, settings.no_schema_validation)
    if not settings.external_references:
        registry = with_local_references_only(registry)
    return registry


def authorization_arguments(settings: Settings) -> dict[str, Any]:
    """``policy`` and ``identity`` for ``XCAPMiddleware`` from the "auth" settings."""
    identity: Callable = remote_user
    if settings.identity_header:
        identity = TrustedProxyIdentity(settings.identity_header, settings.trusted_proxies)
    policy = DefaultPolicy(default_domain=settings.default_domain, admins=settings.admins,
                           trusted=settings.trusted_readers, public_read=settings.public_read)
    return {"policy": policy, "identity": identity}


def build_middleware(app: Callable | None, settings: Settings, **overrides: Any) -> XCAPMiddleware:
    """An ``XCAPMiddleware`` around ``app`` (None: 404 outside the XCAP root) from ``settings``;
    it opens the store from ``db`` unless ``store=`` is among ``overrides``."""
    arguments = settings.middleware_arguments()
    arguments.update(authorization_arguments(settings))
    arguments["usages"] = usage_registry(settings)
    if settings.kamailio_rpc:
        arguments["on_change"] = [KamailioNotifier(settings.kamailio_rpc)]
    arguments.update(overrides)
    store = arguments.pop("store", None) or open_store(settings.db, **settings.store_arguments())
    return XCAPMiddleware(app, store=store, **arguments)


def standalone_app(settings: Settings, middleware: XCAPMiddleware | None = None,
                   digest: DigestAuthMiddleware | None = None) -> Callable:
    """The application of ``serve`` and of the PasteDeploy app: the health endpoints and the
    Prometheus metrics (no credentials; health probes not counted) in front of Digest (against
    Kamailio's subscriber table; none when ``anonymous``) in front of the middleware.
    ``middleware`` (default ``build_middleware(None, settings)``) and ``digest`` (default
    ``digest.from_settings`` around it) may be built by the caller, to report errors its way."""
    middleware = middleware if middleware is not None else build_middleware(None, settings)
    store = middleware.store
    if settings.anonymous:
        return with_health(with_metrics(middleware, settings, store=store), settings, store=store)
    digest = digest if digest is not None else from_settings(middleware, settings)
    return with_health(with_metrics(digest, settings, store=store), settings, store=store,
                       subscribers=digest.subscribers)
