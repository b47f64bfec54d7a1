"""The fake LLM server (a real subprocess speaking every wire format: the session's
``fake_llm``), restored to its defaults around each test, and each provider opened against
it the way a worker opens it: ``open_provider`` with the environment pointing at the fake."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from promptforge import config
from promptforge.adapters.providers import Provider, open_provider
from promptforge.domain.provider_registry import CREDENTIAL_ENVS, NAMES

PROVIDERS = NAMES  # every provider of the registry runs these tests
KEY = "sk-test-secret-key-7Q2"


class FakeServer:
    """The running fake LLM: its base URL and its control endpoints."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._defaults: dict[str, Any] | None = None

    def configure(self, **changes: Any) -> dict[str, Any]:
        response = requests.post(f"{self.base_url}/_config", json=changes, timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def stats(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.base_url}/_stats", timeout=5).json())

    def restore(self) -> None:
        """Back to the configuration it started with, counters zeroed, buckets full.

        Waits (a few seconds at most) for requests still held by an earlier test's
        ``timeout`` fault, so that they are not counted in this one.
        """
        deadline = time.monotonic() + 10
        while self.stats()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._defaults is None:
            self._defaults = dict(requests.get(f"{self.base_url}/_config", timeout=5).json())
        self.configure(**self._defaults)
        requests.post(f"{self.base_url}/_reset", timeout=5).raise_for_status()


@pytest.fixture(scope="session")
def fake_server(fake_llm: str) -> FakeServer:
    """The session's fake LLM (shared with the service tests, hence the restores)."""
    return FakeServer(fake_llm)


@pytest.fixture
def fake(fake_server: FakeServer) -> Iterator[FakeServer]:
    """The session's fake server, restored to its defaults for this test and after it."""
    fake_server.restore()
    yield fake_server
    fake_server.restore()


def opener_for(base_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``opener(name)``: the provider ``name`` opened by ``open_provider`` with the
    environment and settings pointing every provider at ``base_url``."""
    for var in (*CREDENTIAL_ENVS, "OPENAI_COMPATIBLE_API_KEY"):
        monkeypatch.setenv(var, KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{base_url}/v1")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", base_url)
    monkeypatch.setenv("GEMINI_BASE_URL", base_url)
    monkeypatch.delenv("PROMPTFORGE_GEMINI_VERTEX", raising=False)
    endpoint = config.Endpoint("fake-server", f"{base_url}/v1", key_env="OPENAI_COMPATIBLE_API_KEY")
    settings = dataclasses.replace(
        config.load(), providers=PROVIDERS, fake_llm_url=f"{base_url}/v1", endpoints={endpoint.name: endpoint}
    )

    def opener(name: str) -> Provider:
        return open_provider(name, settings, endpoint.name if name == "openai_compatible" else None)

    return opener


@pytest.fixture
def open_named(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``open_named(name)``: the provider ``name`` opened by ``open_provider`` against the fake."""
    return opener_for(fake.base_url, monkeypatch)
