"""docs/settings.md's table of settings, rendered from the declarations in
``functions/promptforge/config.py`` (each variable's name, default and description).
tests/unit/test_settings.py fails while the doc is stale; rewrite it with

    .venv/bin/python -m infra.settings_doc
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "settings.md"
BEGIN, END = "<!-- settings:begin -->\n", "<!-- settings:end -->"


def render() -> str:
    """The table: one row per setting, in config.py's order."""
    sys.path.insert(0, str(ROOT / "functions"))
    from promptforge import config

    rows = ["| Variable | Default | Description |", "|---|---|---|"]
    for v in config.variables():
        names = f"`{v.names[0]}`" + "".join(f" (or `{n}`)" for n in v.names[1:])
        rows.append(f"| {names} | {v.default} | {v.description} |")
    return "\n".join(rows) + "\n"


def section(text: str) -> str:
    match = re.search(re.escape(BEGIN) + "(.*?)" + re.escape(END), text, re.S)
    if match is None:
        raise ValueError(f"{DOC.name} has no settings section")
    return match.group(1)


def rewrite(text: str) -> str:
    section(text)  # it must be there
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + render() + text[end:]


if __name__ == "__main__":
    DOC.write_text(rewrite(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"rewrote {DOC.relative_to(ROOT)}")
