"""The ``mode`` option in process: fast by default, economy taken where the provider has a
batch API and refused with a 400 naming the field where it cannot run, stored on the job
and echoed by its status and the list; an economy job's status shows its provider batches
while it runs and its cost at the batch price."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from flask.testing import FlaskClient

from promptforge.config import parse_endpoints
from promptforge.domain.job import JobMode, JobStatus
from promptforge.domain.pricing import estimated_cost_usd
from promptforge.service.deps import StaticDeps
from tests.api.conftest import Caller, app_for, error
from tests.api.test_errors import JOB, PROMPT, post, stored_job
from tests.api.test_views import chunk

ECONOMY = {**JOB, "mode": "economy"}
BATCH_ENDED: dict[str, Any] = {"batch_key": "k0", "batch_ids": ("b0",), "batch_total": 10, "batch_done": 10, "batch_ended": True}


def create(client: FlaskClient, who: Caller, path: str, body: dict[str, Any]) -> Any:
    """POST a new job to init or, with one prompt, to the inline endpoint."""
    return post(client, path, who, body if path.endswith("init") else {**body, "prompts": [PROMPT]})


@pytest.mark.parametrize("path", ["/v1/jobs/init", "/v1/jobs"])
@pytest.mark.parametrize("mode", [None, "fast", "economy"])
def test_the_mode_is_stored_on_the_job_and_shown_in_its_status_and_the_list(
    client: FlaskClient, deps: StaticDeps, me: Caller, path: str, mode: str | None
) -> None:
    res = create(client, me, path, JOB if mode is None else {**JOB, "mode": mode})
    assert res.status_code == 201, res.get_data(as_text=True)
    job_id = res.get_json()["job_id"]
    job = deps.store.get_job(job_id)
    assert job is not None and job.mode is JobMode(mode or "fast")
    # A provider batch tries each request once: an economy job's attempts are 1.
    assert job.max_attempts == (1 if mode == "economy" else 3)
    status = client.get(f"/v1/jobs/{job_id}/status", headers=me.headers).get_json()
    assert status["mode"] == (mode or "fast")
    if not path.endswith("init"):
        assert res.get_json() == status  # the inline answer is the status object
    listed = client.get("/v1/jobs", headers=me.headers).get_json()["jobs"]
    assert [(j["job_id"], j["mode"]) for j in listed] == [(job_id, mode or "fast")]


@pytest.mark.parametrize("path", ["/v1/jobs/init", "/v1/jobs"])
@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"mode": "slow"}, "mode", "'fast' or 'economy'"),
        ({"mode": None}, "mode", "'fast' or 'economy'"),
        # openai_compatible has no batch API of its own; these endpoints declare none.
        ({"mode": "economy", "provider": "openai_compatible", "endpoint": "local"}, "mode", "'local' declares none"),
        ({"mode": "economy", "budget_tokens": 1000}, "budget_tokens", "cannot stop at a token count"),
        ({"mode": "economy", "max_attempts": 3}, "max_attempts", "must be 1 with mode economy"),
    ],
)
def test_economy_where_it_cannot_run_is_a_400_naming_the_field(
    client: FlaskClient, deps: StaticDeps, me: Caller, path: str, fields: dict[str, Any], field: str, says: str
) -> None:
    err = error(create(client, me, path, {**JOB, **fields}), 400, "invalid_request")
    assert err["details"] == {"field": field} and err["message"].startswith(f"{field}: ") and says in err["message"]
    assert deps.store.list_jobs(me.client_id, 10) == []


def test_economy_on_openai_compatible_needs_an_endpoint_that_declares_a_batch_api(deps: StaticDeps, me: Caller) -> None:
    endpoints = parse_endpoints(
        '{"batching": {"base_url": "http://127.0.0.1:9/v1", "batch": "openai"}, "plain": {"base_url": "http://127.0.0.1:9/v1"}}'
    )
    settings = dataclasses.replace(deps.settings, endpoints=endpoints, allow_client_base_urls=True)
    with app_for(dataclasses.replace(deps, settings=settings)).test_client() as client:
        body = {**ECONOMY, "provider": "openai_compatible"}
        res = post(client, "/v1/jobs/init", me, {**body, "endpoint": "batching"})
        assert res.status_code == 201, res.get_data(as_text=True)
        job = deps.store.get_job(res.get_json()["job_id"])
        assert job is not None and (job.mode, job.endpoint) == (JobMode.ECONOMY, "batching")
        err = error(post(client, "/v1/jobs/init", me, {**body, "endpoint": "plain"}), 400, "invalid_request")
        assert err["details"] == {"field": "mode"} and "'plain' declares none" in err["message"]
        # A client's own URL: nothing says what it serves, so economy is not offered.
        own = {**body, "base_url": "https://8.8.8.8/v1"}  # a public address, allowed here
        err = error(post(client, "/v1/jobs/init", me, own), 400, "invalid_request")
        assert err["details"] == {"field": "mode"} and "base_url" in err["message"]
        assert post(client, "/v1/jobs/init", me, {**own, "mode": "fast"}).status_code == 201


def test_economy_takes_max_attempts_1_and_a_fast_job_keeps_its_budget(client: FlaskClient, deps: StaticDeps, me: Caller) -> None:
    res = post(client, "/v1/jobs/init", me, {**ECONOMY, "max_attempts": 1})
    assert res.status_code == 201, res.get_data(as_text=True)
    res = post(client, "/v1/jobs/init", me, {**JOB, "mode": "fast", "budget_tokens": 1000, "max_attempts": 5})
    assert res.status_code == 201, res.get_data(as_text=True)
    job = deps.store.get_job(res.get_json()["job_id"])
    assert job is not None and (job.mode, job.budget_tokens, job.max_attempts) == (JobMode.FAST, 1000, 5)


def test_a_running_economy_job_shows_its_provider_batches_and_its_cost_at_the_batch_price(
    client: FlaskClient, deps: StaticDeps, me: Caller
) -> None:
    jobs = {}
    for mode in JobMode:
        job = stored_job(deps, me, JobStatus.PROCESSING, mode=mode, prompt_count=30, chunk_count=3)
        deps.store.save_chunks(
            [
                chunk(job.job_id, 0, completed=10, input_tokens=4000, output_tokens=1000, **BATCH_ENDED),
                chunk(job.job_id, 1, batch_key="k1", batch_ids=("b1",), batch_total=10, batch_done=6, batch_failed=1),
                chunk(job.job_id, 2, batch_key="k2"),  # its batch is being created
            ]
        )
        jobs[mode] = job.job_id
    economy = client.get(f"/v1/jobs/{jobs[JobMode.ECONOMY]}/status", headers=me.headers).get_json()
    fast = client.get(f"/v1/jobs/{jobs[JobMode.FAST]}/status", headers=me.headers).get_json()
    assert economy["provider_batches"] == {
        "batches": 3,
        "ended": 1,
        "requests": 20,
        "requests_done": 16,
        "requests_failed": 1,
    }
    assert fast["provider_batches"] is None  # a fast job has no provider batches to show
    assert (economy["mode"], fast["mode"]) == ("economy", "fast")
    assert economy["completed_count"] == fast["completed_count"] == 10
    assert fast["estimated_cost_usd"] == estimated_cost_usd("fake", "fake-small", 4000, 1000) == 0.0008
    assert economy["estimated_cost_usd"] == estimated_cost_usd("fake", "fake-small", 4000, 1000, economy=True) == 0.0004
    listed = {j["job_id"]: j for j in client.get("/v1/jobs", headers=me.headers).get_json()["jobs"]}
    assert listed[jobs[JobMode.ECONOMY]] == economy and listed[jobs[JobMode.FAST]] == fast


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.CANCELLED, JobStatus.COMPLETED])
def test_an_economy_job_shows_provider_batches_only_while_processing(
    client: FlaskClient, deps: StaticDeps, me: Caller, status: JobStatus
) -> None:
    job = stored_job(deps, me, status, mode=JobMode.ECONOMY, prompt_count=10, chunk_count=1)
    deps.store.save_chunks([chunk(job.job_id, 0, batch_key="k0", batch_ids=("b0",), batch_total=10, batch_done=10)])
    body = client.get(f"/v1/jobs/{job.job_id}/status", headers=me.headers).get_json()
    assert body["mode"] == "economy" and body["provider_batches"] is None
