"""Anthropic's Message Batches API for the fake LLM.

Routes (each wants a key and ``anthropic-version``, as ``POST /v1/messages`` does;
errors in Anthropic's ``{"type": "error", "error": {type, message}}`` shape):

* ``POST /v1/messages/batches``: ``{"requests": [{custom_id, params}]}``, ``params``
  being a ``POST /v1/messages`` body. The envelope is checked at once (a ``custom_id``
  of 1-64 letters, digits, ``-`` or ``_``, unique in the batch; at most
  ``anthropic_batch_max_requests``, 100,000, requests: else 400; a body over
  ``anthropic_batch_max_bytes``, 256 MB: 413 ``request_too_large``); each request's
  ``params`` are checked when it is processed, as Anthropic does, and a refusal is an
  ``errored`` result.
* ``GET /v1/messages/batches/{id}``, ``DELETE`` (an ended batch only);
  ``GET /v1/messages/batches?after_id=&before_id=&limit=`` (newest first, ``limit``
  1-1000, default 20).
* ``GET /v1/messages/batches/{id}/results``: once the batch has ended (404 before), JSONL
  of ``{custom_id, result}``, ``result`` one of ``{type: succeeded, message}``,
  ``{type: errored, error}``, ``{type: canceled}``, ``{type: expired}``.
* ``POST /v1/messages/batches/{id}/cancel``: answers ``canceling``.

``processing_status`` is ``in_progress``, ``canceling`` or ``ended``. As Anthropic
documents, ``request_counts`` has every request under ``processing`` until the batch
ends, then under ``succeeded``, ``errored``, ``canceled`` or ``expired``. A succeeded
request's message is the fast route's, with ``usage.service_tier`` ``batch``.
Timing, failures and expiry: :mod:`.batches`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .anthropic_format import AnthropicDialect, AnthropicError, error_for, message_body, parse_messages_request, refusal_body
from .batches import BatchHost, Failed, Filtered, Schedule, list_or_create, lookup, page, parse_limit
from .replies import Completion
from .wire import reject_constant

__all__ = ["AnthropicBatches"]

_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_LIST_DEFAULT, _LIST_MAX = 20, 1000
_DIALECT = AnthropicDialect()


def _rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _invalid(message: str) -> AnthropicError:
    return AnthropicError(400, "invalid_request_error", message)


def _not_found(batch_id: str) -> Response:
    return AnthropicError(404, "not_found_error", f"No message batch with id {batch_id[:80]}.").response()


@dataclass(frozen=True)
class Result:
    """One request of a batch and the result it gets when its turn comes."""

    custom_id: str
    result: dict[str, Any]  # {"type": "succeeded", "message"} or {"type": "errored", "error"}


@dataclass
class MessageBatch:
    """One message batch: every request's result, and its clock."""

    id: str
    created_at: float
    results: list[Result]
    schedule: Schedule

    def as_object(self, now: float, base_url: str, announce: Literal["in_progress", "canceling"] | None = None) -> dict[str, Any]:
        """The MessageBatch object as of ``now``. ``announce`` is what the create and cancel
        calls answer, as Anthropic's do, before the batch has moved on."""
        schedule = self.schedule
        ended = schedule.ended(now) and announce is None
        counts = {"processing": len(self.results), "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        obj: dict[str, Any] = {
            "id": self.id,
            "type": "message_batch",
            "processing_status": "in_progress",
            "request_counts": counts,
            "ended_at": None,
            "created_at": _rfc3339(self.created_at),
            "expires_at": _rfc3339(schedule.expires_at),
            "archived_at": None,
            "cancel_initiated_at": _rfc3339(schedule.cancel_requested_at),
            "results_url": None,
        }
        if not ended:
            if announce == "canceling" or (announce is None and schedule.cancelling(now)):
                obj["processing_status"] = "canceling"
            return obj
        ending, ends_at = schedule.ending()
        done = self.results[: schedule.done(now)]
        counts["processing"] = 0
        counts["succeeded"] = sum(1 for r in done if r.result["type"] == "succeeded")
        counts["errored"] = len(done) - counts["succeeded"]
        counts["canceled" if ending == "cancelled" else "expired"] = len(self.results) - len(done)
        obj.update(
            processing_status="ended", ended_at=_rfc3339(ends_at), results_url=f"{base_url}/v1/messages/batches/{self.id}/results"
        )
        return obj

    def results_file(self, now: float) -> bytes:
        """The results JSONL of an ended batch."""
        ending, _ = self.schedule.ending()
        done = self.schedule.done(now)
        undone = {"type": "canceled" if ending == "cancelled" else "expired"}
        rows = [{"custom_id": r.custom_id, "result": r.result} for r in self.results[:done]]
        rows += [{"custom_id": r.custom_id, "result": undone} for r in self.results[done:]]
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _requests(body: Any, max_requests: int) -> list[tuple[str, Any]]:
    """The (custom_id, params) pairs of a create body; AnthropicError (400) as Anthropic refuses it."""
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object.")
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise _invalid("requests: a non-empty list of {custom_id, params} is required")
    if len(requests) > max_requests:
        raise _invalid(f"requests: a batch may hold at most {max_requests} requests, but this one has {len(requests)}")
    seen: set[str] = set()
    pairs: list[tuple[str, Any]] = []
    for i, item in enumerate(requests):
        if not isinstance(item, dict):
            raise _invalid(f"requests.{i}: must be an object")
        custom_id, params = item.get("custom_id"), item.get("params")
        if not isinstance(custom_id, str) or _CUSTOM_ID.fullmatch(custom_id) is None:
            raise _invalid(f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise _invalid(f"requests.{i}.custom_id: custom_id must be unique within the batch")
        if not isinstance(params, dict):
            raise _invalid(f"requests.{i}.params: must be an object")
        seen.add(custom_id)
        pairs.append((custom_id, params))
    return pairs


class AnthropicBatches:
    """Message batches, held in memory for the server's lifetime."""

    def __init__(self, host: BatchHost) -> None:
        self.host = host
        self.batches: dict[str, MessageBatch] = {}  # in creation order

    def routes(self) -> list[tuple[str, Callable[[Request], Any], list[str]]]:
        """(path, handler, methods) for the server's route table."""
        return [
            ("/v1/messages/batches", self.batches_endpoint, ["GET", "POST"]),
            ("/v1/messages/batches/{batch_id}", self.batch_endpoint, ["GET", "DELETE"]),
            ("/v1/messages/batches/{batch_id}/results", self.results, ["GET"]),
            ("/v1/messages/batches/{batch_id}/cancel", self.cancel, ["POST"]),
        ]

    def _find(self, request: Request) -> MessageBatch | Response:
        return lookup(request, _DIALECT, self.batches, "batch_id", _not_found)

    @staticmethod
    def _base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    async def batches_endpoint(self, request: Request) -> Response:
        """``POST /v1/messages/batches`` creates a batch; ``GET`` lists them."""
        return await list_or_create(request, _DIALECT, self._list, self._create)

    async def _create(self, request: Request) -> Response:
        max_requests, max_bytes = self.host.batch_limits("anthropic")
        raw = await request.body()
        if len(raw) > max_bytes:
            raise AnthropicError(413, "request_too_large", f"Request exceeds the maximum size of {max_bytes} bytes.")
        try:
            body = json.loads(raw, parse_constant=reject_constant)
        except (ValueError, RecursionError):
            raise _DIALECT.unparseable() from None
        pairs = _requests(body, max_requests)
        now = self.host.batch_now()
        results = [self._answer(custom_id, params) for custom_id, params in pairs]
        batch = MessageBatch(
            "msgbatch_" + secrets.token_hex(12), now, results, Schedule(now, len(results), self.host.batch_timing())
        )
        self.batches[batch.id] = batch
        return JSONResponse(batch.as_object(now, self._base(request), announce="in_progress"))

    def _answer(self, custom_id: str, params: dict[str, Any]) -> Result:
        """One request answered as ``POST /v1/messages`` would answer it."""
        try:
            prompt = parse_messages_request(params)
        except AnthropicError as exc:
            return Result(custom_id, {"type": "errored", "error": exc.body()})
        answer = self.host.batch_answer(prompt)
        if isinstance(answer, Completion):
            return Result(custom_id, {"type": "succeeded", "message": message_body(prompt, answer, "batch")})
        if isinstance(answer, Filtered):
            return Result(custom_id, {"type": "succeeded", "message": refusal_body(prompt, answer.prompt_tokens, "batch")})
        assert isinstance(answer, Failed)
        return Result(custom_id, {"type": "errored", "error": error_for(answer.kind, answer.info).body()})

    def _list(self, request: Request) -> Response:
        query = request.query_params
        try:
            limit = parse_limit(query.get("limit"), _LIST_DEFAULT, _LIST_MAX)
        except ValueError as exc:
            raise _invalid(f"limit: {exc}") from None
        listed = page(list(reversed(self.batches)), limit, after=query.get("after_id"), before=query.get("before_id"))
        if listed is None:
            # Refused rather than an empty page: "nothing" must not read as "none of mine".
            raise _invalid("after_id/before_id: no such message batch")
        ids, has_more = listed
        now, base = self.host.batch_now(), self._base(request)
        data = [self.batches[batch_id].as_object(now, base) for batch_id in ids]
        first, last = (ids[0], ids[-1]) if ids else (None, None)
        return JSONResponse({"data": data, "has_more": has_more, "first_id": first, "last_id": last})

    async def batch_endpoint(self, request: Request) -> Response:
        """``GET``: the batch as of now; ``DELETE``: forget an ended batch."""
        found = self._find(request)
        if isinstance(found, Response):
            return found
        now = self.host.batch_now()
        if request.method == "DELETE":
            if not found.schedule.ended(now):
                return _invalid("A message batch can be deleted only once it has ended; cancel it first.").response()
            del self.batches[found.id]
            return JSONResponse({"id": found.id, "type": "message_batch_deleted"})
        return JSONResponse(found.as_object(now, self._base(request)))

    async def results(self, request: Request) -> Response:
        """``GET .../results``: the results JSONL of an ended batch."""
        found = self._find(request)
        if isinstance(found, Response):
            return found
        now = self.host.batch_now()
        if not found.schedule.ended(now):
            return AnthropicError(404, "not_found_error", "The results of a message batch exist once it has ended.").response()
        return Response(found.results_file(now), media_type="application/binary")

    async def cancel(self, request: Request) -> Response:
        """``POST .../cancel``: stop a batch that has not ended."""
        found = self._find(request)
        if isinstance(found, Response):
            return found
        now = self.host.batch_now()
        if found.schedule.ended(now):
            return _invalid("A message batch that has ended cannot be canceled.").response()
        if found.schedule.cancel_requested_at is None:
            found.schedule.cancel_requested_at = now
        return JSONResponse(found.as_object(now, self._base(request), announce="canceling"))
