"""docs/input.md cannot drift: its limits table and its table of malformed inputs are
rendered from config.py and expected.json (see render_doc.py)."""

from __future__ import annotations

import pytest

from tests.corpus import render_doc


@pytest.mark.parametrize("name", sorted(render_doc.SECTIONS))
def test_the_generated_sections_of_docs_input_md_are_current(name: str) -> None:
    text = render_doc.DOC.read_text(encoding="utf-8")
    assert render_doc.section(text, name) == render_doc.SECTIONS[name](), (
        f"docs/input.md's {name} section is stale: run .venv/bin/python -m tests.corpus.render_doc"
    )


def test_every_max_variable_in_config_is_in_the_limits_table() -> None:
    variables = render_doc.max_variables()
    assert len(variables) >= 11, "config.py declares no PROMPTFORGE_MAX_* variable?"
    limits = render_doc.section(render_doc.DOC.read_text(encoding="utf-8"), "limits")
    for var, (_, description) in variables.items():
        assert description and f"| `{var}` |" in limits, f"describe {var} on its Field in config.py and render docs/input.md"
