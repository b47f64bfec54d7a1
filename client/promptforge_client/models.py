"""The API's bodies as pydantic models, field for field as in the API contract.

Every model keeps fields it does not know (``extra="allow"``), so a newer server that adds
a field never breaks an older client; the known fields are typed.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class JobStatus(StrEnum):
    """A job's state; see the lifecycle in the API contract."""

    AWAITING_UPLOAD = "AWAITING_UPLOAD"
    QUEUED = "QUEUED"
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        """Nothing leaves a terminal state."""
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class JobError(_Model):
    """Why a job FAILED (``upload_expired``, ``empty_file``, ...)."""

    code: str
    message: str = ""


class Job(_Model):
    """A job's status: ``GET /v1/jobs/{job_id}/status``."""

    job_id: str
    status: JobStatus
    provider: str
    model: str
    prompt_count: int | None = None
    completed_count: int | None = None
    failed_count: int | None = None
    created_at: datetime
    started_processing_at: datetime | None = None
    completed_at: datetime | None = None
    tokens_used: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    estimated_cost_usd: float | None = None
    budget_tokens: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    error: JobError | None = None
    retry_after: int | None = None
    # Where the service streams this job's events from, when not through its API URL.
    events_url: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.terminal

    @property
    def processed_count(self) -> int:
        """Prompts done either way (completed or failed)."""
        return (self.completed_count or 0) + (self.failed_count or 0)


class Upload(_Model):
    """The answer to ``POST /v1/jobs/init``: where and how to PUT the prompts file."""

    job_id: str
    status: JobStatus
    upload_url: str
    upload_method: str = "PUT"
    upload_headers: dict[str, str] = Field(default_factory=dict)
    upload_expires_at: datetime
    max_upload_bytes: int

    def __repr_args__(self) -> Any:
        # The signed URL is a credential for this one object: keep it out of reprs and logs.
        return [(k, "<signed>" if k == "upload_url" else v) for k, v in super().__repr_args__()]


class ResultFile(_Model):
    """One downloadable file of a job: a signed GET URL valid until ``expires_at``."""

    filename: str
    url: str
    expires_at: datetime

    def __repr_args__(self) -> Any:
        return [(k, "<signed>" if k == "url" else v) for k, v in super().__repr_args__()]


class Results(_Model):
    """``GET /v1/jobs/{job_id}/results``: ``results_part_NNN.jsonl`` files and ``errors.jsonl``."""

    job_id: str
    status: JobStatus
    files: list[ResultFile]


class ResultRow(_Model):
    """A line of a ``results_part_NNN.jsonl`` file."""

    prompt_id: str
    result: str | None = None
    model: str | None = None
    tokens_used: int | None = None


class ErrorRow(_Model):
    """A line of ``errors.jsonl``: a prompt that failed, or an input line that was invalid
    (``error == "invalid_line"``, with its 1-based ``line``; ``prompt_id`` is None when the
    line had none)."""

    prompt_id: str | None = None
    error: str
    attempts: int | None = None
    line: int | None = None
    detail: str | None = None


class InlineResults(_Model):
    """``GET /v1/jobs/{job_id}/results?inline=true``: the rows themselves, for small jobs."""

    job_id: str
    status: JobStatus
    results: list[ResultRow]
    errors: list[ErrorRow]


class JobPage(_Model):
    """A page of ``GET /v1/jobs``, newest first."""

    jobs: list[Job]
    next_page_token: str | None = None


class ErrorDetail(_Model):
    """The inside of the error envelope ``{"error": {"code", "message", "details"}}``."""

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
