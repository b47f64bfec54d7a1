"""The provider port's types, where the adapters in this package have always found them.

They are defined with the other ports (:mod:`promptforge.service.provider_port`): the
service layer depends on them, and the adapters implement them.
"""

from __future__ import annotations

from ...service.provider_port import (
    ChatRequest,
    ChatResult,
    Provider,
    ProviderError,
    ProviderFactory,
    ProviderUnavailable,
    RateLimitInfo,
)

__all__ = [
    "ChatRequest",
    "ChatResult",
    "Provider",
    "ProviderError",
    "ProviderFactory",
    "ProviderUnavailable",
    "RateLimitInfo",
]
