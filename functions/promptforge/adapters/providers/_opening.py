"""What the registry's openers share: the call timeout and how a credential is asked for.

Kept apart from ``__init__`` so an adapter module can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable

from ...config import Settings

__all__ = ["PROVIDER_TIMEOUT_S", "Secret", "Settings"]

# How long one call may take before it counts as a ``timeout`` (retryable).
PROVIDER_TIMEOUT_S = 120.0

# ``secret(variable, who)``: the credential in that variable, or ProviderUnavailable
# naming the variable (never a value) when the deployment has none.
Secret = Callable[[str, str], str]
