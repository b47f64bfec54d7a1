"""Each batch adapter opened the way a worker opens it (``LiveBatchProviders`` with the
environment pointing every provider at the session's fake LLM server), and the fake's
batch clock, moved by the tests instead of waiting."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from promptforge import config
from promptforge.adapters.batches import LiveBatchProviders
from promptforge.service.batch_port import BatchProvider
from tests.providers.conftest import PROVIDERS, FakeServer, fake, fake_server, opener_for

__all__ = ["BATCH_PROVIDERS", "ENDPOINT", "advance", "batch_settings", "fake", "fake_server"]

# Every provider of the registry with a batch API on a deployment that declares one.
BATCH_PROVIDERS = ("openai", "anthropic", "gemini", "fake", "openai_compatible")
ENDPOINT = "fake-server"


def advance(server: FakeServer, seconds: float) -> datetime:
    """Move the fake's batch clock ``seconds`` forward; returns the time it then tells (the
    session's tests move it, so it runs ahead of the wall clock)."""
    answer = requests.post(f"{server.base_url}/_batches/advance", json={"seconds": seconds}, timeout=5)
    answer.raise_for_status()
    return datetime.fromtimestamp(float(answer.json()["now"]), UTC)


def batch_settings(base_url: str, monkeypatch: pytest.MonkeyPatch) -> config.Settings:
    """Settings (and environment) with every provider at ``base_url``, and an operator
    endpoint there that declares OpenAI's batch API."""
    opener_for(base_url, monkeypatch)  # the fast path's keys and base URLs
    endpoint = config.Endpoint(ENDPOINT, f"{base_url}/v1", key_env="OPENAI_COMPATIBLE_API_KEY", batch="openai")
    return dataclasses.replace(
        config.load(), providers=PROVIDERS, fake_llm_url=f"{base_url}/v1", endpoints={endpoint.name: endpoint}
    )


@pytest.fixture
def open_batches(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``open_batches(name)``: the batch provider ``name`` opened against the fake."""
    settings = batch_settings(fake.base_url, monkeypatch)
    factory = LiveBatchProviders()

    def opener(name: str) -> BatchProvider:
        return factory(name, settings, ENDPOINT if name == "openai_compatible" else None)

    return opener
