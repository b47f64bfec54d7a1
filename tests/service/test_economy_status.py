"""What an economy job's status reads, on in-memory adapters and on the emulators: its
provider batches' counts summed over its chunks (both stores the same way), shown only
while it runs, in its status and in the list alike, and its cost at the batch price."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from promptforge.domain.job import Job, JobMode, JobStatus
from promptforge.domain.pricing import estimated_cost_usd
from promptforge.domain.records import BatchTotals, Chunk, ChunkStatus
from promptforge.service import lifecycle, progress
from promptforge.service.deps import StaticDeps
from tests.service.test_job_records import Refusing


def stored(deps: StaticDeps, mode: JobMode, status: JobStatus = JobStatus.PROCESSING, **fields: Any) -> Job:
    now = deps.now()
    job = Job(
        job_id=str(uuid.uuid4()),
        client_id=f"client-{uuid.uuid4().hex[:8]}",
        status=status,
        provider="fake",
        model="fake-small",
        created_at=now,
        upload_expires_at=now + timedelta(hours=1),
        mode=mode,
        **fields,
    )
    deps.store.create_job(job)
    return job


def chunk(job_id: str, index: int, **fields: Any) -> Chunk:
    return Chunk(job_id, index, index * 10, index * 10 + 10, index * 10, 10, status=ChunkStatus.RUNNING, **fields)


# Chunk k differs from the others in every field summed, so a field summed twice, another
# field summed in its place, or a chunk left out changes the totals.
BATCHES: list[dict[str, Any]] = [
    {},  # no batch yet
    {"batch_key": "k1"},  # its create under way: the key stored, no id yet
    {"batch_key": "k2", "batch_ids": ("b2",), "batch_total": 10, "batch_done": 3, "batch_failed": 1},
    {
        "batch_key": "k3",
        "batch_ids": ("b3a", "b3b"),
        "batch_total": 100,
        "batch_done": 100,
        "batch_failed": 20,
        "batch_ended": True,
    },
    {"batch_key": "k4", "batch_ids": ("b4",), "batch_total": 1000, "batch_done": 600, "batch_failed": 300, "batch_polls": 7},
]
EXPECTED = BatchTotals(batches=4, ended=1, requests=1110, requests_done=703, requests_failed=321)


def test_both_stores_sum_an_economy_jobs_provider_batches_alike(deps: StaticDeps) -> None:
    job = stored(deps, JobMode.ECONOMY, chunk_count=len(BATCHES))
    other = stored(deps, JobMode.ECONOMY, chunk_count=1)
    deps.store.save_chunks([chunk(job.job_id, k, **fields) for k, fields in enumerate(BATCHES)])
    deps.store.save_chunks([chunk(other.job_id, 0, **BATCHES[3])])  # another job's: not counted
    assert deps.store.batch_totals(job.job_id) == EXPECTED
    assert deps.store.batch_totals(other.job_id) == BatchTotals(1, 1, 100, 100, 20)
    assert deps.store.batch_totals(str(uuid.uuid4())) == BatchTotals()  # no chunks: all zero


def test_a_running_economy_job_shows_its_batches_and_a_fast_one_none(deps: StaticDeps) -> None:
    views = {}
    for mode in JobMode:
        job = stored(deps, mode, prompt_count=50, chunk_count=len(BATCHES))
        tokens = {"completed": 10, "input_tokens": 2_000_000, "output_tokens": 500_000}
        deps.store.save_chunks([chunk(job.job_id, k, **fields, **(tokens if k == 3 else {})) for k, fields in enumerate(BATCHES)])
        views[mode] = progress.view(deps, job)
    economy, fast = views[JobMode.ECONOMY], views[JobMode.FAST]
    assert economy.provider_batches == EXPECTED and fast.provider_batches is None
    assert economy.totals == fast.totals and economy.totals.completed == 10
    full = estimated_cost_usd("fake", "fake-small", 2_000_000, 500_000)
    assert full is not None and fast.estimated_cost_usd == full == 0.4
    assert economy.estimated_cost_usd == estimated_cost_usd("fake", "fake-small", 2_000_000, 500_000, economy=True) == 0.2


def test_the_list_shows_a_running_economy_jobs_batches_as_its_status_does(deps: StaticDeps) -> None:
    running = stored(deps, JobMode.ECONOMY, chunk_count=len(BATCHES))
    client_id = running.client_id
    deps.store.save_chunks([chunk(running.job_id, k, **fields) for k, fields in enumerate(BATCHES)])
    new = lifecycle.create_job(deps, client_id, {"provider": "fake", "model": "fake-small", "mode": JobMode.ECONOMY})
    page = progress.page(deps, client_id, 10, None)
    by_id = {v.job.job_id: v for v in page.views}
    assert by_id[running.job_id] == progress.view(deps, running) and by_id[running.job_id].provider_batches == EXPECTED
    # Stored and read back as economy; before it runs it has no batches to show.
    waiting = by_id[new.job.job_id]
    assert waiting.job.mode is JobMode.ECONOMY and waiting.provider_batches is None


def test_an_economy_job_that_ended_shows_no_batches_and_reads_none(deps: StaticDeps) -> None:
    for status in (JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.FAILED):
        job = stored(deps, JobMode.ECONOMY, status, chunk_count=len(BATCHES))
        deps.store.save_chunks([chunk(job.job_id, k, **fields) for k, fields in enumerate(BATCHES)])
        refusing = StaticDeps(deps.settings, Refusing(deps.store, "batch_totals"), deps.blobs, deps.tasks)
        assert progress.view(refusing, job).provider_batches is None
