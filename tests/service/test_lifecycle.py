"""The job lifecycle through the use cases, on in-memory adapters and on the emulators."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promptforge.domain import paths
from promptforge.domain.job import JobStatus
from promptforge.domain.outcomes import ErrorCode
from promptforge.service import keys, lifecycle
from promptforge.service.chunks import ChunkBusy, process_chunk
from promptforge.service.deps import StaticDeps
from promptforge.service.plan import plan_job
from promptforge.service.provider_port import ProviderError
from tests.fakes import RecordingTasks, llm

SPEC = {"provider": "fake", "model": "fake-model", "params": {"max_tokens": 64}}


def prompts_file(n: int, extra: bytes = b"") -> bytes:
    return b"".join(json.dumps({"prompt_id": f"p{i:04d}", "prompt": f"question {i}"}).encode() + b"\n" for i in range(n)) + extra


def submit(deps: StaticDeps, data: bytes, client_id: str | None = None, when: datetime | None = None) -> tuple[str, str]:
    """Create a job, upload its file, deliver the finalize event. Returns (client, job)."""
    _, key = keys.create_key(deps, client_id)
    new = lifecycle.create_job(deps, key.client_id, dict(SPEC))
    name = paths.upload_object(key.client_id, new.job.job_id)
    deps.blobs.write(deps.settings.upload_bucket, name, data)
    lifecycle.accept_upload(deps, deps.settings.upload_bucket, name, len(data), when or deps.now())
    return key.client_id, new.job.job_id


def drain(deps: StaticDeps) -> None:
    """Deliver every enqueued task, in order, until none is left."""
    tasks = deps.tasks
    assert isinstance(tasks, RecordingTasks)
    for _ in range(10_000):
        if tasks.plans:
            plan_job(deps, tasks.plans.pop(0))
        elif tasks.chunks:
            process_chunk(deps, *tasks.chunks.pop(0))
        else:
            return
    raise AssertionError("tasks never drained")


def rows(deps: StaticDeps, client_id: str, job_id: str, filename: str) -> list[dict[str, Any]]:
    name = paths.result_object(client_id, job_id, filename)
    with deps.blobs.open_read(deps.settings.results_bucket, name) as f:
        return [json.loads(line) for line in f.read().splitlines()]


def all_rows(deps: StaticDeps, client_id: str, job_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    job = deps.store.get_job(job_id)
    assert job is not None
    results = [r for f in job.result_files if f != paths.ERRORS_FILENAME for r in rows(deps, client_id, job_id, f)]
    return results, rows(deps, client_id, job_id, paths.ERRORS_FILENAME)


def test_a_job_runs_to_completion_with_every_line_accounted_for(deps: StaticDeps) -> None:
    bad = b'not json\n{"prompt_id": "p0001", "prompt": "dup"}\n\n{"prompt_id": "x"}\r\n'
    client_id, job_id = submit(deps, prompts_file(10, bad))
    assert deps.store.get_job(job_id).status is JobStatus.QUEUED  # type: ignore[union-attr]
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert (job.prompt_count, job.completed_count, job.failed_count) == (13, 10, 3)
    assert job.started_processing_at and job.completed_at and job.tokens_used > 0
    assert job.expire_at == job.completed_at + timedelta(days=deps.settings.results_retention_days)
    # chunks of 4 records: 10 good + 3 bad lines = 13 records -> 4 chunks, the last all bad
    assert job.result_files == ("results_part_001.jsonl", "results_part_002.jsonl", "results_part_003.jsonl", "errors.jsonl")
    results, errors = all_rows(deps, client_id, job_id)
    assert sorted(r["prompt_id"] for r in results) == [f"p{i:04d}" for i in range(10)]
    assert all(r["result"] and r["model"] and r["tokens_used"] > 0 for r in results)
    assert sorted((e["line"], e["error"]) for e in errors) == [(11, "invalid_line"), (12, "invalid_line"), (14, "invalid_line")]
    assert job.error_counts == {"invalid_line": 3}
    dup = next(e for e in errors if e["line"] == 12)
    assert dup["prompt_id"] == "p0001" and "first on line 2" in dup["detail"]


def test_a_job_runs_through_the_real_provider_adapter_over_http(http_deps: StaticDeps, fake_llm: str) -> None:
    # The production provider factory, its wire client and the fake LLM server: the
    # path the in-memory provider stands in for everywhere else in these tests.
    from tests.conftest import llm_stats

    calls = llm_stats(fake_llm)["requests_total"]
    client_id, job_id = submit(http_deps, prompts_file(5))
    drain(http_deps)
    job = http_deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.completed_count == 5
    results, _ = all_rows(http_deps, client_id, job_id)
    assert sorted(r["prompt_id"] for r in results) == [f"p{i:04d}" for i in range(5)]
    assert all(r["result"] and r["input_tokens"] > 0 for r in results)
    assert llm_stats(fake_llm)["requests_total"] - calls == 5


def test_provider_errors_429s_and_usage_reach_the_rows(deps: StaticDeps) -> None:
    refused: dict[str, int] = {}

    def script(request: Any) -> ProviderError | None:
        prompt = request.messages[-1]["content"]
        refused[prompt] = refused.get(prompt, 0) + 1
        if prompt.endswith("1"):
            return ProviderError(ErrorCode.CONTENT_FILTERED, "stopped", retryable=False)
        if prompt.endswith("2") and refused[prompt] <= 2:
            return ProviderError(ErrorCode.RATE_LIMIT_EXCEEDED, "slow down", retryable=True, retry_after=0.01)
        return None

    llm(deps).script = script
    client_id, job_id = submit(deps, prompts_file(3))
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert (job.completed_count, job.failed_count) == (2, 1) and job.error_counts == {"content_filtered": 1}
    results, errors = all_rows(deps, client_id, job_id)
    by_id = {r["prompt_id"]: r for r in results}
    assert by_id["p0002"]["attempts"] == 3  # two 429s, then the answer; a 429 is no failed attempt
    assert by_id["p0000"]["output_tokens"] == len(by_id["p0000"]["result"]) // 4 + 1
    assert [(e["prompt_id"], e["error"], e["attempts"]) for e in errors] == [("p0001", "content_filtered", 1)]
    assert llm(deps).requests_total == 5


def test_a_second_job_waits_pending_and_starts_when_the_first_completes(deps: StaticDeps) -> None:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    client_id, first = submit(deps, prompts_file(3), when=t0)
    _, third = submit(deps, prompts_file(2), client_id, when=t0 + timedelta(seconds=2))
    _, second = submit(deps, prompts_file(2), client_id, when=t0 + timedelta(seconds=1))
    status = {j: deps.store.get_job(j).status for j in (first, second, third)}  # type: ignore[union-attr]
    assert status == {first: JobStatus.QUEUED, second: JobStatus.PENDING, third: JobStatus.PENDING}
    assert set(deps.tasks.plans) == {first}  # type: ignore[attr-defined]
    drain(deps)
    jobs = [deps.store.get_job(j) for j in (first, second, third)]
    assert all(j is not None and j.status is JobStatus.COMPLETED for j in jobs)
    # upload-finalize order, not event order: second (t0+1s) before third (t0+2s)
    starts = [j.started_processing_at for j in jobs]  # type: ignore[union-attr]
    assert starts[0] < starts[1] < starts[2]  # type: ignore[operator]


def test_repeated_events_and_deliveries_change_nothing_and_call_no_model(deps: StaticDeps) -> None:
    client_id, job_id = submit(deps, prompts_file(6))
    job = deps.store.get_job(job_id)
    name = paths.upload_object(client_id, job_id)
    assert lifecycle.accept_upload(deps, deps.settings.upload_bucket, name, 10, deps.now()).startswith("ignored")
    assert deps.tasks.plans == [job_id]  # type: ignore[attr-defined]
    drain(deps)
    before_calls = llm(deps).requests_total
    before = all_rows(deps, client_id, job_id)
    # every task delivered again, after the job completed
    plan_job(deps, job_id)
    for index in range(2):
        process_chunk(deps, job_id, index)
    assert llm(deps).requests_total == before_calls
    assert all_rows(deps, client_id, job_id) == before
    assert job is not None and deps.store.get_job(job_id).status is JobStatus.COMPLETED  # type: ignore[union-attr]


def test_an_object_already_under_the_part_name_is_not_trusted(deps: StaticDeps) -> None:
    # A short part left under the final name (the old step-by-step assembly did this when
    # it died halfway) must not be counted as the chunk's output.
    client_id, job_id = submit(deps, prompts_file(4))
    plan_job(deps, deps.tasks.plans.pop(0))  # type: ignore[attr-defined]
    deps.tasks.chunks.clear()  # type: ignore[attr-defined]
    part = paths.result_object(client_id, job_id, paths.part_filename(0))
    row = {"prompt_id": "p0000", "result": "kept", "model": "m", "tokens_used": 3, "input_tokens": 1, "output_tokens": 2}
    deps.blobs.write(deps.settings.results_bucket, paths.chunk_errors_object(client_id, job_id, 0), b"")
    deps.blobs.write(deps.settings.results_bucket, part, (json.dumps(row) + "\n").encode())
    staged = paths.chunk_results_object(client_id, job_id, 0)
    deps.blobs.write(deps.settings.results_bucket, staged, (json.dumps(row) + "\n").encode())
    calls = llm(deps).requests_total
    assert process_chunk(deps, job_id, 0) == "done"
    assert llm(deps).requests_total - calls == 4  # nothing was checkpointed
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.completed_count == 4
    res, errs = all_rows(deps, client_id, job_id)
    assert sorted(r["prompt_id"] for r in res) == [f"p{i:04d}" for i in range(4)] and errs == []


def test_a_concurrent_delivery_is_turned_away_while_the_lease_holds(deps: StaticDeps) -> None:
    _, job_id = submit(deps, prompts_file(2))
    plan_job(deps, deps.tasks.plans.pop(0))  # type: ignore[attr-defined]
    chunk = deps.store.list_chunks(job_id)[0]
    deps.store.run_transaction(
        lambda tx: tx.put_chunk(chunk.replace(status=chunk.status.RUNNING, lease_until=deps.now() + timedelta(seconds=30)))
    )
    with pytest.raises(ChunkBusy) as busy:
        process_chunk(deps, job_id, 0)
    assert 1 <= busy.value.retry_after <= 30


@pytest.mark.parametrize(
    "data,code",
    [
        (b"\n\n  \n", "empty_file"),
        (b"hello world\nthis is not jsonl\n", "not_jsonl"),
    ],
)
def test_unusable_files_fail_the_job_with_a_reason_and_free_the_slot(deps: StaticDeps, data: bytes, code: str) -> None:
    client_id, job_id = submit(deps, data)
    _, waiting = submit(deps, prompts_file(1), client_id)
    assert deps.store.get_job(waiting).status is JobStatus.PENDING  # type: ignore[union-attr]
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.error is not None and job.error.code == code
    assert deps.store.get_job(waiting).status is JobStatus.COMPLETED  # type: ignore[union-attr]


def test_an_oversize_or_empty_upload_fails_at_once(deps: StaticDeps) -> None:
    _, key = keys.create_key(deps)
    new = lifecycle.create_job(deps, key.client_id, dict(SPEC))
    name = paths.upload_object(key.client_id, new.job.job_id)
    too_big = deps.settings.max_upload_bytes + 1
    lifecycle.accept_upload(deps, deps.settings.upload_bucket, name, too_big, deps.now())
    job = deps.store.get_job(new.job.job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.error.code == "file_too_large"  # type: ignore[union-attr]


def test_keys_authenticate_one_client_and_revoke() -> None:
    from tests.conftest import make_settings
    from tests.fakes import MemoryBlobs, MemoryStore

    deps = StaticDeps(make_settings(), MemoryStore(), MemoryBlobs(), RecordingTasks())
    key, record = keys.create_key(deps, "acme")
    assert keys.authenticate(deps, key) == "acme"
    assert keys.authenticate(deps, key + "x") is None and keys.authenticate(deps, None) is None
    assert key not in json.dumps([k.__dict__ for k in deps.store.list_api_keys()], default=str)
    revoked = keys.revoke_key(deps, record.prefix)
    assert [k.key_hash for k in revoked] == [record.key_hash]
    assert keys.authenticate(deps, key) is None


def test_a_chunk_that_fails_midway_is_handed_back_for_the_retry(deps: StaticDeps) -> None:
    _, job_id = submit(deps, prompts_file(3))
    plan_job(deps, deps.tasks.plans.pop(0))  # type: ignore[attr-defined]
    original = deps.blobs

    class Broken:
        def __getattr__(self, name: str) -> Any:
            return getattr(original, name)

        def open_read(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("storage went away")

    deps.blobs = Broken()
    with pytest.raises(ConnectionError):
        process_chunk(deps, job_id, 0)
    deps.blobs = original
    chunk = deps.store.list_chunks(job_id)[0]
    assert chunk.status.value == "PENDING" and chunk.lease_until is None
    assert process_chunk(deps, job_id, 0) == "done"  # the retry runs at once, no lease to wait out
    assert deps.store.get_job(job_id).status is JobStatus.COMPLETED  # type: ignore[union-attr]


def test_a_provider_switched_off_after_submission_fails_the_job_with_a_reason(deps: StaticDeps) -> None:
    import dataclasses

    _, job_id = submit(deps, prompts_file(2))
    plan_job(deps, deps.tasks.plans.pop(0))  # type: ignore[attr-defined]
    deps.settings = dataclasses.replace(deps.settings, providers=("openai_compatible",))
    assert process_chunk(deps, job_id, 0) == "failed: provider unavailable"
    job = deps.store.get_job(job_id)
    assert job is not None and job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "provider_unavailable"
