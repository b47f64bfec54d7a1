"""The other things PromptForge keeps: chunks, clients and API keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from .outcomes import row_error_code


class ChunkStatus(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"


@dataclass(frozen=True)
class Chunk:
    """One worker task's share of a job, and its progress (one writer at a time)."""

    job_id: str
    index: int
    start: int
    end: int
    first_line: int
    record_count: int
    skip_lines: tuple[int, ...] = ()
    status: ChunkStatus = ChunkStatus.PENDING
    lease_until: datetime | None = None
    deliveries: int = 0  # also the fencing token: only the latest claim may write
    segments: tuple[str, ...] = ()  # checkpointed rows, as objects in the results bucket
    continuations: int = 0
    stopped: bool = False  # ended early because the job was cancelled or failed
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    error_counts: dict[str, int] = field(default_factory=dict)  # error code -> rows
    # Bytes of the checkpointed result and error rows: the sizes the chunk's published part
    # and error object must have (Cloud Storage composes bytes, so sizes add up exactly).
    results_bytes: int = 0
    errors_bytes: int = 0
    repairs: int = 0  # times finalization found this chunk's output wrong and re-drove it
    # Economy jobs: the chunk's provider batch. ``batch_key`` (with ``batch_since``) is
    # stored before the provider is asked to create a batch, ``batch_ids`` after: a key
    # without ids is a create that may or may not have happened, settled by asking the
    # provider for batches bearing the key, never by creating another blindly.
    batch_key: str | None = None
    batch_since: datetime | None = None
    batch_ids: tuple[str, ...] = ()
    batch_found: bool = False  # the ids came from asking the provider (after a crash), not a create
    batch_polls: int = 0  # polls so far: the next poll task's number, and its backoff
    batch_next_poll: datetime | None = None  # when the next poll is due (the chunk's sign of life)
    batch_total: int = 0  # the provider's own counts of the batch's requests
    batch_done: int = 0  # finished by the provider (succeeded or failed)
    batch_failed: int = 0
    batch_ended: bool = False  # the provider ended the batch (completed, expired or cancelled)
    expire_at: datetime | None = None  # Firestore TTL: stamped with the job's, after it ends

    def __post_init__(self) -> None:
        # Firestore's live totals sum only ROW_ERROR_CODES: a count under any other code
        # would show in final counts but not in live status, so it is refused here.
        for code in self.error_counts:
            row_error_code(code)

    def replace(self, **changes: Any) -> Chunk:
        return dataclasses.replace(self, **changes)

    @property
    def expected_rows(self) -> int:
        """Rows the chunk must produce: its records, minus the invalid lines planning
        already reported."""
        return self.record_count - len(self.skip_lines)

    def adds_up(self) -> bool:
        """A finished chunk accounts for every one of its records (unless it was stopped)."""
        return self.stopped or self.completed + self.failed == self.expected_rows


@dataclass(frozen=True)
class DoneCount:
    """How many of a job's chunks are DONE, from counters that commit with each chunk's
    DONE write (and its reopening), and when a counter last moved."""

    done: int = 0
    last_at: datetime | None = None


@dataclass(frozen=True)
class Waiting:
    """A PENDING job in its client's queue."""

    job_id: str
    uploaded_at: datetime


@dataclass(frozen=True)
class ClientState:
    """A client's processing slot (at most one active job) and the queue behind it.

    The queue lives here, kept in upload-finalize order, so promoting the next job is a
    read of one document inside the transaction that ends the active one.
    """

    client_id: str
    active_job_id: str | None = None
    pending: tuple[Waiting, ...] = ()
    webhook_secret: str | None = None  # signs this client's callbacks (HMAC-SHA256)

    def enqueue(self, job_id: str, uploaded_at: datetime) -> ClientState:
        queue = sorted((*self.pending, Waiting(job_id, uploaded_at)), key=lambda w: (w.uploaded_at, w.job_id))
        return dataclasses.replace(self, pending=tuple(queue))

    def promote(self) -> ClientState:
        """The head of the queue takes the slot (or the slot frees when the queue is empty)."""
        if not self.pending:
            return dataclasses.replace(self, active_job_id=None)
        return dataclasses.replace(self, active_job_id=self.pending[0].job_id, pending=self.pending[1:])

    def without(self, job_id: str) -> ClientState:
        """The queue without ``job_id`` (a PENDING job that was cancelled or failed)."""
        return dataclasses.replace(self, pending=tuple(w for w in self.pending if w.job_id != job_id))


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: its SHA-256, never the key."""

    key_hash: str
    client_id: str
    prefix: str  # the key's first characters, to tell keys apart in listings
    created_at: datetime
    label: str = ""
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class Totals:
    """Counts summed over a job's chunks."""

    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    error_counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchTotals:
    """An economy job's provider batches, summed over its chunks: what the status shows
    while the provider works through them.

    ``batches`` counts the chunks submitted (or being submitted) as a provider batch,
    ``ended`` those whose batch the provider ended; the request counts are the providers'
    own, added up (``requests_done`` includes ``requests_failed``).
    """

    batches: int = 0
    ended: int = 0
    requests: int = 0
    requests_done: int = 0
    requests_failed: int = 0


def count_errors(rows: list[dict[str, Any]], into: dict[str, int] | None = None) -> dict[str, int]:
    """Error rows counted by code (added to ``into``)."""
    counts = dict(into or {})
    for row in rows:
        code = row_error_code(str(row.get("error")))
        counts[code.value] = counts.get(code, 0) + 1
    return counts
