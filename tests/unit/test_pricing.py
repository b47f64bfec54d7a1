import json
from pathlib import Path

from promptforge.domain.pricing import estimated_cost_usd, price_per_million


def test_the_longest_model_prefix_wins() -> None:
    assert price_per_million("openai", "gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert price_per_million("openai", "gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price_per_million("openai", "unknown-model") is None
    assert price_per_million("nobody", "gpt-4o") is None


def test_cost_is_tokens_times_price_per_million() -> None:
    assert estimated_cost_usd("openai", "gpt-4o-mini", 1_000_000, 1_000_000) == 0.75
    assert estimated_cost_usd("openai", "gpt-4o-mini", 2000, 500) == round((2000 * 0.15 + 500 * 0.6) / 1e6, 6)
    assert estimated_cost_usd("anthropic", "no-such-model", 10, 10) is None


def test_every_price_in_the_table_is_a_pair_of_non_negative_numbers() -> None:
    table = json.loads((Path(__file__).parents[2] / "functions/promptforge/domain/prices.json").read_text())
    for provider, models in table.items():
        if provider.startswith("_"):
            continue
        for model, pair in models.items():
            assert len(pair) == 2 and all(isinstance(v, int | float) and v >= 0 for v in pair), (provider, model)
