"""The README is the manual: its generated parts and its commands must match the code."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from xcap_wsgi.admin import README_END, README_START, settings_reference_markdown
from xcap_wsgi.cli import main

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
SH_BLOCKS = re.findall(r"^```sh\n(.*?)^```", README, flags=re.S | re.M)


def test_settings_reference_is_the_generated_table():
    start, end = README.index(README_START) + len(README_START), README.index(README_END)
    assert README[start:end] == "\n" + settings_reference_markdown(), (
        "README settings table is stale: run "
        "python -c \"from xcap_wsgi.admin import update_readme; update_readme()\"")


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
    for block in SH_BLOCKS:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0]
            for command in line.split("&&"):
                words = shlex.split(command)
                if words[:1] == ["xcap-wsgi"]:
                    yield words[1:]


def test_every_xcap_wsgi_command_in_the_readme_exists_with_its_options(capsys):
    commands = list(_readme_commands())
    assert {c[0] for c in commands} >= {"serve", "initdb", "export", "import", "purge", "check"}
    for argv in commands:
        text = _help(capsys, argv[0])
        for word in argv[1:]:
            if word.startswith("--"):
                assert word.split("=", 1)[0] in text, f"xcap-wsgi {' '.join(argv)}: {word} is not an option"


def test_files_the_readme_points_to_exist():
    for link in re.findall(r"\]\(((?:examples|xcap_wsgi|tests)/[^)]+)\)", README):
        assert (REPO / link).is_file(), link
