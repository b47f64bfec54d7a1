"""A small in-process PromptForge for the SDK and CLI unit tests, behind
``httpx.MockTransport``: the public API on ``http://api.test`` and signed URLs on
``http://storage.test``, with the contract's bodies, headers and error envelope.

A job moves one step on every status poll (QUEUED -> PROCESSING -> COMPLETED), so a
test sees progress without sleeping; ``lifecycle`` and ``terminal`` change the steps, e.g. to
states a newer service might add that the SDK does not know. The prompts decide the outcome: a line that is not a
JSON object with a ``prompt_id`` and a ``prompt`` is an ``invalid_line``, a duplicate
``prompt_id`` too, and a prompt containing ``FAIL`` fails with ``rate_limit_exceeded``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

API = "http://api.test"
STORAGE = "http://storage.test"
KEY = "pf_unit_test_key_0123456789"
ROWS_PER_PART = 2
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
LIFECYCLE = {"QUEUED": "PROCESSING", "PROCESSING": "COMPLETED"}


@dataclass
class FakeJob:
    job_id: str
    provider: str
    model: str
    metadata: dict[str, Any]
    created_at: str
    status: str = "AWAITING_UPLOAD"
    lines: list[bytes] | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, str] | None = None
    polls: int = 0
    request: dict[str, Any] = field(default_factory=dict)  # the body that created it
    lifecycle: dict[str, str] = field(default_factory=lambda: dict(LIFECYCLE))
    terminal: tuple[str, ...] = TERMINAL
    mode: str = "fast"

    def body(self, retry_after: int | None) -> dict[str, Any]:
        done = self.status in self.terminal
        total = None if self.lines is None or self.status in ("AWAITING_UPLOAD", "QUEUED") else len(self.lines)
        half = self.status not in self.terminal and self.status not in ("AWAITING_UPLOAD", "QUEUED")
        completed = len(self.results) // (2 if half else 1) if self.status != "QUEUED" else 0
        failed = len(self.errors) // (2 if half else 1) if self.status != "QUEUED" else 0
        return {
            "job_id": self.job_id,
            "status": self.status,
            "provider": self.provider,
            "model": self.model,
            "mode": self.mode,
            "prompt_count": total,
            "completed_count": completed,
            "failed_count": failed,
            "created_at": self.created_at,
            "started_processing_at": "2026-01-01T00:00:01.000Z" if self.status not in ("AWAITING_UPLOAD", "QUEUED") else None,
            "completed_at": "2026-01-01T00:00:09.000Z" if done else None,
            "tokens_used": 3 * completed,
            "input_tokens": 2 * completed,
            "output_tokens": completed,
            "provider_batches": self.batches() if self.mode == "economy" and half else None,
            "metadata": self.metadata,
            "error": self.error,
            "retry_after": None if done else retry_after,
        }

    def batches(self) -> dict[str, int]:
        """An economy job's provider batches halfway: one batch, its requests half done."""
        requests = len(self.lines or ())
        return {"batches": 1, "ended": 0, "requests": requests, "requests_done": requests // 2, "requests_failed": 0}

    def accept(self, data: bytes) -> None:
        """The upload: parse every line as the service would, and queue the job."""
        self.lines = [line for line in data.splitlines() if line.strip()]
        if not self.lines:
            self.status, self.error = "FAILED", {"code": "empty_file", "message": "the file has no prompts"}
            return
        seen: set[str] = set()
        for number, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:
                row = None
            pid = row.get("prompt_id") if isinstance(row, dict) else None
            if not isinstance(row, dict) or not isinstance(pid, str) or "prompt" not in row or pid in seen:
                self.errors.append({"prompt_id": pid, "error": "invalid_line", "line": number, "detail": "bad line"})
                continue
            seen.add(pid)
            if "FAIL" in str(row["prompt"]):
                self.errors.append({"prompt_id": pid, "error": "rate_limit_exceeded", "attempts": 3})
            else:
                self.results.append(
                    {"prompt_id": pid, "result": str(row["prompt"]).upper(), "model": self.model, "tokens_used": 3}
                )
        self.status = "QUEUED"

    def advance(self) -> None:
        self.polls += 1
        self.status = self.lifecycle.get(self.status, self.status)

    def files(self) -> dict[str, bytes]:
        parts = [self.results[i : i + ROWS_PER_PART] for i in range(0, len(self.results), ROWS_PER_PART)]
        out = {f"results_part_{n:03d}.jsonl": _jsonl(rows) for n, rows in enumerate(parts, start=1)}
        out["errors.jsonl"] = _jsonl(self.errors)
        return out


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def envelope(status: int, code: str, message: str, details: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return httpx.Response(status, json=body, headers=headers)


class FakeService:
    """The fake; ``transport`` serves both the sync and the async client."""

    def __init__(self, retry_after: int | None = 3, max_upload_bytes: int = 10_000_000, storage: str = STORAGE) -> None:
        self.retry_after = retry_after
        self.storage = storage
        # The steps a new job takes, one per status poll, and the states in which it has ended.
        self.lifecycle = dict(LIFECYCLE)
        self.terminal: tuple[str, ...] = TERMINAL
        self.max_upload_bytes = max_upload_bytes
        self.jobs: dict[str, FakeJob] = {}
        self.requests: list[httpx.Request] = []
        self.uploads: dict[str, bytes] = {}
        # Served instead of the next answers of the API or of the signed URLs, in order.
        self.faults: list[httpx.Response | Exception] = []
        self.storage_faults: list[httpx.Response | Exception] = []
        self.file_names: Callable[[str], str] = lambda name: name
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        faults = self.storage_faults if self.is_storage(request) else self.faults
        if faults:
            fault = faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            return fault
        if self.is_storage(request):
            return self._storage(request)
        if request.headers.get("X-API-Key") != KEY:
            return envelope(401, "unauthenticated", "Missing or invalid X-API-Key")
        return self._api(request)

    # --- the API ---------------------------------------------------------------------------

    def _api(self, request: httpx.Request) -> httpx.Response:
        method, parts = request.method, request.url.path.strip("/").split("/")
        if method == "POST" and parts == ["v1", "jobs", "init"]:
            return self._init(json.loads(request.content))
        if method == "POST" and parts == ["v1", "jobs"]:
            return self._create(json.loads(request.content))
        if method == "GET" and parts == ["v1", "jobs"]:
            return self._list(request.url.params)
        if len(parts) == 4 and parts[:2] == ["v1", "jobs"]:
            job = self.jobs.get(parts[2])
            if job is None:
                return envelope(404, "not_found", "Job not found")
            action = (method, parts[3])
            if action == ("GET", "status"):
                return self._status(job)
            if action == ("GET", "results"):
                return self._results(job, request.url.params)
            if action == ("POST", "cancel"):
                return self._cancel(job)
            if action == ("GET", "events"):
                return self._events(job)
        return envelope(404, "not_found", f"No route for {method} {request.url.path}.")

    def _new_job(self, body: dict[str, Any]) -> FakeJob | httpx.Response:
        if body.get("provider") not in ("fake", "openai"):
            return envelope(400, "invalid_request", "provider: unknown provider", {"field": "provider"})
        params = body.get("params", {})
        if not isinstance(params, dict) or any(k not in ("temperature", "max_tokens", "stop") for k in params):
            return envelope(400, "invalid_request", "params: unknown parameter", {"field": "params"})
        created = f"2026-01-01T00:00:{len(self.jobs):02d}.000Z"
        job = FakeJob(str(uuid.uuid4()), body["provider"], body["model"], dict(body.get("metadata", {})), created)
        job.request = body
        job.mode = body.get("mode", "fast")
        job.lifecycle, job.terminal = dict(self.lifecycle), self.terminal
        self.jobs[job.job_id] = job
        return job

    def _init(self, body: dict[str, Any]) -> httpx.Response:
        job = self._new_job(body)
        if isinstance(job, httpx.Response):
            return job
        return httpx.Response(
            201,
            json={
                "job_id": job.job_id,
                "status": job.status,
                "upload_url": f"{self.storage}/uploads/{job.job_id}.jsonl?X-Goog-Signature=secret-signature",
                "upload_method": "PUT",
                # As the service answers: every header is signed into the URL.
                "upload_headers": {
                    "Content-Type": "application/x-ndjson",
                    "x-goog-content-length-range": f"0,{self.max_upload_bytes}",
                },
                "upload_expires_at": "2026-01-01T01:00:00.000Z",
                "max_upload_bytes": self.max_upload_bytes,
            },
        )

    def _create(self, body: dict[str, Any]) -> httpx.Response:
        if len(body.get("prompts", [])) > 1000:
            return envelope(413, "payload_too_large", "More than 1000 prompts; use POST /v1/jobs/init", {"field": "prompts"})
        job = self._new_job(body)
        if isinstance(job, httpx.Response):
            return job
        job.accept(_jsonl(body["prompts"]))
        return httpx.Response(201, json=job.body(self.retry_after))

    def _status(self, job: FakeJob) -> httpx.Response:
        body = job.body(self.retry_after)
        job.advance()
        headers = {} if body["status"] in job.terminal or self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return httpx.Response(200, json=body, headers=headers)

    def _results(self, job: FakeJob, params: httpx.QueryParams) -> httpx.Response:
        partial = params.get("partial") == "true" and job.status in ("FAILED", "CANCELLED")
        if job.status != "COMPLETED" and not partial:
            headers = {} if job.status in job.terminal else {"Retry-After": "5"}
            return envelope(409, "job_not_completed", "Job is not yet completed", {"current_status": job.status}, **headers)
        if params.get("inline") == "true":
            return httpx.Response(
                200, json={"job_id": job.job_id, "status": job.status, "results": job.results, "errors": job.errors}
            )
        files = [
            {
                "filename": self.file_names(name),
                "url": f"{self.storage}/results/{job.job_id}/{name}?X-Goog-Signature=secret-signature",
                "expires_at": "2026-01-01T01:00:00.000Z",
            }
            for name in job.files()
        ]
        return httpx.Response(200, json={"job_id": job.job_id, "status": job.status, "files": files})

    def _cancel(self, job: FakeJob) -> httpx.Response:
        if job.status in job.terminal:
            return envelope(409, "job_terminal", "Job has already ended", {"current_status": job.status})
        job.status = "CANCELLED"
        return httpx.Response(200, json=job.body(self.retry_after))

    def _list(self, params: httpx.QueryParams) -> httpx.Response:
        limit, start = int(params.get("limit", "20")), int(params.get("page_token") or 0)
        newest_first = list(reversed(self.jobs.values()))
        page = newest_first[start : start + limit]
        token = str(start + limit) if start + limit < len(newest_first) else None
        return httpx.Response(200, json={"jobs": [j.body(self.retry_after) for j in page], "next_page_token": token})

    def _events(self, job: FakeJob) -> httpx.Response:
        chunks = ["retry: 10\n\n", ": keep-alive\n\n"]
        while True:
            body = json.dumps(job.body(self.retry_after))
            chunks.append(f"event: status\ndata: {body}\n\n")
            if job.status in job.terminal:
                chunks.append(f"event: done\ndata: {body}\n\n")
                break
            job.advance()
        return httpx.Response(200, content="".join(chunks).encode(), headers={"Content-Type": "text/event-stream"})

    # --- signed URLs -----------------------------------------------------------------------

    def _storage(self, request: httpx.Request) -> httpx.Response:
        if request.url.params.get("X-Goog-Signature") != "secret-signature":
            return httpx.Response(403, content=b"<Error><Code>SignatureDoesNotMatch</Code></Error>")
        parts = request.url.path.strip("/").split("/")
        if request.method == "PUT" and parts[0] == "uploads":
            job = self.jobs[parts[1].removesuffix(".jsonl")]
            self.uploads[job.job_id] = request.content
            job.accept(request.content)
            return httpx.Response(200)
        if request.method == "GET" and parts[0] == "results":
            files = self.jobs[parts[1]].files()
            if parts[2] in files:
                return httpx.Response(200, content=files[parts[2]])
        return httpx.Response(404, content=b"<Error><Code>NoSuchKey</Code></Error>")

    # --- helpers for tests -----------------------------------------------------------------

    def storage_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if self.is_storage(r)]

    def is_storage(self, request: httpx.Request) -> bool:
        return str(request.url).startswith(self.storage + "/")

    def finish(self, job_id: str) -> None:
        """Run a job to its end without polling."""
        while self.jobs[job_id].status not in self.jobs[job_id].terminal:
            self.jobs[job_id].advance()
