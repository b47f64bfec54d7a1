"""Every I/O call of a job planned in many small steps, failed or killed in turn (the
harness of tests/faults.py): the job still completes with every prompt exactly once.

Planning here takes a task per step: slices of three records and one chunk, dedupe steps
of two records, so the file's repeated prompt_id (first and last line) is found across
slices and buckets, and every kind of planning step (scan, dedupe, merge, start,
enqueue) meets every fault at every one of its calls.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest

from promptforge.domain.plan_state import PlanPhase
from promptforge.service import plan as plan_module
from promptforge.service.deps import StaticDeps
from tests.conftest import make_settings
from tests.fakes import MemoryBlobs, MemoryStore, RecordingTasks
from tests.faults import KINDS, MODES, Fault, Outcome, check, each_fault, run_job, sampled_faults
from tests.service.test_crash_points import crash_settings

PROMPTS = 10


def plan_crash_settings() -> Any:
    return dataclasses.replace(
        crash_settings(make_settings()),
        chunk_max_lines=4,
        checkpoint_rows=50,  # few chunk calls: the faults land in planning's share
        plan_slice_bytes=1 << 20,
        plan_slice_records=3,
        plan_slice_chunks=1,
        plan_dedupe_records=2,
        plan_invocation_seconds=0.0,
    )


def memory_deps() -> StaticDeps:
    return StaticDeps(plan_crash_settings(), MemoryStore(), MemoryBlobs(), RecordingTasks())


def run(deps: StaticDeps, fault: Fault | None, monkeypatch: pytest.MonkeyPatch) -> tuple[Outcome, list[str]]:
    # The same salt in every run: the ids then fall into the same buckets, so every run
    # makes the same dedupe steps, and the N-th call is the same call.
    monkeypatch.setattr(plan_module, "new_salt", lambda: "5a" * 16)
    return run_job(deps, fault, monkeypatch, PROMPTS)


def clean_counts(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Calls of each kind a clean run of the whole job makes."""
    outcome, ids = run(memory_deps(), None, monkeypatch)
    check(outcome, ids, "no fault")
    return outcome.counts


def test_a_clean_run_plans_in_many_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    deps = memory_deps()
    outcome, ids = run(deps, None, monkeypatch)
    check(outcome, ids, "no fault")
    state = deps.store.get_plan(outcome.job.job_id)
    assert state is not None and state.phase is PlanPhase.DONE
    assert len(state.slices) >= 4 and len(state.bounds) >= 4 and state.step > 15
    assert sum(s.dups for s in state.slices) == 1 and outcome.job.invalid_count == 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_crash_point_of_sliced_planning_in_memory(kind: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    each_fault(kind, mode, clean_counts(monkeypatch)[kind], lambda fault: run(memory_deps(), fault, monkeypatch))


def test_plan_crash_points_on_the_emulators(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sample of the same crash points on the Firestore and Cloud Storage emulators."""
    from tests.conftest import emulator_deps

    settings = plan_crash_settings()
    sampled_faults(clean_counts(monkeypatch), lambda fault: run(emulator_deps(request, settings), fault, monkeypatch))
