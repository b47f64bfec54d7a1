"""LLM providers behind one interface, each imported only when a job uses it."""

from __future__ import annotations

import os

from ...config import Settings
from .base import ChatRequest, ChatResult, Provider, ProviderError

__all__ = ["ChatRequest", "ChatResult", "Provider", "ProviderError", "open_provider", "ProviderUnavailable"]


class ProviderUnavailable(Exception):
    """The deployment cannot serve this provider (not enabled, or not built yet)."""


def open_provider(name: str, settings: Settings, base_url: str | None = None) -> Provider:
    """A ready provider client; the caller closes it with ``aclose()``."""
    if name not in settings.providers:
        raise ProviderUnavailable(f"provider {name!r} is not enabled on this deployment")
    if name == "fake":
        from .openai_wire import OpenAIWireProvider

        return OpenAIWireProvider(settings.fake_llm_url, api_key="fake-key")
    if name == "openai_compatible":
        from .openai_wire import OpenAIWireProvider

        if not base_url:
            raise ProviderUnavailable("openai_compatible needs a base_url")
        # The key comes from the environment (Secret Manager in production), never the job.
        return OpenAIWireProvider(base_url, api_key=os.environ.get("OPENAI_COMPATIBLE_API_KEY", "none"))
    raise ProviderUnavailable(f"provider {name!r} is not available yet")
