"""The async SDK against the in-process fake: the same behaviour as the sync one, awaited."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from promptforge_client import AsyncClient, AuthenticationError, JobNotCompleted, JobStatus, NotFoundError
from tests.client.fake_service import API, KEY, FakeService

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr("promptforge_client._async.anyio.sleep", sleep)
    return slept


async def test_submit_wait_download_and_iterate(tmp_path: Path, sleeps: list[float]) -> None:
    fake = FakeService()
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"prompt_id": f"p{i}", "prompt": "FAIL" if i == 3 else "x"}) + "\n" for i in range(5)))
    progress: list[tuple[int, int]] = []
    async with AsyncClient(API, KEY, transport=fake.transport) as client:
        job = await client.jobs.submit(source, "fake", "m", on_upload=lambda s, t: progress.append((s, t)))
        assert fake.uploads[job.job_id] == source.read_bytes() and progress[-1] == (source.stat().st_size,) * 2
        with pytest.raises(JobNotCompleted):
            await client.jobs.results(job.job_id)
        seen: list[str] = []
        final = await client.jobs.wait(job.job_id, on_progress=lambda j: seen.append(j.status))
        # submit read the status once after the upload (QUEUED); the fake moves on at each poll
        assert final.status is JobStatus.COMPLETED and seen == ["PROCESSING", "COMPLETED"]
        assert sleeps == [3.0]

        written = await client.jobs.download(job.job_id, tmp_path / "out")
        assert [p.name for p in written][-1] == "errors.jsonl" and not list((tmp_path / "out").glob("*.part"))
        rows = [r.prompt_id async for r in client.jobs.iter_results(job.job_id)]
        errors = [e.prompt_id async for e in client.jobs.iter_errors(job.job_id)]
        assert rows == ["p0", "p1", "p2", "p4"] and errors == ["p3"]
        statuses = [j.status async for j in client.jobs.events(job.job_id)]
        assert statuses == ["COMPLETED"]
    assert all("X-API-Key" not in r.headers for r in fake.storage_requests())


async def test_inline_list_cancel_and_resubmit(tmp_path: Path) -> None:
    fake = FakeService()
    async with AsyncClient(API, KEY, transport=fake.transport) as client:
        rows = [{"prompt_id": "a", "prompt": "x"}, {"prompt_id": "b", "prompt": "FAIL"}]
        job = await client.jobs.submit(rows, "fake", "m")
        other = await client.jobs.init("fake", "m")
        cancelled = await client.jobs.cancel(other.job_id)
        assert cancelled.status is JobStatus.CANCELLED
        assert [j.job_id async for j in client.jobs.list(page_size=1)] == [other.job_id, job.job_id]

        fake.finish(job.job_id)
        inline = await client.jobs.inline_results(job.job_id)
        assert [r.prompt_id for r in inline.results] == ["a"]
        source = tmp_path / "in.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
        done = await client.jobs.resubmit(job.job_id, source, model="m2")
        assert done.lines == 1 and done.job.model == "m2"
        assert fake.uploads[done.job.job_id] == b'{"prompt_id": "b", "prompt": "FAIL"}\n'


async def test_errors_are_the_same_exceptions() -> None:
    fake = FakeService()
    async with AsyncClient(API, "pf_wrong", transport=fake.transport) as client:
        with pytest.raises(AuthenticationError):
            await client.jobs.get("x")
    async with AsyncClient(API, KEY, transport=fake.transport) as client:
        with pytest.raises(NotFoundError):
            await client.jobs.get("x")
        fake.faults = [httpx.ReadTimeout("timed out")]
        with pytest.raises(Exception, match="cannot reach http://api.test: timed out"):
            await client.jobs.get("x")
