"""The records of a large job: the count of done chunks that leaves the job document
alone, result parts grouped to at most MAX_PARTS, a watchdog that reads only the chunks
that need it, and the expiry of every chunk and counter document. On in-memory adapters
and on the emulators."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from promptforge.adapters.firestore_store import DONE_SHARDS
from promptforge.domain import paths
from promptforge.domain.job import JobStatus
from promptforge.domain.records import Chunk, ChunkStatus
from promptforge.service import lifecycle, progress, results, watchdog
from promptforge.service.chunks import process_chunk
from promptforge.service.deps import StaticDeps
from promptforge.service.ports import Tx
from tests.service.test_lifecycle import drain, rows
from tests.service.test_reliability import ids, later, planned


class Refusing:
    """The store, refusing one of its methods (``list_chunks``: listing every chunk of a
    job; ``chunk_totals``: aggregating them)."""

    def __init__(self, inner: Any, refused: str = "list_chunks") -> None:
        self._inner, self._refused = inner, refused

    def __getattr__(self, name: str) -> Any:
        if name == self._refused:
            raise AssertionError(f"called {name}")
        return getattr(self._inner, name)


def test_a_chunk_done_counts_without_writing_the_job_document(deps: StaticDeps) -> None:
    _, job_id = planned(deps, 12)
    before = deps.store.get_job(job_id)
    assert deps.store.chunks_done(job_id).done == 0
    process_chunk(deps, job_id, 0)
    process_chunk(deps, job_id, 0)  # a repeated delivery counts nothing
    count = deps.store.chunks_done(job_id)
    assert count.done == 1 and count.last_at is not None
    assert deps.store.get_job(job_id) == before  # not one field of the job changed
    process_chunk(deps, job_id, 2)
    process_chunk(deps, job_id, 1)
    assert deps.store.chunks_done(job_id).done == 3
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.completed_count == 12


class CountReads:
    """The store, counting the reads of a job's done count."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.reads = 0

    def chunks_done(self, job_id: str) -> Any:
        self.reads += 1
        return self._inner.chunks_done(job_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize("order", ["forward", "backward"])
def test_only_a_chunk_that_fills_its_share_of_the_count_reads_it(deps: StaticDeps, order: str) -> None:
    """20 chunks over the 8 counters (3, 3, 3, 3, 2, 2, 2, 2 chunks each): only the chunk
    that fills its counter reads the whole count, whichever order they finish in, and the
    last chunk always does, so the job completes with its last delivery."""
    client_id, job_id = planned(deps, 20, chunk_lines=1)
    counting = CountReads(deps.store)
    deps.store = counting
    indexes = list(range(20)) if order == "forward" else list(reversed(range(20)))
    for n, index in enumerate(indexes):
        assert process_chunk(deps, job_id, index) == "done"
        job = counting.get_job(job_id)
        assert job is not None and job.status is (JobStatus.COMPLETED if n == 19 else JobStatus.PROCESSING)
    assert counting.reads == DONE_SHARDS
    assert process_chunk(deps, job_id, 3) == "ignored: job is COMPLETED"
    deps.store = counting._inner
    assert ids(deps, client_id, job_id) == Counter({f"p{i:04d}": 1 for i in range(20)})


def test_part_names_sort_and_stay_under_a_thousand_whatever_the_chunk_count() -> None:
    for chunks in (1, 999, 1000, 1998, 20_000, 100_000):
        names = sorted({paths.part_filename(paths.part_of(i, chunks)) for i in range(chunks)})
        numbers = [int(n.removeprefix("results_part_").removesuffix(".jsonl")) for n in names]
        assert numbers == list(range(1, len(names) + 1)) and len(names) <= paths.MAX_PARTS
        group = paths.part_group(chunks)
        assert group <= 32 or chunks > 32 * paths.MAX_PARTS  # a part is one compose request up to 31,968 chunks
    # Up to 999 chunks a part is a chunk, under the name it always had.
    assert [paths.part_of(i, 999) for i in (0, 1, 998)] == [0, 1, 998]
    assert paths.part_filename(paths.part_of(998, 999)) == "results_part_999.jsonl"


def test_more_chunks_than_parts_go_into_consecutive_groups(deps: StaticDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "MAX_PARTS", 3)
    client_id, job_id = planned(deps, 10, chunk_lines=1)  # 10 chunks: parts of 4, 4 and 2
    for index in range(10):
        process_chunk(deps, job_id, index)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.chunk_count == 10
    assert job.result_files == ("results_part_001.jsonl", "results_part_002.jsonl", "results_part_003.jsonl", "errors.jsonl")
    got = [[r["prompt_id"] for r in rows(deps, client_id, job_id, f)] for f in job.result_files[:3]]
    assert got == [[f"p{i:04d}" for i in range(a, b)] for a, b in ((0, 4), (4, 8), (8, 10))]


def test_partial_results_are_grouped_the_same_way(deps: StaticDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "MAX_PARTS", 2)
    client_id, job_id = planned(deps, 8, chunk_lines=1)  # 8 chunks: parts of 4 and 4
    for index in (0, 2, 6):
        process_chunk(deps, job_id, index)
    job = deps.store.get_job(job_id)
    assert job is not None
    cancelled = lifecycle.cancel_job(deps, job)
    files = results.partial_files(deps, cancelled)
    assert files == ("results_part_001.jsonl", "results_part_002.jsonl", "errors.jsonl")
    assert [r["prompt_id"] for r in rows(deps, client_id, job_id, files[0])] == ["p0000", "p0002"]
    assert [r["prompt_id"] for r in rows(deps, client_id, job_id, files[1])] == ["p0006"]
    assert results.partial_files(deps, cancelled) == files  # the same objects again
    # No worker is left to add rows: the listing is kept, and read back without listing chunks.
    kept = deps.store.get_job(job_id)
    assert kept is not None and kept.result_files == files
    inner = deps.store
    deps.store = Refusing(inner)
    assert results.listed_partial_files(deps, kept) == files
    deps.store = inner


def test_partial_results_are_not_kept_while_a_worker_may_still_add_rows(deps: StaticDeps) -> None:
    _, job_id = planned(deps, 8)
    process_chunk(deps, job_id, 0)
    chunk = deps.store.unfinished_chunks(job_id, 10)[0]
    lease = deps.now() + timedelta(seconds=30)
    deps.store.run_transaction(lambda tx: tx.put_chunk(chunk.replace(status=ChunkStatus.RUNNING, lease_until=lease)))
    job = deps.store.get_job(job_id)
    assert job is not None
    cancelled = lifecycle.cancel_job(deps, job)
    assert results.listed_partial_files(deps, cancelled) == ("results_part_001.jsonl", "errors.jsonl")
    assert deps.store.get_job(job_id).result_files == ()  # type: ignore[union-attr]


def test_the_watchdog_redrives_only_chunks_whose_worker_stopped_answering(deps: StaticDeps) -> None:
    _, job_id = planned(deps, 16)  # four chunks
    process_chunk(deps, job_id, 0)
    now = deps.now()
    grace = timedelta(seconds=deps.settings.watchdog_grace_seconds)
    for index, lease in ((1, now - timedelta(seconds=1)), (2, now + grace + timedelta(seconds=60))):
        chunk = next(c for c in deps.store.unfinished_chunks(job_id, 10) if c.index == index)
        leased = chunk.replace(status=ChunkStatus.RUNNING, lease_until=lease)

        def put(tx: Tx, c: Chunk = leased) -> None:
            tx.put_chunk(c)

        deps.store.run_transaction(put)
    later(deps, deps.settings.watchdog_grace_seconds + 10)
    inner = deps.store
    deps.store = Refusing(inner)
    swept = watchdog.sweep(deps)
    # Chunk 2 still holds its lease, so work is moving: chunk 3 waits in the queue, and
    # only chunk 1, whose lease ended more than the grace period ago, is re-driven.
    assert [(j, i) for j, i in swept.redriven if j == job_id] == [(job_id, 1)]
    assert job_id not in swept.stuck
    deps.store = inner


def test_the_watchdog_finishes_a_job_whose_count_says_all_done(deps: StaticDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    client_id, job_id = planned(deps, 8)
    process_chunk(deps, job_id, 0)
    monkeypatch.setattr("promptforge.service.chunks.finalize_if_done", lambda *a: False)  # the last finalize is lost
    process_chunk(deps, job_id, 1)
    monkeypatch.undo()
    assert deps.store.get_job(job_id).status is JobStatus.PROCESSING  # type: ignore[union-attr]
    swept = watchdog.sweep(deps)
    assert job_id in swept.finalized
    assert ids(deps, client_id, job_id) == Counter({f"p{i:04d}": 1 for i in range(8)})


def test_ended_jobs_chunk_and_counter_documents_get_the_jobs_expiry(deps: StaticDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    _, job_id = planned(deps, 12)  # three chunks
    drain_all(deps, job_id, 3)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.records_unstamped and job.expire_at
    assert job_id not in watchdog.sweep(deps).stamped  # not before the grace period after the end
    later(deps, deps.settings.watchdog_grace_seconds + 1)
    monkeypatch.setattr(watchdog, "STAMP_BATCH", 2)
    # Every ended job of the run shares the emulator: take them all in each sweep.
    monkeypatch.setattr(watchdog, "STAMP_JOBS", 100_000)
    assert job_id not in watchdog.sweep(deps).stamped  # two chunks this sweep, the rest next
    assert sorted(c.expire_at is not None for c in deps.store.list_chunks(job_id)) == [False, True, True]
    assert job_id in watchdog.sweep(deps).stamped
    assert all(c.expire_at == job.expire_at for c in deps.store.list_chunks(job_id))
    assert counter_expiries(deps, job_id) == [job.expire_at] * len(counter_expiries(deps, job_id)) != []
    assert not deps.store.get_job(job_id).records_unstamped  # type: ignore[union-attr]
    assert job_id not in watchdog.sweep(deps).stamped


def drain_all(deps: StaticDeps, job_id: str, chunks: int) -> None:
    for index in range(chunks):
        deps.tasks.chunks.append((job_id, index))  # type: ignore[attr-defined]
    drain(deps)


def counter_expiries(deps: StaticDeps, job_id: str) -> list[Any]:
    """The expire_at of each of the job's counter documents."""
    store: Any = deps.store
    if hasattr(store, "done_counts"):
        return [c[2] for (j, _), c in store.done_counts.items() if j == job_id]
    shards = store._db.collection("jobs").document(job_id).collection("done_counts").stream()
    return [s.get("expire_at") for s in shards]


def test_a_cancelled_jobs_live_counts_are_settled_on_it_once_its_workers_are_gone(
    deps: StaticDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_id, job_id = planned(deps, 12)  # three chunks
    process_chunk(deps, job_id, 0)
    job = deps.store.get_job(job_id)
    assert job is not None
    cancelled = lifecycle.cancel_job(deps, job)
    live = progress.view(deps, cancelled)
    assert progress.is_live(cancelled) and live.totals.completed == 4 and cancelled.completed_count == 0

    monkeypatch.setattr(watchdog, "STAMP_JOBS", 100_000)
    assert job_id not in watchdog.sweep(deps).stamped  # its workers may still write: still live
    later(deps, deps.settings.watchdog_grace_seconds + 1)
    assert job_id in watchdog.sweep(deps).stamped
    kept = deps.store.get_job(job_id)
    assert kept is not None and kept.totals_settled and not progress.is_live(kept)

    inner = deps.store
    deps.store = Refusing(inner, "chunk_totals")
    try:
        assert progress.view(deps, kept).totals == live.totals  # the same counts, read off the job
        page = progress.page(deps, client_id, 10, None)
        assert [v.totals for v in page.views if v.job.job_id == job_id] == [live.totals]
    finally:
        deps.store = inner
