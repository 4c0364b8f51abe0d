"""An existing Pyramid app with its own pages, login and security policy, serving XCAP under /xcap-root.

Run it:  ``pip install . pyramid && python examples/pyramid_app.py``
(http://127.0.0.1:8080/, XCAP at /xcap-root/; users alice/alice-secret and bob/bob-secret).

How the app's authentication becomes the XCAP identity
------------------------------------------------------
Pyramid already has the right abstraction: the **security policy** answers "who is this?" for a
request. The app's ``SecurityPolicy`` recognises its ``auth_tkt`` login cookie (``AuthTktCookieHelper``,
set by the ``/login`` view with ``remember``) and, for SIP clients that cannot fill in a form,
HTTP Basic checked by ``check_password`` -- the same check the login form uses.

``XCAPMiddleware`` wraps the Pyramid WSGI app, so XCAP requests never enter Pyramid's router (no
tweens, no views). The identity callable ``PyramidIdentity`` therefore builds a Pyramid request
for the environ, attaches the app's registry and request extensions, and asks
``request.authenticated_userid`` -- i.e. the *configured* security policy, whatever it is. Swap
the policy (sessions, JWT, OAuth bearer tokens) and XCAP follows without a change; nothing
re-implements ticket parsing. (Policy features that need Pyramid's response phase, such as
``reissue_time``, act only on the app's own pages.)

The middleware's ``challenge`` adds ``WWW-Authenticate: Basic`` to XCAP's 401 answers (RFC 7235 wants a
challenge). Use HTTPS in production: Basic sends the password with every request.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import os

from pyramid.authentication import AuthTktCookieHelper, extract_http_basic_credentials
from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPFound
from pyramid.interfaces import IRequestExtensions
from pyramid.request import Request, apply_request_extensions
from pyramid.response import Response
from pyramid.security import Allowed, Denied, forget, remember

from xcap_wsgi import XCAPMiddleware, open_store


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 200_000)


_SALT = os.urandom(16)
#: The app's user table (a real app would use its database). Passwords are stored hashed.
USERS = {"alice": _hash("alice-secret", _SALT), "bob": _hash("bob-secret", _SALT)}


def check_password(username: str, password: str) -> bool:
    """The app's one credential check: used by the login form and by Basic auth."""
    stored = USERS.get(username)
    return stored is not None and hmac.compare_digest(stored, _hash(password, _SALT))


class SecurityPolicy:
    """The app's Pyramid security policy: auth_tkt login cookie, or HTTP Basic."""

    def __init__(self, secret: str):
        self.cookie = AuthTktCookieHelper(secret, hashalg="sha512", http_only=True, samesite="Lax")

    def identity(self, request):
        ticket = self.cookie.identify(request)
        if ticket is not None and ticket["userid"] in USERS:
            return ticket["userid"]
        credentials = extract_http_basic_credentials(request)
        if credentials is not None and check_password(credentials.username, credentials.password):
            return credentials.username
        return None

    def authenticated_userid(self, request):
        return request.identity

    def permits(self, request, context, permission):
        if permission == "view" and request.identity is not None:
            return Allowed("logged in")
        return Denied("login required")

    def remember(self, request, userid, **kw):
        return self.cookie.remember(request, userid, **kw)

    def forget(self, request, **kw):
        return self.cookie.forget(request, **kw)


class PyramidIdentity:
    """XCAP identity resolver (``environ -> user or None``) that asks the app's security policy."""

    def __init__(self, registry):
        self.registry = registry

    def __call__(self, environ: dict) -> str | None:
        request = Request(environ)  # reads headers and cookies only; the body stays for XCAP
        request.registry = self.registry
        if self.registry.queryUtility(IRequestExtensions) is not None:
            apply_request_extensions(request)
        return request.authenticated_userid


PAGE = "<!doctype html><title>{title}</title><h1>{title}</h1>{body}"


def home(request):
    user = request.authenticated_userid
    body = (f"<p>Logged in as {html.escape(user)}.</p>" if user
            else f'<p>Not logged in. <a href="{request.route_path("login")}">Log in</a></p>')
    return Response(PAGE.format(title="Presence portal", body=body))


def account(request):
    user = html.escape(request.authenticated_userid)
    domain = request.registry.settings["xcap.domain"]
    return Response(PAGE.format(title="Your account", body=(
        f"<p>{user}, your buddy list is "
        f"<code>/xcap-root/resource-lists/users/sip:{user}@{domain}/index</code></p>")))


def login(request):
    error = ""
    if request.method == "POST":
        username = request.POST.get("username", "")
        if check_password(username, request.POST.get("password", "")):
            return HTTPFound(location=request.route_path("home"), headers=remember(request, username))
        error = "<p>Wrong user name or password.</p>"
    form = ('<form method="post"><input name="username"> <input name="password" type="password"> '
            "<button>Log in</button></form>")
    response = Response(PAGE.format(title="Log in", body=error + form))
    response.status_int = 401 if error else 200
    return response


def logout(request):
    return HTTPFound(location=request.route_path("home"), headers=forget(request))


def forbidden(request):
    return HTTPFound(location=request.route_path("login"))


def create_app(db_url: str = "sqlite:///xcap-pyramid.sqlite3", *, secret: str | None = None,
               domain: str = "example.com"):
    with Configurator(settings={"xcap.domain": domain}) as config:
        config.set_security_policy(SecurityPolicy(secret or os.environ.get("AUTH_SECRET") or os.urandom(32).hex()))
        config.add_route("home", "/")
        config.add_route("account", "/account")
        config.add_route("login", "/login")
        config.add_route("logout", "/logout")
        config.add_view(home, route_name="home")
        config.add_view(account, route_name="account", permission="view")
        config.add_view(login, route_name="login", request_method=("GET", "POST"))
        config.add_view(logout, route_name="logout", request_method="POST")
        config.add_forbidden_view(forbidden)
        pyramid_app = config.make_wsgi_app()
    return XCAPMiddleware(pyramid_app, store=open_store(db_url), root="/xcap-root", default_domain=domain,
                          identity=PyramidIdentity(config.registry),
                          challenge=f'Basic realm="{domain}", charset="UTF-8"')


if __name__ == "__main__":
    import waitress

    waitress.serve(create_app(), host="127.0.0.1", port=8080)
