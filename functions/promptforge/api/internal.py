"""Entry points that only Google Cloud calls: Cloud Tasks targets and the upload event.

Their answers steer redelivery: 2xx ends a task, anything else makes Cloud Tasks try
again later (with ``Retry-After`` where we know when), and an exception from the event
handler makes Eventarc redeliver.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import flask

from .. import logs
from ..service.deps import Deps
from .body import parse_object, read_limited, to_json
from .envelope import ApiError, invalid


def _task_body(request: flask.Request, deps: Deps, *fields: str) -> dict[str, Any]:
    """A task's body: a small JSON object holding ``fields``, read within the small limit."""
    s = deps.settings
    body = parse_object(read_limited(request.stream, s.max_small_body_bytes), s.max_json_depth)
    if any(f not in body for f in fields):
        raise invalid("", f"task body must be a JSON object with {', '.join(fields)}")
    return body


def plan_job(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Cloud Tasks target: plan a job."""
    from ..service.plan import plan_job as plan

    body = _task_body(request, deps, "job_id")
    outcome = plan(deps, str(body["job_id"]))
    return 200, {"outcome": outcome}, {}


def process_chunk(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Cloud Tasks target: run one chunk."""
    from ..service.chunks import ChunkBusy
    from ..service.chunks import process_chunk as run

    body = _task_body(request, deps, "job_id", "chunk")
    if not isinstance(body["chunk"], int) or isinstance(body["chunk"], bool):
        raise invalid("chunk", "must be an integer")
    poll = body.get("poll")
    if poll is not None and (not isinstance(poll, int) or isinstance(poll, bool)):
        raise invalid("poll", "must be an integer")
    try:
        outcome = run(deps, str(body["job_id"]), int(body["chunk"]), poll)
    except ChunkBusy as busy:
        # Another delivery is working on it: come back when its lease may have ended.
        raise ApiError(503, "chunk_busy", str(busy), headers={"Retry-After": str(busy.retry_after)}) from None
    return 200, {"outcome": outcome}, {}


def on_upload(event: Any, deps: Deps) -> None:
    """CloudEvent ``google.cloud.storage.object.v1.finalized`` for the uploads bucket."""
    from ..service.lifecycle import accept_upload

    data = event.data if isinstance(event.data, dict) else {}
    bucket, name = data.get("bucket", ""), data.get("name", "")
    size = int(data.get("size") or 0)
    stamp = data.get("timeCreated") or data.get("updated") or event["time"]
    uploaded_at = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    outcome = accept_upload(deps, bucket, name, size, uploaded_at)
    logs.info("upload event", event_id=event["id"], object=name, outcome=outcome)


def watchdog(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Cloud Scheduler target: one watchdog sweep."""
    from ..service.watchdog import sweep

    return 200, sweep(deps).counts(), {}


def notify_callback(request: flask.Request, deps: Deps) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Cloud Tasks target: POST a job's final status to its callback_url, signed."""
    from ..service.progress import view
    from ..service.webhooks import CallbackBlocked, CallbackDeferred, CallbackFailed, send
    from .views import status_body

    body = _task_body(request, deps, "job_id")
    job = deps.store.get_job(str(body["job_id"]))
    if job is None or not job.callback_url or not job.status.terminal:
        return 200, {"outcome": "nothing to send"}, {}
    status = status_body(view(deps, job))
    retries = int(request.headers.get("X-CloudTasks-TaskRetryCount") or 0)
    try:
        code = send(deps, job, to_json(status).encode())
    except CallbackBlocked:
        return 200, {"outcome": "blocked"}, {}
    except (CallbackDeferred, CallbackFailed) as exc:
        deferred = isinstance(exc, CallbackDeferred)
        if retries >= MAX_CALLBACK_RETRIES:
            reason = "its client stayed at the cap" if deferred else "the receiver did not take it"
            logs.error("callback given up", job_id=job.job_id, retries=retries, reason=reason)
            return 200, {"outcome": "given up"}, {}
        if deferred:
            raise ApiError(429, "callbacks_at_cap", str(exc), headers={"Retry-After": "30"}) from None
        raise ApiError(503, "callback_failed", str(exc), headers={"Retry-After": str(min(600, 2**retries))}) from None
    return 200, {"outcome": "delivered", "status": code}, {}


# Cloud Tasks backs off between tries (the queue's settings); this bounds them here too,
# since the local emulator retries at once and for ever.
MAX_CALLBACK_RETRIES = 11  # the notify queue makes 12 attempts: the last gives up cleanly
