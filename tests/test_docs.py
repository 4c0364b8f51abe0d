"""Every code snippet of README.md and docs/ runs, and the manual's generated parts come from the code.

Each fenced ``python`` block is executed on its own (a fresh namespace, the working directory a
temporary folder, so ``sqlite:///xcap.sqlite3`` is a real, new SQLite file), and the WSGI app it
builds then stores a document as alice: a snippet that imports a name the package does not
export, or builds an app that fails, fails here. ``ini`` blocks that configure ``egg:xcap-wsgi``
are built through the PasteDeploy factory with the same keys.
"""

from __future__ import annotations

import configparser
import os
import re
import sys
import types
from pathlib import Path

import pytest
from conftest import RL_DOC, RL_MIME
from webob import Request

import xcap_wsgi

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
DOC_PATH = "/xcap-root/resource-lists/users/sip:alice@example.com/index"


def blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for number, (lang, code) in enumerate(
                (m.group(1), m.group(2)) for m in FENCE.finditer(page.read_text(encoding="utf-8"))):
            if lang == language:
                found.append((f"{page.relative_to(REPO)}#{number}", code))
    return found


PYTHON = blocks("python")
INI = [(name, code) for name, code in blocks("ini") if "egg:xcap-wsgi" in code]


def test_there_are_snippets_to_run():
    pages = {name.split("#")[0] for name, _ in PYTHON}
    assert {"README.md", "docs/manual.md", "docs/deployment.md", "docs/security.md"} <= pages
    assert INI


def _store_a_document(app) -> int:
    """PUT alice's resource-lists document as a host that authenticated alice would; the status."""
    request = Request.blank(DOC_PATH, method="PUT", body=RL_DOC, content_type=RL_MIME,
                            environ={"REMOTE_USER": "sip:alice@example.com", "REMOTE_ADDR": "192.0.2.1"})
    response = request.get_response(app)
    if response.status_int == 201:
        stored = Request.blank(DOC_PATH, environ={"REMOTE_USER": "sip:alice@example.com",
                                                  "REMOTE_ADDR": "192.0.2.1"}).get_response(app)
        assert (stored.status_int, stored.body) == (200, RL_DOC)
    return response.status_int


@pytest.mark.parametrize("name,code", PYTHON, ids=[name for name, _ in PYTHON])
def test_python_snippet_runs_and_serves_xcap(name, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for line in code.splitlines():
        imported = re.match(r"from xcap_wsgi import (.+)", line)
        if imported:
            for symbol in imported.group(1).split(","):
                assert symbol.strip() in xcap_wsgi.__all__, f"{name}: {symbol.strip()} is not exported"
    module = types.ModuleType("docs_snippet")  # a real module: Flask and Pyramid look up their caller's
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    exec(compile(code, name, "exec"), namespace)
    app = namespace.get("application") or namespace.get("app")
    assert callable(app), f"{name} builds no WSGI app named application or app"
    # 201: the snippet's identity is REMOTE_USER (or it is anonymous); 401: it authenticates by
    # itself (a Digest challenge, or the Flask/Pyramid login that this request does not carry).
    status = _store_a_document(app)
    assert status in (201, 401), f"{name}: PUT answered {status}"
    if "changes" in namespace:
        assert status == 201 and len(namespace["changes"]) == 1
        assert b"xcap-diff" in namespace["changes"][0]


@pytest.mark.parametrize("name,code", INI, ids=[name for name, _ in INI])
def test_pastedeploy_snippet_builds_with_its_keys(name, code, tmp_path):
    from xcap_wsgi.paste import app_factory, filter_app_factory

    config = configparser.ConfigParser()
    config.read_string(code)
    for section in config.sections():
        keys = dict(config[section])
        if keys.pop("use", None) != "egg:xcap-wsgi":
            continue
        assert "db" in keys
        keys["db"] = f"sqlite:///{tmp_path / 'xcap.sqlite3'}"  # the snippet names a MySQL server
        if section.startswith("filter:"):
            app = filter_app_factory(None, {}, **keys)
        else:
            app = app_factory({}, **keys)
        assert _store_a_document(app) in (201, 401)


# -- the generated parts (docs/hooks.py, the MkDocs hook that fills them in at build time) ---------


def _hooks():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_settings_page_is_generated_from_the_settings():
    from xcap_wsgi.settings import SETTINGS, reference_markdown as settings_reference_markdown

    page = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    rendered = _hooks().render(page)
    assert settings_reference_markdown() in rendered
    for setting in SETTINGS:
        assert f"| `{setting.name}` | `{setting.flag}` | `{setting.env}` |" in rendered


def test_design_page_carries_the_module_docstrings():
    import ast

    hooks = _hooks()
    rendered = hooks.render((REPO / "docs" / "design.md").read_text(encoding="utf-8"))
    assert "<!-- generated" not in rendered
    long_ones = 0
    for path in (REPO / "xcap_wsgi").rglob("*.py"):
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if len(docstring.splitlines()) >= hooks.LONG:
            long_ones += 1
            parts = path.relative_to(REPO).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            assert f"### `{module}`" in rendered and docstring.splitlines()[0] in rendered, module
    assert long_ones >= 10
    assert rendered.index("### `xcap_wsgi.middleware`") < rendered.index("### `xcap_wsgi.storage.mysql`")


def test_docs_link_only_to_pages_and_anchors_that_exist():
    """The same check as mkdocs build --strict, for runs without MkDocs installed."""
    headings = {}
    for page in (REPO / "docs").glob("*.md"):
        text = _hooks().render(page.read_text(encoding="utf-8"))
        text = FENCE.sub("", text)
        headings[page.name] = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    for page in (REPO / "docs").glob("*.md"):
        for target, anchor in re.findall(r"\]\(([\w-]+\.md)(?:#([\w-]+))?\)", page.read_text(encoding="utf-8")):
            assert target in headings, f"{page.name} links to missing {target}"
            assert not anchor or anchor in headings[target], f"{page.name} links to {target}#{anchor}"


def _slug(heading: str) -> str:
    """Python-Markdown's toc slug: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


# -- the curl sessions, run against a real `xcap-wsgi serve --anonymous` ----------------------------


def _curl_session(page: str, first_line: str) -> str:
    """The ``sh`` block of a page that starts with ``first_line``."""
    text = (REPO / page).read_text(encoding="utf-8")
    found = [code for lang, code in ((m.group(1), m.group(2)) for m in FENCE.finditer(text))
             if lang == "sh" and code.startswith(first_line)]
    assert len(found) == 1, f"{page}: no single sh block starting with {first_line!r}"
    return found[0]


@pytest.fixture
def anonymous_server(tmp_path):
    """`python -m xcap_wsgi serve --anonymous` on a free port, as the quick start runs it."""
    import shutil
    import socket
    import subprocess
    import time

    if shutil.which("curl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("curl is needed to run the documented curl sessions")
        pytest.skip("curl is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, "-m", "xcap_wsgi", "serve", "--anonymous", "--port", str(port)],
                               cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _run(script: str, port: int) -> tuple[list[int], str]:
    """The HTTP statuses the script's curl -i calls printed, in order, and its whole output."""
    import subprocess

    script = script.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    output = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                            timeout=60, check=True).stdout
    return [int(code) for code in re.findall(r"HTTP/1\.1 (\d{3}) ", output)], output


def test_readme_curl_session_stores_and_edits_a_document(anonymous_server):
    script = _curl_session("README.md", "DOC=http://127.0.0.1:8080/")
    statuses, output = _run(script, anonymous_server)
    assert statuses == [201, 201, 200]
    assert output.endswith('<list name="friends"><entry uri="sip:bob@example.com"/></list></resource-lists>')


def test_manual_curl_session_answers_as_its_comments_say(anonymous_server):
    # The conditional element PUT carries the placeholder '"<etag from above>"', which matches
    # no document: 412, as the comment "only if nobody changed the document meanwhile" implies.
    script = _curl_session("docs/manual.md", "ROOT=http://127.0.0.1:8080/")
    statuses, output = _run(script, anonymous_server)
    assert statuses == [201, 200, 200, 200, 412, 200, 200]
    assert "<entry uri=\"sip:bob@example.com\"><display-name>Bob</display-name></entry>" in output
