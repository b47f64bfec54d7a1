"""OpenAI's Batch API for the fake LLM: files and batches of chat completions.

Routes (each wants ``Authorization: Bearer <key>`` as the chat route does; errors in
OpenAI's ``{"error": {message, type, param, code}}`` shape):

* ``POST /v1/files``: multipart upload, ``purpose`` ``batch`` and a JSONL ``file`` of
  ``{custom_id, method, url, body}`` lines; a file over ``openai_batch_max_bytes``
  (200 MB, OpenAI's limit) is refused with OpenAI's 400 "File is too large.".
* ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``.
* ``POST /v1/batches``: ``input_file_id``, ``endpoint`` (``/v1/chat/completions``, the
  only one the fake serves), ``completion_window`` ``24h``, ``metadata`` (16 string pairs).
  The answer says ``validating``; a file OpenAI would not take (not JSONL, no or duplicate
  ``custom_id``, a line for another URL or model, empty, more than
  ``openai_batch_max_requests`` lines: 50,000) makes the batch ``failed`` with
  ``errors.data`` of ``{code, message, param, line}`` (codes ``invalid_json_line``,
  ``invalid_request``, ``duplicate_custom_id``, ``url_mismatch``, ``model_mismatch``,
  ``empty_file``, ``too_many_tasks``).
* ``GET /v1/batches/{id}``; ``GET /v1/batches?after=&limit=``: newest first, ``limit``
  1-100 (default 20), ``has_more``/``first_id``/``last_id``, so that a client can find
  its batches again by their metadata after a crash.
* ``POST /v1/batches/{id}/cancel``: answers ``cancelling``; see :mod:`.batches` for how a
  batch then ends.

Each request is answered as ``POST /v1/chat/completions`` would answer it (same reply,
usage and finish reason; a request the chat route would refuse gets the same 400 body),
see :meth:`.batches.BatchHost.batch_answer` for failures. When the batch has ended, its
``output_file_id`` holds the 200 answers and its ``error_file_id`` the others, each line
``{id, custom_id, response: {status_code, request_id, body}, error}``; requests the
window or a cancel left undone are error lines with ``response`` null and ``error``
``{code: batch_expired | batch_cancelled, message}``. ``request_counts.failed`` counts
those too, so that an ended batch has ``completed + failed == total``.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .batches import BatchHost, Failed, Filtered, Schedule, list_or_create, lookup, page, parse_limit
from .openai_format import (
    OpenAIDialect,
    OpenAIError,
    completion_body,
    error_for,
    filtered_body,
    parse_chat_request,
)
from .replies import Completion
from .wire import json_type, reject_constant

__all__ = ["CHAT_ENDPOINT", "OpenAIBatches", "parse_multipart"]

CHAT_ENDPOINT = "/v1/chat/completions"
_WINDOW = "24h"  # the only completion window OpenAI offers
_METADATA_PAIRS, _METADATA_KEY, _METADATA_VALUE = 16, 64, 512
_LIST_DEFAULT, _LIST_MAX = 20, 100
# A batch object lists at most this many validation errors: a file of 50,000 bad lines
# would otherwise make every poll of it megabytes long.
_ERRORS_SHOWN = 100
_EXPIRED = "This request could not be executed before the completion window expired."
_CANCELLED = "This request was cancelled before it could be executed."
_DIALECT = OpenAIDialect()


def _new_id(prefix: str, chars: int = 24) -> str:
    return prefix + secrets.token_hex(chars // 2)


# --------------------------------------------------------------------------------------
# Multipart
# --------------------------------------------------------------------------------------

_DISPOSITION = re.compile(rb'content-disposition:[^\r\n]*?\bname="([^"]*)"(?:[^\r\n]*?\bfilename="([^"]*)")?', re.IGNORECASE)


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a ``multipart/form-data`` body: name -> (filename or None, bytes).

    Only what an upload needs (RFC 7578: named parts, an optional filename, no nesting);
    ValueError when the body is not of that form.
    """
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise ValueError("the body must be multipart/form-data")
    match = re.search(r'boundary="?([^";]+)"?', params)
    if match is None:
        raise ValueError("the multipart body has no boundary")
    delimiter = b"\r\n--" + match.group(1).encode("latin-1")
    # The first delimiter has no CRLF before it; prefixing one makes every part alike.
    pieces = (b"\r\n" + body).split(delimiter)
    if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
        raise ValueError("the multipart body is not closed")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for piece in pieces[1:-1]:
        head, sep, content = piece.partition(b"\r\n\r\n")
        found = _DISPOSITION.search(head)
        if not sep or found is None:
            raise ValueError("a multipart part has no name")
        filename = found.group(2).decode("utf-8", "replace") if found.group(2) is not None else None
        fields[found.group(1).decode("utf-8", "replace")] = (filename, content)
    return fields


# --------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------


@dataclass
class StoredFile:
    """An uploaded file, or a batch's output or error file as of the batch's end."""

    id: str
    filename: str
    purpose: str
    created_at: float
    content: bytes

    def as_object(self) -> dict[str, Any]:
        """OpenAI's File object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": int(self.created_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass(frozen=True)
class Line:
    """One request of a batch with the answer it gets when its turn comes."""

    id: str  # batch_req_..., the output line's own id
    custom_id: str
    request_id: str
    status_code: int
    body: dict[str, Any]
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Batch:
    """One batch: what was asked, every request's answer, and its clock."""

    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, str] | None
    created_at: float
    expires_after_s: float
    model: str | None
    lines: list[Line]
    errors: list[dict[str, Any]]  # the file's problems: the batch failed validation
    schedule: Schedule | None  # None when the batch failed validation
    output_file_id: str = field(default_factory=lambda: _new_id("file-"))
    error_file_id: str = field(default_factory=lambda: _new_id("file-"))

    def as_object(self, now: float, announce: Literal["validating", "cancelling"] | None = None) -> dict[str, Any]:
        """The Batch object as of ``now``. ``announce`` is what the create and cancel calls
        answer, as OpenAI's do, before the batch has moved on."""
        obj: dict[str, Any] = {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": None,
            "input_file_id": self.input_file_id,
            "completion_window": _WINDOW,
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(self.created_at),
            "in_progress_at": None,
            "expires_at": int(self.created_at + self.expires_after_s),
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": len(self.lines), "completed": 0, "failed": 0},
            "usage": _usage([]),
            "metadata": self.metadata,
        }
        if announce == "validating":
            return obj
        if self.schedule is None:
            obj.update(status="failed", failed_at=int(self.created_at), errors={"object": "list", "data": self.errors})
            return obj
        schedule = self.schedule
        obj["in_progress_at"] = int(self.created_at)
        if schedule.cancel_requested_at is not None:
            obj["cancelling_at"] = int(schedule.cancel_requested_at)
        done = self.lines[: schedule.done(now)]
        completed = sum(1 for line in done if line.status_code == 200)
        counts = obj["request_counts"]
        counts["completed"], counts["failed"] = completed, len(done) - completed
        obj["usage"] = _usage(done)
        ending, ends_at = schedule.ending()
        if announce == "cancelling" or not schedule.ended(now):
            obj["status"] = "cancelling" if announce == "cancelling" or schedule.cancelling(now) else "in_progress"
            return obj
        counts["failed"] = len(self.lines) - completed
        obj["status"] = ending
        obj[{"completed": "completed_at", "expired": "expired_at", "cancelled": "cancelled_at"}[ending]] = int(ends_at)
        if ending == "completed":
            obj["finalizing_at"] = int(ends_at)
        if completed:
            obj["output_file_id"] = self.output_file_id
        if completed < len(self.lines):
            obj["error_file_id"] = self.error_file_id
        return obj

    def result_file(self, file_id: str, now: float) -> StoredFile | None:
        """The output or error file ``file_id`` once the batch has ended, else None."""
        if self.schedule is None or not self.schedule.ended(now) or file_id not in (self.output_file_id, self.error_file_id):
            return None
        ending, ends_at = self.schedule.ending()
        done = self.schedule.done(now)
        want_ok = file_id == self.output_file_id
        rows = [_output_line(line) for line in self.lines[:done] if (line.status_code == 200) == want_ok]
        if not want_ok:
            code, message = ("batch_cancelled", _CANCELLED) if ending == "cancelled" else ("batch_expired", _EXPIRED)
            rows += [
                {"id": line.id, "custom_id": line.custom_id, "response": None, "error": {"code": code, "message": message}}
                for line in self.lines[done:]
            ]
        if not rows:
            return None
        content = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
        name = f"{self.id}_{'output' if want_ok else 'error'}.jsonl"
        return StoredFile(file_id, name, "batch_output", ends_at, content)


def _output_line(line: Line) -> dict[str, Any]:
    response = {"status_code": line.status_code, "request_id": line.request_id, "body": line.body}
    return {"id": line.id, "custom_id": line.custom_id, "response": response, "error": None}


def _usage(lines: list[Line]) -> dict[str, Any]:
    prompt = sum(line.prompt_tokens for line in lines)
    completion = sum(line.completion_tokens for line in lines)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


# --------------------------------------------------------------------------------------
# Reading an input file
# --------------------------------------------------------------------------------------


@dataclass
class _Input:
    """A batch input file read line by line: its requests, or why OpenAI would refuse it."""

    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (custom_id, body)
    model: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    def refuse(self, code: str, message: str, line: int | None = None, param: str | None = None) -> None:
        if len(self.errors) < _ERRORS_SHOWN:
            self.errors.append({"code": code, "message": message, "param": param, "line": line})


def _read_input(content: bytes, endpoint: str, max_requests: int) -> _Input:
    read = _Input()
    numbered = [(i, raw) for i, raw in enumerate(content.split(b"\n"), start=1) if raw.strip()]
    if not numbered:
        read.refuse("empty_file", "The batch input file is empty.")
        return read
    if len(numbered) > max_requests:
        read.refuse(
            "too_many_tasks",
            f"The batch input file has {len(numbered)} requests; a batch may have at most {max_requests}.",
        )
        return read
    seen: set[str] = set()
    for number, raw in numbered:
        try:
            entry = json.loads(raw, parse_constant=reject_constant)
        except (ValueError, RecursionError):
            read.refuse("invalid_json_line", "This line is not parseable as valid JSON.", number)
            continue
        if not isinstance(entry, dict):
            read.refuse("invalid_request", f"Each line must be a JSON object, but this one is {json_type(entry)}.", number)
            continue
        custom_id, method, url, body = (entry.get(k) for k in ("custom_id", "method", "url", "body"))
        if not isinstance(custom_id, str) or not custom_id:
            read.refuse("invalid_request", "Each line needs a custom_id string.", number, "custom_id")
        elif custom_id in seen:
            read.refuse("duplicate_custom_id", "The custom_id of this line is not unique in the batch.", number, "custom_id")
        elif method != "POST":
            read.refuse("invalid_request", "The method of each line must be POST.", number, "method")
        elif url != endpoint:
            read.refuse("url_mismatch", f"The url of this line does not match the batch's endpoint {endpoint}.", number, "url")
        elif not isinstance(body, dict):
            read.refuse("invalid_request", "The body of each line must be a JSON object.", number, "body")
        else:
            seen.add(custom_id)
            model = body.get("model")
            if isinstance(model, str) and model:
                if read.model is None:
                    read.model = model
                elif model != read.model:
                    read.refuse("model_mismatch", "Every request of a batch must use the same model.", number, "body.model")
                    continue
            read.requests.append((custom_id, body))
    return read


# --------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------


def _not_found(kind: str, ident: str) -> Response:
    # Ids are ours, never a prompt, so echoing one is safe.
    return OpenAIError(404, f"No such {kind} object: {ident[:80]}", "id").response()


def _batch_not_found(ident: str) -> Response:
    return _not_found("Batch", ident)


class OpenAIBatches:
    """Files and batches, held in memory for the server's lifetime."""

    def __init__(self, host: BatchHost) -> None:
        self.host = host
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}  # in creation order
        self._result_files: dict[str, str] = {}  # output or error file id -> batch id
        self._deleted: set[str] = set()

    def routes(self) -> list[tuple[str, Callable[[Request], Any], list[str]]]:
        """(path, handler, methods) for the server's route table."""
        return [
            ("/v1/files", self.upload_file, ["POST"]),
            ("/v1/files/{file_id}", self.file_endpoint, ["GET", "DELETE"]),
            ("/v1/files/{file_id}/content", self.file_content, ["GET"]),
            ("/v1/batches", self.batches_endpoint, ["GET", "POST"]),
            ("/v1/batches/{batch_id}", self.get_batch, ["GET"]),
            ("/v1/batches/{batch_id}/cancel", self.cancel_batch, ["POST"]),
        ]

    # ---- files ---------------------------------------------------------------------

    async def upload_file(self, request: Request) -> Response:
        """``POST /v1/files``: store a batch input file."""
        refused = _DIALECT.authenticate(request)
        if refused is not None:
            return refused.response()
        _, max_bytes = self.host.batch_limits("openai")
        try:
            fields = parse_multipart(request.headers.get("content-type", ""), await request.body())
        except ValueError as exc:
            return OpenAIError(400, f"Could not read the upload: {exc}.").response()
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace")
        if "purpose" not in fields:
            return OpenAIError(400, "Missing required parameter: 'purpose'.", "purpose", "missing_required_parameter").response()
        if purpose != "batch":
            # OpenAI takes other purposes too; the fake serves batches only, and says so.
            return OpenAIError(
                400, f"Invalid value: '{purpose[:40]}'. The fake LLM server only takes 'batch' files.", "purpose", "invalid_value"
            ).response()
        if "file" not in fields or fields["file"][0] is None:
            return OpenAIError(400, "Missing required parameter: 'file'.", "file", "missing_required_parameter").response()
        filename, content = fields["file"]
        if len(content) > max_bytes:
            return OpenAIError(400, "File is too large.").response()
        stored = StoredFile(_new_id("file-"), filename or "upload.jsonl", purpose, self.host.batch_now(), content)
        self.files[stored.id] = stored
        return JSONResponse(stored.as_object())

    def _file(self, file_id: str) -> StoredFile | None:
        if file_id in self._deleted:
            return None
        if file_id in self.files:
            return self.files[file_id]
        batch_id = self._result_files.get(file_id)
        return self.batches[batch_id].result_file(file_id, self.host.batch_now()) if batch_id else None

    def _find_file(self, request: Request) -> StoredFile | Response:
        """The file the path names, or the answer refusing the request."""
        refused = _DIALECT.authenticate(request)
        if refused is not None:
            return refused.response()
        file_id = request.path_params["file_id"]
        stored = self._file(file_id)
        return stored if stored is not None else _not_found("File", file_id)

    async def file_endpoint(self, request: Request) -> Response:
        """``GET /v1/files/{id}``: the File object; ``DELETE``: forget the file."""
        found = self._find_file(request)
        if isinstance(found, Response):
            return found
        if request.method == "DELETE":
            self.files.pop(found.id, None)
            self._deleted.add(found.id)
            return JSONResponse({"id": found.id, "object": "file", "deleted": True})
        return JSONResponse(found.as_object())

    async def file_content(self, request: Request) -> Response:
        """``GET /v1/files/{id}/content``: the file's bytes."""
        found = self._find_file(request)
        if isinstance(found, Response):
            return found
        return Response(found.content, media_type="application/octet-stream")

    # ---- batches -------------------------------------------------------------------

    async def batches_endpoint(self, request: Request) -> Response:
        """``POST /v1/batches`` creates a batch; ``GET`` lists them."""
        return await list_or_create(request, _DIALECT, self._list, self._create)

    async def _create(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body(), parse_constant=reject_constant)
        except (ValueError, RecursionError):
            return _DIALECT.unparseable().response()
        if not isinstance(body, dict):
            raise OpenAIError(400, f"Invalid type for request body: expected an object, but got {json_type(body)} instead.")
        for name in ("input_file_id", "endpoint", "completion_window"):
            if name not in body:
                raise OpenAIError(400, f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
            if not isinstance(body[name], str):
                raise OpenAIError(
                    400,
                    f"Invalid type for '{name}': expected a string, but got {json_type(body[name])} instead.",
                    name,
                    "invalid_type",
                )
        if body["endpoint"] != CHAT_ENDPOINT:
            raise OpenAIError(
                400,
                f"Invalid value: '{body['endpoint'][:80]}'. The fake LLM server batches '{CHAT_ENDPOINT}' only.",
                "endpoint",
                "invalid_value",
            )
        if body["completion_window"] != _WINDOW:
            raise OpenAIError(
                400,
                f"Invalid value: '{body['completion_window'][:80]}'. Supported values are: '{_WINDOW}'.",
                "completion_window",
                "invalid_value",
            )
        metadata = _check_metadata(body.get("metadata"))
        file_id = body["input_file_id"]
        stored = self.files.get(file_id) if file_id not in self._deleted else None
        if stored is None:
            raise OpenAIError(400, f"Cannot find file {file_id[:80]}, or project does not have access to it.", "input_file_id")
        if stored.purpose != "batch":
            raise OpenAIError(400, "The input file must be uploaded with purpose 'batch'.", "input_file_id")

        max_requests, _ = self.host.batch_limits("openai")
        read = _read_input(stored.content, CHAT_ENDPOINT, max_requests)
        now = self.host.batch_now()
        timing = self.host.batch_timing()
        lines = [] if read.errors else [self._answer(custom_id, req) for custom_id, req in read.requests]
        batch = Batch(
            id=_new_id("batch_"),
            input_file_id=file_id,
            endpoint=CHAT_ENDPOINT,
            metadata=metadata,
            created_at=now,
            expires_after_s=timing.window_s,
            model=read.model,
            lines=lines,
            errors=read.errors,
            schedule=None if read.errors else Schedule(now, len(lines), timing),
        )
        self.batches[batch.id] = batch
        self._result_files[batch.output_file_id] = batch.id
        self._result_files[batch.error_file_id] = batch.id
        return JSONResponse(batch.as_object(now, announce="validating"))

    def _answer(self, custom_id: str, body: dict[str, Any]) -> Line:
        """One request answered as the chat route would answer it."""
        line_id, request_id = _new_id("batch_req_"), _new_id("req_", 32)
        try:
            prompt = parse_chat_request(body)
        except OpenAIError as exc:
            return Line(line_id, custom_id, request_id, exc.status, exc.body(), 0, 0)
        answer = self.host.batch_answer(prompt)
        if isinstance(answer, Completion):
            completion_tokens = answer.completion_tokens * prompt.n
            return Line(
                line_id, custom_id, request_id, 200, completion_body(prompt, answer), answer.prompt_tokens, completion_tokens
            )
        if isinstance(answer, Filtered):
            return Line(line_id, custom_id, request_id, 200, filtered_body(prompt, answer.prompt_tokens), answer.prompt_tokens, 0)
        assert isinstance(answer, Failed)
        error = error_for(answer.kind, answer.info)
        return Line(line_id, custom_id, request_id, error.status, error.body(), 0, 0)

    def _list(self, request: Request) -> Response:
        query = request.query_params
        try:
            limit = parse_limit(query.get("limit"), _LIST_DEFAULT, _LIST_MAX)
        except ValueError as exc:
            raise OpenAIError(400, f"Invalid 'limit': {exc}.", "limit", "invalid_value") from None
        after = query.get("after")
        listed = page(list(reversed(self.batches)), limit, after=after)
        if listed is None:
            # An unknown cursor is refused, not answered with an empty page: a client
            # reconciling after a crash must not take "nothing" for "none of mine".
            raise OpenAIError(400, f"Invalid 'after': no batch {(after or '')[:80]}.", "after", "invalid_value")
        ids, has_more = listed
        now = self.host.batch_now()
        data = [self.batches[batch_id].as_object(now) for batch_id in ids]
        first, last = (ids[0], ids[-1]) if ids else (None, None)
        return JSONResponse({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more})

    async def get_batch(self, request: Request) -> Response:
        """``GET /v1/batches/{id}``: the batch as of now."""
        batch = lookup(request, _DIALECT, self.batches, "batch_id", _batch_not_found)
        if isinstance(batch, Response):
            return batch
        return JSONResponse(batch.as_object(self.host.batch_now()))

    async def cancel_batch(self, request: Request) -> Response:
        """``POST /v1/batches/{id}/cancel``: stop a batch that has not ended."""
        batch = lookup(request, _DIALECT, self.batches, "batch_id", _batch_not_found)
        if isinstance(batch, Response):
            return batch
        now = self.host.batch_now()
        schedule = batch.schedule
        if schedule is None or schedule.ended(now):
            status = batch.as_object(now)["status"]
            return OpenAIError(409, f"Cannot cancel a batch with status '{status}'.").response()
        if schedule.cancel_requested_at is None:
            schedule.cancel_requested_at = now
        return JSONResponse(batch.as_object(now, announce="cancelling"))


def _check_metadata(value: Any) -> dict[str, str] | None:
    """Metadata as OpenAI takes it: at most 16 pairs of strings (keys 64, values 512 long)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise OpenAIError(
            400,
            f"Invalid type for 'metadata': expected an object, but got {json_type(value)} instead.",
            "metadata",
            "invalid_type",
        )
    if len(value) > _METADATA_PAIRS:
        raise OpenAIError(
            400,
            f"Invalid 'metadata': too many properties. Expected an object with at most {_METADATA_PAIRS} properties, "
            f"but got an object with {len(value)} properties instead.",
            "metadata",
            "object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > _METADATA_KEY:
            raise OpenAIError(
                400, f"Invalid 'metadata': keys may be at most {_METADATA_KEY} characters long.", "metadata", "invalid_value"
            )
        if not isinstance(item, str):
            raise OpenAIError(
                400,
                f"Invalid type for 'metadata.{key}': expected a string, but got {json_type(item)} instead.",
                f"metadata.{key}",
                "invalid_type",
            )
        if len(item) > _METADATA_VALUE:
            raise OpenAIError(
                400,
                f"Invalid 'metadata.{key}': values may be at most {_METADATA_VALUE} characters long.",
                f"metadata.{key}",
                "invalid_value",
            )
    return dict(value)
