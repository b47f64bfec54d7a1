"""The generated parts of docs/input.md: the input limits (config.py's declarations) and the
table of malformed inputs (from expected.json). test_input_doc.py checks the doc against
them; after changing either source, rewrite the doc with

    .venv/bin/python -m tests.corpus.render_doc
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "input.md"
EXPECTED = Path(__file__).resolve().parent / "expected.json"


def _settings() -> Any:
    sys.path.insert(0, str(ROOT / "functions"))
    from promptforge import config

    return config


def max_variables() -> dict[str, tuple[str, str]]:
    """Each PROMPTFORGE_MAX_* variable -> (its default, what it limits), in config.py's order.

    The description is the field's own (config.py declares each setting once); a new
    limit shows here, and in docs/input.md, as soon as it is declared."""
    return {v.names[0]: (v.default, v.description) for v in _settings().variables() if v.names[0].startswith("PROMPTFORGE_MAX_")}


def render_limits() -> str:
    _settings()  # puts functions/ on the path
    from promptforge.domain.jsonl import MAX_PROMPT_ID_CHARS
    from promptforge.domain.params import KNOWN_PARAMS

    rows = ["| Variable | Default | Limits |", "|---|---|---|"]
    for var, (default, limits) in max_variables().items():
        rows.append(f"| `{var}` | {default} | {limits} |")
    rows.append(
        f"| (fixed) | {MAX_PROMPT_ID_CHARS} | Longest `prompt_id`, in characters (`MAX_PROMPT_ID_CHARS` in `domain/jsonl.py`). |"
    )
    known = ", ".join(f"`{p}`" for p in sorted(KNOWN_PARAMS))
    return "\n".join(rows) + f"\n\nKnown `params` names (any other is an `invalid_line`): {known}.\n"


def _ids(ids: list[str]) -> str:
    if not ids:
        return "none"
    return ", ".join(f"`{i}`" if len(i) <= 16 else f"`{i[:3]}…` ({len(i)} characters)" for i in ids)


def _outcome(case: dict[str, Any]) -> str:
    if case["status"] == "FAILED":
        text = f"`FAILED`, `{case['error_code']}`"
    else:
        lines = [str(line) for line, _ in case["errors"]]
        where = f"line {lines[0]}" if len(lines) == 1 else f"lines {', '.join(lines)}"
        errors = f"`invalid_line` on {where}" if lines else "no errors"
        text = f"`COMPLETED`: results {_ids(case['results'])}; {errors}"
    if case.get("settings"):
        text += " (with " + ", ".join(f"`{k}` = {v}" for k, v in case["settings"].items()) + ")"
    if "contract_mismatch" in case:
        text += f". **Not yet**: today {case['today']}"
    return text


def render_corpus() -> str:
    cases = json.loads(EXPECTED.read_text(encoding="utf-8"))["cases"]
    rows = ["| Input | What it holds | Outcome |", "|---|---|---|"]
    for name, case in cases.items():
        rows.append(f"| [`{name}`](../tests/corpus/{name}) | {case['description']} | {_outcome(case)} |")
    return "\n".join(rows) + "\n"


SECTIONS = {"limits": render_limits, "corpus": render_corpus}


def section(text: str, name: str) -> str:
    """The text between ``<!-- name:begin -->`` and ``<!-- name:end -->``."""
    match = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", text, re.S)
    if match is None:
        raise ValueError(f"docs/input.md has no {name} section")
    return match.group(1)


def rewrite(text: str) -> str:
    for name, render in SECTIONS.items():
        section(text, name)  # it must be there
        body = render()

        def fill(m: re.Match[str], body: str = body) -> str:
            return m.group(1) + body + m.group(2)

        text = re.sub(
            rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)",
            fill,
            text,
            flags=re.S,
        )
    return text


if __name__ == "__main__":
    DOC.write_text(rewrite(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"rewrote {DOC.relative_to(ROOT)}")
