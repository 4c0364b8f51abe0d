"""PasteDeploy: ``egg:xcap-wsgi`` as an app (examples/standalone.ini) and as a pipeline filter.

Everything is loaded through the installed entry points with ``paste.deploy.loadapp`` and driven
with WebTest; one test runs ``pserve`` on the example ini and talks HTTP to it.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import RL_DOC, RL_MIME
from paste.deploy import loadapp
from webtest import TestApp

from xcap_wsgi import XCAPMiddleware
from xcap_wsgi.digest import DigestAuthMiddleware
from xcap_wsgi.health import HealthMiddleware
from xcap_wsgi.metrics import MetricsMiddleware

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DOC = "/xcap-root/resource-lists/users/sip:alice@example.com/index"
BOB_DOC = "/xcap-root/resource-lists/users/sip:bob@example.com/index"


@pytest.fixture
def standalone_ini(tmp_path):
    """The shipped example ini, copied so its %(here)s SQLite file lands in tmp_path."""
    target = tmp_path / "standalone.ini"
    shutil.copy(EXAMPLES / "standalone.ini", target)
    return target


def behind_health(app):
    """The standalone app is the health endpoints' wrapper around the metrics layer (both answer
    without credentials) around the XCAP (or Digest) app."""
    assert isinstance(app, HealthMiddleware)
    assert isinstance(app.app, MetricsMiddleware)
    return app.app.app


def test_standalone_ini_put_get_cycle(standalone_ini, tmp_path):
    app = loadapp(f"config:{standalone_ini}")
    assert isinstance(behind_health(app), XCAPMiddleware)
    client = TestApp(app)
    created = client.put(DOC, RL_DOC, headers={"Content-Type": RL_MIME}, status=201)
    etag = created.headers["ETag"]
    got = client.get(DOC, status=200)
    assert got.body == RL_DOC
    assert got.headers["ETag"] == etag
    assert got.headers["Content-Type"] == RL_MIME
    assert (tmp_path / "xcap-example.sqlite3").exists()  # db = sqlite:///%(here)s/...
    client.get("/elsewhere", status=404)  # standalone: nothing outside the root


def test_standalone_ini_settings_come_from_the_table(standalone_ini):
    app = behind_health(loadapp(f"config:{standalone_ini}"))
    assert app.default_domain == "example.com"
    assert app.roots == ("/xcap-root",)
    assert app.anonymous is True
    assert app.log_requests is True


def test_app_without_anonymous_authenticates_with_digest(tmp_path):
    ini = tmp_path / "digest.ini"
    ini.write_text(
        "[app:main]\nuse = egg:xcap-wsgi\n"
        "db = sqlite:///%(here)s/xcap.sqlite3\ndefault_domain = example.com\n"
    )
    app = loadapp(f"config:{ini}")
    assert isinstance(behind_health(app), DigestAuthMiddleware)
    response = TestApp(app).get(DOC, status=401)
    assert response.headers["WWW-Authenticate"].startswith("Digest ")
    assert 'realm="example.com"' in response.headers["WWW-Authenticate"]


# -- the filter in a pipeline -----------------------------------------------------------------


def hello_app_factory(global_conf, **local_conf):
    """The host application of the pipeline: a plain WSGI app with its own page."""

    def hello(environ, start_response):
        body = f"hello {environ.get('REMOTE_USER') or 'stranger'} at {environ['PATH_INFO']}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return hello


def header_auth_filter_factory(global_conf, header="X-Test-User"):
    """The host's authentication stand-in: sets REMOTE_USER from a header, like a front proxy."""
    key = "HTTP_" + header.upper().replace("-", "_")

    def wrap(app):
        def filtered(environ, start_response):
            if environ.get(key):
                environ["REMOTE_USER"] = environ[key]
            return app(environ, start_response)

        filtered.app = app
        return filtered

    return wrap


PIPELINE_INI = """\
[DEFAULT]
default_domain = example.com
unrelated_global_option = ignored by xcap

[pipeline:main]
pipeline = auth xcap hello

[filter:auth]
use = call:test_paste:header_auth_filter_factory

[filter:xcap]
use = egg:xcap-wsgi
db = sqlite:///%(here)s/pipeline.sqlite3
root = /xcap-root, /services/xcap
max-body-size = 1k

[app:hello]
use = call:test_paste:hello_app_factory
"""


@pytest.fixture
def pipeline(tmp_path):
    ini = tmp_path / "pipeline.ini"
    ini.write_text(PIPELINE_INI)
    return TestApp(loadapp(f"config:{ini}"))


def test_filter_serves_xcap_and_passes_the_rest(pipeline):
    page = pipeline.get("/hello", headers={"X-Test-User": "alice"}, status=200)
    assert page.text == "hello alice at /hello"
    alice = {"X-Test-User": "sip:alice@example.com"}
    pipeline.put(DOC, RL_DOC, headers={"Content-Type": RL_MIME, **alice}, status=201)
    assert pipeline.get(DOC, headers=alice, status=200).body == RL_DOC
    # the alias root from the ini reaches the same document
    assert pipeline.get("/services/xcap/resource-lists/users/sip:alice@example.com/index",
                        headers=alice, status=200).body == RL_DOC


def test_filter_takes_identity_from_the_host_stack(pipeline):
    pipeline.get(DOC, status=401)  # the auth filter set no REMOTE_USER
    pipeline.put(BOB_DOC, RL_DOC, headers={"Content-Type": RL_MIME, "X-Test-User": "alice@example.com"},
                 status=403)


def test_filter_settings_from_section_and_default(pipeline):
    middleware = pipeline.app.app  # auth filter -> xcap filter
    assert isinstance(middleware, XCAPMiddleware)
    assert middleware.default_domain == "example.com"  # from [DEFAULT]
    assert middleware.max_body_size == 1024  # "1k" parsed by the settings table
    assert middleware.log_requests is False  # off by default in middleware mode
    big = RL_DOC.replace(b"<list", b"<!--" + b"x" * 2000 + b"--><list", 1)
    pipeline.put(DOC, big, headers={"Content-Type": RL_MIME, "X-Test-User": "alice"}, status=413)


def test_filter_rejects_unknown_setting(tmp_path):
    ini = tmp_path / "typo.ini"
    ini.write_text(PIPELINE_INI.replace("max-body-size = 1k", "max-bdy-size = 1k"))
    with pytest.raises(ValueError, match="max-bdy-size"):
        loadapp(f"config:{ini}")


# -- pserve -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(port, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response, data


def test_pserve_runs_the_example_ini(standalone_ini, tmp_path):
    pserve = shutil.which("pserve")
    if pserve is None:
        pytest.skip("pserve (pyramid) is not installed")
    port = _free_port()
    text = standalone_ini.read_text()
    assert "listen = 127.0.0.1:8080" in text
    standalone_ini.write_text(text.replace("listen = 127.0.0.1:8080", f"listen = 127.0.0.1:{port}"))
    process = subprocess.Popen([pserve, str(standalone_ini)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(EXAMPLES.parent)})
    output = ""
    try:
        deadline = time.monotonic() + 15
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("pserve did not start listening")
        response, _ = _http(port, "PUT", DOC, RL_DOC, {"Content-Type": RL_MIME})
        assert response.status == 201
        response, data = _http(port, "GET", DOC)
        assert response.status == 200 and data == RL_DOC
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode(errors="replace")
        print(output)
    # the ini's logging sections route the access log to stderr
    assert "[xcap_wsgi.access]" in output and "PUT " in output and "status=201" in output
