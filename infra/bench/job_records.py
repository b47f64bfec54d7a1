"""What a job's records cost as its chunk count grows: writes of the job document while
chunks finish, the chunk documents one watchdog sweep reads, the counter reads that decide
when to finalize, and the result parts a client lists. Runs whole jobs in memory (the
service code as deployed, in-memory adapters that count calls, an instant provider) and
prints a table. A done-count call reads at most 8 counter documents.

    .venv/bin/python -m infra.bench.job_records [--chunks 100 999 1000 2500]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "functions"))
sys.path.insert(0, str(ROOT))

from promptforge import config, logs  # noqa: E402
from promptforge.domain import paths  # noqa: E402
from promptforge.service import chunks as chunks_module  # noqa: E402
from promptforge.service import keys, lifecycle, watchdog  # noqa: E402
from promptforge.service.chunks import process_chunk  # noqa: E402
from promptforge.service.deps import StaticDeps  # noqa: E402
from promptforge.service.plan import plan_job  # noqa: E402
from tests.fakes import MemoryBlobs, MemoryStore, RecordingTasks  # noqa: E402
from tests.faults import Clock, ScriptedProvider  # noqa: E402

_LISTING = ("list_chunks", "unfinished_chunks", "lease_ended_chunks")


class CountingStore:
    """The in-memory store, counting calls, chunk documents returned by listings, and
    writes of job documents made inside transactions."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.chunk_docs_read = 0
        self.job_writes = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            result = target(*args, **kwargs)
            if name in _LISTING:
                self.chunk_docs_read += len(result)
            elif name == "latest_lease":
                self.chunk_docs_read += 1  # a query of one document
            return result

        return counted

    def run_transaction(self, fn: Any) -> Any:
        store = self

        class Tx:
            def __init__(self, tx: Any) -> None:
                self._tx = tx

            def __getattr__(self, name: str) -> Any:
                if name == "put_job":
                    store.job_writes += 1
                if name == "list_chunks":
                    store.calls["tx.list_chunks"] += 1
                return getattr(self._tx, name)

        return self.inner.run_transaction(lambda tx: fn(Tx(tx)))


def run(chunk_count: int) -> dict[str, Any]:
    settings = dataclasses.replace(
        config.load(),
        providers=("fake",),
        chunk_max_lines=1,
        checkpoint_rows=1,
        checkpoint_seconds=3600.0,
        heartbeat_seconds=3600.0,
        worker_concurrency=1,
    )
    clock = Clock()
    store = CountingStore(MemoryStore())
    deps = StaticDeps(settings, store, MemoryBlobs(), RecordingTasks(), clock)
    provider = ScriptedProvider(lambda: set())
    # Until Deps carries the provider, the benchmark swaps the function chunks imported.
    chunks_module.open_provider = lambda *a, **k: provider  # type: ignore[attr-defined]
    _, key = keys.create_key(deps)
    new = lifecycle.create_job(deps, key.client_id, {"provider": "fake", "model": "instant"})
    job_id = new.job.job_id
    lines = ({"prompt_id": f"q{i:06d}", "prompt": f"say q{i:06d}"} for i in range(chunk_count))
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    name = paths.upload_object(key.client_id, job_id)
    deps.blobs.write(settings.upload_bucket, name, data)
    lifecycle.accept_upload(deps, settings.upload_bucket, name, len(data), clock())
    plan_job(deps, job_id)
    writes_before = store.job_writes
    started = time.perf_counter()
    for index in range(chunk_count - 1):
        process_chunk(deps, job_id, index)
    run_s = time.perf_counter() - started
    writes_while_running = store.job_writes - writes_before
    counts_read = store.calls["chunks_done"]
    # One sweep while the last chunk runs: its lease is live, the rest are done.
    last = store.inner.unfinished_chunks(job_id, 1)[0]
    lease = clock() + timedelta(seconds=settings.chunk_lease_seconds)
    store.inner.run_transaction(lambda tx: tx.put_chunk(last.replace(status=last.status.RUNNING, lease_until=lease)))
    store.chunk_docs_read = 0
    watchdog.sweep(deps)
    sweep_docs = store.chunk_docs_read
    store.inner.run_transaction(lambda tx: tx.put_chunk(last))
    started = time.perf_counter()
    process_chunk(deps, job_id, chunk_count - 1)
    finalize_s = time.perf_counter() - started
    job = store.inner.get_job(job_id)
    assert job is not None and job.status.value == "COMPLETED", job
    parts = [f for f in job.result_files if f != paths.ERRORS_FILENAME]
    assert parts == sorted(parts)
    return {
        "chunks": chunk_count,
        "job_writes": writes_while_running,
        "count_reads": counts_read,
        "sweep_docs": sweep_docs,
        "parts": len(parts),
        "last_part": parts[-1],
        "chunks_per_part": paths.part_group(chunk_count),
        "run_s": run_s,
        "finalize_s": finalize_s,
    }


def main() -> None:
    logs.log = lambda *a, **k: None  # the service's log lines would bury the table
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[100, 999, 1000, 2500])
    args = parser.parse_args()
    head = (
        f"{'chunks':>6} | {'job doc writes while chunks finish':>34} | {'done-count calls':>16} | "
        f"{'chunk docs read by a sweep':>26} | {'parts':>5} | {'last part':>22} | {'chunks a part':>13} | {'finalize (s)':>12}"
    )
    print(head)
    print("-" * len(head))
    for n in args.chunks:
        r = run(n)
        print(
            f"{r['chunks']:>6} | {r['job_writes']:>34} | {r['count_reads']:>16} | {r['sweep_docs']:>26} | "
            f"{r['parts']:>5} | {r['last_part']:>22} | {r['chunks_per_part']:>13} | {r['finalize_s']:>12.2f}"
        )


if __name__ == "__main__":
    main()
