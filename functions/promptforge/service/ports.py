"""The small interfaces the use cases need; adapters implement them.

In-memory versions live in the tests; the Firestore, Cloud Storage, Cloud Tasks and
outbound HTTP ones in ``promptforge.adapters``. The same service tests run against both.
The LLM provider port is in :mod:`.provider_port`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import BinaryIO, Protocol, TypeVar

from ..domain.job import Job, JobStatus
from ..domain.plan_state import PlanState
from ..domain.records import ApiKey, BatchTotals, Chunk, ClientState, DoneCount, Totals
from ..domain.usage import ClientUsage

T = TypeVar("T")


class Tx(Protocol):
    """A read-then-write transaction: every read comes before the first write."""

    def get_job(self, job_id: str) -> Job | None: ...
    def get_client(self, client_id: str) -> ClientState: ...
    def get_chunk(self, job_id: str, index: int) -> Chunk | None: ...
    def list_chunks(self, job_id: str) -> list[Chunk]:
        """Every chunk of a job, by index."""
        ...

    def put_job(self, job: Job) -> None: ...
    def put_client(self, client: ClientState) -> None: ...
    def put_chunk(self, chunk: Chunk) -> None: ...
    def get_plan(self, job_id: str) -> PlanState | None:
        """Where the job's planning stands, if it started."""
        ...

    def put_plan(self, state: PlanState) -> None: ...

    def count_done(self, job_id: str, index: int, delta: int, at: datetime, chunk_count: int = 0) -> DoneMark:
        """Add ``delta`` (+1 when chunk ``index`` turns DONE, -1 when it is reopened) to the
        job's count of done chunks, committed with the transaction's other writes. A write
        without a read, spread over a few counter documents, so chunks finishing together
        neither wait on each other nor on the job document. With the job's ``chunk_count``,
        the returned mark tells, once the transaction has committed, whether the job may
        now be done."""
        ...


@dataclass
class DoneMark:
    """What one change of a job's done count tells once its transaction has committed.

    The count is split over counter documents, each counting a fixed set of the job's
    chunks; the server applies the change and returns that counter's new value with the
    commit, at no read. While the counter a chunk changed is short of the chunks it counts,
    the job cannot be done, whatever the other counters hold: only the commit that fills
    its counter needs to read the whole count. The last chunk to finish fills its own
    counter, so it always looks.
    """

    # None until the transaction commits, or when the counter's size was not given.
    may_complete: bool | None = None


@dataclass(frozen=True)
class BudgetBeat:
    """One process's registration on a rate budget: how many of its chunks draw on it,
    until when, and what it learned (limits from headers; a hold on the wall clock)."""

    until: datetime
    weight: int = 1
    rpm: float | None = None
    tpm: float | None = None
    hold_until: float = 0.0


class JobStore(Protocol):
    """Jobs, chunks, clients and API keys."""

    def run_transaction(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` atomically; it may be run again on contention, so it must be pure."""
        ...

    def create_job(self, job: Job) -> None: ...
    def get_job(self, job_id: str) -> Job | None: ...
    def get_chunk(self, job_id: str, index: int) -> Chunk | None:
        """A chunk as committed now: a plain strongly consistent read, outside any
        transaction (one request, where a transaction that only reads takes three)."""
        ...

    def update_chunk(self, job_id: str, index: int, change: Callable[[Chunk | None], Chunk | None]) -> Chunk | None:
        """Read a chunk, and store ``change(chunk)`` unless it returns None, only if the
        chunk was not written since the read: otherwise read again and call ``change``
        again (so it must be pure). Returns what was stored, or None. The same isolation as
        a transaction over that one document, in a read and a conditional write, holding no
        lock; an exception from ``change`` goes up and writes nothing."""
        ...

    def find_jobs(self, status: JobStatus, status_before: datetime | None = None, limit: int = 500) -> list[Job]:
        """Jobs in ``status`` (that entered it before ``status_before``), oldest first."""
        ...

    def list_jobs(self, client_id: str, limit: int, after: tuple[datetime, str] | None = None) -> list[Job]:
        """A client's jobs, newest first, starting after the ``(created_at, job_id)`` cursor."""
        ...

    def save_chunks(self, chunks: Iterable[Chunk]) -> None: ...
    def list_chunks(self, job_id: str) -> list[Chunk]: ...
    def chunk_totals(self, job_id: str) -> Totals: ...
    def batch_totals(self, job_id: str) -> BatchTotals:
        """An economy job's provider batches and their request counts, over its chunks."""
        ...

    def chunks_done(self, job_id: str) -> DoneCount:
        """The job's count of DONE chunks (a few counter reads, no chunk listed)."""
        ...

    def lease_ended_chunks(self, job_id: str, before: datetime, limit: int) -> list[Chunk]:
        """Chunks whose lease ended before ``before``, by index (only a RUNNING chunk holds
        a lease): the ones whose worker stopped answering."""
        ...

    def unfinished_chunks(self, job_id: str, limit: int) -> list[Chunk]:
        """Chunks not DONE, by index, at most ``limit``."""
        ...

    def latest_lease(self, job_id: str) -> datetime | None:
        """The latest lease end among the job's chunks, if any holds one."""
        ...

    def jobs_to_stamp(self, limit: int) -> list[Job]:
        """Ended jobs whose chunk and counter documents still wait for an expire_at."""
        ...

    def stamp_expiry(self, job_id: str, expire_at: datetime, limit: int) -> int:
        """Give up to ``limit`` of the job's chunk documents that have no expire_at this one,
        and its counter documents too; returns how many chunk documents it stamped (0: none
        was left)."""
        ...

    def get_plan(self, job_id: str) -> PlanState | None:
        """Where the job's planning stands: a plain read, outside any transaction."""
        ...

    def heartbeat_worker(self, budget: str, worker_id: str, beat: BudgetBeat) -> None:
        """Say a process is drawing on a rate budget (for ``beat.weight`` chunks) until
        ``beat.until``, and what it learned of the provider's limits."""
        ...

    def budget_workers(self, budget: str, now: datetime) -> list[BudgetBeat]:
        """The live beats of every process drawing on ``budget`` (this one's included)."""
        ...

    def drop_worker(self, budget: str, worker_id: str) -> None: ...
    def put_api_key(self, key: ApiKey) -> None: ...
    def get_api_key(self, key_hash: str) -> ApiKey | None: ...
    def list_api_keys(self) -> list[ApiKey]: ...
    def get_client_state(self, client_id: str) -> ClientState:
        """A client's slot and queue as stored now: a plain read, outside any transaction."""
        ...

    def get_job_statuses(self, job_ids: Iterable[str]) -> dict[str, JobStatus]:
        """The status of each of these jobs that exists: one request, that field alone."""
        ...

    def get_usage(self, client_id: str) -> ClientUsage:
        """A client's fair-use record, with its version ("" and empty when none is stored)."""
        ...

    def put_usage(self, usage: ClientUsage, new_job: Job | None = None) -> bool:
        """Store ``usage``, and create ``new_job`` with it, in one atomic write, if the
        stored record is still at ``usage.version``; False, writing nothing, if it changed.

        A compare-and-set rather than a transaction: it holds no lock while the caller
        decides, so a burst of one client's requests cannot queue on a lock.
        """
        ...

    def take_requests(self, client_id: str, window: datetime, count: int) -> int:
        """Add ``count`` to the requests handed out in the client's minute starting at
        ``window``; returns the window's total after the addition (one atomic increment)."""
        ...


# Cloud Storage composes at most 32 sources in one request.
COMPOSE_MAX_SOURCES = 32


@dataclass(frozen=True)
class ObjectInfo:
    """What a stat of an object tells."""

    size: int
    created: datetime


class BlobStore(Protocol):
    """Objects in Cloud Storage buckets. Every write is one request: an object appears
    whole or not at all."""

    def signed_upload_url(self, bucket: str, name: str, headers: Mapping[str, str], ttl: timedelta) -> str:
        """A URL for one PUT of ``name``, with ``headers`` (Content-Type and any
        ``x-goog-`` ones) signed into it: the PUT must send each of them, as given."""
        ...

    def signed_download_url(self, bucket: str, name: str, filename: str, ttl: timedelta) -> str: ...
    def open_read(self, bucket: str, name: str, start: int = 0, end: int | None = None) -> AbstractContextManager[BinaryIO]:
        """Stream bytes ``[start, end)`` of an object."""
        ...

    def open_write(self, bucket: str, name: str) -> AbstractContextManager[BinaryIO]:
        """Stream an object out; it appears whole when the context closes without error."""
        ...

    def write(self, bucket: str, name: str, data: bytes, content_type: str = "application/x-ndjson") -> None: ...
    def exists(self, bucket: str, name: str) -> bool: ...
    def stat(self, bucket: str, name: str) -> ObjectInfo | None:
        """Size and creation time of an object, or None when there is none."""
        ...

    def compose(self, bucket: str, sources: list[str], target: str) -> int:
        """Write ``target`` as 1 to ``COMPOSE_MAX_SOURCES`` sources joined in order, in one
        request; returns its size. Repeating it gives the same object (no source may be the
        target), so a retry after an unknown outcome is safe."""
        ...

    def delete(self, bucket: str, name: str) -> None:
        """Remove an object; no error when it is already gone."""
        ...


class TaskQueue(Protocol):
    """Cloud Tasks: named tasks, so a repeated enqueue of the same work is harmless."""

    def enqueue_plan(self, job_id: str, tag: str = "") -> None: ...
    def enqueue_notify(self, job_id: str) -> None:
        """The callback of a job that ended (once per job)."""
        ...

    def enqueue_chunk(self, job_id: str, index: int, tag: str = "", delay_s: float = 0.0, poll: int | None = None) -> None:
        """``tag`` names a continuation, a re-drive or a poll, so its task name is new.
        ``delay_s`` schedules the delivery that much later; ``poll`` (economy jobs) is the
        number of the poll the delivery is, sent in the task's body."""
        ...


class StoreContention(Exception):
    """A transaction could not commit: other writers held its documents through every
    retry. Transient: an HTTP function answers 503 with Retry-After, and a task's delivery
    is tried again by its queue."""


class BlockedAddress(Exception):
    """A URL leads to an address the deployment must not reach (private, loopback, ...)."""


class Outbound(Protocol):
    """HTTP to a client's own URL (callbacks), checked against the addresses the
    deployment must not reach at the moment it is used."""

    def check_url(self, url: str, allow_loopback_http: bool = False) -> None:
        """Raise :class:`BlockedAddress` unless ``url`` leads to a public address now."""
        ...

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float, allow_loopback_http: bool = False) -> int:
        """POST to the checked address (no redirect followed); the answer's status.
        Raises :class:`BlockedAddress`, or ``OSError``/``TimeoutError`` on network errors."""
        ...
