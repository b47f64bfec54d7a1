"""The throughput benchmark's scenarios: what each asks of the provider and of the tools,
and that the ideal counts tokens exactly as the fake server charges them."""

from __future__ import annotations

import json
from pathlib import Path

from starlette.testclient import TestClient

from infra.bench.throughput import FAULTS, TOOLS, parse_args, prompt_texts, scenarios_of, write_files
from infra.fake_llm import create_app
from infra.fake_llm.server import FakeLLMConfig


def test_the_suite_has_the_four_scenarios_of_issue_12() -> None:
    points = scenarios_of(parse_args(["--suite", "--tools", "promptforge,oaib,aiolimiter"]))
    by_kind = {(p.kind, p.latency_ms): p for p in points}
    assert [p.kind for p in points] == ["configured"] * 3 + ["learned", "tokens", "faults"]
    for latency in (100.0, 300.0, 1000.0):
        point = by_kind[("configured", latency)]
        assert (point.prompts, point.rpm, point.configured, point.faults) == (10_000, 6000, True, ())
        assert point.tools == (TOOLS if latency == 300 else ("promptforge",))
    learned = by_kind[("learned", 300.0)]
    assert (learned.prompts, learned.configured, learned.tools) == (10_000, False, ("promptforge",))
    tokens = by_kind[("tokens", 300.0)]
    assert (tokens.prompts, tokens.tpm, tokens.max_tokens, tokens.prompt_chars) == (3000, 400_000, 256, (200, 4000))
    faults = by_kind[("faults", 300.0)]
    assert dict(faults.faults) == {"server_error": 0.03, "reset": 0.01} == dict(FAULTS)
    # Separate buckets in the fake server and separate budgets in PromptForge.
    assert len({p.model for p in points}) == len(points)


def test_prompts_shrink_every_scenario() -> None:
    points = scenarios_of(parse_args(["--scenario", "tokens", "--scenario", "learned", "--prompts", "2000"]))
    assert [(p.kind, p.prompts) for p in points] == [("learned", 2000), ("tokens", 600)]


def test_long_prompts_fall_in_their_range_and_are_the_same_every_time() -> None:
    prompts = prompt_texts(500, (200, 4000))
    lengths = [len(text) for _, text in prompts]
    assert min(lengths) >= 200 and max(lengths) <= 4000
    assert max(lengths) - min(lengths) > 3000  # spread over the range, not one size
    assert len({text for _, text in prompts}) == 500
    assert prompt_texts(500, (200, 4000)) == prompts


def test_the_ideal_counts_the_tokens_the_fake_server_charges(tmp_path: Path) -> None:
    """Every request of the tokens scenario sent to the fake server: what its limits took
    is exactly the total the ideal is computed from (prompt tokens + max_tokens)."""
    point = scenarios_of(parse_args(["--scenario", "tokens", "--prompts", "100"]))[0]
    files = write_files(point, tmp_path)
    app = create_app(FakeLLMConfig(tpm=10**9, rpm=10**6))
    with TestClient(app, headers={"Authorization": "Bearer k"}) as client:
        for line in files.requests.read_text().splitlines():
            body = json.loads(line)
            body.pop("metadata")
            assert client.post("/v1/chat/completions", json=body).status_code == 200
        charged = client.get("/_stats").json()["usage"]["charged_tokens"]
    assert charged == files.tokens
    assert files.tokens > 30 * (200 // 4 + 256)  # long prompts and max_tokens 256, not the short default
    rows = [json.loads(line) for line in files.promptforge.read_text().splitlines()]
    assert [r["prompt_id"] for r in rows] == files.ids and len(files.ids) == 30
