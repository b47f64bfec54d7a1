"""Gemini's batch mode (the Gemini API, ``v1beta``) through the ``google-genai`` SDK.

Requests are sent inline (``batches.create`` with ``src`` a list of requests), each
built as the fast path builds a ``generate_content`` call and carrying its custom_id in
its ``metadata``; the batch's display name is PromptForge's key, so ``find`` returns
exactly the batches of a key. Inline requests are limited to 20 MB a batch.

Outcomes are the batch's inlined responses, matched to custom_ids by their metadata: a
response is read as a fast answer, an error by its google.rpc code as the HTTP error it
stands for; a request a cancel left undone (CANCELLED) or the window (DEADLINE_EXCEEDED
in an expired batch) is ``provider_expired``.

Vertex AI's batch prediction reads its input from Cloud Storage or BigQuery, which
PromptForge does not stage: a deployment on Vertex AI has no Gemini batch API.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pydantic
from google.genai import types

from ...domain.outcomes import ErrorCode
from ...service.batch_port import BatchInfo, BatchItem, BatchOutcome
from ..providers import _json
from ..providers._opening import Secret, Settings, deployment_key
from ..providers.base import ProviderError, ProviderUnavailable
from ..providers.gemini_sdk import GeminiProvider, error_for, request_config, response_result, sdk_errors
from . import _common

API_VERSION = "v1beta"  # where Google serves batch mode
ID_FIELD = "custom_id"  # the request metadata field that carries it
_RUNNING = frozenset({"BATCH_STATE_PENDING", "BATCH_STATE_RUNNING"})
_ENDED = frozenset({"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED", "BATCH_STATE_EXPIRED"})
# The SDK's names for the ended states (it renames BATCH_STATE_X to JOB_STATE_X).
_JOB_ENDED = {s.replace("BATCH_STATE_", "JOB_STATE_"): s for s in _ENDED}
# google.rpc codes as the HTTP status each stands for (google.rpc.Code's own mapping).
_HTTP = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400, 10: 409, 11: 400, 12: 501, 13: 500}
_HTTP |= {14: 503, 15: 500, 16: 401}
_CANCELLED, _DEADLINE_EXCEEDED = 1, 4
_PAGE = 100


def _count(stats: dict[str, Any], name: str) -> int:
    # int64 counts come as JSON strings; a count not sent is 0.
    return int(stats.get(name) or 0)


def _info(batch_id: str, operation: Any) -> BatchInfo:
    """The batch as its long-running Operation tells it."""
    metadata = operation.get("metadata") if isinstance(operation, dict) else None
    if not isinstance(metadata, dict) or (metadata.get("state") not in _ENDED | _RUNNING):
        raise _common.unreadable("a batch state PromptForge does not know")
    state = metadata["state"]
    stats = metadata.get("batchStats") or {}
    try:
        total = _count(stats, "requestCount")
        ok, failed = _count(stats, "successfulRequestCount"), _count(stats, "failedRequestCount")
    except (TypeError, ValueError, AttributeError):
        raise _common.unreadable("batch stats") from None
    return BatchInfo(batch_id=batch_id, total=total, done=ok + failed, failed=failed, ended=state in _ENDED)


def _rpc_error(code: Any, message: Any, state: str) -> Any:
    """A failed request's error from its google.rpc status."""
    if code == _CANCELLED or (code == _DEADLINE_EXCEEDED and state == "BATCH_STATE_EXPIRED"):
        return _common.expired("cancelled" if code == _CANCELLED else "expired")
    if not isinstance(code, int):
        raise _common.unreadable("a failed request without an error code")
    return error_for(_HTTP.get(code, 500), {}, None, message)


class GeminiBatches:
    """The batch port over the Gemini API, through ``provider``'s client."""

    def __init__(self, provider: GeminiProvider) -> None:
        self._provider = provider

    def _inlined(self, item: BatchItem) -> types.InlinedRequest:
        contents, config = request_config(item.request)
        try:
            return types.InlinedRequest(
                contents=contents,
                config=types.GenerateContentConfig(**config) if config else None,
                metadata={ID_FIELD: item.custom_id},
            )
        except pydantic.ValidationError:
            # A parameter's value the SDK's types refuse (a temperature that is no number).
            raise ProviderError(ErrorCode.INVALID_REQUEST, "a parameter's value is not one Gemini accepts", False) from None

    def refusal(self, item: BatchItem) -> ProviderError | None:
        return _common.refusal_of(lambda: self._inlined(item))

    async def submit(self, key: str, model: str, items: Sequence[BatchItem]) -> str:
        _common.check_items(model, items)
        requests: list[types.InlinedRequestOrDict] = [self._inlined(item) for item in items]
        with sdk_errors(), self._provider.client() as client:
            job = await client.batches.create(model=model, src=requests, config={"display_name": key})
        return _common.created(job.name)

    async def find(self, key: str, since: datetime, count: int) -> list[str]:
        cutoff = _common.earliest(since)
        found: list[str] = []
        with sdk_errors(), self._provider.client() as client:
            # Google does not document the listing's order: every page is read.
            async for job in await client.batches.list(config={"page_size": _PAGE}):
                if job.display_name != key:
                    continue
                if not isinstance(job.create_time, datetime) or not isinstance(job.name, str):
                    raise _common.unreadable("a listed batch without a name or creation time")
                if job.create_time >= cutoff:
                    found.append(job.name)
        return found

    async def status(self, batch_id: str) -> BatchInfo:
        # The SDK's BatchJob leaves the request counts (batchStats) out for the Gemini
        # API, so the Operation is read as the API sends it, through the SDK's client
        # (its base URL, API version, key and timeout). tests/batches pin the counts.
        with sdk_errors(), self._provider.client() as client:
            answer = await client._api_client.async_request("get", batch_id, {})
        try:
            operation = _json.loads(answer.body or b"")
        except ValueError:
            raise _common.unreadable("a batch that is not JSON") from None
        return _info(batch_id, operation)

    async def _job(self, batch_id: str) -> types.BatchJob:
        with sdk_errors(), self._provider.client() as client:
            return await client.batches.get(name=batch_id)

    async def outcomes(self, batch_id: str) -> list[BatchOutcome]:
        job = await self._job(batch_id)
        state = _JOB_ENDED.get(str(getattr(job.state, "value", job.state)))
        if state is None:
            raise _common.not_ended(str(getattr(job.state, "value", job.state)))
        if state == "BATCH_STATE_FAILED":
            raise _common.refused([job.error.code if job.error else None])
        model = job.model or ""
        responses = job.dest.inlined_responses if job.dest and job.dest.inlined_responses is not None else None
        if responses is None:
            raise _common.unreadable("an ended batch without its responses")
        found = _common.Outcomes()
        for entry in responses:
            custom_id = (entry.metadata or {}).get(ID_FIELD)
            if not isinstance(custom_id, str):
                # Matching by position would need the requests, which the batch does not
                # give back: a response without its custom_id is not guessed at.
                raise _common.unreadable("a response without its custom_id")
            if entry.error is not None:
                found.add(BatchOutcome(custom_id, error=_rpc_error(entry.error.code, entry.error.message, state)))
            elif entry.response is not None:
                found.add(_common.outcome(custom_id, functools.partial(response_result, entry.response, model)))
            else:
                raise _common.unreadable("a response with neither an answer nor an error")
        return found.all()

    async def cancel(self, batch_id: str) -> None:
        async def stopping() -> bool:
            return (await self.status(batch_id)).ended

        async def cancel() -> None:
            with sdk_errors(), self._provider.client() as client:
                await client.batches.cancel(name=batch_id)

        await _common.cancel_unless_ended(stopping, cancel)

    async def aclose(self) -> None:
        """Nothing to release: the client is shared (``close_shared_clients`` closes it)."""


def open_gemini_batches(name: str, settings: Settings, endpoint: str | None, secret: Secret, timeout_s: float) -> GeminiBatches:
    """The batch API of ``gemini`` on the Gemini API: the fast path's key and base URL."""
    if settings.gemini_vertex:
        raise ProviderUnavailable(
            "gemini on Vertex AI has no batch API PromptForge can use (Vertex batch prediction reads its input"
            " from Cloud Storage or BigQuery): economy jobs need the Gemini API with GEMINI_API_KEY"
        )
    return GeminiBatches(
        GeminiProvider(
            api_key=deployment_key("gemini", secret),
            base_url=settings.gemini_base_url or None,
            timeout_s=timeout_s,
            api_version=API_VERSION,
        )
    )
