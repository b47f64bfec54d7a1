"""Counting the billable operations a process causes, for the scale and cost benchmark.

When ``PROMPTFORGE_METER_DIR`` is set, :func:`promptforge.wiring.live` builds
:class:`MeteredDeps`: the store, blob and task adapters are wrapped so each call adds what
the platform bills for it to the process's :class:`Meter` (Firestore document reads,
writes and deletes, Cloud Storage class A and class B operations, Cloud Tasks creations).
The meter writes its running totals to ``PROMPTFORGE_METER_DIR/<function>-<pid>.json``
every couple of seconds and at exit; ``infra/bench/scale.py`` sums the files and prices
them (docs/scale.md). Without the variable nothing is wrapped, so production pays nothing.

The billing rules follow the providers' documents:

* Firestore: a document read per document a get or a transaction's get asks for (found
  or not); a query bills the documents it returns, at least one; an aggregation query
  (count, sum) bills one read per 1,000 index entries it matches, at least one; each
  document set (batched or in a transaction) is a write; a delete is a delete. A
  transaction's reads bill on every attempt, its writes only on the commit that wins.
* Cloud Storage: uploads, composes and listings are class A; downloads (one per ranged GET
  the reader makes) and metadata reads are class B; deletes and URL signing are free.
* Cloud Tasks: every create call, including one answered "already exists".

A port method with no rule here is still counted, as ``unpriced.<port>.<method>``: the
benchmark refuses to price a run that has any, so a new port method cannot slip by
at zero cost.
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from ..config import Settings, load
from ..domain.job import Job
from ..domain.outcomes import ROW_ERROR_CODES
from ..service.ports import BlobStore, JobStore, TaskQueue
from ..wiring import LiveDeps

T = TypeVar("T")

METER_DIR_ENV = "PROMPTFORGE_METER_DIR"
FLUSH_SECONDS = 2.0

# The names of the counters the benchmark prices.
READS, WRITES, DELETES = "firestore.reads", "firestore.writes", "firestore.deletes"
CLASS_A, CLASS_B, STORAGE_FREE = "storage.class_a", "storage.class_b", "storage.free"
TASK_CREATES = "tasks.creates"

# Firestore bills an aggregation query one read per this many index entries it matches.
AGGREGATION_ENTRIES_PER_READ = 1000
# FirestoreJobStore.chunk_totals sums these fields, five per aggregation query (Firestore's
# cap on aggregations in one query): one query per five fields, each over every chunk.
CHUNK_TOTAL_FIELDS = 4 + len(ROW_ERROR_CODES)
CHUNK_TOTAL_QUERIES = math.ceil(CHUNK_TOTAL_FIELDS / 5)
# FirestoreJobStore.batch_totals: one query of three sums and two filtered counts, each
# billed here as if it matched every chunk (an upper bound for the counts).
BATCH_TOTAL_QUERIES = 3


class Intercepted:
    """An adapter whose every method call goes through :meth:`_around`.

    Subclasses decide what happens around a call (count it, fail it); attributes that
    are not methods pass through untouched.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            return self._around(name, lambda: target(*args, **kwargs), args)

        return wrapped

    def _around(self, name: str, call: Callable[[], Any], args: tuple[Any, ...]) -> Any:
        return call()


class Meter:
    """Running totals of one process, written to ``<directory>/<function>-<pid>.json``."""

    def __init__(self, directory: Path, function: str) -> None:
        self.directory = directory
        self.function = function
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # the flusher thread and the exit hook share the file
        self._written: dict[str, int] | None = None
        self._thread: threading.Thread | None = None
        self._fork_hook = False

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    @property
    def path(self) -> Path:
        # The pid is read at each write: a worker forked after the meter was made writes its own file.
        return self.directory / f"{self.function}-{os.getpid()}.json"

    def flush(self) -> None:
        with self._flush_lock:
            counts = self.snapshot()
            if counts == self._written:
                return
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.path
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps({"function": self.function, "pid": os.getpid(), "counts": counts}, sort_keys=True))
            os.replace(tmp, path)  # a reader sees the old totals or the new ones, never half a file
            self._written = counts

    def start(self, every_s: float = FLUSH_SECONDS) -> None:
        """Flush every ``every_s`` from a daemon thread, and once more at exit."""
        if self._thread is not None:
            return

        def loop() -> None:
            while True:
                time.sleep(every_s)
                self.flush()

        self._thread = threading.Thread(target=loop, name="promptforge-meter", daemon=True)
        self._thread.start()
        if not self._fork_hook:  # once per meter (a child inherits it)
            os.register_at_fork(after_in_child=lambda: self._forked(every_s))
            self._fork_hook = True
        atexit.register(self.flush)

    def _forked(self, every_s: float) -> None:
        """In a process forked after the meter started (a server that loads the app before
        forking its workers): no thread survives a fork, so the child starts its own
        flusher; it counts from zero into its own file, the parent's file keeps what was
        counted before the fork."""
        self._lock, self._flush_lock = threading.Lock(), threading.Lock()
        self.counts = Counter()
        self._written, self._thread = None, None
        self.start(every_s)


def _at_least_one(n: int) -> int:
    return max(1, n)


def _aggregation_reads(entries: int) -> int:
    return max(1, math.ceil(entries / AGGREGATION_ENTRIES_PER_READ))


class _Counting(Iterable[T]):
    """An iterable that counts what its consumer took, so a generator is not held in memory."""

    def __init__(self, items: Iterable[T]) -> None:
        self._items = items
        self.taken = 0

    def __iter__(self) -> Iterator[T]:
        for item in self._items:
            self.taken += 1
            yield item


# What a call bills, from its arguments and its result: {counter: amount}.
Rule = Callable[[tuple[Any, ...], Any], dict[str, int]]


def _fixed(key: str, n: int = 1) -> Rule:
    return lambda args, result: {key: n}


def _per_document(args: tuple[Any, ...], result: Any) -> dict[str, int]:
    return {READS: _at_least_one(len(result))}


def _put_usage(args: tuple[Any, ...], result: Any) -> dict[str, int]:
    # A compare-and-set that lost writes nothing; one that won writes the usage record,
    # and the new job with it when there is one.
    new_job = args[1] if len(args) > 1 else None
    return {WRITES: 1 + (new_job is not None)} if result else {}


STORE_RULES: dict[str, Rule] = {
    "create_job": _fixed(WRITES),
    "get_job": _fixed(READS),
    "get_chunk": _fixed(READS),
    # A read, and a write when the change stored something (a lost race reads again, uncounted).
    "update_chunk": lambda args, result: {READS: 1, WRITES: int(result is not None)},
    "find_jobs": _per_document,
    "list_jobs": _per_document,
    "list_chunks": _per_document,
    "heartbeat_worker": _fixed(WRITES),
    "budget_workers": _per_document,
    "get_plan": _fixed(READS),
    # The done count is summed from its counter documents (service: 8 shards at most).
    "chunks_done": _fixed(READS, 8),
    "lease_ended_chunks": _per_document,
    "unfinished_chunks": _per_document,
    "latest_lease": _fixed(READS),
    "jobs_to_stamp": _per_document,
    # A query for unstamped chunks, then a write per chunk stamped.
    "stamp_expiry": lambda args, result: {READS: _at_least_one(int(result)), WRITES: int(result)},
    "drop_worker": _fixed(DELETES),
    "put_api_key": _fixed(WRITES),
    "get_api_key": _fixed(READS),
    "list_api_keys": _per_document,
    "get_client_state": _fixed(READS),
    "get_usage": _fixed(READS),
    "put_usage": _put_usage,
    "take_requests": _fixed(WRITES),  # a server-side increment: one write, no read
}
# Methods the metered store counts itself (their arguments need handling before the call).
STORE_OWN = ("run_transaction", "save_chunks", "chunk_totals", "batch_totals", "get_job_statuses")

TX_READS: dict[str, Rule] = {
    "get_job": _fixed(READS),
    "get_client": _fixed(READS),
    "get_chunk": _fixed(READS),
    "list_chunks": _per_document,
    "get_plan": _fixed(READS),
}
# A done count's increment is a write (a server-side transform) committed with the others.
TX_WRITES = ("put_job", "put_client", "put_chunk", "put_plan", "count_done")

BLOB_RULES: dict[str, Rule] = {
    "signed_upload_url": _fixed(STORAGE_FREE),
    "signed_download_url": _fixed(STORAGE_FREE),
    "write": _fixed(CLASS_A),
    "exists": _fixed(CLASS_B),
    "stat": _fixed(CLASS_B),
    "compose": _fixed(CLASS_A),
    "delete": _fixed(STORAGE_FREE),
}
BLOB_OWN = ("open_read", "open_write")

TASK_RULES: dict[str, Rule] = {
    "enqueue_plan": _fixed(TASK_CREATES),
    "enqueue_notify": _fixed(TASK_CREATES),
    "enqueue_chunk": _fixed(TASK_CREATES),
}


class _Metered(Intercepted):
    port = ""
    rules: dict[str, Rule] = {}

    def __init__(self, inner: Any, meter: Meter) -> None:
        super().__init__(inner)
        self._meter = meter

    def _bill(self, counts: dict[str, int]) -> None:
        for key, n in counts.items():
            if n:
                self._meter.add(key, n)

    def _around(self, name: str, call: Callable[[], Any], args: tuple[Any, ...]) -> Any:
        result = call()
        rule = self.rules.get(name)
        if rule is None:
            self._meter.add(f"unpriced.{self.port}.{name}")
        else:
            self._bill(rule(args, result))
        return result


class _MeteredTx(_Metered):
    """One attempt of a transaction: reads bill as they happen, writes are only tallied."""

    port = "tx"
    rules = TX_READS

    def __init__(self, inner: Any, meter: Meter, store: MeteredStore) -> None:
        super().__init__(inner, meter)
        self._store = store
        self.writes = 0

    def _around(self, name: str, call: Callable[[], Any], args: tuple[Any, ...]) -> Any:
        if name in TX_WRITES:
            result = call()
            self.writes += 1
            return result
        result = super()._around(name, call, args)
        if isinstance(result, Job):
            self._store.learn(result)
        return result


class MeteredStore(_Metered):
    port = "store"
    rules = STORE_RULES

    def __init__(self, inner: JobStore, meter: Meter) -> None:
        super().__init__(inner, meter)
        # Chunk documents per job, from the jobs this process has read: what an
        # aggregation over a job's chunks matches.
        self._chunk_counts: dict[str, int] = {}

    def learn(self, job: Job) -> None:
        if job.chunk_count:
            self._chunk_counts[job.job_id] = job.chunk_count

    def _around(self, name: str, call: Callable[[], Any], args: tuple[Any, ...]) -> Any:
        result = super()._around(name, call, args)
        for job in result if isinstance(result, list) else [result]:
            if isinstance(job, Job):
                self.learn(job)
        return result

    def run_transaction(self, fn: Callable[[Any], T]) -> T:
        committed = [0]

        def attempt(tx: Any) -> T:
            metered = _MeteredTx(tx, self._meter, self)
            result = fn(metered)
            committed[0] = metered.writes  # the last attempt is the one that commits
            return result

        result: T = self._inner.run_transaction(attempt)
        self._bill({WRITES: committed[0]})
        return result

    def save_chunks(self, chunks: Iterable[Any]) -> None:
        counted = _Counting(chunks)
        self._inner.save_chunks(counted)
        self._bill({WRITES: counted.taken})

    def get_job_statuses(self, job_ids: Iterable[str]) -> Any:
        ids = list(job_ids)
        result = self._inner.get_job_statuses(ids)
        self._bill({READS: len(ids)})  # one read per document asked for, found or not
        return result

    def chunk_totals(self, job_id: str) -> Any:
        result = self._inner.chunk_totals(job_id)
        self._bill({READS: CHUNK_TOTAL_QUERIES * _aggregation_reads(self._chunks_of(job_id))})
        return result

    def batch_totals(self, job_id: str) -> Any:
        result = self._inner.batch_totals(job_id)
        self._bill({READS: BATCH_TOTAL_QUERIES * _aggregation_reads(self._chunks_of(job_id))})
        return result

    def _chunks_of(self, job_id: str) -> int:
        chunks = self._chunk_counts.get(job_id)
        if chunks is None:
            # A job this process has not read: look its size up past the meter (a read
            # only the benchmark makes, so it is not billed).
            job = self._inner.get_job(job_id)
            chunks = (job.chunk_count or 0) if job is not None else 0
            if job is not None:
                self.learn(job)
        return chunks


class _CountingReader(io.RawIOBase):
    """A download stream that counts the bytes its reader took."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.taken = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self.taken += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class MeteredBlobs(_Metered):
    port = "blobs"
    rules = BLOB_RULES

    @contextmanager
    def open_read(self, bucket: str, name: str, start: int = 0, end: int | None = None) -> Iterator[BinaryIO]:
        # GcsBlobStore reads in ranged GETs of its read chunk size: one class B operation each.
        chunk = int(getattr(self._inner, "_read_chunk", 0)) or 1024 * 1024
        with self._inner.open_read(bucket, name, start, end) as f:
            reader = _CountingReader(f)
            try:
                yield reader  # type: ignore[misc]
            finally:
                self._bill({CLASS_B: max(1, math.ceil(reader.taken / chunk))})

    @contextmanager
    def open_write(self, bucket: str, name: str) -> Iterator[BinaryIO]:
        with self._inner.open_write(bucket, name) as f:
            yield f
        # The upload happens as the stream closes without error: one request.
        self._bill({CLASS_A: 1})


class MeteredTasks(_Metered):
    port = "tasks"
    rules = TASK_RULES


def function_name() -> str:
    """This process's function: the entry point the stack serves, or Cloud Run's service name."""
    return load().function_name


@functools.cache
def process_meter() -> Meter:
    """The meter of this process, flushing from its first use."""
    directory = load().meter_dir
    if not directory:
        raise RuntimeError(f"metering needs {METER_DIR_ENV}")
    meter = Meter(Path(directory), function_name())
    meter.start()
    return meter


class MeteredDeps(LiveDeps):
    """The live deps with every store, blob and task call counted on ``meter``."""

    def __init__(self, settings: Settings, meter: Meter | None = None) -> None:
        super().__init__(settings)
        self.meter = meter or process_meter()

    @functools.cached_property
    def store(self) -> JobStore:
        return MeteredStore(LiveDeps.store.func(self), self.meter)  # type: ignore[attr-defined]

    @functools.cached_property
    def blobs(self) -> BlobStore:
        return MeteredBlobs(LiveDeps.blobs.func(self), self.meter)  # type: ignore[attr-defined]

    @functools.cached_property
    def tasks(self) -> TaskQueue:
        return MeteredTasks(LiveDeps.tasks.func(self), self.meter)  # type: ignore[attr-defined]
