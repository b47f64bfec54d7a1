"""The fake LLM server's batch APIs (OpenAI's, Anthropic's), over HTTP against the real server in a subprocess.

Time never passes on the wall clock here: the batches' clock is moved with
``POST /_batches/advance``, and every test sets the batch knobs it relies on.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from anthropic.types.messages.batch_create_params import Request as BatchRequest
from google import genai
from google.genai import types as genai_types

from infra.fake_llm.process import fake_llm_process
from infra.fake_llm.server import FakeLLMConfig

KEY = "sk-batch-test-key"
MODEL = "gpt-4o-mini"
CHAT = "/v1/chat/completions"
DEFAULTS = FakeLLMConfig().as_dict()


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with fake_llm_process("--latency-ms", "0") as url:
        yield url


@pytest.fixture
def api(base_url: str) -> Iterator[httpx.Client]:
    """A client with a key, on a server whose batch knobs (and seed) are back at their defaults."""
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
        _configure(client)
        yield client
        _configure(client)


def _configure(client: httpx.Client, **changes: Any) -> None:
    batch_defaults = {
        k: v for k, v in DEFAULTS.items() if k.startswith(("batch_", "openai_batch_", "anthropic_batch_", "gemini_batch_"))
    }
    body = {**batch_defaults, "seed": 0, "faults": {}, "context_window": None, **changes}
    client.post("/_config", json=body).raise_for_status()


def _advance(client: httpx.Client, seconds: float) -> None:
    client.post("/_batches/advance", json={"seconds": seconds}).raise_for_status()


def _request(i: int, **body: Any) -> dict[str, Any]:
    """Chat request ``i``: its body as the fast route takes it."""
    return {"model": MODEL, "messages": [{"role": "user", "content": f"prompt number {i}"}], **body}


def _jsonl(requests: list[dict[str, Any]], ids: list[str] | None = None) -> bytes:
    ids = ids or [f"p{i}" for i in range(len(requests))]
    lines = [
        json.dumps({"custom_id": cid, "method": "POST", "url": CHAT, "body": body})
        for cid, body in zip(ids, requests, strict=True)
    ]
    return ("\n".join(lines) + "\n").encode()


def _upload(client: httpx.Client, content: bytes) -> dict[str, Any]:
    response = client.post("/v1/files", data={"purpose": "batch"}, files={"file": ("input.jsonl", content, "application/jsonl")})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _create(client: httpx.Client, content: bytes, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    file = _upload(client, content)
    body: dict[str, Any] = {"input_file_id": file["id"], "endpoint": CHAT, "completion_window": "24h"}
    if metadata is not None:
        body["metadata"] = metadata
    response = client.post("/v1/batches", json=body)
    assert response.status_code == 200, response.text
    batch: dict[str, Any] = response.json()
    assert batch["status"] == "validating" and batch["input_file_id"] == file["id"]
    return batch


def _fetch(client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A 200 JSON object from ``GET path``."""
    response = client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def _get(client: httpx.Client, batch_id: str) -> dict[str, Any]:
    return _fetch(client, f"/v1/batches/{batch_id}")


def _rows(client: httpx.Client, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    response = client.get(f"/v1/files/{file_id}/content")
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    # A completion's id and creation time differ between two answers of the same request.
    return {k: v for k, v in body.items() if k not in ("id", "created")}


def _error_code(response: httpx.Response, status: int) -> str | None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    code: str | None = error["code"]
    return code


# --------------------------------------------------------------------------------------


def test_a_batch_answers_each_request_as_the_fast_route_does(api: httpx.Client) -> None:
    requests = [
        _request(0),
        _request(1, max_tokens=2),  # cut short: finish_reason length
        _request(2, stop=["reply"], n=2),
        _request(3, messages=[]),  # the fast route refuses it with a 400
    ]
    created = _create(api, _jsonl(requests), metadata={"job": "round-trip"})
    assert created["request_counts"] == {"total": 4, "completed": 0, "failed": 0}
    assert created["metadata"] == {"job": "round-trip"} and created["model"] == MODEL

    batch = _get(api, created["id"])  # no completion delay: done at once
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 4, "completed": 3, "failed": 1}
    assert batch["completed_at"] is not None and batch["expires_at"] == batch["created_at"] + 86_400

    fast = [api.post(CHAT, json=body) for body in requests]
    output = _rows(api, batch["output_file_id"])
    errors = _rows(api, batch["error_file_id"])
    assert [row["custom_id"] for row in output] == ["p0", "p1", "p2"] and [row["custom_id"] for row in errors] == ["p3"]
    for row, answer in zip(output + errors, fast, strict=True):
        assert set(row) == {"id", "custom_id", "response", "error"} and row["error"] is None
        assert row["id"].startswith("batch_req_")
        assert row["response"]["status_code"] == answer.status_code
        assert row["response"]["request_id"].startswith("req_")
        assert _comparable(row["response"]["body"]) == _comparable(answer.json())
    assert output[1]["response"]["body"]["choices"][0]["finish_reason"] == "length"
    assert len(output[2]["response"]["body"]["choices"]) == 2

    usage = [row["response"]["body"]["usage"] for row in output]
    assert batch["usage"]["input_tokens"] == sum(u["prompt_tokens"] for u in usage)
    assert batch["usage"]["output_tokens"] == sum(u["completion_tokens"] for u in usage)

    described = api.get(f"/v1/files/{batch['output_file_id']}").json()
    content = api.get(f"/v1/files/{batch['output_file_id']}/content").content
    assert described["purpose"] == "batch_output" and described["bytes"] == len(content) and described["object"] == "file"


def test_the_openai_sdk_runs_a_batch_through_the_fake(base_url: str, api: httpx.Client) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0)
    content = _jsonl([_request(10), _request(11)])
    file = client.files.create(file=("in.jsonl", content), purpose="batch")
    assert file.bytes == len(content) and file.purpose == "batch"
    assert client.files.content(file.id).content == content
    batch = client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"via": "sdk"}
    )
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.request_counts is not None and batch.request_counts.completed == 2
    assert batch.output_file_id is not None
    rows = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    fast = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "prompt number 10"}])
    assert rows[0]["response"]["body"]["choices"][0]["message"]["content"] == fast.choices[0].message.content


def test_requests_finish_evenly_over_the_completion_delay(api: httpx.Client) -> None:
    _configure(api, batch_completion_s=100)
    created = _create(api, _jsonl([_request(i) for i in range(4)]))
    batch = _get(api, created["id"])
    assert batch["status"] == "in_progress" and batch["request_counts"]["completed"] == 0
    assert batch["in_progress_at"] == batch["created_at"]
    assert batch["output_file_id"] is None and batch["completed_at"] is None

    _advance(api, 50)  # the second of four requests is done at 50 s
    batch = _get(api, created["id"])
    assert batch["status"] == "in_progress" and batch["request_counts"] == {"total": 4, "completed": 2, "failed": 0}

    _advance(api, 49.5)
    assert _get(api, created["id"])["request_counts"]["completed"] == 3
    _advance(api, 0.5)
    batch = _get(api, created["id"])
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 4
    assert batch["completed_at"] - batch["created_at"] in (99, 100, 101)  # whole seconds of a float clock
    assert len(_rows(api, batch["output_file_id"])) == 4 and batch["error_file_id"] is None


def test_a_failure_share_sends_those_requests_to_the_error_file(api: httpx.Client) -> None:
    _configure(api, batch_failure_rate=0.5, seed=7)
    created = _create(api, _jsonl([_request(i) for i in range(20)]))
    batch = _get(api, created["id"])
    # One draw per request from an RNG seeded like the server's: the same requests fail every run.
    draws = random.Random(7)
    expected_failed = {f"p{i}" for i in range(20) if draws.random() < 0.5}
    assert 0 < len(expected_failed) < 20
    assert batch["request_counts"] == {"total": 20, "completed": 20 - len(expected_failed), "failed": len(expected_failed)}
    errors = _rows(api, batch["error_file_id"])
    assert {row["custom_id"] for row in errors} == expected_failed
    for row in errors:
        assert row["response"]["status_code"] == 500 and row["error"] is None
        assert row["response"]["body"]["error"]["type"] == "server_error"
    assert {row["custom_id"] for row in _rows(api, batch["output_file_id"])} == {f"p{i}" for i in range(20)} - expected_failed


def test_provider_side_faults_apply_to_batch_requests(api: httpx.Client) -> None:
    _configure(api, faults={"content_filter": 1.0})
    batch = _get(api, _create(api, _jsonl([_request(0)]))["id"])
    (row,) = _rows(api, batch["output_file_id"])
    assert row["response"]["body"]["choices"][0]["finish_reason"] == "content_filter"

    # A transport fault cannot happen inside a provider's batch: the request is answered.
    _configure(api, faults={"reset": 1.0}, context_window=5)
    over_window = _request(1, max_tokens=10)
    batch = _get(
        api, _create(api, _jsonl([over_window, _request(2, messages=[{"role": "user", "content": "x"}], max_tokens=1)]))["id"]
    )
    assert batch["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
    (error,) = _rows(api, batch["error_file_id"])
    assert error["custom_id"] == "p0" and error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["code"] == "context_length_exceeded"


def test_a_batch_not_done_in_its_window_expires(api: httpx.Client) -> None:
    _configure(api, batch_completion_s=100, batch_window_s=60)
    created = _create(api, _jsonl([_request(i) for i in range(10)]))
    assert created["expires_at"] == created["created_at"] + 60
    _advance(api, 59)
    batch = _get(api, created["id"])
    assert batch["status"] == "in_progress" and batch["request_counts"]["completed"] == 5
    _advance(api, 1)
    batch = _get(api, created["id"])
    assert batch["status"] == "expired" and batch["expired_at"] is not None and batch["completed_at"] is None
    assert batch["request_counts"] == {"total": 10, "completed": 6, "failed": 4}
    assert [row["custom_id"] for row in _rows(api, batch["output_file_id"])] == [f"p{i}" for i in range(6)]
    errors = _rows(api, batch["error_file_id"])
    assert [row["custom_id"] for row in errors] == [f"p{i}" for i in range(6, 10)]
    for row in errors:
        assert row["response"] is None and row["error"]["code"] == "batch_expired" and row["error"]["message"]


def test_cancel_freezes_progress_then_ends_the_batch_cancelled(api: httpx.Client) -> None:
    _configure(api, batch_completion_s=100, batch_cancel_s=30)
    created = _create(api, _jsonl([_request(i) for i in range(4)]))
    _advance(api, 60)
    cancelled = api.post(f"/v1/batches/{created['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelling" and cancelled.json()["cancelling_at"] is not None
    _advance(api, 29)
    batch = _get(api, created["id"])
    assert batch["status"] == "cancelling" and batch["request_counts"] == {"total": 4, "completed": 2, "failed": 0}
    assert api.post(f"/v1/batches/{created['id']}/cancel").json()["status"] == "cancelling"  # asking twice is harmless
    _advance(api, 1)
    batch = _get(api, created["id"])
    assert batch["status"] == "cancelled" and batch["cancelled_at"] == batch["cancelling_at"] + 30
    assert batch["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
    assert [row["custom_id"] for row in _rows(api, batch["output_file_id"])] == ["p0", "p1"]
    errors = _rows(api, batch["error_file_id"])
    assert [(row["custom_id"], row["error"]["code"]) for row in errors] == [("p2", "batch_cancelled"), ("p3", "batch_cancelled")]

    assert _error_code(api.post(f"/v1/batches/{created['id']}/cancel"), 409) is None
    assert api.post("/v1/batches/batch_nope/cancel").status_code == 404


def test_batches_can_be_found_again_by_metadata_page_by_page(api: httpx.Client) -> None:
    job = uuid.uuid4().hex
    ids = [_create(api, _jsonl([_request(i)]), metadata={"job": job, "chunk": str(i)})["id"] for i in range(5)]
    _create(api, _jsonl([_request(9)]), metadata={"job": "someone else"})
    found: list[tuple[str, str]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} if after is None else {"limit": 2, "after": after}
        page = api.get("/v1/batches", params=params).json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        found += [(b["id"], b["metadata"]["chunk"]) for b in page["data"] if (b["metadata"] or {}).get("job") == job]
        if not page["has_more"]:
            break
        assert page["last_id"] == page["data"][-1]["id"]
        after = page["last_id"]
    # Newest first, each exactly once.
    assert found == [(ids[i], str(i)) for i in reversed(range(5))]

    assert _error_code(api.get("/v1/batches", params={"limit": 0}), 400) == "invalid_value"
    assert _error_code(api.get("/v1/batches", params={"limit": 101}), 400) == "invalid_value"
    assert _error_code(api.get("/v1/batches", params={"after": "batch_unknown"}), 400) == "invalid_value"


def test_openai_limits_per_batch(api: httpx.Client) -> None:
    assert DEFAULTS["openai_batch_max_requests"] == 50_000 and DEFAULTS["openai_batch_max_bytes"] == 200_000_000
    # 50,001 requests at the real limit: small lines, so the upload stays a few megabytes.
    line = b'{"custom_id":"c%d","method":"POST","url":"/v1/chat/completions","body":{}}\n'
    too_many = b"".join(line % i for i in range(50_001))
    batch = _get(api, _create(api, too_many)["id"])
    assert batch["status"] == "failed" and batch["failed_at"] is not None
    assert [e["code"] for e in batch["errors"]["data"]] == ["too_many_tasks"]
    assert batch["output_file_id"] is None and batch["error_file_id"] is None

    _configure(api, openai_batch_max_requests=3)
    assert _get(api, _create(api, _jsonl([_request(i) for i in range(3)]))["id"])["status"] == "completed"
    assert _get(api, _create(api, _jsonl([_request(i) for i in range(4)]))["id"])["status"] == "failed"

    content = _jsonl([_request(0)])
    _configure(api, openai_batch_max_bytes=len(content))
    _upload(api, content)
    refused = api.post("/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", content + b"\n")})
    assert _error_code(refused, 400) is None and refused.json()["error"]["message"] == "File is too large."


@pytest.mark.parametrize(
    ("content", "code", "line"),
    [
        (b"", "empty_file", None),
        (b"{not json\n", "invalid_json_line", 1),
        (_jsonl([_request(0), _request(1)], ids=["same", "same"]), "duplicate_custom_id", 2),
        (_jsonl([_request(0)]).replace(b"/v1/chat/completions", b"/v1/embeddings"), "url_mismatch", 1),
        (_jsonl([_request(0), _request(1, model="gpt-4o")]), "model_mismatch", 2),
        (b'{"method":"POST","url":"/v1/chat/completions","body":{}}\n', "invalid_request", 1),
    ],
)
def test_an_input_file_openai_would_refuse_fails_the_batch(
    api: httpx.Client, content: bytes, code: str, line: int | None
) -> None:
    batch = _get(api, _create(api, content)["id"])
    assert batch["status"] == "failed" and batch["request_counts"]["total"] == 0
    (error,) = batch["errors"]["data"]
    assert error["code"] == code and error["line"] == line and error["message"]


def test_create_refuses_what_openai_refuses(api: httpx.Client) -> None:
    file_id = _upload(api, _jsonl([_request(0)]))["id"]
    good = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
    assert _error_code(api.post("/v1/batches", json={**good, "completion_window": "1h"}), 400) == "invalid_value"
    assert _error_code(api.post("/v1/batches", json={**good, "endpoint": "/v1/embeddings"}), 400) == "invalid_value"
    assert _error_code(api.post("/v1/batches", json={k: v for k, v in good.items() if k != "endpoint"}), 400) == (
        "missing_required_parameter"
    )
    assert _error_code(api.post("/v1/batches", json={**good, "input_file_id": "file-nope"}), 400) is None
    many = {f"k{i}": "v" for i in range(17)}
    assert _error_code(api.post("/v1/batches", json={**good, "metadata": many}), 400) == "object_above_max_properties"
    assert _error_code(api.post("/v1/batches", json={**good, "metadata": {"k": 1}}), 400) == "invalid_type"
    assert api.post("/v1/batches", json=good, headers={"Authorization": ""}).status_code == 401
    assert api.get("/v1/batches/batch_nope").status_code == 404

    assert api.delete(f"/v1/files/{file_id}").json() == {"id": file_id, "object": "file", "deleted": True}
    assert api.get(f"/v1/files/{file_id}").status_code == 404
    assert _error_code(api.post("/v1/batches", json=good), 400) is None
    assert _error_code(api.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("a", b"x")}), 400) == "invalid_value"
    assert api.post("/_batches/advance", json={"seconds": -1}).status_code == 400


# --------------------------------------------------------------------------------------
# Anthropic Message Batches
# --------------------------------------------------------------------------------------

ANTHROPIC_HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
CLAUDE = "claude-x"


def _params(i: int, **params: Any) -> dict[str, Any]:
    return {"model": CLAUDE, "max_tokens": 50, "messages": [{"role": "user", "content": f"prompt number {i}"}], **params}


def _message_batch(client: httpx.Client, params: list[dict[str, Any]], ids: list[str] | None = None) -> dict[str, Any]:
    ids = ids or [f"p{i}" for i in range(len(params))]
    requests = [{"custom_id": cid, "params": p} for cid, p in zip(ids, params, strict=True)]
    response = client.post("/v1/messages/batches", json={"requests": requests}, headers=ANTHROPIC_HEADERS)
    assert response.status_code == 200, response.text
    batch: dict[str, Any] = response.json()
    assert batch["type"] == "message_batch" and batch["processing_status"] == "in_progress"
    return batch


def _message_batch_now(client: httpx.Client, batch_id: str) -> dict[str, Any]:
    return _fetch(client, f"/v1/messages/batches/{batch_id}", ANTHROPIC_HEADERS)


def _results(client: httpx.Client, batch: dict[str, Any]) -> list[dict[str, Any]]:
    assert batch["results_url"] is not None
    response = client.get(batch["results_url"], headers=ANTHROPIC_HEADERS)
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def _anthropic_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    kind: str = body["error"]["type"]
    return kind


def _counts(processing: int = 0, succeeded: int = 0, errored: int = 0, canceled: int = 0, expired: int = 0) -> dict[str, int]:
    return {"processing": processing, "succeeded": succeeded, "errored": errored, "canceled": canceled, "expired": expired}


def test_a_message_batch_answers_each_request_as_the_messages_route_does(api: httpx.Client) -> None:
    params = [
        _params(0),
        _params(1, max_tokens=2),  # cut short: stop_reason max_tokens
        _params(2, stop_sequences=["reply"]),
        {"model": CLAUDE, "messages": [{"role": "user", "content": "no max_tokens"}]},  # refused by the fast route
    ]
    created = _message_batch(api, params)
    assert created["request_counts"] == _counts(processing=4) and created["results_url"] is None
    assert created["ended_at"] is None and created["cancel_initiated_at"] is None

    batch = _message_batch_now(api, created["id"])  # no completion delay: ended at once
    assert batch["processing_status"] == "ended" and batch["ended_at"] is not None
    assert batch["request_counts"] == _counts(succeeded=3, errored=1)
    results = _results(api, batch)
    assert [r["custom_id"] for r in results] == ["p0", "p1", "p2", "p3"]

    fast = [api.post("/v1/messages", json=p, headers=ANTHROPIC_HEADERS) for p in params]
    for row, answer in zip(results[:3], fast[:3], strict=True):
        assert answer.status_code == 200 and row["result"]["type"] == "succeeded"
        message = row["result"]["message"]
        assert message["usage"]["service_tier"] == "batch"
        expected = answer.json()
        expected["usage"]["service_tier"] = "batch"
        assert {k: v for k, v in message.items() if k != "id"} == {k: v for k, v in expected.items() if k != "id"}
    assert results[1]["result"]["message"]["stop_reason"] == "max_tokens"
    assert results[2]["result"]["message"]["stop_reason"] == "stop_sequence"
    error = results[3]["result"]
    assert error["type"] == "errored" and fast[3].status_code == 400
    assert error["error"]["type"] == "error" and error["error"]["error"] == fast[3].json()["error"]


def test_the_anthropic_sdk_runs_a_message_batch_through_the_fake(base_url: str, api: httpx.Client) -> None:
    client = anthropic.Anthropic(base_url=base_url, api_key=KEY, max_retries=0)
    requests: list[BatchRequest] = [
        {
            "custom_id": cid,
            "params": {"model": CLAUDE, "max_tokens": 50, "messages": [{"role": "user", "content": f"prompt number {i}"}]},
        }
        for cid, i in (("a", 20), ("b", 21))
    ]
    created = client.messages.batches.create(requests=requests)
    batch = client.messages.batches.retrieve(created.id)
    assert batch.processing_status == "ended" and batch.request_counts.succeeded == 2
    results = {r.custom_id: r.result for r in client.messages.batches.results(created.id)}
    fast = client.messages.create(model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "prompt number 20"}])
    first = results["a"]
    assert first.type == "succeeded" and first.message.content == fast.content


def test_a_message_batch_counts_every_request_as_processing_until_it_ends(api: httpx.Client) -> None:
    _configure(api, batch_completion_s=100)
    created = _message_batch(api, [_params(i) for i in range(4)])
    _advance(api, 75)  # three of four are done, but Anthropic tells nothing before the end
    batch = _message_batch_now(api, created["id"])
    assert batch["processing_status"] == "in_progress" and batch["request_counts"] == _counts(processing=4)
    early = api.get(f"/v1/messages/batches/{created['id']}/results", headers=ANTHROPIC_HEADERS)
    assert _anthropic_error(early, 404) == "not_found_error"
    _advance(api, 25)
    batch = _message_batch_now(api, created["id"])
    assert batch["processing_status"] == "ended" and batch["request_counts"] == _counts(succeeded=4)


def test_a_failure_share_makes_those_message_requests_errored(api: httpx.Client) -> None:
    _configure(api, batch_failure_rate=0.5, seed=7)
    batch = _message_batch_now(api, _message_batch(api, [_params(i) for i in range(20)])["id"])
    draws = random.Random(7)
    expected_errored = {f"p{i}" for i in range(20) if draws.random() < 0.5}
    assert batch["request_counts"] == _counts(succeeded=20 - len(expected_errored), errored=len(expected_errored))
    results = _results(api, batch)
    assert {r["custom_id"] for r in results if r["result"]["type"] == "errored"} == expected_errored
    assert {r["result"]["error"]["error"]["type"] for r in results if r["result"]["type"] == "errored"} == {"api_error"}


def test_a_message_batch_not_done_in_its_window_expires(api: httpx.Client) -> None:
    _configure(api, batch_completion_s=100, batch_window_s=60)
    created = _message_batch(api, [_params(i) for i in range(10)])
    _advance(api, 59.5)
    assert _message_batch_now(api, created["id"])["processing_status"] == "in_progress"
    _advance(api, 0.5)
    batch = _message_batch_now(api, created["id"])
    assert batch["processing_status"] == "ended" and batch["request_counts"] == _counts(succeeded=6, expired=4)
    assert [r["result"]["type"] for r in _results(api, batch)] == ["succeeded"] * 6 + ["expired"] * 4


def test_a_canceled_message_batch_ends_with_its_undone_requests_canceled(api: httpx.Client) -> None:
    _configure(api, batch_completion_s=100, batch_cancel_s=30)
    created = _message_batch(api, [_params(i) for i in range(4)])
    path = f"/v1/messages/batches/{created['id']}"
    assert _anthropic_error(api.delete(path, headers=ANTHROPIC_HEADERS), 400) == "invalid_request_error"
    _advance(api, 60)
    canceling = api.post(f"{path}/cancel", headers=ANTHROPIC_HEADERS).json()
    assert canceling["processing_status"] == "canceling" and canceling["cancel_initiated_at"] is not None
    _advance(api, 29)
    assert _message_batch_now(api, created["id"])["processing_status"] == "canceling"
    _advance(api, 1)
    batch = _message_batch_now(api, created["id"])
    assert batch["processing_status"] == "ended" and batch["request_counts"] == _counts(succeeded=2, canceled=2)
    assert [r["result"] for r in _results(api, batch)][2:] == [{"type": "canceled"}, {"type": "canceled"}]
    assert _anthropic_error(api.post(f"{path}/cancel", headers=ANTHROPIC_HEADERS), 400) == "invalid_request_error"
    assert api.delete(path, headers=ANTHROPIC_HEADERS).json() == {"id": created["id"], "type": "message_batch_deleted"}
    assert _anthropic_error(api.get(path, headers=ANTHROPIC_HEADERS), 404) == "not_found_error"


def test_message_batches_list_newest_first_page_by_page(api: httpx.Client) -> None:
    ids = [_message_batch(api, [_params(i)])["id"] for i in range(5)]
    first = api.get("/v1/messages/batches", params={"limit": 2}, headers=ANTHROPIC_HEADERS).json()
    assert [b["id"] for b in first["data"]] == [ids[4], ids[3]] and first["has_more"] and first["last_id"] == ids[3]
    second = api.get("/v1/messages/batches", params={"limit": 2, "after_id": ids[3]}, headers=ANTHROPIC_HEADERS).json()
    assert [b["id"] for b in second["data"]] == [ids[2], ids[1]]
    back = api.get("/v1/messages/batches", params={"limit": 2, "before_id": ids[2]}, headers=ANTHROPIC_HEADERS).json()
    assert [b["id"] for b in back["data"]] == [ids[4], ids[3]] and not back["has_more"]
    for bad in ({"limit": 0}, {"limit": 1001}, {"after_id": "msgbatch_unknown"}):
        assert (
            _anthropic_error(api.get("/v1/messages/batches", params=bad, headers=ANTHROPIC_HEADERS), 400)
            == "invalid_request_error"
        )


def test_anthropic_limits_and_envelope_checks(api: httpx.Client) -> None:
    assert DEFAULTS["anthropic_batch_max_requests"] == 100_000 and DEFAULTS["anthropic_batch_max_bytes"] == 256_000_000
    create = "/v1/messages/batches"
    too_many = {"requests": [{"custom_id": f"c{i}", "params": {}} for i in range(100_001)]}
    assert _anthropic_error(api.post(create, json=too_many, headers=ANTHROPIC_HEADERS), 400) == "invalid_request_error"

    body = {"requests": [{"custom_id": "a", "params": _params(0)}]}
    size = len(json.dumps(body).encode())
    _configure(api, anthropic_batch_max_bytes=size)
    assert api.post(create, content=json.dumps(body), headers=ANTHROPIC_HEADERS).status_code == 200
    too_big = api.post(create, content=json.dumps(body) + " ", headers=ANTHROPIC_HEADERS)
    assert _anthropic_error(too_big, 413) == "request_too_large"
    _configure(api)

    bad_bodies: list[dict[str, Any]] = [
        {"requests": []},
        {"requests": [{"custom_id": "has space", "params": _params(0)}]},
        {"requests": [{"custom_id": "x" * 65, "params": _params(0)}]},
        {"requests": [{"custom_id": "a", "params": _params(0)}, {"custom_id": "a", "params": _params(1)}]},
        {"requests": [{"custom_id": "a"}]},
    ]
    for bad in bad_bodies:
        assert _anthropic_error(api.post(create, json=bad, headers=ANTHROPIC_HEADERS), 400) == "invalid_request_error"
    no_key = {"Authorization": "", "anthropic-version": "2023-06-01"}
    assert _anthropic_error(api.post(create, json=body, headers=no_key), 401) == "authentication_error"


# --------------------------------------------------------------------------------------
# Gemini batch mode
# --------------------------------------------------------------------------------------

GEMINI_HEADERS = {"x-goog-api-key": KEY}
GEMINI = "gemini-x"


def _gemini_request(i: int, **config: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": f"prompt number {i}"}]}]}
    if config:
        request["generationConfig"] = config
    return request


def _gemini_batch(client: httpx.Client, requests: list[dict[str, Any]]) -> dict[str, Any]:
    inline = [{"request": r, "metadata": {"key": f"p{i}"}} for i, r in enumerate(requests)]
    body = {"batch": {"displayName": "test", "inputConfig": {"requests": {"requests": inline}}}}
    response = client.post(f"/v1beta/models/{GEMINI}:batchGenerateContent", json=body, headers=GEMINI_HEADERS)
    assert response.status_code == 200, response.text
    operation: dict[str, Any] = response.json()
    assert operation["done"] is False and operation["metadata"]["state"] == "BATCH_STATE_PENDING"
    assert operation["name"].startswith("batches/") and operation["metadata"]["model"] == f"models/{GEMINI}"
    return operation


def _operation(client: httpx.Client, name: str) -> dict[str, Any]:
    return _fetch(client, f"/v1beta/{name}", GEMINI_HEADERS)


def _stats(total: int, ok: int, failed: int, pending: int) -> dict[str, str]:
    return {
        "requestCount": str(total),
        "successfulRequestCount": str(ok),
        "failedRequestCount": str(failed),
        "pendingRequestCount": str(pending),
    }


def test_a_gemini_batch_answers_each_request_as_generate_content_does(api: httpx.Client) -> None:
    requests = [_gemini_request(0), _gemini_request(1, maxOutputTokens=2), {"contents": []}]
    created = _gemini_batch(api, requests)
    operation = _operation(api, created["name"])
    assert operation["done"] is True and operation["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert operation["metadata"]["batchStats"] == _stats(3, 2, 1, 0)
    inlined = operation["response"]["inlinedResponses"]["inlinedResponses"]
    assert inlined == operation["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    assert [entry["metadata"] for entry in inlined] == [{"key": "p0"}, {"key": "p1"}, {"key": "p2"}]
    fast = [api.post(f"/v1beta/models/{GEMINI}:generateContent", json=r, headers=GEMINI_HEADERS) for r in requests]
    for entry, answer in zip(inlined[:2], fast[:2], strict=True):
        assert answer.status_code == 200
        assert {k: v for k, v in entry["response"].items() if k != "responseId"} == {
            k: v for k, v in answer.json().items() if k != "responseId"
        }
    assert inlined[1]["response"]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert fast[2].status_code == 400
    assert inlined[2]["error"] == {"code": 3, "message": fast[2].json()["error"]["message"]}


def test_a_gemini_batch_expires_or_is_cancelled_on_the_batch_clock(api: httpx.Client) -> None:
    _configure(api, batch_completion_s=100, batch_window_s=60)
    expiring = _gemini_batch(api, [_gemini_request(i) for i in range(10)])
    _advance(api, 30)
    running = _operation(api, expiring["name"])
    assert running["done"] is False and running["metadata"]["state"] == "BATCH_STATE_RUNNING"
    assert running["metadata"]["batchStats"] == _stats(10, 3, 0, 7)
    _advance(api, 30)
    expired = _operation(api, expiring["name"])
    assert expired["done"] is True and expired["metadata"]["state"] == "BATCH_STATE_EXPIRED"
    assert expired["metadata"]["batchStats"] == _stats(10, 6, 4, 0)
    errors = [e["error"]["code"] for e in expired["response"]["inlinedResponses"]["inlinedResponses"] if "error" in e]
    assert errors == [4, 4, 4, 4]

    _configure(api, batch_completion_s=100, batch_cancel_s=0)
    cancelling = _gemini_batch(api, [_gemini_request(i) for i in range(4)])
    _advance(api, 50)
    assert api.post(f"/v1beta/{cancelling['name']}:cancel", headers=GEMINI_HEADERS).json() == {}
    cancelled = _operation(api, cancelling["name"])
    assert cancelled["metadata"]["state"] == "BATCH_STATE_CANCELLED" and cancelled["metadata"]["batchStats"] == _stats(4, 2, 2, 0)
    entries = cancelled["response"]["inlinedResponses"]["inlinedResponses"]
    assert [e.get("error", {}).get("code") for e in entries] == [None, None, 1, 1]
    assert api.post(f"/v1beta/{cancelling['name']}:cancel", headers=GEMINI_HEADERS).status_code == 400
    assert api.delete(f"/v1beta/{cancelling['name']}", headers=GEMINI_HEADERS).json() == {}
    assert api.get(f"/v1beta/{cancelling['name']}", headers=GEMINI_HEADERS).status_code == 404


def test_gemini_batches_fail_a_share_list_by_page_and_limit_their_size(api: httpx.Client) -> None:
    _configure(api, batch_failure_rate=0.5, seed=7)
    operation = _operation(api, _gemini_batch(api, [_gemini_request(i) for i in range(20)])["name"])
    draws = random.Random(7)
    expected_failed = {f"p{i}" for i in range(20) if draws.random() < 0.5}
    inlined = operation["response"]["inlinedResponses"]["inlinedResponses"]
    assert {e["metadata"]["key"] for e in inlined if "error" in e} == expected_failed
    assert {e["error"]["code"] for e in inlined if "error" in e} == {13}

    _configure(api)
    names = [_gemini_batch(api, [_gemini_request(i)])["name"] for i in range(3)]
    first = api.get("/v1beta/batches", params={"pageSize": 2}, headers=GEMINI_HEADERS).json()
    assert [o["name"] for o in first["operations"]] == [names[2], names[1]]
    token = first["nextPageToken"]
    second = api.get("/v1beta/batches", params={"pageSize": 2, "pageToken": token}, headers=GEMINI_HEADERS).json()
    assert second["operations"][0]["name"] == names[0]
    assert api.get("/v1beta/batches", params={"pageToken": "nope"}, headers=GEMINI_HEADERS).status_code == 400

    assert DEFAULTS["gemini_batch_max_bytes"] == 20_000_000
    body = {"batch": {"inputConfig": {"requests": {"requests": [{"request": _gemini_request(0)}]}}}}
    _configure(api, gemini_batch_max_bytes=len(json.dumps(body)))
    url = f"/v1beta/models/{GEMINI}:batchGenerateContent"
    assert api.post(url, content=json.dumps(body), headers=GEMINI_HEADERS).status_code == 200
    too_big = api.post(url, content=json.dumps(body) + " ", headers=GEMINI_HEADERS)
    assert too_big.status_code == 400 and too_big.json()["error"]["status"] == "INVALID_ARGUMENT"
    _configure(api)
    empty: dict[str, Any] = {"batch": {"inputConfig": {"requests": {"requests": []}}}}
    assert api.post(url, json=empty, headers=GEMINI_HEADERS).status_code == 400
    assert api.post(url, json=body).status_code == 403


def test_the_google_genai_sdk_runs_a_batch_through_the_fake(base_url: str, api: httpx.Client) -> None:
    client = genai.Client(api_key=KEY, http_options=genai_types.HttpOptions(base_url=base_url, api_version="v1beta"))
    request: genai_types.InlinedRequestDict = {"contents": [{"role": "user", "parts": [{"text": "prompt number 30"}]}]}
    job = client.batches.create(model=GEMINI, src=[request])
    assert job.name is not None and job.state == genai_types.JobState.JOB_STATE_PENDING
    job = client.batches.get(name=job.name)
    assert job.state == genai_types.JobState.JOB_STATE_SUCCEEDED
    assert job.dest is not None and job.dest.inlined_responses is not None
    (answer,) = job.dest.inlined_responses
    fast = client.models.generate_content(model=GEMINI, contents="prompt number 30")
    assert answer.response is not None and answer.response.text == fast.text
