"""MkDocs hooks: the generated parts of the manual, computed from the code at build time.

* ``<!-- generated: settings-reference -->`` becomes the table of every setting, from
  the fields of ``xcap_wsgi.settings.Settings`` (via ``xcap_wsgi.settings.reference_markdown``),
  so a setting added to the code appears in docs/settings.md without editing it.
* ``<!-- generated: module-notes MODULE ... -->`` becomes the design notes kept next to the code:
  the docstring of every module of ``xcap_wsgi`` that has a long one (``LONG`` lines or more),
  each under its own heading, the named modules first in the order given, then the others by
  name. A named module that no longer exists is left out, so moving code does not break the
  build, and a new module with a long docstring appears by itself.

The tree being built is put first on ``sys.path``, so the docs describe this checkout's code,
not whatever copy of the package is installed. ``tests/test_docs.py`` runs the same functions.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SETTINGS_MARKER = "<!-- generated: settings-reference -->"
MODULE_NOTES = re.compile(r"<!-- generated: module-notes ([\w. ]+?) -->")


def settings_reference() -> str:
    from xcap_wsgi.settings import reference_markdown

    return reference_markdown()


def module_path(module: str) -> Path:
    base = REPO.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def module_docstring(module: str) -> str:
    """A module's docstring, read from its source file (nothing is imported or executed)."""
    return ast.get_docstring(ast.parse(module_path(module).read_text(encoding="utf-8"))) or ""


def _as_markdown(docstring: str) -> str:
    # reStructuredText habits in docstrings: "text::" introduces an indented literal block, and a
    # title underlined with dashes would become a Markdown heading that outranks the module's own.
    text = re.sub(r"::\n", ":\n", docstring)
    return re.sub(r"^(.+)\n-{3,}$", r"**\1**", text, flags=re.M)


#: Docstrings of at least this many lines are design notes worth a section of their own.
LONG = 6


def documented_modules(preferred: list[str]) -> list[str]:
    """Modules of xcap_wsgi with a long docstring: ``preferred`` (those that exist) first."""
    found = []
    for path in sorted((REPO / "xcap_wsgi").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if len(module_docstring(module).splitlines()) >= LONG:
            found.append(module)
    return [m for m in preferred if m in found] + [m for m in found if m not in preferred]


def module_notes(preferred: list[str]) -> str:
    parts = []
    for module in documented_modules(preferred):
        path = module_path(module).relative_to(REPO).as_posix()
        parts.append(f"### `{module}`\n\n*From the docstring of `{path}`.*\n\n"
                     f"{_as_markdown(module_docstring(module))}\n")
    return "\n".join(parts)


def render(markdown: str) -> str:
    """The page with its generated parts filled in."""
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_reference())
    return MODULE_NOTES.sub(lambda m: module_notes(m.group(1).split()), markdown)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return render(markdown)
