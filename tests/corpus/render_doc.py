"""The generated parts of docs/input.md: the input limits (from config.py's defaults) and the
table of malformed inputs (from expected.json). test_input_doc.py checks the doc against
them; after changing either source, rewrite the doc with

    .venv/bin/python -m tests.corpus.render_doc
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "input.md"
EXPECTED = Path(__file__).resolve().parent / "expected.json"
CONFIG = ROOT / "functions" / "promptforge" / "config.py"

# What each PROMPTFORGE_MAX_* variable limits. A new one must be described here (the doc
# test fails until it is).
LIMITS = {
    "PROMPTFORGE_MAX_UPLOAD_BYTES": "Largest input file. A larger upload fails the job (`file_too_large`); "
    "`POST /v1/jobs/init` returns it as `max_upload_bytes`.",
    "PROMPTFORGE_MAX_LINE_BYTES": "Longest line, in bytes, not counting its `\\n` or `\\r\\n`. "
    "A longer line is an `invalid_line` (never read into memory whole).",
    "PROMPTFORGE_MAX_PROMPTS_PER_JOB": "Most non-blank lines (bad ones included) in one file. "
    "More fails the job (`too_many_prompts`).",
    "PROMPTFORGE_MAX_CALLBACKS_IN_FLIGHT": "Callbacks of one client being sent at once; more wait for a place "
    "(Cloud Tasks retries them).",
    "PROMPTFORGE_MAX_BODY_BYTES": "Largest body of `POST /v1/jobs/init`, counted on the bytes received "
    "(`413 payload_too_large`).",
    "PROMPTFORGE_MAX_SMALL_BODY_BYTES": "Largest body of cancel and of the Cloud Tasks targets (`413`).",
    "PROMPTFORGE_MAX_JSON_DEPTH": "Deepest nesting of objects and arrays in a request body (`400`).",
    "PROMPTFORGE_MAX_JSON_CONTAINERS": "Most objects and arrays in one request body (`400`).",
    "PROMPTFORGE_MAX_AWAITING_UPLOADS": "Jobs of one client created and not yet uploaded "
    "(`429 too_many_awaiting_uploads`); 0 turns the cap off.",
    "PROMPTFORGE_MAX_OPEN_JOBS": "Jobs of one client not ended: awaiting upload, `PENDING` or active "
    "(`429 too_many_open_jobs`); 0 turns the cap off.",
    "PROMPTFORGE_MAX_EVENT_STREAMS": "Event streams of one client open at once (`429 too_many_event_streams`); "
    "0 turns the cap off.",
}


@contextmanager
def _clean_env() -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("PROMPTFORGE_")}
    for k in saved:
        del os.environ[k]
    try:
        yield
    finally:
        os.environ.update(saved)


def max_variables() -> list[str]:
    """The PROMPTFORGE_MAX_* variables config.py reads, in its order."""
    return list(dict.fromkeys(re.findall(r'"(PROMPTFORGE_MAX_\w+)"', CONFIG.read_text(encoding="utf-8"))))


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n:,} ({n // factor} {unit})"
    return f"{n:,}"


def render_limits() -> str:
    sys.path.insert(0, str(ROOT / "functions"))
    from promptforge import config
    from promptforge.domain.jsonl import MAX_PROMPT_ID_CHARS
    from promptforge.domain.params import KNOWN_PARAMS

    with _clean_env():
        settings = config.load()
    rows = ["| Variable | Default | Limits |", "|---|---|---|"]
    for var in max_variables():
        default = getattr(settings, var.removeprefix("PROMPTFORGE_").lower())
        rows.append(f"| `{var}` | {_size(default)} | {LIMITS[var]} |")
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
        text = re.sub(
            rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)",
            lambda m, body=body: m.group(1) + body + m.group(2),
            text,
            flags=re.S,
        )
    return text


if __name__ == "__main__":
    DOC.write_text(rewrite(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"rewrote {DOC.relative_to(ROOT)}")
