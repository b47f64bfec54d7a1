"""The metering wrappers around the real Firestore and Cloud Storage adapters, on the emulators."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from promptforge.adapters import metering as m
from promptforge.domain.job import Job, JobStatus
from promptforge.domain.records import Chunk
from promptforge.service.ports import BudgetBeat
from promptforge.wiring import LiveDeps
from tests.integration.test_adapters import live  # noqa: F401 (the fixture: LiveDeps on the stack's emulators)

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def test_a_jobs_documents_and_objects_are_billed_as_the_platform_bills_them(live: LiveDeps, tmp_path: Path) -> None:  # noqa: F811
    meter = m.Meter(tmp_path, "test")
    deps = m.MeteredDeps(live.settings, meter)
    store, blobs = deps.store, deps.blobs
    j = Job(str(uuid.uuid4()), "c-meter", JobStatus.PROCESSING, "fake", "m", T0, T0 + timedelta(hours=1), chunk_count=3)

    store.create_job(j)
    store.save_chunks(Chunk(j.job_id, i, i * 10, i * 10 + 10, i + 1, 1) for i in range(3))
    assert store.get_job(j.job_id) == j
    assert len(store.list_chunks(j.job_id)) == 3
    assert store.list_chunks(str(uuid.uuid4())) == []

    def finish_first_chunk(tx: Any) -> None:
        current, first = tx.get_job(j.job_id), tx.get_chunk(j.job_id, 0)
        tx.put_chunk(first.replace(completed=10))
        tx.put_job(current.replace(prompt_count=1))

    store.run_transaction(finish_first_chunk)
    assert store.chunk_totals(j.job_id).completed == 10
    store.heartbeat_worker("meter-budget", "w1", BudgetBeat(T0 + timedelta(minutes=1)))
    assert len(store.budget_workers("meter-budget", T0)) == 1
    store.drop_worker("meter-budget", "w1")
    firestore = {m.READS: 1 + 3 + 1 + 2 + m.CHUNK_TOTAL_QUERIES + 1, m.WRITES: 1 + 3 + 2 + 1, m.DELETES: 1}
    assert {k: v for k, v in meter.snapshot().items() if k.startswith("firestore.")} == firestore

    bucket = live.settings.results_bucket
    part = f"meter/{j.job_id}/part"
    blobs.write(bucket, part + "0", b'{"a": 1}\n')
    with blobs.open_write(bucket, part + "1") as f:
        f.write(b'{"b": 2}\n')
    with blobs.open_read(bucket, part + "1") as f:
        assert f.read() == b'{"b": 2}\n'
    assert blobs.compose(bucket, [part + "0", part + "1"], part + "s") == 18
    info = blobs.stat(bucket, part + "s")
    assert info is not None and info.size == 18
    assert blobs.signed_download_url(bucket, part + "s", "results.jsonl", timedelta(minutes=5)).startswith("http")
    for name in ("0", "1", "s"):
        blobs.delete(bucket, part + name)
    assert not blobs.exists(bucket, part + "s")
    storage = {m.CLASS_A: 3, m.CLASS_B: 1 + 1 + 1, m.STORAGE_FREE: 1 + 3}
    assert {k: v for k, v in meter.snapshot().items() if k.startswith("storage.")} == storage

    meter.flush()
    written = json.loads(meter.path.read_text())
    assert written["function"] == "test" and written["counts"] == meter.snapshot()
