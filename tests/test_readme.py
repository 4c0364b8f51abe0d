"""The README and the manual in docs/: their commands, options and links must match the code.

(The settings reference is generated when the manual is built; tests/test_docs.py checks that, and
runs every Python snippet.)
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from xcap_wsgi.cli import main

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
SH_BLOCKS = re.findall(r"^```sh\n(.*?)^```", README, flags=re.S | re.M)
DOCS = {page: page.read_text(encoding="utf-8") for page in sorted((REPO / "docs").glob("*.md"))}
#: Shell blocks of the README and of every page of the manual.
ALL_SH_BLOCKS = [block for text in [README, *DOCS.values()]
                 for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)]


def test_first_two_shell_blocks_are_the_quick_start():
    assert SH_BLOCKS[0].strip() == "pip install . && xcap-wsgi serve --anonymous"
    assert SH_BLOCKS[1].strip() == "pip install -e '.[test]' && python -m pytest"


def test_the_test_extra_of_the_quick_start_exists():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extra = " ".join(project["optional-dependencies"]["test"])
    for requirement in ("pytest", "WebTest", "Flask", "pyramid", "PasteDeploy"):
        assert requirement in extra


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def _readme_commands():
    for block in ALL_SH_BLOCKS:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0]
            for command in line.split("&&"):
                words = shlex.split(command)
                if words[:1] == ["xcap-wsgi"]:
                    yield words[1:]


def test_every_xcap_wsgi_command_in_the_readme_exists_with_its_options(capsys):
    commands = list(_readme_commands())
    assert {c[0] for c in commands} >= {"serve", "initdb", "adduser", "export", "import", "purge", "check"}
    for argv in commands:
        text = _help(capsys, argv[0])
        for word in argv[1:]:
            if word.startswith("--"):
                assert word.split("=", 1)[0] in text, f"xcap-wsgi {' '.join(argv)}: {word} is not an option"


def test_files_the_readme_points_to_exist():
    for link in re.findall(r"\]\(((?:examples|xcap_wsgi|tests|docs)/[^)#]+)(?:#[^)]*)?\)", README):
        assert (REPO / link).is_file(), link
    for name in ("LICENSE", "CHANGELOG.md"):
        assert f"]({name})" in README and (REPO / name).is_file()


def test_files_and_commands_the_manual_names_exist():
    """Paths in `code` in the manual (examples/..., tests/..., benchmarks/...) are real files."""
    for page, text in DOCS.items():
        for path in re.findall(r"`((?:examples|tests|benchmarks|galera|xcap_wsgi)/[\w./-]+\.\w+)`", text):
            assert (REPO / path).is_file(), f"{page.name}: {path}"
