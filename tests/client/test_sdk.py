"""The synchronous SDK against the in-process fake service: what a caller sees."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptforge_client import (
    APIError,
    AuthenticationError,
    Client,
    ConflictError,
    InvalidRequest,
    Job,
    JobNotCompleted,
    JobStatus,
    JobTerminal,
    NetworkError,
    NotFoundError,
    NothingToResubmit,
    PayloadTooLarge,
    PromptForgeError,
    StorageError,
    WaitTimeout,
)
from tests.client.fake_service import API, KEY, FakeService, envelope


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


@pytest.fixture
def client(fake: FakeService) -> Iterator[Client]:
    with Client(API, KEY, transport=fake.transport) as c:
        yield c


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays jobs.wait asked for, without waiting them."""
    slept: list[float] = []
    monkeypatch.setattr("promptforge_client._sync.time.sleep", slept.append)
    return slept


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def prompts(n: int, prefix: str = "p") -> list[dict[str, str]]:
    return [{"prompt_id": f"{prefix}{i}", "prompt": f"hello {i}"} for i in range(n)]


def test_submit_a_file_inits_then_streams_it_to_the_signed_url_without_the_key(
    client: Client, fake: FakeService, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", prompts(5))
    progress: list[tuple[int, int]] = []
    job = client.jobs.submit(
        source, "fake", "fake-small", params={"temperature": 0.2}, on_upload=lambda s, t: progress.append((s, t))
    )

    assert isinstance(job, Job) and job.status is JobStatus.QUEUED and job.provider == "fake"
    assert fake.jobs[job.job_id].request == {"provider": "fake", "model": "fake-small", "params": {"temperature": 0.2}}
    assert fake.uploads[job.job_id] == source.read_bytes()
    (put,) = fake.storage_requests()
    assert put.method == "PUT" and put.headers["Content-Type"] == "application/x-ndjson"
    # Every upload header the service returned is sent: each one is signed into the URL.
    assert put.headers["x-goog-content-length-range"] == f"0,{fake.max_upload_bytes}"
    assert put.headers["Content-Length"] == str(source.stat().st_size) and "Transfer-Encoding" not in put.headers
    assert "X-API-Key" not in put.headers
    size = source.stat().st_size
    assert progress[0] == (0, size) and progress[-1] == (size, size)


def test_submit_rows_goes_inline_and_inline_false_uploads_them(client: Client, fake: FakeService) -> None:
    rows = prompts(3)
    job = client.jobs.submit(rows, "fake", "fake-small", system_prompt="Be brief.")
    assert fake.jobs[job.job_id].request["prompts"] == rows
    assert fake.jobs[job.job_id].request["system_prompt"] == "Be brief."
    assert not fake.storage_requests()

    uploaded = client.jobs.submit(rows, "fake", "fake-small", inline=False)
    assert [json.loads(line) for line in fake.uploads[uploaded.job_id].splitlines()] == rows


def test_a_file_over_the_upload_limit_is_refused_before_uploading_and_its_job_cancelled(
    fake: FakeService, tmp_path: Path
) -> None:
    fake.max_upload_bytes = 10
    with Client(API, KEY, transport=fake.transport) as client, pytest.raises(PayloadTooLarge) as err:
        client.jobs.submit(write_jsonl(tmp_path / "in.jsonl", prompts(3)), "fake", "m")
    assert "limit of 10 bytes" in str(err.value)
    assert not fake.storage_requests()
    assert [j.status for j in fake.jobs.values()] == ["CANCELLED"]


def test_wait_polls_as_often_as_retry_after_says_and_reports_every_status(
    client: Client, fake: FakeService, sleeps: list[float]
) -> None:
    job = client.jobs.submit(prompts(4), "fake", "m")
    seen: list[Job] = []
    final = client.jobs.wait(job.job_id, on_progress=seen.append)
    assert final.status is JobStatus.COMPLETED and final.completed_count == 4
    assert [s.status for s in seen] == ["QUEUED", "PROCESSING", "COMPLETED"]
    assert seen[1].processed_count == 2  # progress in between
    assert sleeps == [3.0, 3.0]  # the fake's Retry-After, once per non-terminal status


def test_wait_uses_the_poll_interval_when_the_service_suggests_none(fake: FakeService, sleeps: list[float]) -> None:
    fake.retry_after = None
    with Client(API, KEY, transport=fake.transport) as client:
        job = client.jobs.submit(prompts(2), "fake", "m")
        client.jobs.wait(job.job_id, poll_interval=0.5)
    assert sleeps == [0.5, 0.5]


def test_wait_rides_out_brief_outages_but_not_a_bad_key(client: Client, fake: FakeService, sleeps: list[float]) -> None:
    job = client.jobs.submit(prompts(2), "fake", "m")
    fake.faults = [httpx.ConnectError("refused"), envelope(502, "internal", "The service is not available.")]
    assert client.jobs.wait(job.job_id).status is JobStatus.COMPLETED
    assert sleeps[:2] == [1.0, 2.0]  # backoff after each failure, then Retry-After again

    fake.faults = [envelope(401, "unauthenticated", "Missing or invalid X-API-Key")]
    with pytest.raises(AuthenticationError):
        client.jobs.wait(job.job_id)


def test_wait_gives_up_after_its_timeout(fake: FakeService) -> None:
    fake.retry_after = 0
    with Client(API, KEY, transport=fake.transport) as client:
        job = client.jobs.init("fake", "m")  # never uploaded: never ends
        with pytest.raises(WaitTimeout) as err:
            client.jobs.wait(job.job_id, timeout=0.3)
    assert err.value.job_id == job.job_id and "0.3s" in str(err.value)


def test_results_too_early_is_a_job_not_completed_conflict_with_its_status_and_retry_after(client: Client) -> None:
    job = client.jobs.submit(prompts(2), "fake", "m")
    with pytest.raises(JobNotCompleted) as err:
        client.jobs.results(job.job_id)
    exc = err.value
    assert isinstance(exc, ConflictError) and isinstance(exc, APIError) and isinstance(exc, PromptForgeError)
    assert (exc.status, exc.code, exc.current_status, exc.retry_after) == (409, "job_not_completed", "QUEUED", 5.0)
    assert str(exc) == "job_not_completed: Job is not yet completed"


def test_each_error_envelope_becomes_its_exception(client: Client, fake: FakeService) -> None:
    with pytest.raises(InvalidRequest) as invalid:
        client.jobs.submit(prompts(1), "fake", "m", params={"max_token": 5})
    assert invalid.value.field == "params" and invalid.value.status == 400

    with pytest.raises(NotFoundError) as missing:
        client.jobs.get("00000000-0000-0000-0000-000000000000")
    assert missing.value.code == "not_found"

    job = client.jobs.submit(prompts(1), "fake", "m")
    fake.finish(job.job_id)
    with pytest.raises(JobTerminal) as terminal:
        client.jobs.cancel(job.job_id)
    assert terminal.value.current_status == "COMPLETED"

    with pytest.raises(PayloadTooLarge):
        client.jobs.submit(prompts(1001), "fake", "m")

    fake.faults = [httpx.Response(502, text="<html>Bad Gateway</html>")]
    with pytest.raises(APIError) as proxy:
        client.jobs.get(job.job_id)
    assert (proxy.value.code, proxy.value.message) == ("http_502", "HTTP 502 Bad Gateway")


def test_a_bad_key_never_shows_up_in_messages_or_reprs(fake: FakeService) -> None:
    secret = "pf_this_key_is_wrong_and_secret"
    with Client(API, secret, transport=fake.transport) as client:
        assert secret not in repr(client) and secret not in repr(client.jobs)
        with pytest.raises(AuthenticationError) as err:
            client.jobs.list().__next__()
    assert err.value.status == 401
    for text in (str(err.value), repr(err.value), str(err.value.details)):
        assert secret not in text


def test_signed_urls_stay_out_of_reprs_and_network_errors(client: Client, fake: FakeService) -> None:
    upload = client.jobs.init("fake", "m")
    assert "secret-signature" not in repr(upload) and "<signed>" in repr(upload)
    fake.storage_faults = [httpx.ConnectError("connection refused")]
    with pytest.raises(NetworkError) as err:
        client.jobs.upload(upload, b'{"prompt_id": "a", "prompt": "b"}\n')
    assert str(err.value) == "cannot reach http://storage.test: connection refused"


def test_download_streams_every_file_to_disk(client: Client, fake: FakeService, tmp_path: Path) -> None:
    job = client.jobs.submit(prompts(5) + [{"prompt_id": "x", "prompt": "FAIL"}], "fake", "m")
    fake.finish(job.job_id)
    written = client.jobs.download(job.job_id, tmp_path / "out")
    names = [p.name for p in written]
    assert names == ["results_part_001.jsonl", "results_part_002.jsonl", "results_part_003.jsonl", "errors.jsonl"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names)  # no .part files left
    got = [json.loads(line)["prompt_id"] for p in written for line in p.read_text().splitlines()]
    assert sorted(got) == sorted(["p0", "p1", "p2", "p3", "p4", "x"])
    assert all("X-API-Key" not in r.headers for r in fake.storage_requests())


def test_a_failed_download_leaves_no_file_behind(client: Client, fake: FakeService, tmp_path: Path) -> None:
    job = client.jobs.submit(prompts(1), "fake", "m")
    fake.finish(job.job_id)
    fake.storage_faults = [httpx.Response(403, content=b"<Error>expired</Error>")]
    with pytest.raises(StorageError) as err:
        client.jobs.download(job.job_id, tmp_path)
    assert err.value.code == "download_failed" and "HTTP 403" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_result_file_name_that_is_not_a_plain_name_is_refused(client: Client, fake: FakeService, tmp_path: Path) -> None:
    job = client.jobs.submit(prompts(1), "fake", "m")
    fake.finish(job.job_id)
    fake.file_names = lambda name: "../" + name
    with pytest.raises(APIError, match="not a plain file name"):
        client.jobs.download(job.job_id, tmp_path / "out")
    assert not (tmp_path / "results_part_001.jsonl").exists()


def test_iter_results_and_iter_errors_stream_rows_across_parts(client: Client, fake: FakeService) -> None:
    rows = prompts(5) + ["not json", {"prompt_id": "f", "prompt": "FAIL"}]
    job = client.jobs.submit([r for r in rows if isinstance(r, dict)], "fake", "m", inline=False)
    fake.finish(job.job_id)
    results = list(client.jobs.iter_results(job.job_id))
    assert [r.prompt_id for r in results] == ["p0", "p1", "p2", "p3", "p4"]
    assert results[0].result == "HELLO 0" and results[0].tokens_used == 3
    errors = list(client.jobs.iter_errors(job.job_id))
    assert [(e.prompt_id, e.error, e.attempts) for e in errors] == [("f", "rate_limit_exceeded", 3)]
    downloads = [r.url.path for r in fake.storage_requests() if r.method == "GET"]
    assert len(downloads) == 4  # three parts, then errors.jsonl


def test_inline_results_return_the_rows(client: Client, fake: FakeService) -> None:
    job = client.jobs.submit(prompts(2), "fake", "m")
    fake.finish(job.job_id)
    inline = client.jobs.inline_results(job.job_id)
    assert [r.prompt_id for r in inline.results] == ["p0", "p1"] and inline.errors == []


def test_list_iterates_pages_newest_first_up_to_the_limit(client: Client, fake: FakeService) -> None:
    made = [client.jobs.init("fake", "m").job_id for _ in range(7)]
    assert [j.job_id for j in client.jobs.list(page_size=3)] == made[::-1]
    assert [j.job_id for j in client.jobs.list(5, page_size=3)] == made[::-1][:5]
    limits = [r.url.params["limit"] for r in fake.requests if r.url.path == "/v1/jobs"]
    assert limits[-2:] == ["3", "2"]  # never asks for more than it returns
    page = client.jobs.page(2)
    assert len(page.jobs) == 2 and page.next_page_token == "2"


def test_events_yield_each_change_and_end_at_the_terminal_status(client: Client) -> None:
    job = client.jobs.submit(prompts(2), "fake", "m")
    statuses = [j.status for j in client.jobs.events(job.job_id)]
    assert statuses == ["QUEUED", "PROCESSING", "COMPLETED"]


def test_resubmit_sends_exactly_the_failed_lines(client: Client, fake: FakeService, tmp_path: Path) -> None:
    original = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"prompt_id": "a", "prompt": "fine"},
            {"prompt_id": "b", "prompt": "FAIL at first"},
            "not json at all",
            {"prompt_id": "c"},  # invalid: no prompt
            {"prompt_id": "a", "prompt": "a duplicate"},
        ],
    )
    first = client.jobs.submit(original, "fake", "fake-small", metadata={"run": 1})
    fake.finish(first.job_id)

    done = client.jobs.resubmit(first.job_id, original)
    sent = [json.loads(line) for line in fake.uploads[done.job.job_id].splitlines()]
    # b failed at the provider; c's line and a's duplicate line were invalid; a's first line succeeded.
    assert sent == [
        {"prompt_id": "b", "prompt": "FAIL at first"},
        {"prompt_id": "c"},
        {"prompt_id": "a", "prompt": "a duplicate"},
    ]
    assert (done.lines, done.failed_rows, done.without_prompt_id) == (3, 4, 1)
    assert done.job.model == "fake-small" and done.job.metadata == {"run": 1, "resubmit_of": first.job_id}


def test_resubmit_with_nothing_failed_says_so(client: Client, fake: FakeService, tmp_path: Path) -> None:
    original = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    job = client.jobs.submit(original, "fake", "m")
    fake.finish(job.job_id)
    with pytest.raises(NothingToResubmit) as err:
        client.jobs.resubmit(job.job_id, original)
    assert err.value.failed_rows == 0

    failing = client.jobs.submit([{"prompt_id": "z", "prompt": "FAIL"}], "fake", "m")
    fake.finish(failing.job_id)
    with pytest.raises(NothingToResubmit, match="none of the 1 failed rows"):
        client.jobs.resubmit(failing.job_id, original)  # the wrong file


def test_the_service_url_is_normalized_and_checked(fake: FakeService) -> None:
    assert Client("http://api.test/v1/", KEY, transport=fake.transport).url == API
    with pytest.raises(ValueError, match="http"):
        Client("api.test", KEY)
    with pytest.raises(ValueError, match="API key"):
        Client(API, "")
