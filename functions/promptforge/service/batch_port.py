"""The batch port: a provider's own batch API, for economy jobs.

An economy chunk is sent as one provider batch: every request carries a ``custom_id``
that PromptForge chose (``<batch key>-<line number>``, so it fits every provider's id
rules whatever the client's prompt_ids look like), the batch carries the key itself
where the provider keeps metadata. The adapters in ``promptforge.adapters.batches``
implement it over each provider's batch API; ``tests/fakes.py`` has an in-memory one.
Use cases get batch providers only through ``Deps.batch_providers``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from .provider_port import ChatRequest, ChatResult, ProviderError

if TYPE_CHECKING:
    from ..config import Settings


@dataclass(frozen=True)
class BatchItem:
    """One request of a batch."""

    custom_id: str
    request: ChatRequest


@dataclass(frozen=True)
class BatchInfo:
    """A batch as the provider reports it now.

    ``done`` counts requests the provider finished (succeeded or failed), ``failed`` those
    of them that failed. ``ended`` is true once the provider will change nothing more
    (completed, expired, cancelled or failed as a whole); only then are its outcomes read.
    """

    batch_id: str
    total: int
    done: int
    failed: int
    ended: bool


@dataclass(frozen=True)
class BatchOutcome:
    """One request's outcome in an ended batch: a result or an error, never both.

    A request the batch never ran (its window ended first, or it was cancelled) has an
    error with code ``provider_expired``; a batch that leaves a request out of its output
    altogether is read the same way by the use case, which knows every custom_id it sent.
    """

    custom_id: str
    result: ChatResult | None = None
    error: ProviderError | None = None


class BatchProvider(Protocol):
    """A provider's batch API. Every method is one or a few HTTP calls; none waits for a
    batch to end. Raises :class:`ProviderError` when the provider refuses a call (a
    retryable one for 429s, 5xx and network errors)."""

    def refusal(self, item: BatchItem) -> ProviderError | None:
        """Why the provider cannot take this request (a parameter it has no equivalent
        for, a value it cannot express), found without a call; None when it can. A
        batch is made of the requests that pass, so one bad line does not fail the rest
        of its chunk: it gets its own error row, as in a fast job."""
        ...

    async def submit(self, key: str, model: str, items: Sequence[BatchItem]) -> str:
        """Create one batch of ``items`` (each passed :meth:`refusal`) for ``model``
        labelled with ``key``; returns its id."""
        ...

    async def find(self, key: str, since: datetime, count: int) -> list[str]:
        """The ids of batches created at or after ``since`` that may be the one created
        with ``key`` (of ``count`` requests). Providers that label batches return exactly
        the ones labelled ``key``; the others may return more (the use case keeps only
        outcomes whose custom_id starts with the key), never fewer."""
        ...

    async def status(self, batch_id: str) -> BatchInfo: ...

    async def outcomes(self, batch_id: str) -> list[BatchOutcome]:
        """Every outcome of an ended batch (may raise before it ended)."""
        ...

    async def cancel(self, batch_id: str) -> None:
        """Ask the provider to stop the batch (it ends some time later; a batch that
        already ended is left as it is)."""
        ...

    async def aclose(self) -> None: ...


class BatchProviderFactory(Protocol):
    """Opens a provider's batch API for one chunk delivery. Raises
    :class:`~promptforge.service.provider_port.ProviderUnavailable` when the deployment
    cannot serve it (not enabled, not configured, or no batch API)."""

    def __call__(self, name: str, settings: Settings, endpoint: str | None = None) -> BatchProvider: ...
