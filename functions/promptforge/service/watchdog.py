"""The watchdog, run on a schedule: re-drives work whose task was lost, finishes jobs
whose last step was interrupted, fails jobs stuck beyond a limit, and expires uploads
that never came.

Everything it starts is idempotent (named tasks with a fresh tag, leased chunks,
state-checked transitions), so a re-drive of work that was only slow costs nothing but
a turned-away delivery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .. import logs
from ..domain import paths
from ..domain.job import Job, JobError, JobStatus
from ..domain.records import ChunkStatus
from .deps import Deps
from .finalize import finalize_if_done
from .lifecycle import accept_upload, fail_job


@dataclass
class Sweep:
    """What one watchdog run did."""

    expired: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # uploads whose storage event was lost
    replanned: list[str] = field(default_factory=list)
    redriven: list[tuple[str, int]] = field(default_factory=list)
    finalized: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.__dict__.items()}


def sweep(deps: Deps) -> Sweep:
    """One pass over the jobs that may need help."""
    s, now = deps.settings, deps.now()
    grace = timedelta(seconds=s.watchdog_grace_seconds)
    tag = f"w{int(now.timestamp())}"
    done = Sweep()

    for job in deps.store.find_jobs(JobStatus.AWAITING_UPLOAD):
        if job.created_at >= now - grace:
            continue
        # Before expiring, look in the bucket: a file that came but whose storage event was
        # lost (or is later than the grace) is accepted now, not failed.
        name = paths.upload_object(job.client_id, job.job_id)
        upload = deps.blobs.stat(s.upload_bucket, name)
        if upload is not None and (upload.created < now - grace or job.upload_expires_at < now):
            accept_upload(deps, s.upload_bucket, name, upload.size, upload.created)
            done.accepted.append(job.job_id)
        elif (
            upload is None
            and job.upload_expires_at < now
            and fail_job(deps, job.job_id, JobError("upload_expired", "the upload URL expired before the file arrived"))
        ):
            done.expired.append(job.job_id)

    for job in deps.store.find_jobs(JobStatus.QUEUED, status_before=now - grace):
        deps.tasks.enqueue_plan(job.job_id, tag)
        done.replanned.append(job.job_id)

    for job in deps.store.find_jobs(JobStatus.PROCESSING):
        _check_processing(deps, job, now, grace, tag, done)

    if any(done.counts().values()):
        logs.warning("watchdog acted", **done.counts())
    return done


def _check_processing(deps: Deps, job: Job, now: datetime, grace: timedelta, tag: str, done: Sweep) -> None:
    chunks = deps.store.list_chunks(job.job_id)
    if chunks and all(c.status is ChunkStatus.DONE for c in chunks):
        if finalize_if_done(deps, job.job_id):
            done.finalized.append(job.job_id)
        return
    started = job.status_at or job.started_processing_at or now
    # The latest sign of life: a lease renewed by a working delivery.
    last_alive = max([started] + [c.lease_until for c in chunks if c.lease_until is not None])
    idle = now - last_alive
    if idle > timedelta(seconds=deps.settings.job_stuck_seconds):
        minutes = int(idle.total_seconds() // 60)
        if fail_job(deps, job.job_id, JobError("stuck", f"no progress for {minutes} minutes; partial results are kept")):
            done.stuck.append(job.job_id)
        return
    for chunk in chunks:
        if chunk.status is ChunkStatus.DONE:
            continue
        lease_over = chunk.lease_until is None or chunk.lease_until < now
        if lease_over and now - max(started, chunk.lease_until or started) > grace:
            deps.tasks.enqueue_chunk(job.job_id, chunk.index, tag)
            done.redriven.append((job.job_id, chunk.index))
