"""Economy jobs through the use cases, on in-memory adapters and on the emulators: each
chunk as one provider batch (the in-memory batch API, moved by the test), polled by
scheduled chunk tasks, its outcomes mapped to the same rows a fast job writes, exactly
once through lost answers, duplicate polls and a crash mid-mapping."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from promptforge.domain.chunk_outcomes import ChunkOutcome
from promptforge.domain.job import JobMode, JobStatus
from promptforge.domain.outcomes import ErrorCode
from promptforge.service import lifecycle
from promptforge.service.chunks import ChunkBusy, process_chunk
from promptforge.service.deps import StaticDeps
from promptforge.service.economy import EconomyRun, batch_key
from promptforge.service.plan import plan_job
from promptforge.service.ports import Tx
from promptforge.service.provider_port import ChatRequest, ProviderError
from tests.fakes import ChunkTask, MemoryBatches, RecordingTasks
from tests.service.test_lifecycle import all_rows, drain, prompts_file, submit


class Lost(Exception):
    """The answer of a call that went through was lost (the worker died after it)."""


def economy(deps: StaticDeps, batches: MemoryBatches | None = None) -> tuple[StaticDeps, MemoryBatches]:
    batches = batches or MemoryBatches()
    batches.clock = deps.now
    return dataclasses.replace(deps, batch_providers=batches), batches


def submit_economy(deps: StaticDeps, n: int, extra: bytes = b"") -> tuple[str, str]:
    """An economy job of ``n`` prompts (and ``extra`` lines), its upload accepted (chunks
    of 4 lines)."""
    client_id, job_id = submit(deps, prompts_file(n, extra))

    def to_economy(tx: Tx) -> None:
        job = tx.get_job(job_id)
        assert job is not None
        tx.put_job(job.replace(mode=JobMode.ECONOMY))

    deps.store.run_transaction(to_economy)
    return client_id, job_id


def tasks_of(deps: StaticDeps) -> RecordingTasks:
    assert isinstance(deps.tasks, RecordingTasks)
    return deps.tasks


def deliver(deps: StaticDeps, task: ChunkTask) -> ChunkOutcome:
    return process_chunk(deps, task.job_id, task.index, task.poll)


def plan(deps: StaticDeps) -> list[ChunkTask]:
    """Plan the job; returns the chunk tasks planning enqueued."""
    tasks = tasks_of(deps)
    while tasks.plans:
        plan_job(deps, tasks.plans.pop(0))
    return list(tasks.chunk_tasks)


def step(deps: StaticDeps) -> list[ChunkOutcome]:
    """Deliver what is enqueued now (planning first), not what those deliveries enqueue."""
    tasks = tasks_of(deps)
    plan(deps)
    now, tasks.chunk_tasks[:] = list(tasks.chunk_tasks), []
    tasks.chunks.clear()
    return [deliver(deps, t) for t in now]


def run_economy(deps: StaticDeps, batches: MemoryBatches, ran: int | None = None) -> list[ChunkOutcome]:
    """Submit every chunk, poll once while the batches run, then let the provider run
    ``ran`` requests of each (all when None), end the batches and poll again."""
    outcomes = step(deps)  # planning, then each chunk submits its batch and schedules poll 0
    outcomes += step(deps)  # poll 0: still running, schedules poll 1
    batches.run(ran)
    batches.end()
    outcomes += step(deps)  # poll 1: ended, mapped
    return outcomes


def test_an_economy_job_completes_with_the_rows_a_fast_job_writes(deps: StaticDeps) -> None:
    deps, batches = economy(deps)
    client_id, job_id = submit_economy(deps, 10)
    outcomes = run_economy(deps, batches)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert outcomes.count(ChunkOutcome.BATCH_SUBMITTED) == 3 and outcomes.count(ChunkOutcome.BATCH_RUNNING) == 3
    assert batches.submits == 3  # one batch a chunk
    assert [len(b.items) for b in batches.batches.values()] == [4, 4, 2]
    results, _ = all_rows(deps, client_id, job_id)
    assert sorted(r["prompt_id"] for r in results) == [f"p{i:04d}" for i in range(10)]
    assert all(r["attempts"] == 1 and r["result"].startswith("echo: ") for r in results)
    # The same row shape as a fast job's (the same builder writes both).
    fast_deps, _ = economy(deps)
    fast_client, fast_id = submit(fast_deps, prompts_file(2))
    drain(fast_deps)
    fast_results, _ = all_rows(fast_deps, fast_client, fast_id)
    assert [list(r) for r in fast_results] == [list(results[0])] * 2
    assert (job.completed_count, job.failed_count) == (10, 0) and job.input_tokens > 0
    polls = [t for t in tasks_of(deps).chunk_tasks if t.poll is not None]
    assert polls == []  # nothing is left scheduled once every chunk is done


def test_polls_back_off_and_carry_their_number(deps: StaticDeps) -> None:
    deps, batches = economy(deps)
    _, job_id = submit_economy(deps, 4)
    assert step(deps) == [ChunkOutcome.BATCH_SUBMITTED]
    first = tasks_of(deps).chunk_tasks
    assert [(t.tag, t.poll, t.delay_s) for t in first] == [("p0", 0, deps.settings.economy_poll_first_seconds)]
    delays = []
    for _ in range(8):
        assert step(deps) == [ChunkOutcome.BATCH_RUNNING]
        delays.append(tasks_of(deps).chunk_tasks[0].delay_s)
    first_s, max_s = deps.settings.economy_poll_first_seconds, deps.settings.economy_poll_max_seconds
    assert delays == [min(max_s, first_s * 2**n) for n in range(1, 9)]
    chunk = deps.store.get_chunk(job_id, 0)
    assert chunk is not None and chunk.batch_polls == 8 and chunk.lease_until is not None
    assert chunk.lease_until > deps.now()  # waiting, not stuck: the watchdog sees it alive


def test_a_duplicate_poll_changes_nothing_and_schedules_nothing(deps: StaticDeps) -> None:
    deps, batches = economy(deps)
    client_id, job_id = submit_economy(deps, 4)
    step(deps)
    poll0 = tasks_of(deps).chunk_tasks[0]
    assert step(deps) == [ChunkOutcome.BATCH_RUNNING]
    poll1 = tasks_of(deps).chunk_tasks[0]
    assert deliver(deps, poll0) == ChunkOutcome.STALE_POLL  # delivered again, late
    assert tasks_of(deps).chunk_tasks == [poll1]  # still one chain of polls
    batches.run()
    batches.end()
    assert deliver(deps, poll0) == ChunkOutcome.STALE_POLL
    assert step(deps) == [ChunkOutcome.DONE]
    assert deliver(deps, poll1) == ChunkOutcome.IGNORED_JOB_COMPLETED  # the same poll again
    results, _ = all_rows(deps, client_id, job_id)
    assert len(results) == 4 and batches.submits == 1


def test_a_create_whose_answer_was_lost_is_found_not_repeated(deps: StaticDeps) -> None:
    deps, batches = economy(deps)
    client_id, job_id = submit_economy(deps, 4)
    [task] = plan(deps)
    batches.fail_next("submit", Lost("the worker died after the create"), after=True)
    with pytest.raises(Lost):
        step(deps)
    chunk = deps.store.get_chunk(job_id, 0)
    assert chunk is not None and chunk.batch_key == batch_key(job_id, 0) and chunk.batch_ids == ()
    assert deliver(deps, task) == ChunkOutcome.BATCH_SUBMITTED  # Cloud Tasks retries it
    chunk = deps.store.get_chunk(job_id, 0)
    assert chunk is not None and chunk.batch_ids == ("batch_1",) and chunk.batch_found
    assert batches.submits == 1
    batches.run()
    batches.end()
    step(deps)
    results, _ = all_rows(deps, client_id, job_id)
    assert sorted(r["prompt_id"] for r in results) == [f"p{i:04d}" for i in range(4)]


def test_a_create_that_never_happened_is_made_after_the_crash(deps: StaticDeps) -> None:
    deps, batches = economy(deps)
    client_id, job_id = submit_economy(deps, 4)
    [task] = plan(deps)
    batches.fail_next("submit", Lost("the worker died before the create"))
    with pytest.raises(Lost):
        step(deps)
    assert batches.submits == 0
    assert deliver(deps, task) == ChunkOutcome.BATCH_SUBMITTED
    chunk = deps.store.get_chunk(job_id, 0)
    assert chunk is not None and not chunk.batch_found and batches.submits == 1


def test_partial_failures_and_expiry_become_error_rows(deps: StaticDeps) -> None:
    def refuse_sevens(request: ChatRequest) -> ProviderError | None:
        if str(request.messages[-1]["content"]).endswith("7"):
            return ProviderError(ErrorCode.CONTENT_FILTERED, "refused", retryable=False)
        return None

    deps, batches = economy(deps, MemoryBatches(refuse_sevens))
    client_id, job_id = submit_economy(deps, 12)
    run_economy(deps, batches, ran=3)  # of each batch of 4, the provider ran 3 before its window ended
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    results, errors = all_rows(deps, client_id, job_id)
    by_id = {e["prompt_id"]: e for e in errors}
    assert sorted(by_id) == ["p0003", "p0007", "p0011"]
    assert by_id["p0007"]["error"] == "provider_expired"  # the 4th of its batch: expired first
    assert [by_id[p]["error"] for p in ("p0003", "p0011")] == ["provider_expired"] * 2
    assert all(e["attempts"] == 1 and "question" not in e.get("detail", "") for e in errors)
    assert len(results) == 9
    assert job.error_counts == {"provider_expired": 3}
    # With every request run, the refusal is the row.
    deps2, batches2 = economy(deps, MemoryBatches(refuse_sevens))
    client2, job2 = submit_economy(deps2, 12)
    run_economy(deps2, batches2)
    _, errors2 = all_rows(deps2, client2, job2)
    assert [(e["prompt_id"], e["error"]) for e in errors2] == [("p0007", "content_filtered")]


def test_a_batch_the_provider_refuses_gives_every_prompt_its_error(deps: StaticDeps) -> None:
    deps, batches = economy(deps)
    client_id, job_id = submit_economy(deps, 4)
    batches.fail_next("submit", ProviderError(ErrorCode.INVALID_REQUEST, "HTTP 400", retryable=False))
    assert step(deps) == [ChunkOutcome.DONE]
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.failed_count == 4
    _, errors = all_rows(deps, client_id, job_id)
    assert {e["error"] for e in errors} == {"invalid_request"}


def test_cancel_cancels_the_provider_batches(deps: StaticDeps) -> None:
    deps, batches = economy(deps)
    _, job_id = submit_economy(deps, 8)
    step(deps)
    job = deps.store.get_job(job_id)
    assert job is not None
    lifecycle.cancel_job(deps, job)
    woken = [t for t in tasks_of(deps).chunk_tasks if t.tag == "stop"]
    assert [t.index for t in woken] == [0, 1]
    outcomes = step(deps)  # the two polls and the two wake-ups
    assert sorted(outcomes) == sorted([ChunkOutcome.BATCH_CANCELLED] * 2 + [ChunkOutcome.IGNORED_JOB_CANCELLED] * 2)
    assert sorted(batches.cancels) == ["batch_1", "batch_2"]
    assert all(c.batch_ended for c in deps.store.list_chunks(job_id))


def test_a_crash_while_mapping_leaves_every_row_once(deps: StaticDeps) -> None:
    deps, batches = economy(deps)
    deps = dataclasses.replace(deps, settings=dataclasses.replace(deps.settings, checkpoint_rows=1))
    client_id, job_id = submit_economy(deps, 4)
    step(deps)
    batches.run()
    batches.end()
    writes = 0
    real_write = deps.blobs.write

    def die_on_third(bucket: str, name: str, data: bytes, content_type: str = "application/x-ndjson") -> None:
        nonlocal writes
        writes += 1
        if writes == 3:
            raise Lost("killed mid-mapping")
        real_write(bucket, name, data, content_type)

    poll = tasks_of(deps).chunk_tasks[0]
    deps.blobs.write = die_on_third  # type: ignore[method-assign]
    with pytest.raises(Lost):
        step(deps)
    deps.blobs.write = real_write  # type: ignore[method-assign]
    chunk = deps.store.get_chunk(job_id, 0)
    assert chunk is not None and chunk.completed == 2  # two rows checkpointed before the kill
    try:
        assert deliver(deps, poll) == ChunkOutcome.DONE
    except ChunkBusy:
        pytest.fail("the crashed delivery's lease was not handed back")
    results, _ = all_rows(deps, client_id, job_id)
    assert sorted(r["prompt_id"] for r in results) == [f"p{i:04d}" for i in range(4)]
    assert batches.submits == 1


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(str(r["prompt_id"]) for r in rows)


def test_a_request_the_provider_cannot_take_gets_its_row_and_the_rest_go_in_the_batch(deps: StaticDeps) -> None:
    def lacks_top_k(request: ChatRequest) -> ProviderError | None:
        if "top_k" in request.params:
            return ProviderError(ErrorCode.INVALID_REQUEST, "parameter 'top_k' is not supported", retryable=False)
        return None

    deps, batches = economy(deps, MemoryBatches(refuse=lacks_top_k))
    client_id, job_id = submit_economy(deps, 3, b'{"prompt_id": "odd", "prompt": "q", "params": {"top_k": 5}}\n')
    [task] = plan(deps)
    assert step(deps) == [ChunkOutcome.BATCH_SUBMITTED]
    chunk = deps.store.get_chunk(job_id, 0)
    assert chunk is not None and chunk.failed == 1  # its row, checkpointed before the batch
    assert [len(b.items) for b in batches.batches.values()] == [3]
    batches.run()
    batches.end()
    step(deps)
    results, errors = all_rows(deps, client_id, job_id)
    assert _ids(results) == ["p0000", "p0001", "p0002"]
    assert [(e["prompt_id"], e["error"]) for e in errors] == [("odd", "invalid_request")]
    assert task.poll is None


def test_a_chunk_whose_rows_are_all_checkpointed_is_published_without_the_provider(
    deps: StaticDeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    deps, batches = economy(deps)
    client_id, job_id = submit_economy(deps, 4)
    step(deps)
    batches.run()
    batches.end()
    poll = tasks_of(deps).chunk_tasks[0]
    with monkeypatch.context() as patch:

        def die_before_done(self: Any) -> None:
            raise Lost("killed after the last checkpoint, before DONE")

        patch.setattr(EconomyRun, "_finish", die_before_done)
        with pytest.raises(Lost):
            deliver(deps, poll)
    batches.batches.clear()  # the provider no longer has the batch
    assert deliver(deps, poll) == ChunkOutcome.DONE
    results, _ = all_rows(deps, client_id, job_id)
    assert _ids(results) == ["p0000", "p0001", "p0002", "p0003"]
