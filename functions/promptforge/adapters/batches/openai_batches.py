"""OpenAI's Batch API (files and batches of chat completions) through the ``openai`` SDK.

Serves ``openai``, the local ``fake`` and an ``openai_compatible`` endpoint that declares
``batch: "openai"``. Each request is one line of a JSONL file uploaded with purpose
``batch``: its body is exactly what the fast path would send (for ``openai`` the SDK
provider's parameter names, for the others the wire provider's body). The batch carries
PromptForge's key in its metadata, so ``find`` returns exactly the batches of a key.

Outcomes come from the batch's output file (the 200 answers, read as a fast answer is)
and error file (other answers, classified as a fast error is; requests the window or a
cancel left undone, ``provider_expired``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from ...service.batch_port import BatchInfo, BatchItem, BatchOutcome
from ..providers import _json
from ..providers._opening import Secret, Settings
from ..providers.base import ChatRequest, ProviderError, ProviderUnavailable
from ..providers.openai_sdk import OpenAIProvider, open_openai, sdk_errors
from ..providers.openai_wire import FAKE_KEY, completion_result, configured_endpoint, error_for_body
from . import _common

CHAT_ENDPOINT: Final = "/v1/chat/completions"
WINDOW: Final = "24h"  # the only completion window OpenAI offers
# The metadata field that names PromptForge's key for the batch.
KEY_FIELD = "promptforge_key"
_RUNNING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
_ENDED = frozenset({"completed", "expired", "cancelled", "failed"})
# The codes of an error line for a request the batch never ran.
_UNDONE = frozenset({"batch_expired", "batch_cancelled"})
_PAGE = 100


class OpenAIBatches:
    """The batch port over one OpenAI-format server, through ``provider``'s client."""

    def __init__(self, provider: OpenAIProvider) -> None:
        self._provider = provider

    def _line(self, item: BatchItem) -> bytes:
        request: ChatRequest = item.request
        body = {**self._provider.params(request), "model": request.model, "messages": request.messages}
        return _json.dumps({"custom_id": item.custom_id, "method": "POST", "url": CHAT_ENDPOINT, "body": body}) + b"\n"

    def refusal(self, item: BatchItem) -> ProviderError | None:
        return _common.refusal_of(lambda: self._line(item))

    async def submit(self, key: str, model: str, items: Sequence[BatchItem]) -> str:
        _common.check_items(model, items)
        content = b"".join(self._line(item) for item in items)
        headers = self._provider.extra_headers
        with sdk_errors(), self._provider.client() as client:
            uploaded = await client.files.create(
                file=(f"{key}.jsonl", content, "application/jsonl"), purpose="batch", extra_headers=headers
            )
            batch = await client.batches.create(
                input_file_id=uploaded.id,
                endpoint=CHAT_ENDPOINT,
                completion_window=WINDOW,
                metadata={KEY_FIELD: key},
                extra_headers=headers,
            )
        return _common.created(batch.id)

    async def find(self, key: str, since: datetime, count: int) -> list[str]:
        cutoff = _common.earliest(since).timestamp()
        found: list[str] = []
        with sdk_errors(), self._provider.client() as client:
            # Newest first: the listing stops at the first batch older than the cutoff.
            async for batch in client.batches.list(limit=_PAGE, extra_headers=self._provider.extra_headers):
                if not isinstance(batch.created_at, int | float):
                    raise _common.unreadable("a listed batch without a creation time")
                if batch.created_at < cutoff:
                    break
                if (batch.metadata or {}).get(KEY_FIELD) == key:
                    found.append(batch.id)
        return found

    async def _batch(self, batch_id: str) -> Any:
        with sdk_errors(), self._provider.client() as client:
            return await client.batches.retrieve(batch_id, extra_headers=self._provider.extra_headers)

    async def status(self, batch_id: str) -> BatchInfo:
        return _info(await self._batch(batch_id))

    async def outcomes(self, batch_id: str) -> list[BatchOutcome]:
        batch = await self._batch(batch_id)
        state = _state(batch)
        if state not in _ENDED:
            raise _common.not_ended(state)
        if state == "failed":
            errors = batch.errors.data if batch.errors and batch.errors.data else []
            raise _common.refused(getattr(e, "code", None) for e in errors)
        model = batch.model if isinstance(batch.model, str) else ""
        found = _common.Outcomes()
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                for row in await self._rows(file_id):
                    found.add(_outcome(row, model))
        return found.all()

    async def _rows(self, file_id: str) -> list[Any]:
        with sdk_errors(), self._provider.client() as client:
            content = (await client.files.content(file_id, extra_headers=self._provider.extra_headers)).content
        try:
            return [_json.loads(line) for line in content.splitlines() if line.strip()]
        except ValueError:
            raise _common.unreadable("a result line that is not JSON") from None

    async def cancel(self, batch_id: str) -> None:
        async def stopping() -> bool:
            return _state(await self._batch(batch_id)) in _ENDED | {"cancelling"}

        async def cancel() -> None:
            with sdk_errors(), self._provider.client() as client:
                await client.batches.cancel(batch_id, extra_headers=self._provider.extra_headers)

        await _common.cancel_unless_ended(stopping, cancel)

    async def aclose(self) -> None:
        """Nothing to release: the client is shared (``close_shared_clients`` closes it)."""


def _state(batch: Any) -> str:
    state = getattr(batch, "status", None)
    if state not in _ENDED and state not in _RUNNING:
        raise _common.unreadable("a batch status PromptForge does not know")
    return str(state)


def _info(batch: Any) -> BatchInfo:
    state = _state(batch)
    counts = batch.request_counts
    try:
        # A batch still validating may have no counts yet: nothing is done then.
        total, completed, failed = (
            (int(counts.total), int(counts.completed), int(counts.failed)) if counts is not None else (0, 0, 0)
        )
    except (TypeError, ValueError, AttributeError):
        raise _common.unreadable("request counts") from None
    return BatchInfo(batch_id=batch.id, total=total, done=completed + failed, failed=failed, ended=state in _ENDED)


def _outcome(row: Any, model: str) -> BatchOutcome:
    """One line of an output or error file."""
    custom_id = row.get("custom_id") if isinstance(row, dict) else None
    if not isinstance(custom_id, str):
        raise _common.unreadable("a result line without a custom_id")
    response = row.get("response")
    if response is None:
        error = row.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        if code is None or code in _UNDONE:
            return BatchOutcome(custom_id, error=_common.expired(str(code or "no answer")))
        # Some other reason the request got no answer: a provider-side failure.
        return BatchOutcome(custom_id, error=_common.failed_unanswered(code))
    status = response.get("status_code") if isinstance(response, dict) else None
    if not isinstance(status, int):
        raise _common.unreadable("a result line without a status code")
    body = response.get("body")
    if 200 <= status < 300:
        return _common.outcome(custom_id, functools.partial(completion_result, body, model))
    return BatchOutcome(custom_id, error=error_for_body(status, {}, body))


def open_openai_batches(name: str, settings: Settings, endpoint: str | None, secret: Secret, timeout_s: float) -> OpenAIBatches:
    """The batch API of ``openai`` (its SDK provider's key, base URL and parameter names),
    the ``fake`` server, or an operator endpoint (params sent as they are, as the wire
    provider sends them)."""
    if name == "openai":
        return OpenAIBatches(open_openai(settings, None, None, secret, timeout_s))
    key: str | None
    if name == "fake":
        base_url, key = settings.fake_llm_url, FAKE_KEY
    elif endpoint is not None:
        configured, found = configured_endpoint(settings, endpoint, secret)
        base_url, key = configured.base_url, found
    else:
        raise ProviderUnavailable("openai_compatible needs an endpoint configured by the operator")
    # The wire provider sends job params as they are: the same names, none refused.
    return OpenAIBatches(
        OpenAIProvider(
            name=name, api_key=key, base_url=base_url, timeout_s=timeout_s, max_tokens_field="max_tokens", unsupported=()
        )
    )
