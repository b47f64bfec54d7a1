"""The API's bodies as pydantic models, field for field as in the API contract.

Every model keeps fields it does not know (``extra="allow"``), so a newer server that adds
a field never breaks an older client; the known fields are typed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import core_schema


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _StatusNames(type):
    """Lets the known statuses be listed and looked up by name, as an enum's members are."""

    _known: dict[str, JobStatus]

    def __iter__(cls) -> Iterator[JobStatus]:
        return iter(cls._known.values())

    def __len__(cls) -> int:
        return len(cls._known)

    def __getitem__(cls, name: str) -> JobStatus:
        return cls._known[name]


class JobStatus(str, metaclass=_StatusNames):
    """A job's state; see the lifecycle in the API contract.

    The states this SDK knows are constants (``JobStatus.COMPLETED``), and a status read
    from the service is that very constant, so ``job.status is JobStatus.COMPLETED`` works.
    A state added by a newer service is kept as it came (``JobStatus("ARCHIVED")``, equal to
    the string ``"ARCHIVED"``) instead of failing the whole answer: ``known`` is False for
    it and ``terminal`` says False, since only the contract's terminal states are known to
    have ended (``Job.is_terminal`` also reads the job's ``completed_at``).
    """

    __slots__ = ()
    _known: ClassVar[dict[str, JobStatus]] = {}

    AWAITING_UPLOAD: ClassVar[JobStatus]
    QUEUED: ClassVar[JobStatus]
    PENDING: ClassVar[JobStatus]
    PROCESSING: ClassVar[JobStatus]
    COMPLETED: ClassVar[JobStatus]
    FAILED: ClassVar[JobStatus]
    CANCELLED: ClassVar[JobStatus]

    def __new__(cls, value: str) -> JobStatus:
        known = cls._known.get(value)
        if known is not None:
            return known
        if not isinstance(value, str) or not value:
            raise ValueError(f"a job status is a non-empty string, not {value!r}")
        return super().__new__(cls, value)

    @property
    def value(self) -> str:
        """The status as the service spells it (as ``JobStatus.X.value`` was on the enum)."""
        return str.__str__(self)

    @property
    def name(self) -> str:
        return self.value

    @property
    def known(self) -> bool:
        """One of the states this version of the SDK knows."""
        return self._known.get(self.value) is self

    @property
    def terminal(self) -> bool:
        """Nothing leaves a terminal state. False for a state this SDK does not know."""
        return self.value in _TERMINAL

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def __repr__(self) -> str:
        return f"<JobStatus.{self.value}: {self.value!r}>" if self.known else f"JobStatus({self.value!r})"

    def __getnewargs__(self) -> tuple[str]:
        return (self.value,)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        # Any non-empty string validates; it is serialized back as the plain string.
        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.str_schema(min_length=1),
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="json"),
        )


_TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
for _name in ("AWAITING_UPLOAD", "QUEUED", "PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"):
    _status = str.__new__(JobStatus, _name)
    JobStatus._known[_name] = _status
    setattr(JobStatus, _name, _status)
del _name, _status


class JobError(_Model):
    """Why a job FAILED (``upload_expired``, ``empty_file``, ...)."""

    code: str
    message: str = ""


class ProviderBatches(_Model):
    """An economy job's provider batches while it runs, as the providers count them,
    summed over its chunks."""

    batches: int = 0
    """Chunks sent as a provider batch (or being sent)."""
    ended: int = 0
    """Of those, batches the provider has ended."""
    requests: int = 0
    requests_done: int = 0
    """Requests the provider has finished, failed ones included."""
    requests_failed: int = 0


class Job(_Model):
    """A job's status: ``GET /v1/jobs/{job_id}/status``."""

    job_id: str
    status: JobStatus
    provider: str
    model: str
    # ``fast`` or ``economy``; a service from before modes sends none, and ran every job fast.
    mode: str = "fast"
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
    # An economy job's provider batches while it is PROCESSING; None otherwise.
    provider_batches: ProviderBatches | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    error: JobError | None = None
    retry_after: int | None = None
    # Where the service streams this job's events from, when not through its API URL.
    events_url: str | None = None

    @property
    def is_terminal(self) -> bool:
        """The job has ended. A known status says so itself; for a state this SDK does not
        know, the contract's other mark of the end is read: ``completed_at`` is set when,
        and only when, a job reaches a terminal state."""
        if self.status.known:
            return self.status.terminal
        return self.completed_at is not None

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
