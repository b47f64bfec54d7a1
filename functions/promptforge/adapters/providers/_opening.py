"""What the registry's openers share: the call timeout and how a credential is asked for.

An opener is ``open_x(settings, endpoint, base_url, secret, timeout_s) -> Provider``.

Kept apart from ``__init__`` so an adapter module can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable

from ...config import Settings
from ...domain.provider_registry import BY_NAME, ProviderSpec, credential_env
from .base import ProviderUnavailable

__all__ = ["PROVIDER_TIMEOUT_S", "Credentials", "Secret", "Settings", "deployment_key", "enabled_spec"]

# How long one call may take before it counts as a ``timeout`` (retryable).
PROVIDER_TIMEOUT_S = 120.0

# ``secret(variable, who)``: the credential in that variable, or ProviderUnavailable
# naming the variable (never a value) when the deployment has none.
Secret = Callable[[str, str], str]


class Credentials:
    """The :data:`Secret` of a factory, over its ``lookup`` of the environment."""

    def __init__(self, lookup: Callable[[str], str]) -> None:
        self._lookup = lookup

    def __call__(self, name: str, who: str) -> str:
        value = self._lookup(name)
        if not value:
            # The variable's name, never its value.
            raise ProviderUnavailable(f"provider {who!r} needs {name} in the environment")
        return value


def enabled_spec(name: str, settings: Settings) -> ProviderSpec:
    """The registry's entry for ``name``, if this deployment enables it."""
    if name not in settings.providers:
        raise ProviderUnavailable(f"provider {name!r} is not enabled on this deployment")
    spec = BY_NAME.get(name)
    if spec is None:
        raise ProviderUnavailable(f"provider {name!r} is not available")
    return spec


def deployment_key(provider: str, secret: Secret) -> str:
    """The provider's deployment credential, from the variable its registry entry names."""
    name = credential_env(provider)
    if name is None:
        raise ValueError(f"the registry names no credential for {provider!r}")
    return secret(name, provider)
