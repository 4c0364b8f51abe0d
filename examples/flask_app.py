"""An existing Flask app with its own pages and login, serving XCAP under /xcap-root.

Run it:  ``pip install . flask && python examples/flask_app.py``
(http://127.0.0.1:8080/, XCAP at /xcap-root/; users alice/alice-secret and bob/bob-secret).

How the app's authentication becomes the XCAP identity
------------------------------------------------------
``XCAPMiddleware`` wraps ``app.wsgi_app``, so XCAP requests are answered *before* Flask builds a
request context: ``flask.session`` and ``flask.request`` do not exist there, and a Flask view or
``before_request`` hook never sees them. Rather than faking a request context, the identity
callable (``FlaskIdentity``) uses the app's own machinery directly on the WSGI environ:

1. **The Flask session** (browser pages, JavaScript on the app's pages). It asks
   ``app.session_interface.open_session(app, app.request_class(environ))`` -- exactly the call
   Flask makes at the start of every request -- so the cookie name, the ``SECRET_KEY`` signature,
   ``PERMANENT_SESSION_LIFETIME`` and any custom session interface (server-side sessions) apply
   unchanged. A forged, expired or absent cookie gives an empty session: no identity.
2. **HTTP Basic** (SIP clients, which cannot fill in a login form), checked by
   ``check_password`` -- the same function the ``/login`` view uses, against the same user table.

Nothing here sets ``REMOTE_USER`` for the rest of the app and nothing re-implements cookie
signing. The middleware's ``challenge`` adds ``WWW-Authenticate: Basic`` to the XCAP 401 answers, so clients
know how to authenticate (RFC 7235 requires a challenge with a 401). Use HTTPS in production:
Basic sends the password with every request.

CSRF: XCAP writes are ``PUT``/``DELETE`` with XML content types, which browsers send cross-site
only after a CORS preflight this app never approves; the session cookie is ``SameSite=Lax`` too.
"""

from __future__ import annotations

import base64
import binascii
import html
import os

from flask import Flask, redirect, request, session, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from xcap_wsgi import XCAPMiddleware, open_store

#: The app's user table (a real app would use its database). Passwords are stored hashed.
USERS = {
    "alice": generate_password_hash("alice-secret"),
    "bob": generate_password_hash("bob-secret"),
}


def check_password(username: str, password: str) -> bool:
    """The app's one credential check: used by the login form and by XCAP's Basic auth."""
    stored = USERS.get(username)
    return stored is not None and check_password_hash(stored, password)


class FlaskIdentity:
    """XCAP identity resolver (``environ -> user or None``) backed by a Flask app's login."""

    def __init__(self, app: Flask, session_key: str = "user"):
        self.app = app
        self.session_key = session_key

    def __call__(self, environ: dict) -> str | None:
        flask_request = self.app.request_class(environ)  # only reads headers/cookies, never the body
        flask_session = self.app.session_interface.open_session(self.app, flask_request)
        user = flask_session.get(self.session_key) if flask_session is not None else None
        if user in USERS:  # a deleted account's old cookie authenticates nobody
            return user
        return basic_user(environ)


def basic_user(environ: dict) -> str | None:
    """The user of valid HTTP Basic credentials, or None."""
    scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return username if check_password(username, password) else None


PAGE = """<!doctype html><title>{title}</title><h1>{title}</h1>{body}"""


def create_app(db_url: str = "sqlite:///xcap-flask.sqlite3", *, secret_key: str | None = None,
               domain: str = "example.com") -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secret_key or os.environ.get("FLASK_SECRET_KEY") or os.urandom(32),
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")

    @app.get("/")
    def home():
        user = session.get("user")
        if user:
            body = (f"<p>Logged in as {html.escape(user)}. Your buddy list: "
                    f"<code>/xcap-root/resource-lists/users/sip:{html.escape(user)}@{domain}/index</code></p>"
                    f'<form method="post" action="{url_for("logout")}"><button>Log out</button></form>')
        else:
            body = f'<p>Not logged in. <a href="{url_for("login")}">Log in</a></p>'
        return PAGE.format(title="Presence portal", body=body)

    @app.route("/login", methods=["GET", "POST"])
    def login():
        error = ""
        if request.method == "POST":
            username = request.form.get("username", "")
            if check_password(username, request.form.get("password", "")):
                session.clear()
                session["user"] = username
                return redirect(url_for("home"))
            error = "<p>Wrong user name or password.</p>"
        form = ('<form method="post"><input name="username"> <input name="password" type="password"> '
                "<button>Log in</button></form>")
        return PAGE.format(title="Log in", body=error + form), (401 if error else 200)

    @app.post("/logout")
    def logout():
        session.clear()
        return redirect(url_for("home"))

    app.wsgi_app = XCAPMiddleware(app.wsgi_app, store=open_store(db_url), root="/xcap-root", default_domain=domain,
                                  identity=FlaskIdentity(app),
                                  challenge=f'Basic realm="{domain}", charset="UTF-8"')
    return app


if __name__ == "__main__":
    import waitress

    waitress.serve(create_app(), host="127.0.0.1", port=8080)
