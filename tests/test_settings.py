"""The one settings object: every default stated once, every source read the same way, every
boolean switchable both ways, every command reading it (xcap_wsgi.settings, xcap_wsgi.cli)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from pathlib import Path

import pytest

from xcap_wsgi.build import standalone_app
from xcap_wsgi.cli import build_parser, main, serve_settings
from xcap_wsgi.middleware import XCAPMiddleware
from xcap_wsgi.settings import DEFAULTS, SETTINGS, STANDALONE_DEFAULTS, Settings, reference_markdown
from xcap_wsgi.subscribers import open_subscribers

PACKAGE = Path(__file__).resolve().parent.parent / "xcap_wsgi"
BOOLEANS = [s for s in SETTINGS if s.is_bool]

#: Public keyword defaults that are settings: (module, class, function or None for a dataclass
#: body, {parameter: setting}). Each must be written ``DEFAULTS.<setting>``, not restated.
KEYWORD_DEFAULTS = [
    ("middleware.py", "XCAPMiddleware", "__init__",
     {"root": "root", "default_domain": "default_domain", "anonymous": "anonymous", "admins": "admins",
      "max_body_size": "max_body_size", "max_uri_length": "max_uri_length", "public_url": "public_url",
      "doc_uri_root": "doc_uri_root", "log_requests": "log_requests"}),
    ("digest.py", "DigestAuthMiddleware", "__init__",
     {"default_domain": "default_domain", "roots": "root", "max_uri_length": "max_uri_length",
      "algorithms": "digest_algorithms", "password_column": "password_column",
      "nonce_lifetime": "nonce_lifetime"}),
    ("auth.py", "DefaultPolicy", "__init__", {"default_domain": "default_domain"}),
    ("health.py", "HealthMiddleware", "__init__", {"live_path": "health_path", "ready_path": "ready_path"}),
    ("httpserver.py", "Limits", None,
     {"connection_limit": "connection_limit", "idle_timeout": "idle_timeout", "header_timeout": "header_timeout",
      "body_timeout": "body_timeout", "max_body_size": "max_body_size"}),
]


def _defaults_in_source(module: str, cls: str, function: str | None) -> dict[str, str]:
    """Parameter (or dataclass field) -> the source text of its default."""
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    klass = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls)
    if function is None:
        return {n.target.id: ast.unparse(n.value) for n in klass.body
                if isinstance(n, ast.AnnAssign) and n.value is not None}
    func = next(n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == function)
    args = func.args
    found = {a.arg: ast.unparse(d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None}
    positional = args.posonlyargs + args.args
    found.update({a.arg: ast.unparse(d) for a, d in zip(positional[len(positional) - len(args.defaults):],
                                                        args.defaults, strict=True)})
    return found


@pytest.mark.parametrize("module, cls, function, parameters", KEYWORD_DEFAULTS,
                         ids=[f"{c}" for _, c, _, _ in KEYWORD_DEFAULTS])
def test_keyword_defaults_refer_to_the_settings(module, cls, function, parameters):
    written = _defaults_in_source(module, cls, function)
    for parameter, setting in parameters.items():
        assert written[parameter] == f"DEFAULTS.{setting}", f"{cls}.{parameter} restates its default"


def test_digest_from_settings_restates_no_default():
    """``digest.from_settings`` passes the settings through: no ``or <default>`` fallbacks."""
    source = inspect.getsource(__import__("xcap_wsgi.digest", fromlist=["from_settings"]).from_settings)
    assert " or (" not in source and " or 300" not in source and " or 4096" not in source
    assert '"auto"' not in source and "xcap-root" not in source


def test_defaults_are_one_frozen_typed_object():
    assert DEFAULTS == Settings()
    assert DEFAULTS.max_body_size == 4 * 1024 * 1024 and DEFAULTS.root == ("/xcap-root",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.port = 1  # type: ignore[misc]
    for setting in SETTINGS:
        assert setting.default == getattr(DEFAULTS, setting.name), setting.name
        assert setting.help and "\n" not in setting.help, setting.name


def test_values_are_converted_from_strings_or_taken_typed():
    settings = Settings(max_body_size="4m", root="/a, /b", port="8081", anonymous="yes")
    assert (settings.max_body_size, settings.root, settings.port, settings.anonymous) == \
        (4 * 1024 * 1024, ("/a", "/b"), 8081, True)
    assert Settings(max_body_size=1024, root=("/x",)).root == ("/x",)
    assert settings.replace(port="9") == dataclasses.replace(settings, port=9)


@pytest.mark.parametrize("values, named", [
    ({"identity_header": "X-Asserted-Identity"}, "trusted_proxies"),
    ({"port": "70000"}, "port"),
    ({"threads": "-1"}, "threads"),
    ({"root": ""}, "root"),
    ({"port": "eighty"}, "port"),
    ({"idle_timeout": "0"}, "idle_timeout"),
    ({"anonymous": "maybe"}, "anonymous"),
    ({"max_bdy_size": "1"}, "max_bdy_size"),
], ids=["identity-without-proxies", "port-range", "negative-threads", "no-root", "port-text", "zero-timeout",
        "not-a-boolean", "unknown-name"])
def test_bad_values_and_combinations_are_refused_naming_the_setting(values, named):
    with pytest.raises(ValueError, match=named):
        Settings.from_strings(values)


# -- sources and precedence -----------------------------------------------------------------------


def _ini(tmp_path, body: str) -> str:
    path = tmp_path / "xcap.ini"
    path.write_text("[xcap-wsgi]\n" + textwrap.dedent(body))
    return str(path)


def test_command_line_over_ini_over_environment_over_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("XCAP_PORT", "1001")
    monkeypatch.setenv("XCAP_THREADS", "3")
    monkeypatch.setenv("XCAP_DEFAULT_DOMAIN", "env.example")
    ini = _ini(tmp_path, "port = 1002\nthreads = 4\n")
    args = build_parser().parse_args(["serve", "--config", ini, "--port", "1003"])
    settings = serve_settings(args)
    assert settings.port == 1003  # command line
    assert settings.threads == 4  # ini over environment
    assert settings.default_domain == "env.example"  # environment over default
    assert settings.workers == DEFAULTS.workers  # default
    assert settings.log_requests is True  # the standalone server's own default
    assert Settings.from_sources(environ={}).log_requests is False  # the middleware's


@pytest.mark.parametrize("setting", BOOLEANS, ids=[s.name for s in BOOLEANS])
def test_every_boolean_has_an_on_and_an_off_option(setting, monkeypatch):
    flag, negative = setting.flag, setting.negative_flag
    assert negative == "--no-" + flag[2:]
    monkeypatch.setenv(setting.env, "false")
    assert getattr(serve_settings(build_parser().parse_args(["serve", flag])), setting.name) is True
    monkeypatch.setenv(setting.env, "true")
    assert getattr(serve_settings(build_parser().parse_args(["serve", negative])), setting.name) is False
    monkeypatch.delenv(setting.env)
    unset = serve_settings(build_parser().parse_args(["serve"]))
    assert getattr(unset, setting.name) is STANDALONE_DEFAULTS.get(setting.name, setting.default)


SPELLINGS = [("true", True), ("false", False), ("yes", True), ("no", False), ("on", True), ("off", False),
             ("1", True), ("0", False), ("TRUE", True), ("Off", False)]


@pytest.mark.parametrize("text, value", SPELLINGS, ids=[t for t, _ in SPELLINGS])
def test_booleans_read_every_spelling_in_ini_and_environment(tmp_path, text, value):
    for setting in BOOLEANS:
        assert getattr(Settings.from_sources(environ={setting.env: text}), setting.name) is value
        ini = _ini(tmp_path, f"{setting.name} = {text}\n")
        assert getattr(Settings.from_sources(config=ini, environ={}), setting.name) is value


def test_no_log_requests_reaches_the_middleware_of_serve(tmp_path, monkeypatch):
    """The access log of ``serve`` can be switched off on the command line (before, only
    ``XCAP_LOG_REQUESTS=0`` could), and on again over the environment."""
    db = f"sqlite:///{tmp_path / 'x.sqlite3'}"

    def middleware_of(*options):
        settings = serve_settings(build_parser().parse_args(["serve", "--db", db, "--anonymous", *options]))
        middleware = standalone_app(settings)
        while not isinstance(middleware, XCAPMiddleware):  # health, metrics layers in front
            middleware = middleware.__dict__["app"]
        middleware.store.close()
        return middleware

    assert middleware_of().log_requests is True
    assert middleware_of("--no-log-requests").log_requests is False
    monkeypatch.setenv("XCAP_LOG_REQUESTS", "0")
    assert middleware_of("--log-requests").log_requests is True


def test_repeated_usage_options_are_collected(monkeypatch):
    monkeypatch.delenv("XCAP_USAGE", raising=False)
    notes = "org.example.notes=urn:example:notes;application/vnd.example.notes+xml"
    todo = "org.example.todo=urn:example:todo;application/vnd.example.todo+xml"
    args = build_parser().parse_args(["serve", "--usage", notes, "--usage", todo])
    assert serve_settings(args).usage == (notes, todo)


# -- every command takes --config ---------------------------------------------------------------------


def _commands() -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


@pytest.mark.parametrize("command", ["serve", "initdb", "adduser", "export", "import", "purge", "check"])
def test_every_command_takes_config_db_and_default_domain(command):
    options = {o for action in _commands()[command]._actions for o in action.option_strings}
    assert {"--config", "--db", "--default-domain"} <= options, command


def test_initdb_reads_its_database_from_the_config_file(tmp_path, capsys):
    target = tmp_path / "from-ini.sqlite3"
    ini = _ini(tmp_path, f"db = sqlite:///{target}\n")
    assert main(["initdb", "--config", ini, "--default-domain", "example.com"]) == 0
    assert target.exists() and str(target) in capsys.readouterr().out
    assert main(["initdb", "--config", str(tmp_path / "missing.ini")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_adduser_reads_config_and_completes_a_bare_user_with_the_default_domain(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'auth.sqlite3'}"
    ini = _ini(tmp_path, f"auth_db = {url}\ndefault_domain = ini.example\n")
    assert main(["adduser", "bob", "--password", "pw", "--config", ini]) == 0
    assert main(["adduser", "carol", "--password", "pw", "--config", ini, "--default-domain", "example.com"]) == 0
    subscribers = open_subscribers(url)
    try:
        assert subscribers.lookup("bob", "ini.example") is not None
        assert subscribers.lookup("carol", "example.com") is not None
    finally:
        subscribers.close()
    assert "added bob@ini.example" in capsys.readouterr().out


def test_settings_reference_shows_the_off_spelling_of_booleans():
    table = reference_markdown()
    for setting in BOOLEANS:
        assert f"`{setting.negative_flag}`" in table, setting.name
