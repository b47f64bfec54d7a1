"""Why a chunk's delivery stops taking prompts, and how a delivery ends.

Both are str enums whose values are the strings the service has always logged and
returned, so logs, tests and task handlers read the same text as before.
"""

from __future__ import annotations

from enum import StrEnum

from .job import JobStatus


class HaltReason(StrEnum):
    """Why no new prompt may start in a running chunk."""

    TIME_BOX = "time box"  # this delivery's own: the rest goes to a continuation
    JOB_COMPLETED = "job COMPLETED"
    JOB_FAILED = "job FAILED"
    JOB_CANCELLED = "job CANCELLED"
    JOB_DELETED = "job deleted"

    @classmethod
    def job_ended(cls, status: JobStatus | None) -> HaltReason:
        """The halt of a job that ended with ``status`` (None: the job is gone)."""
        return cls(f"job {status.value}") if status is not None else cls.JOB_DELETED


class ChunkOutcome(StrEnum):
    """What one delivery of a chunk did (returned by ``process_chunk`` and logged)."""

    IGNORED_UNKNOWN_JOB = "ignored: unknown job"
    IGNORED_JOB_COMPLETED = "ignored: job is COMPLETED"
    IGNORED_JOB_FAILED = "ignored: job is FAILED"
    IGNORED_JOB_CANCELLED = "ignored: job is CANCELLED"
    ALREADY_DONE = "already done"
    DONE = "done"
    STOPPED = "stopped"
    CONTINUED = "continued"
    LEASE_LOST = "lease lost"
    FAILED_PROVIDER_UNAVAILABLE = "failed: provider unavailable"
    FAILED_INCONSISTENT = "failed: inconsistent chunk"
    # Economy jobs: the chunk's provider batch was created (or found) / is still running /
    # this poll was superseded by a later one; the batches of an ended job were cancelled.
    BATCH_SUBMITTED = "batch submitted"
    BATCH_RUNNING = "batch running"
    STALE_POLL = "ignored: a later poll is scheduled"
    BATCH_CANCELLED = "batch cancelled"

    @classmethod
    def ignored(cls, status: JobStatus) -> ChunkOutcome:
        """The outcome of a delivery for a job that already ended with ``status``."""
        return cls(f"ignored: job is {status.value}")
