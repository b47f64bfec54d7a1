"""The whole lifecycle through the public HTTP API on the local stack: init, signed PUT,
finalize event, planning and chunk tasks, status, results, download."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def new_key(stack: Any, client_id: str | None = None) -> str:
    argv = [sys.executable, "-m", "promptforge.admin", "keys", "create", "--json"]
    if client_id:
        argv += ["--client-id", client_id]
    out = subprocess.run(argv, cwd=ROOT / "functions", env=stack.env(), check=True, capture_output=True, text=True)
    return str(json.loads(out.stdout)["api_key"])


@pytest.fixture(scope="module")
def api(stack: Any) -> tuple[str, str]:
    return stack.base_url, new_key(stack)


def init(base: str, key: str, **body: Any) -> requests.Response:
    payload = {"provider": "fake", "model": "fake-small", **body}
    return requests.post(f"{base}/v1/jobs/init", json=payload, headers={"X-API-Key": key}, timeout=30)


def upload(job: dict[str, Any], data: bytes) -> None:
    put = requests.put(job["upload_url"], data=data, headers=job["upload_headers"], timeout=60)
    assert put.status_code == 200, put.text


def wait(base: str, key: str, job_id: str, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        res = requests.get(f"{base}/v1/jobs/{job_id}/status", headers={"X-API-Key": key}, timeout=30)
        assert res.status_code == 200
        body = res.json()
        if body["status"] in TERMINAL:
            assert "Retry-After" not in res.headers
            return dict(body)
        assert int(res.headers["Retry-After"]) >= 1
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s}s")


def test_a_job_runs_end_to_end_and_every_prompt_comes_back_exactly_once(api: tuple[str, str], tmp_path: Path) -> None:
    base, key = api
    lines = [json.dumps({"prompt_id": f"q{i:05d}", "prompt": f"Say something about {i}."}) for i in range(1200)]
    lines.insert(100, "this line is broken")
    lines.insert(500, json.dumps({"prompt_id": "q00007", "prompt": "a duplicate"}))
    data = ("\ufeff" + "\r\n".join(lines) + "\r\n\r\n").encode()

    res = init(base, key, params={"temperature": 0.2, "max_tokens": 50}, metadata={"run": "e2e"})
    assert res.status_code == 201, res.text
    job = res.json()
    assert set(job) >= {
        "job_id",
        "status",
        "upload_url",
        "upload_method",
        "upload_headers",
        "upload_expires_at",
        "max_upload_bytes",
    }
    assert job["status"] == "AWAITING_UPLOAD" and job["upload_method"] == "PUT"
    uuid.UUID(job["job_id"])
    job_id = job["job_id"]

    early = requests.get(f"{base}/v1/jobs/{job_id}/results", headers={"X-API-Key": key}, timeout=30)
    assert early.status_code == 409
    assert early.json()["error"]["code"] == "job_not_completed"
    assert early.json()["error"]["details"]["current_status"] == "AWAITING_UPLOAD"
    assert int(early.headers["Retry-After"]) >= 1

    upload(job, data)
    status = wait(base, key, job_id)
    assert status["status"] == "COMPLETED", status
    seed_fields = {
        "job_id",
        "status",
        "provider",
        "model",
        "prompt_count",
        "completed_count",
        "failed_count",
        "created_at",
        "started_processing_at",
        "completed_at",
    }
    assert seed_fields <= set(status)
    assert (status["prompt_count"], status["completed_count"], status["failed_count"]) == (1202, 1200, 2)
    assert status["metadata"] == {"run": "e2e"} and status["tokens_used"] > 0
    assert status["created_at"] <= status["started_processing_at"] <= status["completed_at"]

    results = requests.get(f"{base}/v1/jobs/{job_id}/results", headers={"X-API-Key": key}, timeout=30).json()
    names = [f["filename"] for f in results["files"]]
    assert names == ["results_part_001.jsonl", "results_part_002.jsonl", "results_part_003.jsonl", "errors.jsonl"]
    rows: dict[str, list[dict[str, Any]]] = {}
    for f in results["files"]:
        assert f["expires_at"].endswith("Z")
        body = requests.get(f["url"], timeout=60)
        assert body.status_code == 200
        rows[f["filename"]] = [json.loads(line) for line in body.text.splitlines()]

    from infra.fake_llm import reply_for

    got = [r["prompt_id"] for name, rs in rows.items() if name != "errors.jsonl" for r in rs]
    assert sorted(got) == [f"q{i:05d}" for i in range(1200)]
    for name, rs in rows.items():
        for r in rs:
            if name == "errors.jsonl":
                continue
            i = int(r["prompt_id"][1:])
            expected = reply_for([{"role": "user", "content": f"Say something about {i}."}], "fake-small")
            assert r["result"].startswith(expected[:20]) and r["model"] == "fake-small" and r["tokens_used"] > 0
    errors = sorted((e["line"], e["error"], e.get("prompt_id")) for e in rows["errors.jsonl"])
    assert errors == [(101, "invalid_line", None), (501, "invalid_line", "q00007")]


def test_a_path_no_function_serves_is_a_404_in_the_envelope(api: tuple[str, str]) -> None:
    # Keys, tenancy and every endpoint's 4xx are tested in process: tests/api/test_errors.py.
    base, key = api
    unknown = requests.get(f"{base}/v1/nothing-here", headers={"X-API-Key": key}, timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


def test_a_clients_second_job_waits_pending_until_the_first_is_done(api: tuple[str, str], stack: Any) -> None:
    base, key = api
    llm = stack.env()["PROMPTFORGE_FAKE_LLM_URL"].removesuffix("/v1")
    big = b"".join(json.dumps({"prompt_id": f"b{i}", "prompt": "hi"}).encode() + b"\n" for i in range(600))
    small = b"".join(json.dumps({"prompt_id": f"s{i}", "prompt": "hi"}).encode() + b"\n" for i in range(30))
    first, second = init(base, key).json(), init(base, key).json()
    # A slower model keeps the first job running while the second upload lands.
    requests.post(f"{llm}/_config", json={"latency_ms": 200}, timeout=5).raise_for_status()
    try:
        upload(first, big)
        # Finalize events can arrive out of upload order; let the first take the slot.
        _wait_status(base, key, first["job_id"], ("QUEUED", "PROCESSING"))
        upload(second, small)
        _watch_second(base, key, first, second)
    finally:
        requests.post(f"{llm}/_config", json={"latency_ms": 0}, timeout=5)


def _wait_status(base: str, key: str, job_id: str, wanted: tuple[str, ...]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        res = requests.get(f"{base}/v1/jobs/{job_id}/status", headers={"X-API-Key": key}, timeout=30)
        if res.json()["status"] in wanted:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {wanted}")


def _watch_second(base: str, key: str, first: dict[str, Any], second: dict[str, Any]) -> None:
    seen = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        s2 = requests.get(f"{base}/v1/jobs/{second['job_id']}/status", headers={"X-API-Key": key}, timeout=30).json()
        seen.add(s2["status"])
        if s2["status"] == "COMPLETED":
            break
        time.sleep(0.2)
    s1 = wait(base, key, first["job_id"])
    assert s1["status"] == "COMPLETED" and s2["status"] == "COMPLETED"
    assert "PENDING" in seen
    assert s1["completed_at"] <= s2["started_processing_at"]
