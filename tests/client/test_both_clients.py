"""The same cases through ``Client`` and ``AsyncClient``, each over the in-process transport
and over real sockets (tests/client/http_bridge.py): both clients perform the core's flows,
so every case must come out the same four times. Among them, states a newer service may
send that this SDK does not know."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest

from promptforge_client import (
    AsyncClient,
    AuthenticationError,
    Client,
    InvalidRequest,
    Job,
    JobNotCompleted,
    JobStatus,
    JobTerminal,
    NotFoundError,
)
from tests.client.fake_service import API, KEY, FakeService, envelope
from tests.client.http_bridge import serve


class Jobs:
    """``client.jobs`` of either client behind one blocking face: ``do`` for a call, ``items``
    for an iterating one (collected)."""

    def __init__(self, call: Callable[..., Any], items: Callable[..., list[Any]]) -> None:
        self.do, self.items = call, items


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays either client asked for, without waiting them."""
    slept: list[float] = []

    async def asleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr("promptforge_client._sync.time.sleep", slept.append)
    monkeypatch.setattr("promptforge_client._async.anyio.sleep", asleep)
    return slept


@pytest.fixture(params=["sync-mock", "async-mock", "sync-http", "async-http"])
def setup(request: pytest.FixtureRequest, sleeps: list[float]) -> Iterator[tuple[Jobs, FakeService]]:
    kind, wire = request.param.split("-")
    if wire == "http":
        with serve() as (url, fake), _Opened(kind, url, fake, real=True) as jobs:
            yield jobs, fake
    else:
        fake = FakeService()
        with _Opened(kind, API, fake, real=False) as jobs:
            yield jobs, fake


class _Opened:
    """One client of the given kind, opened on ``url``, as :class:`Jobs`."""

    def __init__(self, kind: str, url: str, fake: FakeService, real: bool) -> None:
        self.kind, self.url, self.fake, self.real = kind, url, fake, real

    def __enter__(self) -> Jobs:
        transport = None if self.real else self.fake.transport
        if self.kind == "sync":
            self.client = Client(self.url, KEY, transport=transport)
            jobs = self.client.jobs
            return Jobs(
                lambda name, *a, **k: getattr(jobs, name)(*a, **k), lambda name, *a, **k: list(getattr(jobs, name)(*a, **k))
            )
        self.portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
        portal = self.portal = self.portal_cm.__enter__()
        self.aclient = AsyncClient(self.url, KEY, transport=transport)
        ajobs = self.aclient.jobs

        async def collect(items: AsyncIterator[Any]) -> list[Any]:
            return [item async for item in items]

        def call(name: str, *args: Any, **kwargs: Any) -> Any:
            async def run() -> Any:
                return await getattr(ajobs, name)(*args, **kwargs)

            return portal.call(run)

        return Jobs(call, lambda name, *a, **k: portal.call(collect, getattr(ajobs, name)(*a, **k)))

    def __exit__(self, *exc: object) -> None:
        if self.kind == "sync":
            self.client.close()
            return
        self.portal.call(self.aclient.aclose)
        self.portal_cm.__exit__(None, None, None)


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_submit_a_file_wait_download_and_iterate(setup: tuple[Jobs, FakeService], sleeps: list[float], tmp_path: Path) -> None:
    jobs, fake = setup
    rows = [{"prompt_id": f"p{i}", "prompt": "FAIL" if i == 3 else f"x{i}"} for i in range(5)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    progress: list[tuple[int, int]] = []
    job = jobs.do("submit", source, "fake", "m", on_upload=lambda s, t: progress.append((s, t)))
    assert job.status is JobStatus.QUEUED and fake.uploads[job.job_id] == source.read_bytes()
    assert progress[0] == (0, source.stat().st_size) and progress[-1] == (source.stat().st_size,) * 2
    assert all("X-API-Key" not in r.headers for r in fake.storage_requests())

    with pytest.raises(JobNotCompleted) as early:
        jobs.do("results", job.job_id)
    # submit read the status once after the upload; the fake moves on at each read
    assert (early.value.current_status, early.value.retry_after) == ("PROCESSING", 5.0)

    seen: list[Job] = []
    final = jobs.do("wait", job.job_id, on_progress=seen.append)
    assert final.status is JobStatus.COMPLETED and [j.status for j in seen] == ["PROCESSING", "COMPLETED"]
    assert sleeps == [3.0]

    written = jobs.do("download", job.job_id, tmp_path / "out")
    assert [p.name for p in written] == ["results_part_001.jsonl", "results_part_002.jsonl", "errors.jsonl"]
    assert not list((tmp_path / "out").glob("*.part"))
    assert [r.prompt_id for r in jobs.items("iter_results", job.job_id)] == ["p0", "p1", "p2", "p4"]
    assert [(e.prompt_id, e.error) for e in jobs.items("iter_errors", job.job_id)] == [("p3", "rate_limit_exceeded")]
    assert [j.status for j in jobs.items("events", job.job_id)] == ["COMPLETED"]


def test_inline_list_cancel_and_resubmit(setup: tuple[Jobs, FakeService], tmp_path: Path) -> None:
    jobs, fake = setup
    rows = [{"prompt_id": "a", "prompt": "x"}, {"prompt_id": "b", "prompt": "FAIL"}]
    job = jobs.do("submit", rows, "fake", "m", metadata={"run": 1})
    other = jobs.do("init", "fake", "m")
    assert jobs.do("cancel", other.job_id).status is JobStatus.CANCELLED
    assert [j.job_id for j in jobs.items("list", page_size=1)] == [other.job_id, job.job_id]
    assert [j.job_id for j in jobs.items("list", 1)] == [other.job_id]

    fake.finish(job.job_id)
    assert [r.prompt_id for r in jobs.do("inline_results", job.job_id).results] == ["a"]
    done = jobs.do("resubmit", job.job_id, write_jsonl(tmp_path / "in.jsonl", rows), model="m2")
    assert (done.lines, done.failed_rows, done.job.model) == (1, 1, "m2")
    assert done.job.metadata == {"run": 1, "resubmit_of": job.job_id}
    assert fake.uploads[done.job.job_id] == b'{"prompt_id": "b", "prompt": "FAIL"}\n'


def test_errors_are_the_same_exceptions(setup: tuple[Jobs, FakeService]) -> None:
    jobs, fake = setup
    with pytest.raises(NotFoundError):
        jobs.do("get", "00000000-0000-0000-0000-000000000000")
    with pytest.raises(InvalidRequest) as invalid:
        jobs.do("submit", [{"prompt_id": "a", "prompt": "x"}], "nope", "m")
    assert invalid.value.field == "provider"
    job = jobs.do("submit", [{"prompt_id": "a", "prompt": "x"}], "fake", "m")
    fake.finish(job.job_id)
    with pytest.raises(JobTerminal):
        jobs.do("cancel", job.job_id)
    fake.faults = [envelope(401, "unauthenticated", "Missing or invalid X-API-Key")]
    with pytest.raises(AuthenticationError):
        jobs.do("get", job.job_id)


def test_a_state_this_sdk_does_not_know_is_polled_through(setup: tuple[Jobs, FakeService], sleeps: list[float]) -> None:
    jobs, fake = setup
    # A newer service checks every job before it queues it: a state added after this SDK.
    fake.lifecycle = {"QUEUED": "VALIDATING", "VALIDATING": "PROCESSING", "PROCESSING": "COMPLETED"}
    job = jobs.do("submit", [{"prompt_id": "a", "prompt": "x"}], "fake", "m")
    seen: list[Job] = []
    final = jobs.do("wait", job.job_id, on_progress=seen.append)
    assert [j.status for j in seen] == ["QUEUED", "VALIDATING", "PROCESSING", "COMPLETED"]
    unknown = seen[1]
    assert not unknown.status.known and not unknown.status.terminal and not unknown.is_terminal
    assert unknown.status == "VALIDATING" and unknown.status.value == "VALIDATING"
    # Polled at the service's Retry-After through the unknown state as through the others.
    assert final.status is JobStatus.COMPLETED and sleeps == [3.0, 3.0, 3.0]


def test_a_terminal_state_this_sdk_does_not_know_ends_wait_and_events(setup: tuple[Jobs, FakeService]) -> None:
    jobs, fake = setup
    # A newer service could end a job in a new way: its completed_at says it has ended.
    fake.lifecycle = {"QUEUED": "PROCESSING", "PROCESSING": "EXPIRED"}
    fake.terminal = ("COMPLETED", "FAILED", "CANCELLED", "EXPIRED")
    job = jobs.do("submit", [{"prompt_id": "a", "prompt": "x"}], "fake", "m")
    streamed = jobs.items("events", job.job_id)
    assert [j.status for j in streamed] == ["QUEUED", "PROCESSING", "EXPIRED"]
    last = streamed[-1]
    assert last.is_terminal and last.completed_at is not None and not last.status.known

    other = jobs.do("submit", [{"prompt_id": "b", "prompt": "x"}], "fake", "m")
    final = jobs.do("wait", other.job_id)
    assert final.status == "EXPIRED" and final.is_terminal and repr(final.status) == "JobStatus('EXPIRED')"
    assert {j.status for j in jobs.items("list")} == {"EXPIRED"}
