"""Use cases that move a job through its first and last states: create, accept the
upload, fail."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import logs
from ..domain import paths
from ..domain.job import Job, JobError, JobMode, JobStatus
from ..domain.jsonl import dump_line
from ..domain.outcomes import ErrorCode
from . import quotas
from .deps import Deps
from .ports import Tx
from .slots import announce_end, ended, hand_over, read_successor, start_active

UPLOAD_CONTENT_TYPE = "application/x-ndjson"


def upload_headers(max_bytes: int) -> dict[str, str]:
    """The headers of the upload PUT, every one signed into its URL: the file's type, and
    the size range Cloud Storage holds the body to (it refuses a body outside the range,
    so a file over the limit is never stored)."""
    return {"Content-Type": UPLOAD_CONTENT_TYPE, "x-goog-content-length-range": f"0,{max_bytes}"}


@dataclass(frozen=True)
class NewJob:
    job: Job
    upload_url: str
    upload_headers: dict[str, str]
    max_upload_bytes: int


def create_job(deps: Deps, client_id: str, spec: dict[str, Any]) -> NewJob:
    """Create a job AWAITING_UPLOAD and sign the URL its file goes to.

    ``spec`` holds the validated init fields (provider, model, params, ...). Raises
    ``quotas.OverCap`` when the client is at its cap of awaiting or open jobs.
    """
    now = deps.now()
    ttl = timedelta(seconds=deps.settings.upload_url_ttl_seconds)
    job = Job(
        job_id=str(uuid.uuid4()),
        client_id=client_id,
        status=JobStatus.AWAITING_UPLOAD,
        created_at=now,
        upload_expires_at=now + ttl,
        **spec,
    )
    headers = upload_headers(deps.settings.max_upload_bytes)
    url = deps.blobs.signed_upload_url(deps.settings.upload_bucket, paths.upload_object(client_id, job.job_id), headers, ttl)
    quotas.admit_job(deps, job)  # creates it, unless the client is at a job cap (OverCap)
    logs.info("job created", job_id=job.job_id, client_id=client_id, provider=job.provider)
    return NewJob(job, url, headers, deps.settings.max_upload_bytes)


def create_inline_job(deps: Deps, client_id: str, spec: dict[str, Any], prompts: list[Any]) -> Job:
    """A job whose prompts came in the request: written as the upload, then accepted at once.

    The write also raises the storage event, whose delivery then finds the job past
    AWAITING_UPLOAD and changes nothing.
    """
    new = create_job(deps, client_id, spec)
    data = b"".join(dump_line(p) for p in prompts)
    name = paths.upload_object(client_id, new.job.job_id)
    deps.blobs.write(deps.settings.upload_bucket, name, data)
    accept_upload(deps, deps.settings.upload_bucket, name, len(data), deps.now())
    job = deps.store.get_job(new.job.job_id)
    assert job is not None
    return job


def accept_upload(deps: Deps, bucket: str, name: str, size: int, uploaded_at: datetime) -> str:
    """React to a finalized upload: QUEUED (and enqueue planning) or PENDING.

    Returns what happened, for the log. A repeated or stray event changes nothing.
    """
    if bucket != deps.settings.upload_bucket:
        return "ignored: not the uploads bucket"
    parsed = paths.parse_upload_object(name)
    if parsed is None:
        return "ignored: not an upload object"
    client_id, job_id = parsed
    job = deps.store.get_job(job_id)
    if job is None or job.client_id != client_id:
        logs.warning("upload for an unknown job", job_id=job_id)
        return "ignored: unknown job"
    if job.status is not JobStatus.AWAITING_UPLOAD:
        return f"ignored: job is {job.status.value}"
    if size > deps.settings.max_upload_bytes:
        fail_job(
            deps,
            job_id,
            JobError(ErrorCode.FILE_TOO_LARGE, f"the file is {size} bytes, over the limit of {deps.settings.max_upload_bytes}"),
        )
        return "failed: file too large"
    if size == 0:
        fail_job(deps, job_id, JobError(ErrorCode.EMPTY_FILE, "the uploaded file is empty"))
        return "failed: empty file"
    now = deps.now()

    def take_slot(tx: Tx) -> JobStatus | None:
        current = tx.get_job(job_id)
        if current is None or current.status is not JobStatus.AWAITING_UPLOAD:
            return None
        client = tx.get_client(client_id)
        holder = tx.get_job(client.active_job_id) if client.active_job_id else None
        uploaded = current.replace(upload_size=size, uploaded_at=uploaded_at)
        if holder is not None and holder.job_id != job_id and holder.status.active:
            tx.put_job(uploaded.transition(JobStatus.PENDING, now))
            tx.put_client(client.enqueue(job_id, uploaded_at))
            return JobStatus.PENDING
        tx.put_job(uploaded.transition(JobStatus.QUEUED, now))
        tx.put_client(dataclasses.replace(client, active_job_id=job_id))
        return JobStatus.QUEUED

    deps.store.run_transaction(take_slot)
    start_active(deps, client_id)
    after = deps.store.get_job(job_id)
    outcome = after.status.value if after else "missing"
    logs.info("upload accepted", job_id=job_id, outcome=outcome, size=size)
    return outcome


@dataclass(frozen=True)
class Ending:
    """How a job ends: its terminal status, and what the ending transaction checks first."""

    status: JobStatus
    error: JobError | None = None
    # The one status the job may end from (completion: PROCESSING); None: any non-terminal.
    only_from: JobStatus | None = None
    # Reads what the ending needs inside the transaction (before any write) and returns the
    # job as it ends, its final counts set; may raise to refuse the ending.
    settle: Callable[[Tx, Job], Job] | None = None


@dataclass(frozen=True)
class Ended:
    """What :func:`end_job` did: ``won`` when this call's transaction ended the job;
    ``job`` as stored afterwards (None if it does not exist)."""

    job: Job | None
    won: bool


def end_job(deps: Deps, job_id: str, ending: Ending) -> Ended:
    """End a job, the one path for complete, fail and cancel: in one transaction read the
    client's next PENDING job, move the job to ``ending.status`` and hand the slot over;
    then announce the end (its callback) and start the client's next job.

    Both steps after the transaction act on what is stored, not on the transaction's return
    value, which a retried commit can lose: the end is announced when the job is stored
    with this outcome, whoever's transaction put it there. Each step is idempotent (the
    callback task is named by the job, planning tasks by theirs), so two callers racing to
    the same end announce it once."""
    now = deps.now()

    def end(tx: Tx) -> Job | None:
        job = tx.get_job(job_id)
        if job is None or job.status.terminal or (ending.only_from is not None and job.status is not ending.only_from):
            return None
        settled = ending.settle(tx, job) if ending.settle is not None else job
        client, successor = read_successor(tx, job)
        done = ended(settled.transition(ending.status, now, ending.error), deps.settings.results_retention_days)
        tx.put_job(done)
        hand_over(tx, client, job_id, successor, now)
        return done

    won = deps.store.run_transaction(end)
    after = deps.store.get_job(job_id)
    if won is not None:
        _log_end(won)
    if after is not None and after.status is ending.status:
        announce_end(deps, job_id)
    if after is not None and after.status.terminal:
        start_active(deps, after.client_id)
    return Ended(after, won is not None)


def _log_end(job: Job) -> None:
    if job.status is JobStatus.FAILED:
        logs.warning("job failed", job_id=job.job_id, code=job.error.code if job.error else None)
    elif job.status is JobStatus.COMPLETED:
        logs.info("job completed", job_id=job.job_id, completed=job.completed_count, failed=job.failed_count)
    else:
        logs.info("job cancelled", job_id=job.job_id)


def fail_job(deps: Deps, job_id: str, error: JobError) -> bool:
    """Move a non-terminal job to FAILED and pass its slot on. False if already terminal."""
    return end_job(deps, job_id, Ending(JobStatus.FAILED, error)).won


class JobTerminal(Exception):
    """The job already ended; it cannot be cancelled."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.job_id} is {job.status.value}")
        self.job = job


def cancel_job(deps: Deps, job: Job) -> Job:
    """Cancel a non-terminal job; its workers stop starting prompts at their next heartbeat."""
    before = deps.store.get_job(job.job_id)
    if before is None or before.status.terminal:
        raise JobTerminal(before or job)
    after = end_job(deps, job.job_id, Ending(JobStatus.CANCELLED)).job
    if after is None or after.status is not JobStatus.CANCELLED:
        raise JobTerminal(after or before)
    if after.mode is JobMode.ECONOMY:
        # Wake the chunks now rather than at their next poll, so their provider batches stop
        # running (and billing) at once. A job that failed has its batches cancelled at the
        # next poll of each chunk.
        from .economy import wake_to_stop  # the worker side: this only enqueues

        wake_to_stop(deps, after)
    return after
