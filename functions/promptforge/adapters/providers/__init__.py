"""LLM providers behind the provider port, each imported only when a job uses it.

Importing this package loads no SDK and no HTTP client: the registry
(:mod:`promptforge.domain.provider_registry`) names each provider's module and opener,
and :class:`LiveProviders` imports that module only when a chunk opens the provider.

Credentials come only from the environment (Secret Manager mounts them as variables in
production), never from a job, and are never logged. The factory asks for them at the
moment a provider is opened, through the ``secret`` lookup it was built with
(``config.secret`` in production, see ``promptforge.wiring``), so no settings object
ever holds a key.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ...config import Settings, secret
from ._opening import PROVIDER_TIMEOUT_S, Credentials, enabled_spec
from ._shared import close_shared_clients
from .base import ChatRequest, ChatResult, Provider, ProviderError, ProviderUnavailable, RateLimitInfo

__all__ = [
    "ChatRequest",
    "ChatResult",
    "LiveProviders",
    "PROVIDER_TIMEOUT_S",
    "Provider",
    "ProviderError",
    "ProviderUnavailable",
    "RateLimitInfo",
    "close_shared_clients",
    "open_provider",
]


class LiveProviders:
    """The real :class:`~promptforge.service.provider_port.ProviderFactory`.

    A provider is a light object, cheap to open once per chunk. Its HTTP client is shared
    by every provider of the same configuration on the running event loop, made on the
    first call and kept for the next chunks; ``aclose()`` leaves it open,
    :func:`close_shared_clients` closes the loop's clients (see :mod:`._shared`).
    Which variables each provider reads is in docs/providers.md (generated from the
    registry).
    """

    def __init__(self, lookup: Callable[[str], str] = secret, timeout_s: float = PROVIDER_TIMEOUT_S) -> None:
        self._secret = Credentials(lookup)
        self._timeout_s = timeout_s

    def __call__(self, name: str, settings: Settings, endpoint: str | None = None, base_url: str | None = None) -> Provider:
        spec = enabled_spec(name, settings)
        module = importlib.import_module(f"{__name__}.{spec.module}")
        opener = getattr(module, spec.opener)
        provider: Provider = opener(settings, endpoint, base_url, self._secret, self._timeout_s)
        return provider


def open_provider(name: str, settings: Settings, endpoint: str | None = None, base_url: str | None = None) -> Provider:
    """A ready provider, its credential from the environment (tools and tests; use cases
    open providers through ``deps.providers``)."""
    return LiveProviders(timeout_s=PROVIDER_TIMEOUT_S)(name, settings, endpoint, base_url)
