"""Every I/O step of a job, failed or killed in turn: the job still completes with every
prompt exactly once (the FoundationDB / Jepsen idea at our scale; see tests/faults.py).

The job: 72 prompts in two chunks of 36 lines (each checkpointed a row at a time, so each
part is assembled from more than 32 segments) plus a third chunk holding only the two
lines planning reports; prompts whose id ends in 7 fail for good, so errors.jsonl has
rows from planning and from workers. A clean run counts the calls of each kind; then
for every kind, every N up to that count and every mode (503, die before the call, die
just after it), the job runs again from its upload event with that one fault.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest

from promptforge.domain.job import JobStatus
from promptforge.service.deps import StaticDeps
from tests.conftest import make_settings
from tests.fakes import MemoryBlobs, MemoryStore, RecordingTasks
from tests.faults import KINDS, MODES, Fault, Outcome, check, each_fault, run_job, sampled_faults

PROMPTS = 72


def crash_settings(base: Any = None) -> Any:
    return dataclasses.replace(
        base or make_settings(),
        chunk_max_lines=36,
        checkpoint_rows=1,
        checkpoint_seconds=3600.0,
        heartbeat_seconds=3600.0,  # no time-driven I/O: the same calls in every run
        worker_concurrency=1,
        chunk_lease_seconds=30,
        watchdog_grace_seconds=60,
    )


def memory_deps() -> StaticDeps:
    return StaticDeps(crash_settings(), MemoryStore(), MemoryBlobs(), RecordingTasks())


def run(deps: StaticDeps, fault: Fault | None, monkeypatch: pytest.MonkeyPatch) -> tuple[Outcome, list[str]]:
    return run_job(deps, fault, monkeypatch, PROMPTS)


def clean_counts(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    outcome, ids = run(memory_deps(), None, monkeypatch)
    check(outcome, ids, "no fault")
    return outcome.counts


def test_a_clean_run_assembles_parts_from_more_than_32_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    deps = memory_deps()
    outcome, ids = run(deps, None, monkeypatch)
    check(outcome, ids, "no fault")
    chunks = deps.store.list_chunks(outcome.job.job_id)
    assert [len(c.segments) for c in chunks] == [36, 36, 0]  # results and error segments
    assert outcome.job.chunk_count == 3 and outcome.job.status is JobStatus.COMPLETED
    assert sum(outcome.calls.values()) == PROMPTS  # each prompt called once
    assert set(outcome.counts) == set(KINDS)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_crash_point_in_memory(kind: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    each_fault(kind, mode, clean_counts(monkeypatch)[kind], lambda fault: run(memory_deps(), fault, monkeypatch))


def test_crash_points_on_the_emulators(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sample of the same crash points on the Firestore and Cloud Storage emulators."""
    from tests.conftest import emulator_deps

    sampled_faults(clean_counts(monkeypatch), lambda fault: run(emulator_deps(request, crash_settings()), fault, monkeypatch))


# --- economy jobs: the same crash points, each chunk through a provider batch ------------


def run_economy(deps: StaticDeps, fault: Fault | None, monkeypatch: pytest.MonkeyPatch) -> tuple[Outcome, list[str]]:
    return run_job(deps, fault, monkeypatch, PROMPTS, economy=True)


def economy_counts(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    outcome, ids = run_economy(memory_deps(), None, monkeypatch)
    check(outcome, ids, "economy, no fault")
    return outcome.counts


def test_a_clean_economy_run_sends_each_prompt_once_in_one_batch_a_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    outcome, ids = run_economy(memory_deps(), None, monkeypatch)
    check(outcome, ids, "economy, no fault")
    assert sum(outcome.calls.values()) == PROMPTS and set(outcome.calls.values()) == {1}
    assert len(outcome.creates) == 2  # the third chunk holds only lines planning reported


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_crash_point_of_an_economy_job_in_memory(kind: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    each_fault(kind, mode, economy_counts(monkeypatch)[kind], lambda fault: run_economy(memory_deps(), fault, monkeypatch))


def test_economy_crash_points_on_the_emulators(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import emulator_deps

    sampled_faults(
        economy_counts(monkeypatch), lambda fault: run_economy(emulator_deps(request, crash_settings()), fault, monkeypatch)
    )
