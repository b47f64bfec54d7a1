"""The chunk run's checkpoint timing and time box, driven by a fake monotonic clock
(in-memory deps, no sleeps), and the outcome and halt enums' values."""

from __future__ import annotations

import dataclasses

import pytest

from promptforge.domain.chunk_outcomes import ChunkOutcome, HaltReason
from promptforge.domain.job import Job, JobStatus
from promptforge.domain.records import Chunk, ChunkStatus
from promptforge.service import chunks
from promptforge.service.deps import StaticDeps
from promptforge.service.plan import plan_job
from tests.conftest import make_settings
from tests.fakes import MemoryBlobs, MemoryProviders, MemoryStore, RecordingTasks
from tests.service.test_lifecycle import prompts_file, submit


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def claimed(**overrides: float) -> tuple[StaticDeps, Job, Chunk]:
    settings = dataclasses.replace(make_settings(chunk_max_lines=4), **overrides)  # type: ignore[arg-type]
    deps = StaticDeps(settings, MemoryStore(), MemoryBlobs(), RecordingTasks(), providers=MemoryProviders())
    _, job_id = submit(deps, prompts_file(4))
    plan_job(deps, deps.tasks.plans.pop(0))  # type: ignore[attr-defined]
    job = deps.store.get_job(job_id)
    chunk = chunks._claim(deps, job_id, 0)
    assert job is not None and chunk is not None
    return deps, job, chunk


def test_rows_wait_for_a_checkpoint_until_checkpoint_seconds_pass() -> None:
    deps, job, chunk = claimed(checkpoint_seconds=5.0, checkpoint_rows=10, chunk_lease_seconds=60)
    clock = FakeClock()
    cp = chunks.Checkpointer(deps, job, chunk, clock)
    assert not cp.due()  # nothing waits and the lease is fresh
    cp.pending.results.append({"prompt_id": "p0000", "response": {}, "input_tokens": 3, "output_tokens": 4})
    clock.t += 4.9
    assert not cp.due() and not cp.full
    clock.t += 0.1
    assert cp.due()
    cp.write(cp.take())
    stored = deps.store.get_chunk(job.job_id, 0)
    assert stored is not None and stored.completed == 1 and len(stored.segments) == 1
    assert stored.input_tokens == 3 and stored.output_tokens == 4
    assert not cp.pending and not cp.due()  # the write restarted both timers


def test_the_lease_is_renewed_after_a_third_of_it_even_with_no_rows() -> None:
    deps, job, chunk = claimed(checkpoint_seconds=5.0, chunk_lease_seconds=30)
    clock = FakeClock()
    cp = chunks.Checkpointer(deps, job, chunk, clock)
    clock.t += 9.9
    assert not cp.due()
    clock.t += 0.1
    assert cp.due()
    before = deps.store.get_chunk(job.job_id, 0)
    assert before is not None and before.lease_until is not None
    later = before.lease_until
    deps.clock = lambda: later  # wall time moved on: the renewed lease ends later
    cp.write(cp.take())
    after = deps.store.get_chunk(job.job_id, 0)
    assert after is not None and after.segments == () and after.completed == 0
    assert after.lease_until is not None and after.lease_until > before.lease_until


def test_enough_rows_are_due_at_once() -> None:
    deps, job, chunk = claimed(checkpoint_rows=2)
    cp = chunks.Checkpointer(deps, job, chunk, FakeClock())
    cp.pending.errors.append({"prompt_id": "p0000", "error": "budget_exceeded", "attempts": 0})
    assert not cp.full
    cp.pending.errors.append({"prompt_id": "p0001", "error": "budget_exceeded", "attempts": 0})
    assert cp.full


def test_a_checkpoint_after_a_takeover_is_refused() -> None:
    deps, job, chunk = claimed()
    cp = chunks.Checkpointer(deps, job, chunk, FakeClock())
    deps.store.update_chunk(job.job_id, 0, lambda c: c.replace(deliveries=c.deliveries + 1) if c else None)
    cp.pending.results.append({"prompt_id": "p0000", "response": {}})
    with pytest.raises(chunks.LeaseLost):
        cp.write(cp.take())
    stored = deps.store.get_chunk(job.job_id, 0)
    assert stored is not None and stored.completed == 0 and stored.status is ChunkStatus.RUNNING


def test_the_time_box_lets_one_prompt_start_then_stops_new_ones_when_it_passes() -> None:
    deps, job, chunk = claimed(chunk_time_budget_seconds=10.0)
    clock = FakeClock()
    runner = chunks.ChunkRunner(deps, job, chunks.Checkpointer(deps, job, chunk, clock), clock)
    clock.t += 60  # past the box before the first prompt: it starts anyway
    runner.started = 1000.0
    assert runner.may_start() and runner.halt is None
    runner.started = clock.t
    clock.t += 10.0
    assert runner.may_start()  # at the box's edge, not past it
    clock.t += 0.5
    assert not runner.may_start() and runner.halt is HaltReason.TIME_BOX
    assert runner.begun == 2


def test_enum_values_are_the_strings_the_service_returned_and_logged() -> None:
    assert str(ChunkOutcome.DONE) == "done" and f"{ChunkOutcome.CONTINUED}" == "continued"
    assert ChunkOutcome.ignored(JobStatus.CANCELLED) == "ignored: job is CANCELLED"
    assert HaltReason.job_ended(JobStatus.FAILED) == "job FAILED" and HaltReason.job_ended(None) == "job deleted"
    assert {HaltReason.job_ended(s) for s in JobStatus if s.terminal} <= set(HaltReason)
