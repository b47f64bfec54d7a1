"""Gemini's batch mode (Gemini Developer API, inline requests) for the fake LLM.

Routes (each wants ``x-goog-api-key`` or ``?key=``, as ``generateContent`` does; errors
in Google's ``{"error": {code, message, status}}`` shape):

* ``POST /v1beta/models/{model}:batchGenerateContent``: ``{"batch": {"displayName",
  "inputConfig": {"requests": {"requests": [{"request": GenerateContentRequest,
  "metadata": {...}}]}}}}``; a body over ``gemini_batch_max_bytes`` (20 MB, Google's
  limit for inline requests) is a 400. Answers a long-running Operation
  ``{name: "batches/...", metadata: GenerateContentBatch, done}``.
* ``GET /v1beta/batches/{id}`` (the Operation as of now), ``DELETE``;
  ``GET /v1beta/batches?pageSize=&pageToken=`` (``{operations, nextPageToken}``, newest
  first); ``POST /v1beta/batches/{id}:cancel`` (answers ``{}``).

``metadata.state`` is ``BATCH_STATE_PENDING`` in the create answer, then
``BATCH_STATE_RUNNING``, then ``BATCH_STATE_SUCCEEDED``, ``BATCH_STATE_CANCELLED`` or
``BATCH_STATE_EXPIRED``, with ``done`` true; ``metadata.batchStats`` counts requests
(int64 counts as JSON strings, as Google writes them). Once done, ``metadata.output``
and ``response`` hold ``inlinedResponses.inlinedResponses``: per request, in order,
``{response: GenerateContentResponse, metadata}`` or ``{error: google.rpc.Status,
metadata}``; requests a cancel or the window left undone are errors CANCELLED (1) or
DEADLINE_EXCEEDED (4), this fake's choice where Google's documentation is silent.
Only under ``/v1beta`` (where Google serves batch mode): on this server ``/v1/batches``
is OpenAI's. Timing, failures and expiry: :mod:`.batches`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .batches import BatchHost, Failed, Filtered, Schedule, list_or_create, lookup, page, parse_limit
from .gemini_format import GeminiDialect, GeminiError, error_for, filtered_body, parse_generate_request, response_body
from .replies import Completion
from .wire import reject_constant

__all__ = ["GeminiBatches"]

_BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch"
_OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput"
_LIST_DEFAULT, _LIST_MAX = 20, 1000
_DIALECT = GeminiDialect()
_CANCELLED = {"code": 1, "message": "The batch was cancelled before this request ran."}
_EXPIRED = {"code": 4, "message": "The batch expired before this request ran."}


def _time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _not_found(batch_id: str) -> Response:
    return GeminiError(404, f"Batch batches/{batch_id[:80]} not found.").response()


@dataclass
class GeminiBatch:
    """One batch: every request's inlined response, and its clock."""

    id: str
    model: str
    display_name: str
    created_at: float
    responses: list[dict[str, Any]]  # {"response"|"error", "metadata"?} in request order
    schedule: Schedule

    def as_operation(self, now: float, announce: Literal["pending"] | None = None) -> dict[str, Any]:
        """The Operation as of ``now``; ``announce`` is what the create call answers."""
        schedule = self.schedule
        n = len(self.responses)
        done = 0 if announce else schedule.done(now)
        ok = sum(1 for r in self.responses[:done] if "response" in r)
        ended = announce is None and schedule.ended(now)
        metadata: dict[str, Any] = {
            "@type": _BATCH_TYPE,
            "name": f"batches/{self.id}",
            "model": f"models/{self.model}",
            "displayName": self.display_name,
            "createTime": _time(self.created_at),
            "updateTime": _time(self.created_at if announce else min(now, schedule.ending()[1])),
            "state": "BATCH_STATE_PENDING" if announce else "BATCH_STATE_RUNNING",
            "batchStats": {
                "requestCount": str(n),
                "successfulRequestCount": str(ok),
                "failedRequestCount": str(done - ok),
                "pendingRequestCount": str(n - done),
            },
        }
        operation: dict[str, Any] = {"name": f"batches/{self.id}", "metadata": metadata, "done": ended}
        if not ended:
            return operation
        ending, ends_at = schedule.ending()
        undone = _CANCELLED if ending == "cancelled" else _EXPIRED
        output = self.responses[:done] + [{"error": undone, **_key(r)} for r in self.responses[done:]]
        metadata["state"] = {"completed": "BATCH_STATE_SUCCEEDED", "cancelled": "BATCH_STATE_CANCELLED"}.get(
            ending, "BATCH_STATE_EXPIRED"
        )
        metadata["endTime"] = _time(ends_at)
        metadata["batchStats"].update(failedRequestCount=str(n - ok), pendingRequestCount="0")
        inlined = {"inlinedResponses": {"inlinedResponses": output}}
        metadata["output"] = inlined
        operation["response"] = {"@type": _OUTPUT_TYPE, **inlined}
        return operation


def _key(entry: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": entry["metadata"]} if "metadata" in entry else {}


class GeminiBatches:
    """Gemini batches, held in memory for the server's lifetime."""

    def __init__(self, host: BatchHost) -> None:
        self.host = host
        self.batches: dict[str, GeminiBatch] = {}  # in creation order

    def routes(self) -> list[tuple[str, Any, list[str]]]:
        """(path, handler, methods) for the server's route table."""
        return [
            ("/v1beta/models/{model}:batchGenerateContent", self.collection, ["POST"]),
            ("/v1beta/batches", self.collection, ["GET"]),
            ("/v1beta/batches/{batch_id}:cancel", self.cancel, ["POST"]),
            ("/v1beta/batches/{batch_id}", self.batch_endpoint, ["GET", "DELETE"]),
        ]

    async def collection(self, request: Request) -> Response:
        """``POST .../models/{model}:batchGenerateContent`` creates a batch; ``GET
        /v1beta/batches`` lists them, newest first."""
        return await list_or_create(request, _DIALECT, self._list, self._create)

    async def _create(self, request: Request) -> Response:
        _, max_bytes = self.host.batch_limits("gemini")
        raw = await request.body()
        if len(raw) > max_bytes:
            raise GeminiError(400, f"Request payload size exceeds the limit: {max_bytes} bytes.")
        try:
            body = json.loads(raw, parse_constant=reject_constant)
        except (ValueError, RecursionError):
            raise _DIALECT.unparseable() from None
        batch = body.get("batch") if isinstance(body, dict) else None
        config = batch.get("inputConfig") if isinstance(batch, dict) else None
        holder = config.get("requests") if isinstance(config, dict) else None
        requests = holder.get("requests") if isinstance(holder, dict) else None
        if not isinstance(batch, dict) or not isinstance(requests, list) or not requests:
            raise GeminiError(400, "* batch.input_config.requests.requests: at least one inline request is required")
        model = str(request.path_params["model"]).removeprefix("models/")
        responses = [self._answer(model, i, item) for i, item in enumerate(requests)]
        now = self.host.batch_now()
        name = batch.get("displayName")
        display = name if isinstance(name, str) else ""
        created = GeminiBatch(
            secrets.token_hex(12), model, display, now, responses, Schedule(now, len(responses), self.host.batch_timing())
        )
        self.batches[created.id] = created
        return JSONResponse(created.as_operation(now, announce="pending"))

    def _answer(self, model: str, i: int, item: Any) -> dict[str, Any]:
        """One inline request answered as ``generateContent`` would answer it."""
        if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
            raise GeminiError(400, f"* batch.input_config.requests.requests[{i}].request: must be an object")
        key = {"metadata": item["metadata"]} if "metadata" in item else {}
        # A request may name its model (the SDK sends it); the batch's model answers it.
        body = {k: v for k, v in item["request"].items() if k != "model"}
        try:
            prompt = parse_generate_request(model, body)
        except GeminiError as exc:
            return {"error": exc.rpc_status(), **key}
        answer = self.host.batch_answer(prompt)
        if isinstance(answer, Completion):
            return {"response": response_body(prompt, answer), **key}
        if isinstance(answer, Filtered):
            return {"response": filtered_body(prompt, answer.prompt_tokens), **key}
        assert isinstance(answer, Failed)
        return {"error": error_for(answer.kind, answer.info).rpc_status(), **key}

    def _list(self, request: Request) -> Response:
        query = request.query_params
        try:
            limit = parse_limit(query.get("pageSize"), _LIST_DEFAULT, _LIST_MAX)
        except ValueError as exc:
            raise GeminiError(400, f"page_size: {exc}") from None
        listed = page(list(reversed(self.batches)), limit, after=query.get("pageToken") or None)
        if listed is None:
            raise GeminiError(400, "page_token: invalid page token")
        ids, has_more = listed
        now = self.host.batch_now()
        answer: dict[str, Any] = {"operations": [self.batches[i].as_operation(now) for i in ids]}
        if has_more and ids:
            # The token is the last id of this page: opaque to clients, as Google's are.
            answer["nextPageToken"] = ids[-1]
        return JSONResponse(answer)

    async def batch_endpoint(self, request: Request) -> Response:
        """``GET``: the Operation as of now; ``DELETE``: forget the batch."""
        found = lookup(request, _DIALECT, self.batches, "batch_id", _not_found)
        if isinstance(found, Response):
            return found
        if request.method == "DELETE":
            del self.batches[found.id]
            return JSONResponse({})
        return JSONResponse(found.as_operation(self.host.batch_now()))

    async def cancel(self, request: Request) -> Response:
        """``POST /v1beta/batches/{id}:cancel``: stop a batch that has not ended."""
        found = lookup(request, _DIALECT, self.batches, "batch_id", _not_found)
        if isinstance(found, Response):
            return found
        now = self.host.batch_now()
        if found.schedule.ended(now):
            return GeminiError(400, "The batch has already ended.").response()
        if found.schedule.cancel_requested_at is None:
            found.schedule.cancel_requested_at = now
        return JSONResponse({})
