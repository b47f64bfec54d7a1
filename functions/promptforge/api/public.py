"""The public HTTP API: authenticate, validate, call a use case, render the answer.

Each handler takes the Flask request and the deps and returns ``(status, body,
headers)``; :func:`endpoint` turns that, or any error, into a JSON response with the
one error envelope, and never lets a stack trace out.
"""

from __future__ import annotations

import functools
import json
import re
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import flask
from pydantic import ValidationError

from .. import logs
from ..domain import paths
from ..domain.job import Job, JobStatus
from ..domain.pricing import estimated_cost_usd
from ..service import keys, lifecycle, results
from ..service.deps import Deps
from .envelope import ApiError, internal, invalid, not_found, unauthenticated
from .schemas import InitRequest, InitResponse, ResultFile, ResultsResponse, StatusResponse

Handler = Callable[[flask.Request, Deps], tuple[int, dict[str, Any], dict[str, str]]]
_JOB_IN_PATH = re.compile(r"/jobs/([^/]+)")


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as the seed documents show."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, headers=headers or {}, mimetype="application/json")


def endpoint(handler: Handler, deps_factory: Callable[[], Deps]) -> Callable[[flask.Request], flask.Response]:
    """Wrap a handler: deps, error envelope, and no 500 with a trace."""

    @functools.wraps(handler)
    def serve(request: flask.Request) -> flask.Response:
        try:
            status, body, headers = handler(request, deps_factory())
            return json_response(status, body, headers)
        except ApiError as exc:
            return json_response(exc.status, exc.body(), exc.headers)
        except Exception as exc:  # the last line of defence: log where, answer plainly
            logs.error(
                "unhandled error",
                path=request.path,
                error_type=type(exc).__name__,
                # Frames only: an exception's message can carry request content.
                where=traceback.format_tb(exc.__traceback__)[-3:],
            )
            err = internal()
            return json_response(err.status, err.body())

    return serve


def _client(request: flask.Request, deps: Deps) -> str:
    client_id = keys.authenticate(deps, request.headers.get("X-API-Key"))
    if client_id is None:
        raise unauthenticated()
    return client_id


def _own_job(request: flask.Request, deps: Deps, client_id: str) -> Job:
    m = _JOB_IN_PATH.search(request.path)
    job_id = m.group(1) if m else request.args.get("job_id", "")
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise not_found() from None
    job = deps.store.get_job(job_id)
    if job is None or job.client_id != client_id:
        raise not_found()
    return job


def _json_body(request: flask.Request) -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise invalid("", "the body must be a JSON object")
    return body


def _validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors(include_input=False, include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    return invalid(field, msg)


def jobs_init(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``POST /v1/jobs/init``: create a job and hand out its upload URL."""
    client_id = _client(request, deps)
    if request.method != "POST":
        raise ApiError(405, "method_not_allowed", "Use POST")
    try:
        req = InitRequest.model_validate(_json_body(request))
    except ValidationError as exc:
        raise _validation_error(exc) from None
    if req.provider not in deps.settings.providers:
        enabled = ", ".join(deps.settings.providers)
        raise invalid("provider", f"{req.provider!r} is not enabled on this deployment (enabled: {enabled})")
    if req.provider == "openai_compatible" and not req.base_url:
        raise invalid("base_url", "is required for provider openai_compatible")
    if req.provider != "openai_compatible" and req.base_url:
        raise invalid("base_url", "is only for provider openai_compatible")
    new = lifecycle.create_job(deps, client_id, req.model_dump())
    body = InitResponse(
        job_id=new.job.job_id,
        status=new.job.status.value,
        upload_url=new.upload_url,
        upload_headers=new.upload_headers,
        upload_expires_at=iso(new.job.upload_expires_at) or "",
        max_upload_bytes=new.max_upload_bytes,
    )
    return 201, body.model_dump(), {}


def job_status(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``GET /v1/jobs/{job_id}/status``."""
    client_id = _client(request, deps)
    job = _own_job(request, deps, client_id)
    body, headers = _status_body(deps, job)
    return 200, body, headers


def _status_body(deps: Deps, job: Job) -> tuple[dict[str, Any], dict[str, str]]:
    completed, failed = job.completed_count, job.failed_count
    tokens_in, tokens_out = job.input_tokens, job.output_tokens
    if job.status is JobStatus.PROCESSING or (job.status.terminal and job.status is not JobStatus.COMPLETED and job.chunk_count):
        # Live counts come from the chunk documents, which the workers update.
        totals = deps.store.chunk_totals(job.job_id)
        completed, failed = totals.completed, job.invalid_count + totals.failed
        tokens_in, tokens_out = totals.input_tokens, totals.output_tokens
    poll = deps.settings.status_poll_seconds
    body = StatusResponse(
        job_id=job.job_id,
        status=job.status.value,
        provider=job.provider,
        model=job.model,
        prompt_count=job.prompt_count,
        completed_count=completed,
        failed_count=failed,
        created_at=iso(job.created_at) or "",
        started_processing_at=iso(job.started_processing_at),
        completed_at=iso(job.completed_at),
        tokens_used=tokens_in + tokens_out,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        estimated_cost_usd=estimated_cost_usd(job.provider, job.model, tokens_in, tokens_out),
        budget_tokens=job.budget_tokens,
        metadata=job.metadata,
        error=job.error.to_dict() if job.error else None,  # type: ignore[arg-type]
        retry_after=None if job.status.terminal else poll,
    )
    headers = {} if job.status.terminal else {"Retry-After": str(poll)}
    return body.model_dump(), headers


def job_cancel(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``POST /v1/jobs/{job_id}/cancel``: stop a job; what finished is kept."""
    client_id = _client(request, deps)
    if request.method != "POST":
        raise ApiError(405, "method_not_allowed", "Use POST")
    job = _own_job(request, deps, client_id)
    try:
        cancelled = lifecycle.cancel_job(deps, job)
    except lifecycle.JobTerminal as exc:
        raise ApiError(409, "job_terminal", "Job has already ended", {"current_status": exc.job.status.value}) from None
    body, _ = _status_body(deps, cancelled)
    return 200, body, {}


def job_results(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``GET /v1/jobs/{job_id}/results``: fresh signed URLs for a COMPLETED job, and with
    ``?partial=true`` what a FAILED or CANCELLED job produced."""
    client_id = _client(request, deps)
    job = _own_job(request, deps, client_id)
    partial = request.args.get("partial", "").lower() in ("1", "true", "yes")
    if partial and job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        names = results.partial_files(deps, job)
    elif job.status is JobStatus.COMPLETED:
        names = job.result_files
    else:
        poll = str(deps.settings.status_poll_seconds)
        raise ApiError(
            409,
            "job_not_completed",
            "Job is not yet completed",
            {"current_status": job.status.value},
            {"Retry-After": poll} if not job.status.terminal else {},
        )
    ttl = timedelta(seconds=deps.settings.download_url_ttl_seconds)
    expires = iso(deps.now() + ttl) or ""
    files = [
        ResultFile(
            filename=name,
            url=deps.blobs.signed_download_url(
                deps.settings.results_bucket, paths.result_object(job.client_id, job.job_id, name), name, ttl
            ),
            expires_at=expires,
        )
        for name in names
    ]
    return 200, ResultsResponse(job_id=job.job_id, status=job.status.value, files=files).model_dump(), {}
