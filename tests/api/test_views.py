"""The status object and the list page, in process: one read model renders both, live
counts come from the chunks (planning's invalid lines added), and a page reads live
totals only for the jobs whose counts are live."""

from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient

from promptforge.domain.job import JobStatus
from promptforge.domain.records import Chunk, ChunkStatus, Totals
from promptforge.service import lifecycle, progress
from promptforge.service.deps import StaticDeps
from tests.api.conftest import Caller
from tests.api.test_errors import new_job, stored_job


def chunk(job_id: str, index: int, **counts: Any) -> Chunk:
    return Chunk(job_id, index, 0, 0, 0, 10, status=ChunkStatus.RUNNING, **counts)


def live_job(deps: StaticDeps, who: Caller, status: JobStatus) -> str:
    job = stored_job(deps, who, status, prompt_count=21, chunk_count=2, invalid_count=1)
    deps.store.save_chunks(
        [
            chunk(job.job_id, 0, completed=4, failed=1, input_tokens=10, output_tokens=5, error_counts={"timeout": 1}),
            chunk(job.job_id, 1, completed=2, failed=2, input_tokens=3, output_tokens=1, error_counts={"timeout": 2}),
        ]
    )
    return job.job_id


def test_a_running_job_shows_its_chunks_counts_with_the_invalid_lines(client: FlaskClient, deps: StaticDeps, me: Caller) -> None:
    job_id = live_job(deps, me, JobStatus.PROCESSING)
    res = client.get(f"/v1/jobs/{job_id}/status", headers=me.headers)
    body = res.get_json()
    assert (body["completed_count"], body["failed_count"]) == (6, 4)
    assert (body["input_tokens"], body["output_tokens"], body["tokens_used"]) == (13, 6, 19)
    assert body["error_counts"] == {"timeout": 3, "invalid_line": 1}
    assert res.headers["Retry-After"] == str(deps.settings.status_poll_seconds) == str(body["retry_after"])


def test_a_cancelled_job_keeps_showing_its_chunks_counts(client: FlaskClient, deps: StaticDeps, me: Caller) -> None:
    job_id = live_job(deps, me, JobStatus.PROCESSING)
    body = client.post(f"/v1/jobs/{job_id}/cancel", headers=me.headers).get_json()
    assert body["status"] == "CANCELLED" and (body["completed_count"], body["failed_count"]) == (6, 4)
    later = client.get(f"/v1/jobs/{job_id}/status", headers=me.headers)
    assert later.get_data() == json.dumps(body).encode() and "Retry-After" not in later.headers


def test_the_final_totals_are_the_live_ones_of_the_same_chunks(deps: StaticDeps, me: Caller) -> None:
    job = stored_job(deps, me, JobStatus.PROCESSING, prompt_count=21, chunk_count=2, invalid_count=1)
    chunks = [chunk(job.job_id, 0, completed=4, failed=1, error_counts={"timeout": 1}), chunk(job.job_id, 1, completed=2)]
    deps.store.save_chunks(chunks)
    assert progress.final_totals(job, chunks) == progress.live_totals(deps, job)
    assert progress.final_totals(job, chunks) == Totals(6, 2, 0, 0, {"timeout": 1, "invalid_line": 1})


class CountingStore:
    """The memory store, counting its aggregations over chunks."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.totals_read = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def chunk_totals(self, job_id: str) -> Totals:
        self.totals_read += 1
        result: Totals = self.inner.chunk_totals(job_id)
        return result


def test_a_list_page_renders_each_job_as_its_status_does_and_reads_only_live_totals(
    client: FlaskClient, deps: StaticDeps, me: Caller, someone_else: Caller
) -> None:
    live = [
        live_job(deps, me, JobStatus.PROCESSING),
        live_job(deps, me, JobStatus.FAILED),
        live_job(deps, me, JobStatus.CANCELLED),
    ]
    for _ in range(4):
        new_job(deps, me)
    done = stored_job(deps, me, JobStatus.COMPLETED, prompt_count=3, completed_count=2, failed_count=1)
    lifecycle.cancel_job(deps, new_job(deps, me))  # cancelled before planning: nothing live
    new_job(deps, someone_else)

    seen: list[dict[str, Any]] = []
    token = ""
    while True:
        res = client.get(f"/v1/jobs?limit=4{'&page_token=' + token if token else ''}", headers=me.headers)
        assert res.status_code == 200, res.get_data(as_text=True)
        page = res.get_json()
        seen += page["jobs"]
        token = page["next_page_token"]
        if not token:
            break
    assert len(seen) == 9 and len({j["job_id"] for j in seen}) == 9
    assert [j["created_at"] for j in seen] == sorted((j["created_at"] for j in seen), reverse=True)
    for item in seen:
        status = client.get(f"/v1/jobs/{item['job_id']}/status", headers=me.headers).get_json()
        assert item == status
    assert done.job_id in {j["job_id"] for j in seen} and set(live) <= {j["job_id"] for j in seen}

    counting = CountingStore(deps.store)
    one_page = progress.page(StaticDeps(deps.settings, counting, deps.blobs, deps.tasks), me.client_id, 100, None)
    assert len(one_page.views) == 9 and one_page.after is None
    assert counting.totals_read == len(live)  # one aggregation a live job, none for the rest
