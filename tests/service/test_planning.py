"""Planning in steps: on memory and on the emulators, sliced planning (tiny slices, one
step per task, many dedupe steps) gives what one pass over the file gives; duplicates
are found across slices and buckets; a step that keeps failing fails the job."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from google.api_core.exceptions import ServiceUnavailable

from promptforge.config import Settings
from promptforge.domain import paths
from promptforge.domain.chunking import ChunkCutter
from promptforge.domain.job import Job, JobStatus
from promptforge.domain.jsonl import LineError, PromptLine, dump_line, iter_raw_lines, parse_line
from promptforge.domain.plan_state import PlanPhase
from promptforge.service import lifecycle
from promptforge.service import plan as plan_module
from promptforge.service.deps import StaticDeps
from promptforge.service.plan import plan_job
from tests.fakes import RecordingTasks
from tests.service.test_lifecycle import all_rows, drain, submit

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
EXPECTED = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))["cases"]

# Every step its own task, a slice of at most two records and one chunk, dedupe steps
# of a record or two: the most steps a file can be planned in.
TINY: dict[str, Any] = {
    "plan_slice_bytes": 64,
    "plan_slice_records": 2,
    "plan_slice_chunks": 1,
    "plan_dedupe_records": 2,
    "plan_invocation_seconds": 0.0,
}


def one_pass(data: bytes, s: Settings) -> dict[str, Any]:
    """What planning must produce, by the rule, in one pass and all ids in memory."""
    cutter = ChunkCutter(s.chunk_max_lines, s.chunk_max_bytes)
    seen: dict[str, int] = {}
    records = json_objects = 0
    errors = b""
    chunks = []
    import io

    for raw in iter_raw_lines(io.BytesIO(data), s.max_line_bytes):
        parsed = parse_line(raw, s.max_line_bytes)
        if parsed is None:
            spec = cutter.add(raw.number, raw.start, raw.end, record=False, skip=False)
        else:
            records += 1
            if records > s.max_prompts_per_job:
                return {"status": "FAILED", "code": "too_many_prompts"}
            if parsed.prompt_id is not None:
                first = seen.setdefault(parsed.prompt_id, raw.number)
                if first != raw.number and isinstance(parsed, PromptLine):
                    parsed = LineError(raw.number, f"duplicate prompt_id (first on line {first})", parsed.prompt_id, True)
            if isinstance(parsed, LineError):
                errors += dump_line(parsed.to_row())
            if isinstance(parsed, PromptLine) or parsed.json_object:
                json_objects += 1
            spec = cutter.add(raw.number, raw.start, raw.end, record=True, skip=isinstance(parsed, LineError))
        if spec is not None:
            chunks.append(spec)
    last = cutter.finish()
    if last is not None:
        chunks.append(last)
    if records == 0:
        return {"status": "FAILED", "code": "empty_file"}
    if json_objects == 0:
        return {"status": "FAILED", "code": "not_jsonl"}
    return {
        "status": "PROCESSING",
        "prompt_count": records,
        "invalid_count": errors.count(b"\n"),
        "invalid_bytes": len(errors),
        "errors": errors,
        "chunks": [(c.index, c.start, c.end, c.first_line, c.record_count, c.skip_lines) for c in chunks],
    }


def planned(deps: StaticDeps, data: bytes, **settings: Any) -> tuple[dict[str, Any], StaticDeps, Job]:
    """Plan ``data`` (no chunk runs) with these settings; what the stores then hold."""
    d = dataclasses.replace(deps, settings=dataclasses.replace(deps.settings, **settings), tasks=RecordingTasks())
    client_id, job_id = submit(d, data)
    tasks = d.tasks
    assert isinstance(tasks, RecordingTasks)
    steps = 0
    while tasks.plans:
        plan_job(d, tasks.plans.pop(0))
        steps += 1
        assert steps < 10_000
    job = d.store.get_job(job_id)
    assert job is not None
    if job.status is JobStatus.FAILED:
        assert job.error is not None
        return {"status": "FAILED", "code": job.error.code}, d, job
    errors = b""
    if job.invalid_count:
        with d.blobs.open_read(d.settings.results_bucket, paths.plan_errors_object(client_id, job_id)) as f:
            errors = f.read()
    chunks = [(c.index, c.start, c.end, c.first_line, c.record_count, c.skip_lines) for c in d.store.list_chunks(job_id)]
    assert sorted(i for _, i in tasks.chunks) == [c[0] for c in chunks], "every chunk enqueued once"
    out = {
        "status": job.status.value,
        "prompt_count": job.prompt_count,
        "invalid_count": job.invalid_count,
        "invalid_bytes": job.invalid_bytes,
        "errors": errors,
        "chunks": chunks,
    }
    assert job.chunk_count == len(chunks)
    return out, d, job


def tiny_job(deps: StaticDeps, data: bytes) -> tuple[StaticDeps, str, RecordingTasks]:
    """A job of ``data`` submitted to be planned with the TINY settings."""
    d = dataclasses.replace(deps, settings=dataclasses.replace(deps.settings, **TINY), tasks=RecordingTasks())
    _, job_id = submit(d, data)
    assert isinstance(d.tasks, RecordingTasks)
    return d, job_id, d.tasks


def corpus_cases() -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for name, case in EXPECTED.items():
        settings = {k: v for k, v in (case.get("settings") or {}).items() if k != "max_upload_bytes"}
        if "max_upload_bytes" not in (case.get("settings") or {}):
            cases.append((name, settings))
    return cases


def test_sliced_planning_equals_one_pass_planning_on_the_corpus(deps: StaticDeps) -> None:
    steps = 0
    for name, settings in corpus_cases():
        data = (CORPUS / name).read_bytes()
        expected = one_pass(data, dataclasses.replace(deps.settings, **settings))
        whole, _, _ = planned(deps, data, **settings)
        sliced, d, job = planned(deps, data, **settings, **TINY)
        assert whole == expected, name
        assert sliced == expected, name
        state = d.store.get_plan(job.job_id)
        if expected["status"] == "PROCESSING":
            assert state is not None and state.phase is PlanPhase.DONE, name
            steps += state.step
    assert steps > 200  # the tiny settings really planned in many steps


def test_duplicates_across_slices_and_buckets_are_found_as_one_pass_finds_them(deps: StaticDeps) -> None:
    lines = []
    for i in range(60):
        lines.append({"prompt_id": f"id{i % 23}", "prompt": f"q{i}"})  # each id again two lines later or more
        if i % 7 == 0:
            lines.append({"prompt_id": f"late{i}"})  # invalid: claims its id
            lines.append({"prompt_id": f"late{i}", "prompt": "valid, but a duplicate of an invalid line"})
        if i % 11 == 0:
            lines.append({"prompt_id": f"id{i % 23}", "prompt": ""})  # invalid repeat keeps its own error
    data = b"".join(dump_line(x) for x in lines) + b"\n\nnot json\n"
    settings: dict[str, Any] = {"chunk_max_lines": 5, "plan_slice_records": 7, "plan_slice_chunks": 2, "plan_dedupe_records": 3}
    expected = one_pass(data, dataclasses.replace(deps.settings, **settings))
    got, d, job = planned(deps, data, **settings, plan_invocation_seconds=0.0)
    assert got == expected
    state = d.store.get_plan(job.job_id)
    assert state is not None
    assert len(state.slices) > 5 and len(state.bounds) > 10
    assert sum(s.dups for s in state.slices) == expected["errors"].count(b"duplicate prompt_id") > 30
    dup_slices = {i for i, s in enumerate(state.slices) if s.dups}
    assert len(dup_slices) > 3
    # the working objects went with the last step; the published errors stay
    tags = [s.tag for s in state.slices] + [s.errors_tag for s in state.slices] + list(state.dedupe_tags)
    names = [
        paths.plan_object(job.client_id, job.job_id, f"{t}.{k}") for t in tags if t for k in ("ids", "chunks", "errors", "dups")
    ]
    assert not any(d.blobs.exists(d.settings.results_bucket, n) for n in names)
    assert d.blobs.exists(d.settings.results_bucket, paths.plan_errors_object(job.client_id, job.job_id))


def test_a_sliced_plan_runs_to_completion_with_exact_counts(deps: StaticDeps) -> None:
    good = b"".join(dump_line({"prompt_id": f"p{i}", "prompt": f"question {i}"}) for i in range(9))
    data = (
        good + dump_line({"prompt_id": "p3", "prompt": "again"}) + b"nope\n" + dump_line({"prompt_id": "p8", "prompt": "again"})
    )
    d = dataclasses.replace(deps, settings=dataclasses.replace(deps.settings, **TINY), tasks=RecordingTasks())
    client_id, job_id = submit(d, data)
    drain(d)
    job = d.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED, job and job.error
    assert (job.prompt_count, job.completed_count, job.failed_count, job.invalid_count) == (12, 9, 3, 3)
    results, errors = all_rows(d, client_id, job_id)
    assert sorted(r["prompt_id"] for r in results) == [f"p{i}" for i in range(9)]
    assert [(e["line"], e["detail"]) for e in errors] == [
        (10, "duplicate prompt_id (first on line 4)"),
        (11, "not valid JSON: Expecting value (column 1)"),
        (12, "duplicate prompt_id (first on line 9)"),
    ]


def test_every_step_delivered_twice_changes_nothing(deps: StaticDeps) -> None:
    data = (CORPUS / "duplicate_ids.jsonl").read_bytes()
    expected = one_pass(data, deps.settings)
    d, job_id, tasks = tiny_job(deps, data)
    outcomes = []
    while tasks.plans:
        job = tasks.plans.pop(0)
        outcomes.append(plan_job(d, job))
        outcomes.append(plan_job(d, job))  # the same task again: it runs the next step, or finds it done
    assert outcomes[-1] == "ignored: job is planned"
    stored = d.store.get_job(job_id)
    assert stored is not None and stored.status is JobStatus.PROCESSING
    assert stored.prompt_count == expected["prompt_count"] and stored.invalid_bytes == expected["invalid_bytes"]
    chunks = [(c.index, c.start, c.end, c.first_line, c.record_count, c.skip_lines) for c in d.store.list_chunks(job_id)]
    assert chunks == expected["chunks"]
    # a later planning task of the planned job neither lists nor enqueues chunks
    before = list(tasks.chunks)
    assert plan_job(d, job_id) == "ignored: job is planned"
    assert tasks.chunks == before


def test_a_step_that_keeps_failing_fails_the_job_with_a_reason(deps: StaticDeps) -> None:
    class BrokenUploads:
        """Reads of the uploaded file fail, as when the file cannot be read at all."""

        def __init__(self, inner: Any, upload_bucket: str) -> None:
            self._inner, self._bucket, self.reads = inner, upload_bucket, 0

        def open_read(self, bucket: str, name: str, start: int = 0, end: int | None = None) -> Any:
            if bucket == self._bucket:
                self.reads += 1
                raise OSError("injected: the upload cannot be read")
            return self._inner.open_read(bucket, name, start, end)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    _, job_id = submit(deps, b'{"prompt_id": "secret-id", "prompt": "secret text"}\n')
    assert deps.tasks.plans == [job_id]  # type: ignore[attr-defined]
    broken = BrokenUploads(deps.blobs, deps.settings.upload_bucket)
    d = dataclasses.replace(deps, blobs=broken)
    for _ in range(deps.settings.plan_max_attempts):
        with pytest.raises(OSError):
            plan_job(d, job_id)
        job = deps.store.get_job(job_id)
        assert job is not None and job.status is JobStatus.QUEUED
    assert plan_job(d, job_id) == "failed: planning"
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "planning_failed"
    assert "secret" not in job.error.message and str(deps.settings.plan_max_attempts) in job.error.message
    assert broken.reads == deps.settings.plan_max_attempts
    assert job.expire_at is not None  # the job's records expire as every ended job's do
    state = deps.store.get_plan(job_id)
    assert state is not None and state.expire_at > deps.now()
    assert plan_job(d, job_id) == "ignored: job is FAILED"


def test_a_failure_that_passes_does_not_fail_the_job(deps: StaticDeps) -> None:
    data = b"".join(dump_line({"prompt_id": f"p{i}", "prompt": "q"}) for i in range(6))
    d, job_id, tasks = tiny_job(deps, data)

    class LostCommit:
        """The second transaction of a delivery (the step's commit) fails."""

        def __init__(self, inner: Any) -> None:
            self._inner, self.calls = inner, 0

        def run_transaction(self, fn: Any) -> Any:
            self.calls += 1
            if self.calls == 2:
                raise ServiceUnavailable("injected")
            return self._inner.run_transaction(fn)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    failures = 0
    while tasks.plans:
        job = tasks.plans[0]
        # every step's first delivery does its work and fails to commit; the retry does it again
        flaky = dataclasses.replace(d, store=LostCommit(d.store))
        with pytest.raises(ServiceUnavailable):
            plan_job(flaky, job)
        failures += 1
        plan_job(d, tasks.plans.pop(0))
    stored = d.store.get_job(job_id)
    assert stored is not None and stored.status is JobStatus.PROCESSING and stored.prompt_count == 6
    state = d.store.get_plan(job_id)
    assert state is not None and state.phase is PlanPhase.DONE and failures == state.step > 5


def test_a_commit_whose_success_was_hidden_goes_on(deps: StaticDeps) -> None:
    class RetriedCommits:
        """Each transaction after a delivery's first commits, then runs again and reports
        what the rerun returns, as a commit retried after an unknown outcome does."""

        def __init__(self, inner: Any) -> None:
            self._inner, self.calls = inner, 0

        def run_transaction(self, fn: Any) -> Any:
            self.calls += 1
            if self.calls > 1:
                self._inner.run_transaction(fn)
            return self._inner.run_transaction(fn)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    data = (CORPUS / "duplicate_ids.jsonl").read_bytes()
    expected = one_pass(data, deps.settings)
    d, job_id, tasks = tiny_job(deps, data)
    while tasks.plans:
        retried = dataclasses.replace(d, store=RetriedCommits(d.store))
        plan_job(retried, tasks.plans.pop(0))
    chunks = [(c.index, c.start, c.end, c.first_line, c.record_count, c.skip_lines) for c in d.store.list_chunks(job_id)]
    assert chunks == expected["chunks"] and sorted(i for _, i in tasks.chunks) == [c[0] for c in chunks]
    state = d.store.get_plan(job_id)
    assert state is not None and state.phase is PlanPhase.DONE


def test_too_many_prompts_is_found_in_the_slice_that_crosses_the_limit(deps: StaticDeps) -> None:
    data = b"".join(dump_line({"prompt_id": f"p{i}", "prompt": "q"}) for i in range(40))
    got, d, job = planned(deps, data, max_prompts_per_job=5, **TINY)
    assert got == {"status": "FAILED", "code": "too_many_prompts"}
    state = d.store.get_plan(job.job_id)
    assert state is not None and state.offset < len(data) // 2  # it stopped reading there


def test_a_file_cut_into_too_many_slices_fails_the_job(deps: StaticDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "MAX_SLICES", 3)
    data = b"".join(dump_line({"prompt_id": f"p{i}", "prompt": "q"}) for i in range(30))  # chunks of 4: 8 slices
    got, _, job = planned(deps, data, **TINY)
    assert got == {"status": "FAILED", "code": "planning_failed"}
    assert job.error is not None and "PROMPTFORGE_PLAN_SLICE_" in job.error.message


def test_a_job_cancelled_while_planning_is_left_alone(deps: StaticDeps) -> None:
    data = b"".join(dump_line({"prompt_id": f"p{i}", "prompt": "q"}) for i in range(10))
    d, job_id, tasks = tiny_job(deps, data)
    for _ in range(3):
        plan_job(d, tasks.plans.pop(0))
    job = d.store.get_job(job_id)
    assert job is not None
    lifecycle.cancel_job(d, job)
    assert plan_job(d, tasks.plans.pop(0)) == "ignored: job is CANCELLED"
    assert tasks.plans == [] and tasks.chunks == []
