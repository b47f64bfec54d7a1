"""The public HTTP API: authenticate, validate, call a use case, render the answer.

Each handler takes the Flask request and the deps and returns ``(status, body,
headers)``; :func:`endpoint` turns that, or any error, into a JSON response with the
one error envelope, and never lets a stack trace out.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import re
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import flask
from pydantic import ValidationError

from .. import logs
from ..domain.job import Job, JobMode
from ..domain.provider_registry import BY_NAME
from ..service import keys, lifecycle, progress, quotas, results
from ..service.deps import Deps
from ..service.ports import BlockedAddress, StoreContention
from .body import drain, parse_object, read_limited, to_json
from .envelope import ApiError, busy, internal, invalid, not_found, payload_too_large, unauthenticated
from .schemas import (
    CreateRequest,
    InitRequest,
    InitResponse,
    InlineResults,
    JobList,
    ResultFile,
    ResultsResponse,
    StatusResponse,
)
from .views import iso, poll_headers, status_body

Handler = Callable[[flask.Request, Deps], "tuple[int, dict[str, Any], dict[str, str]] | flask.Response"]
_JOB_IN_PATH = re.compile(r"/jobs/([^/]+)")


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> flask.Response:
    return flask.Response(to_json(body), status=status, headers=headers or {}, mimetype="application/json")


def endpoint(handler: Handler, deps_factory: Callable[[], Deps]) -> Callable[[flask.Request], flask.Response]:
    """Wrap a handler: deps, error envelope, and no 500 with a trace."""

    @functools.wraps(handler)
    def serve(request: flask.Request) -> flask.Response:
        return _cors(request, deps_factory, _answer(request))

    def _answer(request: flask.Request) -> flask.Response:
        try:
            if request.method == "OPTIONS":
                return flask.Response(status=204)  # a browser's preflight: _cors answers it
            answer = handler(request, deps_factory())
            if isinstance(answer, flask.Response):
                return answer
            status, body, headers = answer
            return json_response(status, body, headers)
        except ApiError as exc:
            return json_response(exc.status, exc.body(), exc.headers)
        except StoreContention:
            # Many writers on one document (chunks of a job ending together): transient.
            logs.warning("store contention", path=request.path)
            err = busy()
            return json_response(err.status, err.body(), err.headers)
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
        finally:
            _finish_body(request)

    return serve


def _cors(request: flask.Request, deps_factory: Callable[[], Deps], response: flask.Response) -> flask.Response:
    """Let the configured origins (the jobs page's) read the answer. Only the events
    function is called across origins: it streams from its own URL, not the gateway's."""
    origin = request.headers.get("Origin")
    if not origin:
        return response
    try:
        allowed = origin in deps_factory().settings.cors_origins
    except Exception:  # settings that cannot load were answered already
        allowed = False
    if allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = "X-API-Key, Accept, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
    return response


def _finish_body(request: flask.Request) -> None:
    """Read off whatever the handler left of the body, discarding it (up to a cap), so the
    client gets its answer rather than a reset connection; and leave functions-framework's
    own after-request read of the body nothing to buffer in memory."""
    drain(request.stream)
    request.stream = io.BytesIO()


def _client(request: flask.Request, deps: Deps) -> str:
    """The caller's client id, once its key checks out and the call is within the client's
    requests per minute."""
    client_id = keys.authenticate(deps, request.headers.get("X-API-Key"))
    if client_id is None:
        raise unauthenticated()
    with _fair_use():
        quotas.check_request(deps, client_id)
    return client_id


@contextlib.contextmanager
def _fair_use() -> Iterator[None]:
    """Answer a fair-use refusal with 429, the cap and the count, and when to try again."""
    try:
        yield
    except quotas.OverCap as exc:
        details = {"limit": exc.limit, "current": exc.current}
        raise ApiError(429, exc.code, exc.message, details, {"Retry-After": str(exc.retry_after)}) from None


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


def _json_body(request: flask.Request, deps: Deps, limit: int, advice: str = "") -> dict[str, Any]:
    """The body, one JSON object of at most ``limit`` bytes as read (``Content-Length``
    only lets a body be refused sooner), within the nesting limit, numbers finite."""
    if (request.content_length or 0) > limit:
        raise payload_too_large(limit, advice)
    data = read_limited(request.stream, limit, advice)
    return parse_object(data, deps.settings.max_json_depth, deps.settings.max_json_containers)


def _validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors(include_input=False, include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    return invalid(field, msg)


def _check_callback(deps: Deps, url: str | None) -> None:
    """A callback URL must lead to a public address now (and is checked again at send)."""
    if url is None:
        return
    try:
        deps.outbound.check_url(url, deps.settings.allow_loopback_http_callbacks)
    except BlockedAddress as exc:
        raise invalid("callback_url", f"is refused: {exc}") from None


def _check_provider(deps: Deps, req: InitRequest) -> None:
    if req.provider not in deps.settings.providers:
        enabled = ", ".join(deps.settings.providers)
        raise invalid("provider", f"{req.provider!r} is not enabled on this deployment (enabled: {enabled})")
    _check_endpoint(deps, req)
    _check_mode(deps, req)
    _check_callback(deps, req.callback_url)


def _check_endpoint(deps: Deps, req: InitRequest) -> None:
    """``openai_compatible`` jobs name an endpoint the operator configured; a URL of the
    client's own is taken only where the operator allowed it, and carries no credential."""
    endpoints = deps.settings.endpoints
    if req.provider != "openai_compatible":
        if req.endpoint is not None:
            raise invalid("endpoint", "is only for provider openai_compatible")
        if req.base_url is not None:
            raise invalid("base_url", "is only for provider openai_compatible")
        return
    names = ", ".join(sorted(endpoints)) or "none configured"
    if req.base_url is not None:
        if req.endpoint is not None:
            raise invalid("base_url", "give either endpoint or base_url, not both")
        if not deps.settings.allow_client_base_urls:
            raise invalid("base_url", f"client URLs are disabled on this deployment; name an endpoint ({names})")
        try:
            deps.outbound.check_url(req.base_url)
        except BlockedAddress as exc:
            raise invalid("base_url", f"is refused: {exc}") from None
        return
    if req.endpoint is None:
        if len(endpoints) != 1:
            raise invalid("endpoint", f"is required for provider openai_compatible (configured: {names})")
        req.endpoint = next(iter(endpoints))
    elif req.endpoint not in endpoints:
        raise invalid("endpoint", f"{req.endpoint!r} is not configured on this deployment (configured: {names})")


def _check_mode(deps: Deps, req: InitRequest) -> None:
    """``economy`` needs a provider with a batch API, and a job the batch can run as asked:
    a provider batch runs every request it holds (it cannot stop at a token budget) and
    tries each once (the job's ``max_attempts`` is 1; ``resubmit`` sends failures again)."""
    if req.mode is not JobMode.ECONOMY:
        return
    if req.base_url is not None:
        raise invalid(
            "mode", "economy is not available with a base_url of your own: name an endpoint whose server has a batch API"
        )
    if req.endpoint is not None:
        if deps.settings.endpoints[req.endpoint].batch is None:
            raise invalid("mode", f"economy needs a batch API, and endpoint {req.endpoint!r} declares none on this deployment")
    elif BY_NAME[req.provider].batch is None:
        able = ", ".join(p for p in deps.settings.providers if BY_NAME[p].batch) or "none enabled here"
        raise invalid("mode", f"economy needs a provider with a batch API ({able}); {req.provider!r} has none")
    if req.budget_tokens is not None:
        raise invalid(
            "budget_tokens",
            "cannot be set with mode economy: a provider batch runs all its requests, it cannot stop at a token count",
        )
    if "max_attempts" in req.model_fields_set and req.max_attempts != 1:
        raise invalid(
            "max_attempts",
            "must be 1 with mode economy: a provider batch tries each request once (resubmit sends failures again)",
        )
    req.max_attempts = 1


def jobs_init(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``POST /v1/jobs/init``: create a job and hand out its upload URL."""
    client_id = _client(request, deps)
    if request.method != "POST":
        raise ApiError(405, "method_not_allowed", "Use POST")
    try:
        req = InitRequest.model_validate(_json_body(request, deps, deps.settings.max_body_bytes))
    except ValidationError as exc:
        raise _validation_error(exc) from None
    _check_provider(deps, req)
    with _fair_use():
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
    view = progress.view(deps, _own_job(request, deps, client_id))
    return 200, status_body(view), poll_headers(view)


def job_cancel(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``POST /v1/jobs/{job_id}/cancel``: stop a job; what finished is kept."""
    client_id = _client(request, deps)
    if request.method != "POST":
        raise ApiError(405, "method_not_allowed", "Use POST")
    # Cancel takes no fields; a body is allowed, within the small limit, and not read further.
    read_limited(request.stream, deps.settings.max_small_body_bytes)
    job = _own_job(request, deps, client_id)
    try:
        cancelled = lifecycle.cancel_job(deps, job)
    except lifecycle.JobTerminal as exc:
        raise ApiError(409, "job_terminal", "Job has already ended", {"current_status": exc.job.status.value}) from None
    return 200, status_body(progress.view(deps, cancelled)), {}


def job_results(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``GET /v1/jobs/{job_id}/results``: fresh signed URLs for a COMPLETED job, and with
    ``?partial=true`` what a FAILED or CANCELLED job produced."""
    client_id = _client(request, deps)
    job = _own_job(request, deps, client_id)
    try:
        names = results.files(deps, job, _flag(request, "partial"))
    except results.NotReady:
        poll = str(deps.settings.status_poll_seconds)
        raise ApiError(
            409,
            "job_not_completed",
            "Job is not yet completed",
            {"current_status": job.status.value},
            {"Retry-After": poll} if not job.status.terminal else {},
        ) from None
    if _flag(request, "inline"):
        try:
            rows = results.inline_rows(deps, job, names)
        except results.TooLargeInline as exc:
            raise ApiError(
                413,
                "payload_too_large",
                f"Too large for inline results (limit {exc.limit_rows} rows, {exc.limit_bytes} bytes); download the files",
                {"limit_rows": exc.limit_rows, "limit_bytes": exc.limit_bytes},
            ) from None
        body = InlineResults(job_id=job.job_id, status=job.status.value, results=rows.results, errors=rows.errors)
        return 200, body.model_dump(), {}
    files = [
        ResultFile(filename=d.filename, url=d.url, expires_at=iso(d.expires_at) or "")
        for d in results.downloads(deps, job, names)
    ]
    return 200, ResultsResponse(job_id=job.job_id, status=job.status.value, files=files).model_dump(), {}


def _flag(request: flask.Request, name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes")


def jobs_list(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``GET /v1/jobs``: the client's jobs, newest first, a page at a time."""
    client_id = _client(request, deps)
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        raise invalid("limit", "must be an integer") from None
    if not 1 <= limit <= 100:
        raise invalid("limit", "must be between 1 and 100")
    found = progress.page(deps, client_id, limit, _cursor(request.args.get("page_token")))
    token = _token(found.after) if found.after else None
    body = JobList(jobs=[StatusResponse(**status_body(v)) for v in found.views], next_page_token=token)
    return 200, body.model_dump(), {}


def _token(after: tuple[datetime, str]) -> str:
    raw = json.dumps([after[0].isoformat(), after[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(token: str | None) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        created, job_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return datetime.fromisoformat(created), str(job_id)
    except (ValueError, TypeError, RecursionError):  # a made-up token may nest anything
        raise invalid("page_token", "is not a token this API returned") from None


def jobs_create(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``POST /v1/jobs``: an inline job; the prompts come in the body, no upload step."""
    client_id = _client(request, deps)
    if request.method != "POST":
        raise ApiError(405, "method_not_allowed", "Use POST")
    s = deps.settings
    try:
        req = CreateRequest.model_validate(_json_body(request, deps, s.inline_max_bytes, "use POST /v1/jobs/init"))
    except ValidationError as exc:
        raise _validation_error(exc) from None
    if len(req.prompts) > s.inline_max_prompts:
        raise ApiError(
            413, "payload_too_large", f"More than {s.inline_max_prompts} prompts; use POST /v1/jobs/init", {"field": "prompts"}
        )
    _check_provider(deps, req)
    with _fair_use():
        job = lifecycle.create_inline_job(deps, client_id, req.model_dump(exclude={"prompts"}), req.prompts)
    return 201, status_body(progress.view(deps, job)), {}


def job_events(request: flask.Request, deps: Deps) -> flask.Response:
    """``GET /v1/jobs/{job_id}/events``: Server-Sent Events, a ``status`` event on every
    change and a ``done`` event at a terminal state; the stream closes after
    ``events_max_seconds`` (clients reconnect, as EventSource does).

    Each open stream of a job still running holds one of the client's stream leases
    (``max_event_streams``), renewed while it runs and given back when it closes."""
    client_id = _client(request, deps)
    job = _own_job(request, deps, client_id)
    limit = deps.settings.events_max_seconds
    lease = None
    if not job.status.terminal:  # a finished job's stream ends at once
        with _fair_use():
            lease = quotas.open_stream(deps, client_id)

    def stream() -> Iterator[str]:
        yield "retry: 2000\n\n"
        last, started, sent_at = "", time.monotonic(), time.monotonic()
        renewed = time.monotonic()
        current: Job | None = job
        while current is not None:
            data = to_json(status_body(progress.view(deps, current)))
            if data != last:
                yield f"event: status\ndata: {data}\n\n"
                last, sent_at = data, time.monotonic()
            if current.status.terminal:
                yield f"event: done\ndata: {data}\n\n"
                return
            if time.monotonic() - started > limit:
                return
            if time.monotonic() - sent_at > 15:
                yield ": keep-alive\n\n"
                sent_at = time.monotonic()
            if lease and time.monotonic() - renewed > quotas.STREAM_RENEW_SECONDS:
                if not quotas.renew_stream(deps, client_id, lease):
                    return  # the lease ran out (this instance stalled): reconnecting takes a new one
                renewed = time.monotonic()
            time.sleep(1.0)
            current = deps.store.get_job(job.job_id)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    response = flask.Response(flask.stream_with_context(stream()), mimetype="text/event-stream", headers=headers)
    if lease:
        # The server closes the response however the stream ends: done, timed out, or the
        # client gone (found at the next write).
        response.call_on_close(functools.partial(_give_back, deps, client_id, lease))
    return response


def _give_back(deps: Deps, client_id: str, lease: str) -> None:
    try:
        quotas.close_stream(deps, client_id, lease)
    except Exception as exc:  # the lease runs out by itself; the answer has gone already
        logs.warning("stream lease not given back", client_id=client_id, error_type=type(exc).__name__)


def openapi(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``GET /v1/openapi.json``: the API's OpenAPI 3.1 document (no key needed)."""
    from .openapi import document

    return 200, document(deps.settings.providers, deps.settings.inline_max_prompts), {}
