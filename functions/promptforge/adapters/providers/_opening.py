"""What the registry's openers share: the call timeout and how a credential is asked for.

An opener is ``open_x(settings, endpoint, base_url, secret, timeout_s) -> Provider``.

Kept apart from ``__init__`` so an adapter module can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable

from ...config import Settings
from ...domain.provider_registry import credential_env

__all__ = ["PROVIDER_TIMEOUT_S", "Secret", "Settings", "deployment_key"]

# How long one call may take before it counts as a ``timeout`` (retryable).
PROVIDER_TIMEOUT_S = 120.0

# ``secret(variable, who)``: the credential in that variable, or ProviderUnavailable
# naming the variable (never a value) when the deployment has none.
Secret = Callable[[str, str], str]


def deployment_key(provider: str, secret: Secret) -> str:
    """The provider's deployment credential, from the variable its registry entry names."""
    name = credential_env(provider)
    if name is None:
        raise ValueError(f"the registry names no credential for {provider!r}")
    return secret(name, provider)
