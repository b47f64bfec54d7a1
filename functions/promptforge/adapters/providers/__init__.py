"""LLM providers behind one interface, each imported only when a job uses it.

Importing this package loads no SDK and no HTTP client: each provider's module (and so
its SDK) is imported inside :func:`open_provider`'s branch for that provider.

Credentials come only from the environment (Secret Manager mounts them as variables in
production), never from a job, and are never logged. They are read here, at the moment
a provider is opened, rather than kept in :class:`~promptforge.config.Settings`, so no
settings object ever holds a key.
"""

from __future__ import annotations

from ...config import Settings, secret
from ._shared import close_shared_clients
from .base import ChatRequest, ChatResult, Provider, ProviderError, RateLimitInfo

__all__ = [
    "ChatRequest",
    "ChatResult",
    "PROVIDER_TIMEOUT_S",
    "Provider",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimitInfo",
    "close_shared_clients",
    "open_provider",
]

# How long one call may take before it counts as a ``timeout`` (retryable).
PROVIDER_TIMEOUT_S = 120.0


class ProviderUnavailable(Exception):
    """The deployment cannot serve this provider (not enabled, or not configured)."""


def _secret(name: str, provider: str) -> str:
    value = secret(name)
    if not value:
        # The variable's name, never its value.
        raise ProviderUnavailable(f"provider {provider!r} needs {name} in the environment")
    return value


def open_provider(name: str, settings: Settings, endpoint: str | None = None, base_url: str | None = None) -> Provider:
    """A ready provider: a light object, cheap to open once per chunk.

    Its HTTP client is shared by every provider of the same configuration on the running
    event loop, made on the first call and kept for the next chunks; ``aclose()`` leaves it
    open, :func:`close_shared_clients` closes the loop's clients (see :mod:`._shared`).

    ``endpoint`` (an operator-configured server) or ``base_url`` (the client's own URL,
    where the operator allows it) are the job's, used only by ``openai_compatible``. Environment:

    * ``openai``: ``OPENAI_API_KEY``; ``OPENAI_BASE_URL`` points it elsewhere (tests).
    * ``anthropic``: ``ANTHROPIC_API_KEY``; ``ANTHROPIC_BASE_URL``.
    * ``gemini``: ``GEMINI_API_KEY`` (Gemini API), or ``PROMPTFORGE_GEMINI_VERTEX=1`` for
      Vertex AI with the function's service account, ``GOOGLE_CLOUD_PROJECT`` and
      ``PROMPTFORGE_GEMINI_LOCATION`` (default ``us-central1``); ``GEMINI_BASE_URL``.
    * ``openai_compatible``: the endpoint's ``key_env`` variable (optional); a client's
      own URL gets no credential at all.
    * ``fake``: ``PROMPTFORGE_FAKE_LLM_URL`` (in settings).
    """
    if name not in settings.providers:
        raise ProviderUnavailable(f"provider {name!r} is not enabled on this deployment")
    if name == "openai":
        from .openai_sdk import OpenAIProvider

        return OpenAIProvider(
            name=name,
            api_key=_secret("OPENAI_API_KEY", name),
            base_url=settings.openai_base_url or None,
            timeout_s=PROVIDER_TIMEOUT_S,
        )
    if name == "anthropic":
        from .anthropic_sdk import AnthropicProvider

        return AnthropicProvider(
            api_key=_secret("ANTHROPIC_API_KEY", name),
            base_url=settings.anthropic_base_url or None,
            timeout_s=PROVIDER_TIMEOUT_S,
        )
    if name == "gemini":
        from .gemini_sdk import GeminiProvider

        if settings.gemini_vertex:
            return GeminiProvider(
                vertex_project=settings.project,
                vertex_location=settings.gemini_location,
                base_url=settings.gemini_base_url or None,
                timeout_s=PROVIDER_TIMEOUT_S,
            )
        return GeminiProvider(
            api_key=_secret("GEMINI_API_KEY", name),
            base_url=settings.gemini_base_url or None,
            timeout_s=PROVIDER_TIMEOUT_S,
        )
    if name == "fake":
        from .openai_wire import OpenAIWireProvider

        return OpenAIWireProvider(settings.fake_llm_url, api_key="fake-key", timeout_s=PROVIDER_TIMEOUT_S)
    if name == "openai_compatible":
        from .openai_wire import OpenAIWireProvider

        if endpoint is not None:
            configured = settings.endpoints.get(endpoint)
            if configured is None:
                raise ProviderUnavailable(f"endpoint {endpoint!r} is not configured on this deployment")
            key = _secret(configured.key_env, f"{name}/{endpoint}") if configured.key_env else None
            return OpenAIWireProvider(configured.base_url, api_key=key, timeout_s=PROVIDER_TIMEOUT_S)
        if base_url and settings.allow_client_base_urls:
            from ..outbound import BlockedAddress, check_url

            try:
                check_url(base_url)
            except BlockedAddress as exc:
                raise ProviderUnavailable(f"the job's base_url is refused: {exc}") from None
            return OpenAIWireProvider(base_url, api_key=None, timeout_s=PROVIDER_TIMEOUT_S, guarded=True)
        raise ProviderUnavailable("openai_compatible needs an endpoint configured by the operator")
    raise ProviderUnavailable(f"provider {name!r} is not available")
