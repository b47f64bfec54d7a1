"""The watchdog, run on a schedule: re-drives work whose task was lost, finishes jobs
whose last step was interrupted, fails jobs stuck beyond a limit, expires uploads that
never came, and gives the chunk and counter documents of ended jobs their job's expiry.

It never lists every chunk of a job: per PROCESSING job it reads the count of done chunks,
the latest lease, and the chunks whose lease ended; only a job in which nothing moved for
the grace period has its unfinished chunks listed (at most ``REDRIVE_BATCH`` a sweep).

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
from ..domain.outcomes import ErrorCode
from ..domain.records import Chunk, ChunkStatus, Totals
from .deps import Deps
from .finalize import finalize_if_done
from .lifecycle import accept_upload, fail_job
from .ports import Tx
from .progress import is_live, live_totals, settled

# Chunks re-driven a job a sweep (the next sweep takes the next ones).
REDRIVE_BATCH = 500
# Ended jobs whose documents get their expiry a sweep, and chunk documents a job a sweep:
# a 10M-prompt job's 20,000 chunks take ten sweeps, each a few batched writes.
STAMP_JOBS = 100
STAMP_BATCH = 2_000


@dataclass
class Sweep:
    """What one watchdog run did."""

    expired: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # uploads whose storage event was lost
    replanned: list[str] = field(default_factory=list)
    redriven: list[tuple[str, int]] = field(default_factory=list)
    finalized: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    stamped: list[str] = field(default_factory=list)  # ended jobs whose documents got their expiry

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.__dict__.items()}

    def repairs(self) -> dict[str, int]:
        """What it did that a healthy system would not have needed."""
        return {k: n for k, n in self.counts().items() if k != "stamped"}


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
            and fail_job(deps, job.job_id, JobError(ErrorCode.UPLOAD_EXPIRED, "the upload URL expired before the file arrived"))
        ):
            done.expired.append(job.job_id)

    for job in deps.store.find_jobs(JobStatus.QUEUED, status_before=now - grace):
        deps.tasks.enqueue_plan(job.job_id, tag)
        done.replanned.append(job.job_id)

    for job in deps.store.find_jobs(JobStatus.PROCESSING):
        _check_processing(deps, job, now, grace, tag, done)

    _stamp_ended(deps, now, grace, done)
    if any(done.repairs().values()):
        logs.warning("watchdog acted", **done.counts())
    return done


def _check_processing(deps: Deps, job: Job, now: datetime, grace: timedelta, tag: str, done: Sweep) -> None:
    count = deps.store.chunks_done(job.job_id)
    if job.chunk_count is not None and count.done >= job.chunk_count:
        if finalize_if_done(deps, job.job_id):
            done.finalized.append(job.job_id)
        return
    started = job.status_at or job.started_processing_at or now
    # The latest sign of life: a lease renewed by a working delivery, or a chunk done.
    last_alive = max(t for t in (started, deps.store.latest_lease(job.job_id), count.last_at) if t is not None)
    idle = now - last_alive
    if idle > timedelta(seconds=deps.settings.job_stuck_seconds):
        minutes = int(idle.total_seconds() // 60)
        if fail_job(deps, job.job_id, JobError(ErrorCode.STUCK, f"no progress for {minutes} minutes; partial results are kept")):
            done.stuck.append(job.job_id)
        return
    waiting: list[Chunk]
    if idle > grace:
        # Nothing moved for the grace period: the tasks of the unfinished chunks may be lost.
        waiting = deps.store.unfinished_chunks(job.job_id, REDRIVE_BATCH)
        if not waiting:
            # No chunk is unfinished, yet the count says otherwise: the chunks decide.
            if finalize_if_done(deps, job.job_id, recount=True):
                done.finalized.append(job.job_id)
            return
    else:
        # Work is moving, so the queue delivers: only chunks whose worker stopped answering.
        waiting = deps.store.lease_ended_chunks(job.job_id, now - grace, REDRIVE_BATCH)
    for chunk in waiting:
        if chunk.status is not ChunkStatus.DONE:
            deps.tasks.enqueue_chunk(job.job_id, chunk.index, tag)
            done.redriven.append((job.job_id, chunk.index))


def _stamp_ended(deps: Deps, now: datetime, grace: timedelta, done: Sweep) -> None:
    """Give the chunk and counter documents of ended jobs their job's expire_at (Firestore's
    TTL does not delete a document's subcollections), a bounded batch a sweep, and settle
    the counts of a failed or cancelled job on it. A job is stamped once the grace period
    after its end has passed, when no worker of it still writes."""
    for job in deps.store.jobs_to_stamp(STAMP_JOBS):
        if job.expire_at is None or job.completed_at is None or job.completed_at > now - grace:
            continue
        if deps.store.stamp_expiry(job.job_id, job.expire_at, STAMP_BATCH) >= STAMP_BATCH:
            continue  # more next sweep
        # No worker writes its chunks now: their sums are final, so a job whose counts were
        # still read from them keeps them, and its status and list entry stop aggregating.
        totals = live_totals(deps, job) if is_live(job) else None

        def stamped(tx: Tx, job_id: str = job.job_id, totals: Totals | None = totals) -> None:
            current = tx.get_job(job_id)
            if current is not None and current.records_unstamped:
                kept = settled(current, totals) if totals is not None and is_live(current) else current
                tx.put_job(kept.replace(records_unstamped=False))

        deps.store.run_transaction(stamped)
        done.stamped.append(job.job_id)
