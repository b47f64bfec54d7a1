"""In-memory adapters for fast service tests. The same tests also run against the
emulators (see conftest), so these must behave like the real ones where it matters:
transactions read before they write and commit all or nothing. The in-memory LLM
provider stands in for a provider's behaviour (latency, errors, 429s, usage); the real
HTTP path against the fake LLM server is tested per provider in tests/providers."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, TypeVar

from promptforge.adapters.firestore_store import DONE_SHARDS, AlreadyExists, shard_size
from promptforge.config import Settings
from promptforge.domain.job import Job, JobStatus
from promptforge.domain.outcomes import ROW_ERROR_CODES, ErrorCode
from promptforge.domain.plan_state import PlanState
from promptforge.domain.records import ApiKey, BatchTotals, Chunk, ChunkStatus, ClientState, DoneCount, Totals
from promptforge.domain.usage import ClientUsage
from promptforge.service.batch_port import BatchInfo, BatchItem, BatchOutcome
from promptforge.service.ports import COMPOSE_MAX_SOURCES, BudgetBeat, DoneMark, ObjectInfo
from promptforge.service.provider_port import ChatRequest, ChatResult, ProviderError, ProviderUnavailable

T = TypeVar("T")
T_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _MemTx:
    def __init__(self, store: MemoryStore) -> None:
        self._s = store
        self._writes: list[Callable[[], None]] = []

    def _read(self) -> None:
        if self._writes:
            raise AssertionError("read after write in a transaction (Firestore refuses this)")

    def get_job(self, job_id: str) -> Job | None:
        self._read()
        return self._s.jobs.get(job_id)

    def get_client(self, client_id: str) -> ClientState:
        self._read()
        return self._s.clients.get(client_id, ClientState(client_id))

    def get_chunk(self, job_id: str, index: int) -> Chunk | None:
        self._read()
        return self._s.chunks.get((job_id, index))

    def list_chunks(self, job_id: str) -> list[Chunk]:
        self._read()
        return self._s.list_chunks(job_id)

    def get_plan(self, job_id: str) -> PlanState | None:
        self._read()
        return self._s.plans.get(job_id)

    def put_plan(self, state: PlanState) -> None:
        self._writes.append(lambda: self._s.plans.__setitem__(state.job_id, state))

    def put_job(self, job: Job) -> None:
        self._writes.append(lambda: self._s.jobs.__setitem__(job.job_id, job))

    def put_client(self, client: ClientState) -> None:
        self._writes.append(lambda: self._s.clients.__setitem__(client.client_id, client))

    def put_chunk(self, chunk: Chunk) -> None:
        self._writes.append(lambda: self._s.chunks.__setitem__((chunk.job_id, chunk.index), chunk))

    def count_done(self, job_id: str, index: int, delta: int, at: datetime, chunk_count: int = 0) -> DoneMark:
        mark = DoneMark()

        def write() -> None:
            value = self._s.add_done(job_id, index % DONE_SHARDS, delta, at)
            if chunk_count:
                mark.may_complete = value >= shard_size(index, chunk_count)

        self._writes.append(write)
        return mark

    def commit(self) -> None:
        for write in self._writes:
            write()


class MemoryStore:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.clients: dict[str, ClientState] = {}
        self.chunks: dict[tuple[str, int], Chunk] = {}
        self.keys: dict[str, ApiKey] = {}
        self.workers: dict[tuple[str, str], BudgetBeat] = {}
        self.usage: dict[str, tuple[ClientUsage, int]] = {}  # client -> (record, version)
        self.request_minutes: dict[tuple[str, datetime], int] = {}
        self.plans: dict[str, PlanState] = {}
        # (job, shard) -> [done, last change, expire_at], as the counter documents
        self.done_counts: dict[tuple[str, int], list[Any]] = {}
        self._lock = threading.RLock()

    def run_transaction(self, fn: Callable[[Any], T]) -> T:
        with self._lock:
            tx = _MemTx(self)
            result = fn(tx)
            tx.commit()
            return result

    def create_job(self, job: Job) -> None:
        with self._lock:
            if job.job_id in self.jobs:
                raise AlreadyExists(job.job_id)
            self.jobs[job.job_id] = job

    def get_job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def get_chunk(self, job_id: str, index: int) -> Chunk | None:
        return self.chunks.get((job_id, index))

    def update_chunk(self, job_id: str, index: int, change: Callable[[Chunk | None], Chunk | None]) -> Chunk | None:
        with self._lock:
            updated = change(self.chunks.get((job_id, index)))
            if updated is not None:
                if (updated.job_id, updated.index) != (job_id, index):
                    raise ValueError("update_chunk changes the chunk it read, no other")
                self.chunks[(job_id, index)] = updated
            return updated

    def find_jobs(self, status: JobStatus, status_before: datetime | None = None, limit: int = 500) -> list[Job]:
        found = [
            j
            for j in self.jobs.values()
            if j.status is status and (status_before is None or (j.status_at is not None and j.status_at < status_before))
        ]
        return sorted(found, key=lambda j: j.status_at or j.created_at)[:limit]

    def list_jobs(self, client_id: str, limit: int, after: tuple[datetime, str] | None = None) -> list[Job]:
        mine = sorted(
            (j for j in self.jobs.values() if j.client_id == client_id), key=lambda j: (j.created_at, j.job_id), reverse=True
        )
        if after is not None:
            mine = [j for j in mine if (j.created_at, j.job_id) < after]
        return mine[:limit]

    def save_chunks(self, chunks: Iterable[Chunk]) -> None:
        with self._lock:
            for c in chunks:
                self.chunks[(c.job_id, c.index)] = c

    def get_plan(self, job_id: str) -> PlanState | None:
        return self.plans.get(job_id)

    def list_chunks(self, job_id: str) -> list[Chunk]:
        return sorted((c for (j, _), c in self.chunks.items() if j == job_id), key=lambda c: c.index)

    def chunk_totals(self, job_id: str) -> Totals:
        cs = self.list_chunks(job_id)
        # The same list Firestore sums (Chunk refuses any other code).
        errors = {code.value: sum(c.error_counts.get(code, 0) for c in cs) for code in ROW_ERROR_CODES}
        return Totals(
            sum(c.completed for c in cs),
            sum(c.failed for c in cs),
            sum(c.input_tokens for c in cs),
            sum(c.output_tokens for c in cs),
            {k: v for k, v in errors.items() if v},
        )

    def batch_totals(self, job_id: str) -> BatchTotals:
        # Counted as Firestore's filtered counts do: a chunk with a batch key, one ended.
        cs = self.list_chunks(job_id)
        return BatchTotals(
            batches=sum(c.batch_key is not None for c in cs),
            ended=sum(c.batch_ended for c in cs),
            requests=sum(c.batch_total for c in cs),
            requests_done=sum(c.batch_done for c in cs),
            requests_failed=sum(c.batch_failed for c in cs),
        )

    def add_done(self, job_id: str, shard: int, delta: int, at: datetime) -> int:
        counter = self.done_counts.setdefault((job_id, shard), [0, None, None])
        counter[0] += delta
        counter[1] = at
        return int(counter[0])

    def chunks_done(self, job_id: str) -> DoneCount:
        with self._lock:
            shards = [c for (j, _), c in self.done_counts.items() if j == job_id]
        times = [c[1] for c in shards if c[1] is not None]
        return DoneCount(sum(c[0] for c in shards), max(times) if times else None)

    def lease_ended_chunks(self, job_id: str, before: datetime, limit: int) -> list[Chunk]:
        ended = [c for c in self.list_chunks(job_id) if c.lease_until is not None and c.lease_until < before]
        return sorted(sorted(ended, key=lambda c: c.lease_until or before)[:limit], key=lambda c: c.index)

    def unfinished_chunks(self, job_id: str, limit: int) -> list[Chunk]:
        return [c for c in self.list_chunks(job_id) if c.status is not ChunkStatus.DONE][:limit]

    def latest_lease(self, job_id: str) -> datetime | None:
        leases = [c.lease_until for c in self.list_chunks(job_id) if c.lease_until is not None]
        return max(leases) if leases else None

    def jobs_to_stamp(self, limit: int) -> list[Job]:
        return [j for j in self.jobs.values() if j.records_unstamped][:limit]

    def stamp_expiry(self, job_id: str, expire_at: datetime, limit: int) -> int:
        with self._lock:
            chunks = [c for c in self.list_chunks(job_id) if c.expire_at is None][:limit]
            for c in chunks:
                self.chunks[(job_id, c.index)] = c.replace(expire_at=expire_at)
            if len(chunks) < limit:
                for (j, _), counter in self.done_counts.items():
                    if j == job_id:
                        counter[2] = expire_at
            return len(chunks)

    def heartbeat_worker(self, budget: str, worker_id: str, beat: BudgetBeat) -> None:
        self.workers[(budget, worker_id)] = beat

    def budget_workers(self, budget: str, now: datetime) -> list[BudgetBeat]:
        return [beat for (b, _), beat in self.workers.items() if b == budget and beat.until > now]

    def drop_worker(self, budget: str, worker_id: str) -> None:
        self.workers.pop((budget, worker_id), None)

    def put_api_key(self, key: ApiKey) -> None:
        self.keys[key.key_hash] = key

    def get_api_key(self, key_hash: str) -> ApiKey | None:
        return self.keys.get(key_hash)

    def list_api_keys(self) -> list[ApiKey]:
        return sorted(self.keys.values(), key=lambda k: k.created_at)

    def get_client_state(self, client_id: str) -> ClientState:
        return self.clients.get(client_id, ClientState(client_id))

    def get_job_statuses(self, job_ids: Iterable[str]) -> dict[str, JobStatus]:
        return {j: self.jobs[j].status for j in job_ids if j in self.jobs}

    def get_usage(self, client_id: str) -> ClientUsage:
        with self._lock:
            stored = self.usage.get(client_id)
            return ClientUsage(client_id) if stored is None else stored[0].replace(version=str(stored[1]))

    def put_usage(self, usage: ClientUsage, new_job: Job | None = None) -> bool:
        with self._lock:
            stored = self.usage.get(usage.client_id)
            if usage.version != (str(stored[1]) if stored else ""):
                return False
            if new_job is not None and new_job.job_id in self.jobs:
                return False  # as Firestore: the batch's create fails and nothing is written
            self.usage[usage.client_id] = (usage.replace(version=""), (stored[1] + 1) if stored else 1)
            if new_job is not None:
                self.jobs[new_job.job_id] = new_job
            return True

    def take_requests(self, client_id: str, window: datetime, count: int) -> int:
        with self._lock:
            total = self.request_minutes.get((client_id, window), 0) + count
            self.request_minutes[(client_id, window)] = total
            return total


class MemoryBlobs:
    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.created: dict[tuple[str, str], datetime] = {}
        # The headers each upload URL was signed with (what its PUT must send).
        self.signed_headers: dict[tuple[str, str], dict[str, str]] = {}
        self.clock = clock

    def signed_upload_url(self, bucket: str, name: str, headers: Mapping[str, str], ttl: timedelta) -> str:
        self.signed_headers[(bucket, name)] = dict(headers)
        return f"memory://{bucket}/{name}?method=PUT&ttl={int(ttl.total_seconds())}"

    def signed_download_url(self, bucket: str, name: str, filename: str, ttl: timedelta) -> str:
        return f"memory://{bucket}/{name}?method=GET&ttl={int(ttl.total_seconds())}"

    @contextmanager
    def open_read(self, bucket: str, name: str, start: int = 0, end: int | None = None) -> Iterator[BinaryIO]:
        data = self.objects[(bucket, name)]
        yield io.BytesIO(data[start:end])

    @contextmanager
    def open_write(self, bucket: str, name: str) -> Iterator[BinaryIO]:
        buf = io.BytesIO()
        yield buf
        self.write(bucket, name, buf.getvalue())

    def write(self, bucket: str, name: str, data: bytes, content_type: str = "application/x-ndjson") -> None:
        self.objects[(bucket, name)] = bytes(data)
        self.created[(bucket, name)] = self.clock()

    def exists(self, bucket: str, name: str) -> bool:
        return (bucket, name) in self.objects

    def stat(self, bucket: str, name: str) -> ObjectInfo | None:
        data = self.objects.get((bucket, name))
        return None if data is None else ObjectInfo(len(data), self.created.get((bucket, name), T_EPOCH))

    def compose(self, bucket: str, sources: list[str], target: str) -> int:
        if not 1 <= len(sources) <= COMPOSE_MAX_SOURCES or target in sources:
            raise ValueError(f"compose takes 1 to {COMPOSE_MAX_SOURCES} sources other than the target")
        data = b"".join(self.objects[(bucket, s)] for s in sources)
        self.write(bucket, target, data)
        return len(data)

    def delete(self, bucket: str, name: str) -> None:
        self.objects.pop((bucket, name), None)


@dataclass(frozen=True)
class ChunkTask:
    job_id: str
    index: int
    tag: str
    delay_s: float
    poll: int | None


class RecordingTasks:
    """Records what was enqueued; tests deliver the tasks themselves."""

    def __init__(self) -> None:
        self.plans: list[str] = []
        self.chunks: list[tuple[str, int]] = []
        self.chunk_tasks: list[ChunkTask] = []  # the same tasks, with their tag, delay and poll
        self.notifies: list[str] = []

    def enqueue_plan(self, job_id: str, tag: str = "") -> None:
        self.plans.append(job_id)

    def enqueue_notify(self, job_id: str) -> None:
        self.notifies.append(job_id)

    def enqueue_chunk(self, job_id: str, index: int, tag: str = "", delay_s: float = 0.0, poll: int | None = None) -> None:
        self.chunks.append((job_id, index))
        self.chunk_tasks.append(ChunkTask(job_id, index, tag, delay_s, poll))


def echo(request: ChatRequest) -> ChatResult:
    """The in-memory providers' answer: an echo of the last message, with usage counted
    from its length (about four characters a token)."""
    text = f"echo: {request.messages[-1].get('content', '')}"
    return ChatResult(
        text=text,
        model=request.model,
        input_tokens=sum(len(str(m.get("content", ""))) for m in request.messages) // 4 + 1,
        output_tokens=len(text) // 4 + 1,
        finish_reason="stop",
    )


class MemoryProviders:
    """A provider factory and the one provider it opens, in memory.

    Every prompt is answered with an echo of its last message and usage counted from its
    length (about four characters a token), after ``latency_s`` of the event loop's time.
    ``script`` may return a :class:`ProviderError` for a request (a 429, a timeout, a
    refusal) instead of an answer. Like the real factory, a provider the deployment has
    not enabled is unavailable.
    """

    def __init__(self, latency_s: float = 0.0, script: Callable[[ChatRequest], ProviderError | None] | None = None) -> None:
        self.latency_s = latency_s
        self.script = script
        self.requests_total = 0
        self.answered = 0
        self.opened: list[tuple[str, str | None, str | None]] = []
        self._lock = threading.Lock()

    def __call__(
        self, name: str, settings: Settings, endpoint: str | None = None, base_url: str | None = None
    ) -> MemoryProviders:
        if name not in settings.providers:
            raise ProviderUnavailable(f"provider {name!r} is not enabled on this deployment")
        with self._lock:
            self.opened.append((name, endpoint, base_url))
        return self

    async def complete(self, request: ChatRequest) -> ChatResult:
        with self._lock:
            self.requests_total += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        error = self.script(request) if self.script else None
        if error is not None:
            raise error
        with self._lock:
            self.answered += 1
        return echo(request)

    async def aclose(self) -> None:
        return None


def llm(deps: Any) -> MemoryProviders:
    """The in-memory provider of deps built by the tests' fixtures."""
    providers = deps.providers
    assert isinstance(providers, MemoryProviders), "these deps call a real provider, not the in-memory one"
    return providers


@dataclass
class MemoryBatch:
    batch_id: str
    key: str
    items: list[BatchItem]
    created_at: datetime
    ended: bool = False
    cancelled: bool = False
    ran: int = 0  # requests the provider has run so far, in order


class MemoryBatches:
    """A batch provider factory and the one batch API it opens, in memory.

    A batch runs nothing until the test moves it: :meth:`run` runs the first requests of
    every open batch (answered like :class:`MemoryProviders` answers, or refused by
    ``script``), :meth:`end` ends them (what was not run comes back expired), and a cancel
    ends a batch where it is. ``submits`` counts creates, so a test sees a duplicate.
    ``refuse`` may refuse a request before any call (a parameter the provider lacks).
    ``fail_next`` raises an error from the next call of that name (``submit``, ``status``,
    ``outcomes``, ``find``) once, after doing the call's work when ``after`` is set (the
    provider did it, the answer was lost).
    """

    def __init__(
        self,
        script: Callable[[ChatRequest], ProviderError | None] | None = None,
        refuse: Callable[[ChatRequest], ProviderError | None] | None = None,
    ) -> None:
        self.script = script
        self.refuse = refuse
        self.batches: dict[str, MemoryBatch] = {}
        self.submits = 0
        self.cancels: list[str] = []
        self.faults: dict[str, tuple[BaseException, bool]] = {}
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._lock = threading.Lock()

    def __call__(self, name: str, settings: Settings, endpoint: str | None = None) -> MemoryBatches:
        if name not in settings.providers:
            raise ProviderUnavailable(f"provider {name!r} is not enabled on this deployment")
        return self

    def fail_next(self, call: str, error: BaseException, after: bool = False) -> None:
        self.faults[call] = (error, after)

    def _fault(self, call: str, after: bool) -> None:
        fault = self.faults.get(call)
        if fault is not None and fault[1] is after:
            del self.faults[call]
            raise fault[0]

    def run(self, count: int | None = None) -> None:
        for batch in self.batches.values():
            if not batch.ended:
                batch.ran = len(batch.items) if count is None else min(len(batch.items), batch.ran + count)

    def end(self) -> None:
        for batch in self.batches.values():
            batch.ended = True

    def refusal(self, item: BatchItem) -> ProviderError | None:
        return self.refuse(item.request) if self.refuse else None

    async def submit(self, key: str, model: str, items: Sequence[BatchItem]) -> str:
        assert all(self.refusal(item) is None for item in items), "a refused request was sent"
        self._fault("submit", False)
        with self._lock:
            self.submits += 1
            batch_id = f"batch_{len(self.batches) + 1}"
            self.batches[batch_id] = MemoryBatch(batch_id, key, list(items), self.clock())
        self._fault("submit", True)
        return batch_id

    async def find(self, key: str, since: datetime, count: int) -> list[str]:
        self._fault("find", False)
        return [b.batch_id for b in self.batches.values() if b.key == key and b.created_at >= since]

    async def status(self, batch_id: str) -> BatchInfo:
        self._fault("status", False)
        batch = self.batches[batch_id]
        failed = sum(1 for item in batch.items[: batch.ran] if self.script and self.script(item.request))
        return BatchInfo(batch_id, len(batch.items), batch.ran, failed, batch.ended)

    async def outcomes(self, batch_id: str) -> list[BatchOutcome]:
        self._fault("outcomes", False)
        batch = self.batches[batch_id]
        assert batch.ended, "outcomes read before the batch ended"
        out: list[BatchOutcome] = []
        for n, item in enumerate(batch.items):
            if n >= batch.ran:
                expired = ProviderError(ErrorCode.PROVIDER_EXPIRED, "batch ended before the request ran", retryable=False)
                out.append(BatchOutcome(item.custom_id, error=expired))
                continue
            error = self.script(item.request) if self.script else None
            if error is not None:
                out.append(BatchOutcome(item.custom_id, error=error))
            else:
                out.append(BatchOutcome(item.custom_id, result=echo(item.request)))
        return out

    async def cancel(self, batch_id: str) -> None:
        self.cancels.append(batch_id)
        self.batches[batch_id].ended = True
        self.batches[batch_id].cancelled = True

    async def aclose(self) -> None:
        return None
