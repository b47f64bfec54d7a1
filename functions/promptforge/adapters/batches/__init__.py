"""The providers' own batch APIs behind the batch port (economy jobs).

Importing this package loads no SDK: :class:`LiveBatchProviders` imports a format's
module only when a chunk opens its batch API. Each format has its module:

* ``openai`` (:mod:`.openai_batches`): OpenAI's files and batches, for ``openai``, the
  local ``fake`` and an ``openai_compatible`` endpoint that declares ``batch: "openai"``;
* ``anthropic`` (:mod:`.anthropic_batches`): Anthropic's message batches;
* ``gemini`` (:mod:`.gemini_batches`): Gemini's batch mode with inline requests (the
  Gemini API only: Vertex AI reads batch input from Cloud Storage or BigQuery).

Credentials and base URLs are the fast path's (:mod:`promptforge.adapters.providers`),
and so are the SDK clients: a batch adapter holds the provider object a chunk would
open, and borrows its shared client for each call. How each adapter maps the port onto
its API is in docs/providers.md ("Batch APIs").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ...config import Settings, secret
from ...service.batch_port import BatchInfo, BatchItem, BatchOutcome, BatchProvider
from ..providers._opening import PROVIDER_TIMEOUT_S, Credentials, enabled_spec
from ..providers.base import ProviderUnavailable

__all__ = ["BatchInfo", "BatchItem", "BatchOutcome", "BatchProvider", "LiveBatchProviders", "open_batch_provider"]

# A batch format: the module that speaks it, and its opener
# ``open(name, settings, endpoint, secret, timeout_s) -> BatchProvider``.
_FORMATS = {
    "openai": ("openai_batches", "open_openai_batches"),
    "anthropic": ("anthropic_batches", "open_anthropic_batches"),
    "gemini": ("gemini_batches", "open_gemini_batches"),
}


def batch_format(name: str, settings: Settings, endpoint: str | None) -> str:
    """The batch format ``name`` speaks on this deployment; ProviderUnavailable when it
    is not enabled or has no batch API (``openai_compatible``: its endpoint declares it)."""
    spec = enabled_spec(name, settings)
    fmt = spec.batch
    if spec.name == "openai_compatible":
        configured = settings.endpoints.get(endpoint) if endpoint is not None else None
        if configured is None:
            raise ProviderUnavailable("openai_compatible has a batch API only through an endpoint configured by the operator")
        fmt = configured.batch
    if fmt is None:
        where = f"endpoint {endpoint!r}" if spec.name == "openai_compatible" else f"provider {name!r}"
        raise ProviderUnavailable(f"{where} has no batch API (economy jobs need one)")
    if fmt not in _FORMATS:
        raise ProviderUnavailable(f"provider {name!r}: batch format {fmt!r} is not one PromptForge speaks")
    return fmt


class LiveBatchProviders:
    """The real :class:`~promptforge.service.batch_port.BatchProviderFactory`.

    A batch provider is a light object: its SDK client is the running loop's shared one
    of the fast path's configuration (``close_shared_clients`` closes it).
    """

    def __init__(self, lookup: Callable[[str], str] = secret, timeout_s: float = PROVIDER_TIMEOUT_S) -> None:
        self._secret = Credentials(lookup)
        self._timeout_s = timeout_s

    def __call__(self, name: str, settings: Settings, endpoint: str | None = None) -> BatchProvider:
        module_name, opener_name = _FORMATS[batch_format(name, settings, endpoint)]
        module = importlib.import_module(f"{__name__}.{module_name}")
        opener = getattr(module, opener_name)
        provider: BatchProvider = opener(name, settings, endpoint, self._secret, self._timeout_s)
        return provider


def open_batch_provider(name: str, settings: Settings, endpoint: str | None = None) -> BatchProvider:
    """A ready batch provider, its credential from the environment (tools and tests; use
    cases open them through ``deps.batch_providers``)."""
    return LiveBatchProviders()(name, settings, endpoint)
