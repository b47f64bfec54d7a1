"""The providers table in docs/providers.md, generated from the provider registry.

    .venv/bin/python -m tests.providers.render_doc          # rewrite the table
    .venv/bin/python -m tests.providers.render_doc --check  # exit 1 if it is stale

tests/providers/test_registry.py fails while the committed table differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from promptforge.domain.provider_registry import PROVIDERS

DOC = Path(__file__).resolve().parents[2] / "docs" / "providers.md"
BEGIN = (
    "<!-- providers table: generated from functions/promptforge/domain/provider_registry.py by tests/providers/render_doc.py -->"
)
END = "<!-- end of the providers table -->"


def table() -> str:
    rows = ["| name | client | environment | notes |", "|---|---|---|---|"]
    rows += [f"| `{p.name}` | {p.client} | {p.environment} | {p.notes} |".replace("|  |", "| |") for p in PROVIDERS]
    return "\n".join(rows)


def rendered(text: str) -> str:
    """``text`` with the table between the markers replaced by the registry's."""
    head, found, rest = text.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not found or not found_end:
        raise SystemExit(f"{DOC} lacks the table markers")
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> int:
    text = DOC.read_text()
    new = rendered(text)
    if "--check" in sys.argv[1:]:
        if new != text:
            print(f"{DOC} is stale: run python -m tests.providers.render_doc", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
