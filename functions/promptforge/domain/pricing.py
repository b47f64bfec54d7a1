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


@functools.cache
def _batch_discounts() -> dict[str, float]:
    return {p: float(v) for p, v in json.loads(_TABLE.read_text())["_batch_price_factor"].items()}


def batch_price_factor(provider: str) -> float | None:
    """What a provider's batch API charges as a fraction of its list price (0.5: half),
    or None for a provider without a batch price in the table."""
    spec = BY_NAME.get(provider)
    return _batch_discounts().get(spec.price_key) if spec and spec.price_key else None


def estimated_cost_usd(provider: str, model: str, input_tokens: int, output_tokens: int, economy: bool = False) -> float | None:
    """The cost of these tokens at list price (at the batch price for ``economy``), or
    None for a model with no price."""
    price = price_per_million(provider, model)
    factor = batch_price_factor(provider) if economy else 1.0
    if price is None or factor is None:
        return None
    return round((input_tokens * price[0] + output_tokens * price[1]) * factor / 1_000_000, 6)
