"""The job and its state machine: every status change goes through :meth:`Job.transition`.

```
AWAITING_UPLOAD --upload finalized--> QUEUED or PENDING
PENDING  --the client's active job ends--> QUEUED
QUEUED   --planning starts--> PROCESSING
PROCESSING --all prompts done--> COMPLETED
any non-terminal --cancel--> CANCELLED
any non-terminal --unrecoverable error--> FAILED
```
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any

from .errors import IllegalTransition
from .outcomes import ErrorCode, job_error_code


class JobMode(StrEnum):
    """How a job's prompts reach the provider.

    ``fast``: one request per prompt, at the provider's rate limit, in minutes.
    ``economy``: each chunk as one of the provider's own batches, at its batch price
    (half the list price), with results within the provider's completion window (24 h).
    """

    FAST = "fast"
    ECONOMY = "economy"


class JobStatus(str, Enum):
    AWAITING_UPLOAD = "AWAITING_UPLOAD"
    PENDING = "PENDING"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """Active jobs hold the client's single processing slot."""
        return self in ACTIVE


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING})
# Ended without completing: what such a job has (counts, partial files) is what its
# workers wrote, not totals a completing transaction stored.
ENDED_EARLY = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})

_ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.AWAITING_UPLOAD: frozenset({JobStatus.QUEUED, JobStatus.PENDING}),
    JobStatus.PENDING: frozenset({JobStatus.QUEUED}),
    JobStatus.QUEUED: frozenset({JobStatus.PROCESSING}),
    JobStatus.PROCESSING: frozenset({JobStatus.COMPLETED}),
}
# Cancel and failure reach every non-terminal status.
for _status in list(_ALLOWED):
    _ALLOWED[_status] = _ALLOWED[_status] | {JobStatus.CANCELLED, JobStatus.FAILED}


def allowed_targets(status: JobStatus) -> frozenset[JobStatus]:
    """The statuses a job in ``status`` may move to (empty for terminal ones)."""
    return _ALLOWED.get(status, frozenset())


@dataclass(frozen=True)
class JobError:
    """Why a job FAILED: a stable code and a message safe to show the client."""

    code: ErrorCode
    message: str

    def __post_init__(self) -> None:
        # A row code (or a made-up one) here would reach the client as a job's error.code.
        object.__setattr__(self, "code", job_error_code(self.code))

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


@dataclass(frozen=True)
class Job:
    """A batch job. Immutable: changes return a new Job."""

    job_id: str
    client_id: str
    status: JobStatus
    provider: str
    model: str
    created_at: datetime
    upload_expires_at: datetime
    params: dict[str, Any] = field(default_factory=dict)
    system_prompt: str | None = None
    endpoint: str | None = None  # openai_compatible: an endpoint the operator configured
    base_url: str | None = None  # openai_compatible: the client's own URL (opt-in, no credential)
    mode: JobMode = JobMode.FAST
    max_attempts: int = 3
    budget_tokens: int | None = None
    callback_url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    upload_size: int | None = None
    uploaded_at: datetime | None = None
    started_processing_at: datetime | None = None
    completed_at: datetime | None = None
    prompt_count: int | None = None
    invalid_count: int = 0
    invalid_bytes: int = 0  # size of planning's error rows, to check errors.jsonl against
    chunk_count: int | None = None
    completed_count: int = 0
    failed_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    result_files: tuple[str, ...] = ()
    error_counts: dict[str, int] = field(default_factory=dict)
    error: JobError | None = None
    status_at: datetime | None = None  # when the job entered its current status
    expire_at: datetime | None = None  # Firestore TTL: set when the job ends
    # The job ended, but its chunk and counter documents still wait for its expire_at (the
    # watchdog stamps them in bounded batches, then clears this).
    records_unstamped: bool = False
    # A FAILED or CANCELLED job's counts above are its final ones, summed from its chunks
    # once none of its workers wrote any more (before, they are read from the chunks).
    totals_settled: bool = False

    def transition(self, target: JobStatus, now: datetime, error: JobError | None = None) -> Job:
        """Move to ``target``, stamping the times the contract shows; raise if illegal."""
        if target not in allowed_targets(self.status):
            raise IllegalTransition(self.job_id, self.status.value, target.value)
        if (target is JobStatus.FAILED) != (error is not None):
            raise ValueError("a FAILED job needs an error, and only a FAILED job has one")
        changes: dict[str, Any] = {"status": target, "status_at": now}
        if target is JobStatus.PROCESSING:
            changes["started_processing_at"] = now
        if target.terminal:
            changes["completed_at"] = now
        if error is not None:
            changes["error"] = error
        return dataclasses.replace(self, **changes)

    def replace(self, **changes: Any) -> Job:
        """A copy with data fields changed; status changes must use :meth:`transition`."""
        if "status" in changes:
            raise ValueError("use transition() to change a job's status")
        return dataclasses.replace(self, **changes)

    @property
    def tokens_used(self) -> int:
        return self.input_tokens + self.output_tokens
