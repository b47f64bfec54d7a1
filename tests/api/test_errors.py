"""Every endpoint's refusals, in process: 400 naming the field, 401, 404, 405, 409, 413,
429, bodies that are not JSON or not an object, and content types; each in the one error
envelope, never a 500 or a trace."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from promptforge.domain.job import Job, JobError, JobStatus
from promptforge.domain.outcomes import ErrorCode
from promptforge.service import lifecycle, quotas
from promptforge.service.deps import StaticDeps
from tests.api.conftest import INIT_BODY, INLINE_BYTES, INLINE_PROMPTS, SMALL_BODY, Caller, app_for, error

JOB = {"provider": "fake", "model": "fake-small"}
PROMPT = {"prompt_id": "p1", "prompt": "hi"}


def post(client: FlaskClient, path: str, who: Caller, body: Any, **kw: Any) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, data=data, headers=who.headers, content_type=kw.pop("content_type", "application/json"), **kw)


def new_job(deps: StaticDeps, who: Caller) -> Job:
    return lifecycle.create_job(deps, who.client_id, dict(JOB)).job


def stored_job(deps: StaticDeps, who: Caller, status: JobStatus, **fields: Any) -> Job:
    now = deps.now()
    job = Job(
        job_id=str(uuid.uuid4()),
        client_id=who.client_id,
        status=status,
        provider="fake",
        model="fake-small",
        created_at=now,
        upload_expires_at=now + timedelta(hours=1),
        **fields,
    )
    deps.store.create_job(job)
    return job


# --- 401 ----------------------------------------------------------------------------------

KEYED = [
    ("POST", "/v1/jobs/init"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{job}/status"),
    ("GET", "/v1/jobs/{job}/results"),
    ("POST", "/v1/jobs/{job}/cancel"),
    ("GET", "/v1/jobs/{job}/events"),
]


@pytest.mark.parametrize(("method", "path"), KEYED)
@pytest.mark.parametrize("key", [None, "", "pf_nope"])
def test_every_keyed_endpoint_refuses_a_missing_or_unknown_key(
    client: FlaskClient, deps: StaticDeps, me: Caller, method: str, path: str, key: str | None
) -> None:
    job = new_job(deps, me)
    headers = {} if key is None else {"X-API-Key": key}
    res = client.open(path.format(job=job.job_id), method=method, headers=headers, data=b"{}")
    err = error(res, 401, "unauthenticated")
    assert err["details"] == {}
    assert deps.store.get_job(job.job_id) == job  # nothing changed


def test_the_openapi_document_needs_no_key(client: FlaskClient) -> None:
    assert client.get("/v1/openapi.json").status_code == 200


# --- 404 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [(m, p) for m, p in KEYED if "{job}" in p] + [("GET", "/v1/jobs/{job}/results?partial=true")]
)
def test_another_clients_job_a_missing_one_and_a_malformed_id_are_the_same_404(
    client: FlaskClient, deps: StaticDeps, me: Caller, someone_else: Caller, method: str, path: str
) -> None:
    theirs = new_job(deps, someone_else)
    answers = [
        client.open(path.format(job=job_id), method=method, headers=me.headers)
        for job_id in (theirs.job_id, str(uuid.uuid4()), "not-a-uuid")
    ]
    bodies = [error(res, 404, "not_found") for res in answers]
    assert bodies[0] == bodies[1] == bodies[2] == {"code": "not_found", "message": "Job not found", "details": {}}
    assert deps.store.get_job(theirs.job_id) == theirs


# --- 405 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/jobs/init", "/v1/jobs/{job}/cancel"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_post_endpoints_answer_405_to_other_methods(
    client: FlaskClient, deps: StaticDeps, me: Caller, path: str, method: str
) -> None:
    job = new_job(deps, me)
    res = client.open(path.format(job=job.job_id), method=method, headers=me.headers)
    assert error(res, 405, "method_not_allowed")["message"] == "Use POST"
    assert deps.store.get_job(job.job_id) == job


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_the_jobs_collection_answers_405_to_methods_it_does_not_serve(client: FlaskClient, me: Caller, method: str) -> None:
    error(client.open("/v1/jobs", method=method, headers=me.headers), 405, "method_not_allowed")


# --- 400 naming the field ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"provider": "nope"}, "provider"),
        ({"provider": None}, "provider"),
        ({"params": {"temperature": 7}}, "params"),
        ({"params": "hot"}, "params"),
        ({"model": ""}, "model"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"budget_tokens": -1}, "budget_tokens"),
        ({"metadata": [1]}, "metadata"),
        ({"callback_url": "http://insecure.example"}, "callback_url"),
        ({"callback_url": "https://127.0.0.1/hook"}, "callback_url"),
        ({"callback_url": "https://169.254.169.254/computeMetadata/v1/"}, "callback_url"),
        ({"callback_url": "https://10.0.0.1/hook"}, "callback_url"),
        ({"callback_url": "https://[::ffff:169.254.169.254]/"}, "callback_url"),
        ({"callback_url": "https://[::1]:8443/"}, "callback_url"),
        ({"callback_url": "https://localhost:8443/"}, "callback_url"),
        ({"callback_url": "http://10.0.0.1/hook"}, "callback_url"),
        ({"surprise": 1}, "surprise"),
        ({"provider": "openai_compatible", "endpoint": "nope"}, "endpoint"),
        ({"provider": "openai_compatible"}, "endpoint"),  # two are configured: name one
        ({"provider": "openai_compatible", "base_url": "https://llm.example/v1"}, "base_url"),
        ({"provider": "openai_compatible", "endpoint": "local", "base_url": "https://llm.example/v1"}, "base_url"),
        ({"endpoint": "local"}, "endpoint"),
        ({"base_url": "https://llm.example/v1"}, "base_url"),
        ({"metadata": {"score": float("nan")}}, "metadata.score"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/jobs/init", "/v1/jobs"])
def test_an_invalid_field_is_a_400_naming_it(
    client: FlaskClient, deps: StaticDeps, me: Caller, path: str, fields: dict[str, Any], field: str
) -> None:
    body = {**JOB, **fields} if path.endswith("init") else {**JOB, **fields, "prompts": [PROMPT]}
    res = post(client, path, me, json.dumps(body, allow_nan=True).encode())
    err = error(res, 400, "invalid_request")
    assert err["details"] == {"field": field} and err["message"].startswith(f"{field}: ")
    assert deps.store.list_jobs(me.client_id, 10) == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/v1",
        "http://169.254.169.254/v1",
        "https://169.254.169.254/v1",
        "http://10.0.0.1/v1",
        "https://[::ffff:127.0.0.1]/v1",
        "https://llm.example.com/v1",  # even a public one: client URLs are off by default
    ],
)
def test_a_job_cannot_send_the_deployments_credential_to_a_url_of_its_own(
    client: FlaskClient, deps: StaticDeps, me: Caller, url: str
) -> None:
    res = post(client, "/v1/jobs/init", me, {**JOB, "provider": "openai_compatible", "base_url": url})
    assert error(res, 400, "invalid_request")["details"] == {"field": "base_url"}
    res = post(client, "/v1/jobs/init", me, {**JOB, "provider": "openai_compatible", "endpoint": "elsewhere"})
    assert error(res, 400, "invalid_request")["details"] == {"field": "endpoint"}
    assert deps.store.list_jobs(me.client_id, 10) == []


@pytest.mark.parametrize(
    ("prompts", "field"),
    [(None, "prompts"), ([], "prompts"), ("p", "prompts")],
)
def test_inline_prompts_that_are_not_a_list_of_lines_are_a_400(client: FlaskClient, me: Caller, prompts: Any, field: str) -> None:
    # (A line that is not a prompt is not refused here: it becomes an invalid_line row.)
    body = {**JOB} if prompts is None else {**JOB, "prompts": prompts}
    err = error(post(client, "/v1/jobs", me, body), 400, "invalid_request")
    assert err["details"] == {"field": field}


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=x", "limit"), ("limit=0", "limit"), ("limit=101", "limit"), ("page_token=%25%25", "page_token")],
)
def test_a_bad_list_query_is_a_400_naming_it(client: FlaskClient, me: Caller, query: str, field: str) -> None:
    assert error(client.get(f"/v1/jobs?{query}", headers=me.headers), 400, "invalid_request")["details"] == {"field": field}


@pytest.mark.parametrize(
    "token",
    [
        "bm90IGpzb24",  # base64 of "not json"
        "WzFd",  # [1]
        "WyJub3QgYSBkYXRlIiwgImlkIl0",  # ["not a date", "id"]
        "W" * 5000,
    ],
)
def test_a_page_token_this_api_did_not_return_is_a_400(client: FlaskClient, me: Caller, token: str) -> None:
    res = client.get(f"/v1/jobs?page_token={token}", headers=me.headers)
    assert error(res, 400, "invalid_request")["details"] == {"field": "page_token"}


# --- bodies that are not a JSON object ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "must be a JSON object"),
        (b"{", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b'{"a": 1} {"b": 2}', "not valid JSON"),
        (b'\xff{"a": 1}', "not valid UTF-8"),
        (b"[" * 100_000, "deeper than 64"),
        (b'{"provider": "fake", "model": "m", "metadata": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001, "deeper than 64"),
        (b'{"provider": "fake", "model": "m", "metadata": {"x": [1, 1e999]}}', "too large to represent"),
        (b'{"provider": "fake", "model": "m", "metadata": {"x": -Infinity}}', "-Infinity is not a JSON number"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/jobs/init", "/v1/jobs"])
def test_a_body_that_is_not_one_json_object_is_a_400(client: FlaskClient, me: Caller, path: str, raw: bytes, says: str) -> None:
    limit = INIT_BODY if path == "/v1/jobs/init" else INLINE_BYTES
    raw = raw[: limit - 1]  # the same problem, within the endpoint's limit
    err = error(post(client, path, me, raw), 400, "invalid_request")
    assert says in err["message"], err
    assert "field" in err["details"]


def test_the_field_of_a_non_finite_number_is_its_path(client: FlaskClient, me: Caller) -> None:
    raw = b'{"provider": "fake", "model": "m", "metadata": {"run": "r1", "scores": [1, NaN]}}'
    err = error(post(client, "/v1/jobs/init", me, raw), 400, "invalid_request")
    assert err["details"] == {"field": "metadata.scores.1"}
    assert err["message"] == "metadata.scores.1: NaN is not a JSON number; send a finite number or null"


# --- content types -------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_the_body_is_read_as_json_whatever_content_type_it_declares(
    client: FlaskClient, me: Caller, content_type: str | None
) -> None:
    # The contract asks for a JSON body, not for a header: a JSON object is taken as such.
    res = client.post("/v1/jobs/init", data=json.dumps(JOB), headers=me.headers, content_type=content_type)
    assert res.status_code == 201, res.get_data(as_text=True)


def test_a_form_body_is_not_json_and_is_a_400(client: FlaskClient, me: Caller) -> None:
    res = client.post("/v1/jobs/init", data={"provider": "fake", "model": "m"}, headers=me.headers)
    assert "not valid JSON" in error(res, 400, "invalid_request")["message"]


# --- 413 ----------------------------------------------------------------------------------


def test_an_init_body_over_its_limit_is_a_413_naming_the_limit(client: FlaskClient, me: Caller) -> None:
    err = error(post(client, "/v1/jobs/init", me, {**JOB, "system_prompt": "s" * INIT_BODY}), 413, "payload_too_large")
    assert err["details"] == {"limit_bytes": INIT_BODY} and str(INIT_BODY) in err["message"]


def test_an_inline_job_over_its_byte_limit_is_a_413_pointing_to_init(client: FlaskClient, me: Caller) -> None:
    body = {**JOB, "prompts": [{"prompt_id": "p", "prompt": "x" * INLINE_BYTES}]}
    err = error(post(client, "/v1/jobs", me, body), 413, "payload_too_large")
    assert err["details"] == {"limit_bytes": INLINE_BYTES} and "use POST /v1/jobs/init" in err["message"]


def test_an_inline_job_over_its_prompt_limit_is_a_413_naming_prompts(client: FlaskClient, deps: StaticDeps, me: Caller) -> None:
    prompts = [{"prompt_id": f"p{i}", "prompt": "x"} for i in range(INLINE_PROMPTS + 1)]
    err = error(post(client, "/v1/jobs", me, {**JOB, "prompts": prompts}), 413, "payload_too_large")
    assert err["details"] == {"field": "prompts"} and str(INLINE_PROMPTS) in err["message"]
    assert deps.store.list_jobs(me.client_id, 10) == []


def test_cancel_refuses_a_body_over_the_small_limit_and_takes_an_empty_one(
    client: FlaskClient, deps: StaticDeps, me: Caller
) -> None:
    job = new_job(deps, me)
    path = f"/v1/jobs/{job.job_id}/cancel"
    err = error(post(client, path, me, b"x" * (SMALL_BODY + 1)), 413, "payload_too_large")
    assert err["details"] == {"limit_bytes": SMALL_BODY}
    assert deps.store.get_job(job.job_id) == job
    assert post(client, path, me, b"").status_code == 200


def test_inline_results_of_a_job_over_the_row_limit_are_a_413(client: FlaskClient, deps: StaticDeps, me: Caller) -> None:
    job = stored_job(deps, me, JobStatus.COMPLETED, completed_count=INLINE_PROMPTS, failed_count=1, prompt_count=6)
    res = client.get(f"/v1/jobs/{job.job_id}/results?inline=true", headers=me.headers)
    err = error(res, 413, "payload_too_large")
    assert err["details"] == {"limit_rows": INLINE_PROMPTS, "limit_bytes": INLINE_BYTES}


# --- 409 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [JobStatus.AWAITING_UPLOAD, JobStatus.PENDING, JobStatus.QUEUED, JobStatus.PROCESSING])
def test_results_of_a_job_still_running_are_a_409_with_retry_after(
    client: FlaskClient, deps: StaticDeps, me: Caller, status: JobStatus
) -> None:
    job = stored_job(deps, me, status)
    for query in ("", "?partial=true", "?inline=true"):
        res = client.get(f"/v1/jobs/{job.job_id}/results{query}", headers=me.headers)
        assert error(res, 409, "job_not_completed")["details"] == {"current_status": status.value}
        assert res.headers["Retry-After"] == str(deps.settings.status_poll_seconds)


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELLED])
def test_results_of_a_job_that_did_not_complete_are_a_409_without_partial(
    client: FlaskClient, deps: StaticDeps, me: Caller, status: JobStatus
) -> None:
    job = stored_job(deps, me, status, error=JobError(ErrorCode.STUCK, "y") if status is JobStatus.FAILED else None)
    res = client.get(f"/v1/jobs/{job.job_id}/results", headers=me.headers)
    assert error(res, 409, "job_not_completed")["details"] == {"current_status": status.value}
    assert "Retry-After" not in res.headers
    assert client.get(f"/v1/jobs/{job.job_id}/results?partial=true", headers=me.headers).status_code == 200


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_cancelling_an_ended_job_is_a_409_naming_its_status(
    client: FlaskClient, deps: StaticDeps, me: Caller, status: JobStatus
) -> None:
    job = stored_job(deps, me, status)
    res = post(client, f"/v1/jobs/{job.job_id}/cancel", me, b"")
    err = error(res, 409, "job_terminal")
    assert err["details"] == {"current_status": status.value}
    assert deps.store.get_job(job.job_id) == job
    assert deps.tasks.notifies == []  # type: ignore[attr-defined]


def test_a_second_cancel_is_a_409(client: FlaskClient, deps: StaticDeps, me: Caller) -> None:
    job = new_job(deps, me)
    assert post(client, f"/v1/jobs/{job.job_id}/cancel", me, b"").get_json()["status"] == "CANCELLED"
    err = error(post(client, f"/v1/jobs/{job.job_id}/cancel", me, b""), 409, "job_terminal")
    assert err["details"] == {"current_status": "CANCELLED"}


# --- 429 ----------------------------------------------------------------------------------


def test_init_over_the_cap_of_jobs_awaiting_upload_is_a_429_with_limit_and_current(
    client: FlaskClient, deps: StaticDeps, me: Caller
) -> None:
    cap = deps.settings.max_awaiting_uploads
    for _ in range(cap):
        assert post(client, "/v1/jobs/init", me, JOB).status_code == 201
    res = post(client, "/v1/jobs/init", me, JOB)
    err = error(res, 429, "too_many_awaiting_uploads")
    assert err["details"] == {"limit": cap, "current": cap} and int(res.headers["Retry-After"]) > 0
    assert len(deps.store.list_jobs(me.client_id, cap + 5)) == cap


# --- Cloud Tasks targets -------------------------------------------------------------------


@pytest.mark.parametrize("target", ["plan_job", "process_chunk", "notify_callback"])
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"", 400),
        (b"{", 400),
        (b"[]", 400),
        (b"{}", 400),
        (b"[" * 200, 400),  # within the size limit, deeper than the nesting limit
        (b'{"job_id": "' + b"x" * SMALL_BODY + b'"}', 413),
    ],
)
def test_task_targets_check_and_bound_their_bodies(client: FlaskClient, target: str, raw: bytes, status: int) -> None:
    res = client.post(f"/_tasks/{target}", data=raw, content_type="application/json")
    err = error(res, status, "invalid_request" if status == 400 else "payload_too_large")
    if status == 413:
        assert err["details"] == {"limit_bytes": SMALL_BODY}


@pytest.mark.parametrize("target", ["plan_job", "process_chunk", "notify_callback"])
def test_task_targets_name_a_non_finite_number(client: FlaskClient, target: str) -> None:
    res = client.post(f"/_tasks/{target}", data=b'{"job_id": NaN, "chunk": 0}', content_type="application/json")
    assert error(res, 400, "invalid_request")["details"] == {"field": "job_id"}


@pytest.mark.parametrize("chunk", ['"1"', "1.5", "true", "null"])
def test_a_chunk_task_names_its_chunk_by_an_integer(client: FlaskClient, chunk: str) -> None:
    raw = b'{"job_id": "%s", "chunk": %s}' % (str(uuid.uuid4()).encode(), chunk.encode())
    res = client.post("/_tasks/process_chunk", data=raw, content_type="application/json")
    assert error(res, 400, "invalid_request")["details"] == {"field": "chunk"}


# --- never a 500 with a trace --------------------------------------------------------------


def test_an_unexpected_failure_is_a_plain_500_that_can_be_retried(deps: StaticDeps, me: Caller) -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("the store is down, secret prompt text")

    broken = StaticDeps(deps.settings, Broken(), deps.blobs, deps.tasks)
    app = app_for(broken)
    with app.test_client() as c:
        res = c.get(f"/v1/jobs/{uuid.uuid4()}/status", headers=me.headers)
    err = error(res, 500, "internal")
    assert "secret" not in res.get_data(as_text=True) and err["details"] == {}


def test_an_event_stream_over_the_clients_cap_is_a_429_with_limit_and_current(
    client: FlaskClient, deps: StaticDeps, me: Caller
) -> None:
    cap = deps.settings.max_event_streams
    for _ in range(cap):  # the client's other streams, open elsewhere
        quotas.open_stream(deps, me.client_id)
    over = client.get(f"/v1/jobs/{new_job(deps, me).job_id}/events", headers=me.headers)
    err = error(over, 429, "too_many_event_streams")
    assert err["details"] == {"limit": cap, "current": cap} and int(over.headers["Retry-After"]) > 0


def test_a_contended_store_is_a_503_to_retry_not_a_500(client: FlaskClient, deps: StaticDeps, me: Caller) -> None:
    from promptforge.service.ports import StoreContention

    job = new_job(deps, me)

    def contended(fn: Any) -> Any:
        raise StoreContention("a transaction could not commit under contention")

    deps.store.run_transaction = contended  # type: ignore[method-assign]
    cancel = client.post(f"/v1/jobs/{job.job_id}/cancel", headers=me.headers)
    error(cancel, 503, "busy")
    assert int(cancel.headers["Retry-After"]) >= 1
    task = client.post("/_tasks/process_chunk", json={"job_id": job.job_id, "chunk": 0})
    error(task, 503, "busy")  # Cloud Tasks retries it
