"""The metering wrappers count what the platform bills, on the in-memory adapters."""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from promptforge import wiring
from promptforge.adapters import metering
from promptforge.adapters.metering import (
    BATCH_TOTAL_QUERIES,
    CHUNK_TOTAL_QUERIES,
    CLASS_A,
    CLASS_B,
    DELETES,
    READS,
    STORAGE_FREE,
    TASK_CREATES,
    WRITES,
    Meter,
    MeteredBlobs,
    MeteredStore,
    MeteredTasks,
)
from promptforge.domain.job import Job, JobStatus
from promptforge.domain.records import Chunk
from promptforge.domain.usage import ClientUsage
from promptforge.service import ports
from promptforge.service.ports import BudgetBeat
from tests.fakes import MemoryBlobs, MemoryStore, RecordingTasks

T = TypeVar("T")
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def job(**kw: Any) -> Job:
    return Job(str(uuid.uuid4()), "c1", JobStatus.PROCESSING, "fake", "m", T0, T0 + timedelta(hours=1), **kw)


def chunks(j: Job, n: int) -> list[Chunk]:
    return [Chunk(j.job_id, i, i * 10, i * 10 + 10, i + 1, 1) for i in range(n)]


@pytest.fixture
def meter(tmp_path: Path) -> Meter:
    return Meter(tmp_path / "meters", "process_chunk")


def billed(meter: Meter) -> dict[str, int]:
    return {k: v for k, v in meter.snapshot().items() if v}


def _methods(protocol: type) -> set[str]:
    return {name for name, value in vars(protocol).items() if not name.startswith("_") and callable(value)}


def test_every_port_method_has_a_billing_rule() -> None:
    # A port method added without a rule would be billed as "unpriced" and the benchmark
    # would refuse to price the run: this says which rule is missing before that.
    assert _methods(ports.JobStore) == set(metering.STORE_RULES) | set(metering.STORE_OWN)
    assert _methods(ports.Tx) == set(metering.TX_READS) | set(metering.TX_WRITES)
    assert _methods(ports.BlobStore) == set(metering.BLOB_RULES) | set(metering.BLOB_OWN)
    assert _methods(ports.TaskQueue) == set(metering.TASK_RULES)


def test_gets_queries_and_writes_bill_documents(meter: Meter) -> None:
    store = MeteredStore(MemoryStore(), meter)
    j = job()
    store.create_job(j)
    assert store.get_job(j.job_id) == j
    assert store.get_job("missing") is None  # a get of a missing document is still a read
    store.save_chunks(c for c in chunks(j, 3))  # a generator: counted as it is consumed
    assert len(store.list_chunks(j.job_id)) == 3
    assert store.list_chunks("no-such-job") == []  # an empty query bills one read
    assert store.get_job_statuses(iter([j.job_id, "missing"])) == {j.job_id: JobStatus.PROCESSING}
    assert billed(meter) == {WRITES: 1 + 3, READS: 2 + 3 + 1 + 2}


class RetryingStore(MemoryStore):
    """A store whose transactions lose the first commit to contention and run again."""

    def run_transaction(self, fn: Callable[[Any], T]) -> T:
        super().run_transaction(lambda tx: (fn(tx), tx._writes.clear()))  # reads done, writes dropped
        return super().run_transaction(fn)


def test_a_transaction_bills_reads_of_every_attempt_and_writes_of_the_commit(meter: Meter) -> None:
    inner = RetryingStore()
    store = MeteredStore(inner, meter)
    j = job(chunk_count=2)
    inner.create_job(j)
    inner.save_chunks(chunks(j, 2))

    def body(tx: Any) -> int:
        current = tx.get_job(j.job_id)
        done = [c for c in tx.list_chunks(j.job_id) if c.completed]
        tx.put_chunk(chunks(j, 2)[0].replace(completed=1))
        tx.put_job(current.replace(prompt_count=len(done) + 1))
        return len(done)

    assert store.run_transaction(body) == 0
    assert inner.jobs[j.job_id].prompt_count == 1
    assert billed(meter) == {READS: 2 * (1 + 2), WRITES: 2}


def test_aggregations_bill_one_read_per_thousand_entries(meter: Meter) -> None:
    inner = MemoryStore()
    store = MeteredStore(inner, meter)
    assert store.budget_workers("b", T0) == []
    assert meter.snapshot()[READS] == 1  # at least one
    for i in range(3):
        inner.heartbeat_worker("b", f"w{i}", BudgetBeat(T0 + timedelta(seconds=5)))
    assert len(store.budget_workers("b", T0)) == 3
    assert meter.snapshot()[READS] == 1 + 3  # a document read per process registered

    big = job(chunk_count=2500)
    inner.create_job(big)
    store.chunk_totals(big.job_id)  # a job this store never read: its size is looked up
    assert meter.snapshot()[READS] == 4 + CHUNK_TOTAL_QUERIES * 3
    small = job(chunk_count=4)
    store.create_job(small)
    store.get_job(small.job_id)
    store.chunk_totals(small.job_id)
    assert meter.snapshot()[READS] == 4 + CHUNK_TOTAL_QUERIES * 3 + 1 + CHUNK_TOTAL_QUERIES
    before = meter.snapshot()[READS]
    store.batch_totals(big.job_id)  # an economy job's batches: three queries over its chunks
    assert meter.snapshot()[READS] == before + BATCH_TOTAL_QUERIES * 3


def test_a_lost_compare_and_set_writes_nothing(meter: Meter) -> None:
    store = MeteredStore(MemoryStore(), meter)
    first = store.get_usage("c1")
    assert store.put_usage(first, job())  # the usage record and the new job
    assert not store.put_usage(first)  # stale version: refused
    store.heartbeat_worker("b", "w", BudgetBeat(T0))
    store.drop_worker("b", "w")
    assert store.take_requests("c1", T0, 3) == 3
    assert billed(meter) == {READS: 1, WRITES: 2 + 1 + 1, DELETES: 1}
    assert isinstance(first, ClientUsage)


class ChunkedBlobs(MemoryBlobs):
    _read_chunk = 10  # as GcsBlobStore: one ranged GET per this many bytes


def test_storage_operations_by_class(meter: Meter) -> None:
    blobs = MeteredBlobs(ChunkedBlobs(), meter)
    blobs.write("b", "one", b"x" * 25)
    with blobs.open_read("b", "one") as f:
        assert f.read() == b"x" * 25  # three ranged GETs
    with blobs.open_read("b", "one", 0, 5) as f:
        assert f.read(5) == b"xxxxx"
    with blobs.open_write("b", "two") as f:
        f.write(b"yy")
    with pytest.raises(RuntimeError), blobs.open_write("b", "three") as f:
        raise RuntimeError("the writer failed: nothing is uploaded")
    assert blobs.stat("b", "two") is not None and blobs.exists("b", "two")
    assert blobs.compose("b", ["one", "two"], "both") == 27
    blobs.delete("b", "one")
    blobs.signed_download_url("b", "both", "both.jsonl", timedelta(minutes=5))
    assert billed(meter) == {CLASS_A: 3, CLASS_B: 3 + 1 + 2, STORAGE_FREE: 2}


def test_task_creations_and_unpriced_methods(meter: Meter) -> None:
    class Queue(RecordingTasks):
        def purge(self) -> None:
            pass

    tasks = MeteredTasks(Queue(), meter)
    tasks.enqueue_plan("j")
    tasks.enqueue_chunk("j", 0)
    tasks.enqueue_chunk("j", 0)  # a repeat is still a create call
    tasks.enqueue_notify("j")
    tasks.purge()
    assert billed(meter) == {TASK_CREATES: 4, "unpriced.tasks.purge": 1}


def test_the_meter_writes_its_totals_per_process(meter: Meter) -> None:
    meter.add(READS, 5)
    meter.flush()
    files = list(meter.directory.iterdir())
    assert [f.name for f in files] == [meter.path.name] and meter.path.name.startswith("process_chunk-")
    assert json.loads(files[0].read_text())["counts"] == {READS: 5}
    meter.add(WRITES)
    meter.flush()
    assert json.loads(meter.path.read_text())["counts"] == {READS: 5, WRITES: 1}
    assert not [f for f in meter.directory.iterdir() if f.name.endswith(".tmp")]


def test_a_worker_forked_after_the_meter_started_flushes_its_own_counts(meter: Meter) -> None:
    # A server that loads the app (and starts the meter) before forking its workers: the
    # flusher thread does not survive the fork, so the worker must start its own.
    meter.add(READS, 2)
    meter.start(every_s=0.05)
    pid = os.fork()
    if pid == 0:  # the worker: count, let its flusher write, leave without pytest's teardown
        try:
            meter.add(WRITES, 3)
            time.sleep(1.0)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    child = meter.directory / f"process_chunk-{pid}.json"
    assert json.loads(child.read_text())["counts"] == {WRITES: 3}  # its own, not the parent's too
    assert meter.snapshot() == {READS: 2}


def test_counting_reader_reads_into_buffers(meter: Meter) -> None:
    blobs = MeteredBlobs(MemoryBlobs(), meter)
    blobs.write("b", "o", b"abc")
    with blobs.open_read("b", "o") as f:
        # typeshed wants a RawIOBase; what the test shows is that readinto is enough for one.
        assert io.BufferedReader(f).read() == b"abc"  # type: ignore[type-var]


def test_live_deps_are_metered_only_with_a_meter_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(metering.METER_DIR_ENV, raising=False)
    wiring.live.cache_clear()
    try:
        assert type(wiring.live()) is wiring.LiveDeps
        wiring.live.cache_clear()
        monkeypatch.setenv(metering.METER_DIR_ENV, str(tmp_path))
        monkeypatch.setattr(metering, "process_meter", lambda: Meter(tmp_path, "test"))
        deps = wiring.live()
        assert isinstance(deps, metering.MeteredDeps) and deps.meter.directory == tmp_path
    finally:
        wiring.live.cache_clear()
