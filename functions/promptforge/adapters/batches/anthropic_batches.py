"""Anthropic's Message Batches through the ``anthropic`` SDK.

Each request's ``params`` are the fast path's ``messages.create`` arguments (the
sampling parameters the fast path sends as extra body fields go in as they are).
Anthropic keeps no metadata on a batch: ``find`` returns every batch created since the
given time whose request count is the one asked for (the port allows that superset: the
use case keeps the outcomes whose custom_id carries its key).

Anthropic counts every request as ``processing`` until the whole batch ends, so ``done``
stays 0 until then. Results: ``succeeded`` is read as a fast answer, ``errored`` as a
fast error of the same type, ``canceled`` and ``expired`` are ``provider_expired``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ...service.batch_port import BatchInfo, BatchItem, BatchOutcome
from ..providers._opening import Secret, Settings
from ..providers.anthropic_sdk import AnthropicProvider, error_for, message_result, open_anthropic, request_body, sdk_errors
from ..providers.base import ChatRequest, ProviderError
from ._common import (
    Outcomes,
    cancel_unless_ended,
    check_items,
    created,
    earliest,
    expired,
    not_ended,
    outcome,
    refusal_of,
    unreadable,
)

_STATES = frozenset({"in_progress", "canceling", "ended"})
# The HTTP status each of Anthropic's error types comes with, so that an errored request
# of a batch is classified as the same error of a fast call is.
_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
_PAGE = 100


def batch_params(request: ChatRequest) -> dict[str, Any]:
    """A request's ``params`` in a batch: the fast call's arguments, its extra body
    fields among them (a batch request is a plain JSON body)."""
    body = request_body(request)
    extra = body.pop("extra_body", None) or {}
    return {**body, **extra}


def _counts(batch: Any) -> tuple[int, int, int]:
    """(total, done, failed) of a batch."""
    try:
        c = batch.request_counts
        ended = int(c.succeeded), int(c.errored), int(c.canceled), int(c.expired)
        processing = int(c.processing)
    except (TypeError, ValueError, AttributeError):
        raise unreadable("request counts") from None
    failed = sum(ended) - ended[0]
    return processing + sum(ended), sum(ended), failed


def _state(batch: Any) -> str:
    state = getattr(batch, "processing_status", None)
    if state not in _STATES:
        raise unreadable("a processing status PromptForge does not know")
    return str(state)


class AnthropicBatches:
    """The batch port over Anthropic's API, through ``provider``'s client."""

    def __init__(self, provider: AnthropicProvider) -> None:
        self._provider = provider

    def refusal(self, item: BatchItem) -> ProviderError | None:
        return refusal_of(lambda: batch_params(item.request))

    async def submit(self, key: str, model: str, items: Sequence[BatchItem]) -> str:
        check_items(model, items)
        requests: list[Any] = [{"custom_id": item.custom_id, "params": batch_params(item.request)} for item in items]
        with sdk_errors(), self._provider.client() as client:
            batch = await client.messages.batches.create(requests=requests)
        return created(batch.id)

    async def find(self, key: str, since: datetime, count: int) -> list[str]:
        cutoff = earliest(since)
        found: list[str] = []
        with sdk_errors(), self._provider.client() as client:
            # Newest first: the listing stops at the first batch older than the cutoff.
            async for batch in client.messages.batches.list(limit=_PAGE):
                if not isinstance(batch.created_at, datetime):
                    raise unreadable("a listed batch without a creation time")
                if batch.created_at < cutoff:
                    break
                if _counts(batch)[0] == count:
                    found.append(batch.id)
        return found

    async def _batch(self, batch_id: str) -> Any:
        with sdk_errors(), self._provider.client() as client:
            return await client.messages.batches.retrieve(batch_id)

    async def status(self, batch_id: str) -> BatchInfo:
        batch = await self._batch(batch_id)
        total, done, failed = _counts(batch)
        return BatchInfo(batch_id=batch.id, total=total, done=done, failed=failed, ended=_state(batch) == "ended")

    async def outcomes(self, batch_id: str) -> list[BatchOutcome]:
        state = _state(await self._batch(batch_id))
        if state != "ended":
            raise not_ended(state)
        found = Outcomes()
        with sdk_errors(), self._provider.client() as client:
            async for line in await client.messages.batches.results(batch_id):
                found.add(_outcome(line))
        return found.all()

    async def cancel(self, batch_id: str) -> None:
        async def stopping() -> bool:
            return _state(await self._batch(batch_id)) != "in_progress"

        async def cancel() -> None:
            with sdk_errors(), self._provider.client() as client:
                await client.messages.batches.cancel(batch_id)

        await cancel_unless_ended(stopping, cancel)

    async def aclose(self) -> None:
        """Nothing to release: the client is shared (``close_shared_clients`` closes it)."""


def _outcome(line: Any) -> BatchOutcome:
    """One line of a batch's results."""
    custom_id = getattr(line, "custom_id", None)
    result: Any = getattr(line, "result", None)
    kind = getattr(result, "type", None)
    if not isinstance(custom_id, str):
        raise unreadable("a result without a custom_id")
    if kind == "succeeded":
        return outcome(custom_id, functools.partial(message_result, result.message, ""))
    if kind == "errored":
        error = getattr(getattr(result, "error", None), "error", None)
        error_type = getattr(error, "type", None)
        if not isinstance(error_type, str):
            raise unreadable("an errored result without an error type")
        status = _STATUS.get(error_type, 500)
        return BatchOutcome(custom_id, error=error_for(status, {}, error_type, getattr(error, "message", None)))
    if kind in ("canceled", "expired"):
        return BatchOutcome(custom_id, error=expired(kind))
    raise unreadable("a result type PromptForge does not know")


def open_anthropic_batches(
    name: str, settings: Settings, endpoint: str | None, secret: Secret, timeout_s: float
) -> AnthropicBatches:
    """The batch API of ``anthropic``: the fast path's key and base URL."""
    return AnthropicBatches(open_anthropic(settings, None, None, secret, timeout_s))
