"""Estimated cost of a job's tokens, from the price table in ``prices.json`` (one file)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from .provider_registry import BY_NAME

_TABLE = Path(__file__).with_name("prices.json")


@functools.cache
def _prices() -> dict[str, dict[str, tuple[float, float]]]:
    raw = json.loads(_TABLE.read_text())
    return {p: {m: (float(v[0]), float(v[1])) for m, v in models.items()} for p, models in raw.items() if not p.startswith("_")}


def price_per_million(provider: str, model: str) -> tuple[float, float] | None:
    """(input, output) USD per million tokens, by the longest matching model prefix in
    the provider's table (its registry entry's ``price_key``)."""
    spec = BY_NAME.get(provider)
    models = _prices().get(spec.price_key, {}) if spec and spec.price_key else {}
    matches = [prefix for prefix in models if model.startswith(prefix)]
    return models[max(matches, key=len)] if matches else None


def estimated_cost_usd(provider: str, model: str, input_tokens: int, output_tokens: int) -> float | None:
    """The list-price cost of these tokens, or None for a model with no price."""
    price = price_per_million(provider, model)
    if price is None:
        return None
    return round((input_tokens * price[0] + output_tokens * price[1]) / 1_000_000, 6)
