"""The settings reference: a Markdown table generated from ``xcap_wsgi.settings.SETTINGS``.

The manual's Settings page is built from it (``docs/hooks.py``), so no setting is described by
hand in two places.
"""

from __future__ import annotations


def _show_default(value) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, tuple):
        return "`" + ",".join(value) + "`" if value else "(none)"
    if value is None:
        return "(none)"
    return f"`{value}`"


def settings_reference_markdown() -> str:
    """The table of every setting: ini name, ``serve`` option, environment variable, default, meaning."""
    from .settings import SETTINGS

    lines = ["| Setting (ini / PasteDeploy) | `serve` option | Environment | Default | Used by | Meaning |",
             "|---|---|---|---|---|---|"]
    for s in SETTINGS:
        help_text = s.help.replace("|", "\\|")
        lines.append(f"| `{s.name}` | `{s.flag}` | `{s.env}` | {_show_default(s.default)} | {s.scope} | {help_text} |")
    return "\n".join(lines) + "\n"
