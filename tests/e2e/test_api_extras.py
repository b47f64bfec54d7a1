"""The rest of the public API on the local stack: listing, inline jobs and results,
Server-Sent Events, and the OpenAPI document."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from tests.e2e.test_lifecycle_http import init, new_key, upload, wait


def post(base: str, key: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{base}{path}", json=body, headers={"X-API-Key": key}, timeout=30)


def test_inline_jobs_run_without_an_upload_and_return_rows_inline(stack: Any) -> None:
    base, key = stack.base_url, new_key(stack)
    prompts = [{"prompt_id": f"i{i}", "prompt": f"inline {i}"} for i in range(25)] + [{"prompt_id": "bad"}]
    res = post(base, key, "/v1/jobs", {"provider": "fake", "model": "fake-small", "prompts": prompts})
    assert res.status_code == 201, res.text
    assert res.json()["status"] in ("QUEUED", "PENDING", "PROCESSING")
    job_id = res.json()["job_id"]
    assert wait(base, key, job_id)["status"] == "COMPLETED"
    inline = requests.get(f"{base}/v1/jobs/{job_id}/results?inline=true", headers={"X-API-Key": key}, timeout=30).json()
    assert sorted(r["prompt_id"] for r in inline["results"]) == sorted(f"i{i}" for i in range(25))
    assert [(e["line"], e["error"]) for e in inline["errors"]] == [(26, "invalid_line")]

    too_many = post(
        base, key, "/v1/jobs", {"provider": "fake", "model": "m", "prompts": [{"prompt_id": "x", "prompt": "y"}] * 1001}
    )
    assert too_many.status_code == 413 and too_many.json()["error"]["code"] == "payload_too_large"
    empty = post(base, key, "/v1/jobs", {"provider": "fake", "model": "m", "prompts": []})
    assert empty.status_code == 400 and empty.json()["error"]["details"]["field"] == "prompts"


def test_inline_results_up_to_the_limit_are_returned(stack: Any) -> None:
    base, key = stack.base_url, new_key(stack)
    prompts = [{"prompt_id": f"i{i}", "prompt": "x"} for i in range(1000)]
    job_id = post(base, key, "/v1/jobs", {"provider": "fake", "model": "m", "prompts": prompts}).json()["job_id"]
    wait(base, key, job_id)
    ok = requests.get(f"{base}/v1/jobs/{job_id}/results?inline=true", headers={"X-API-Key": key}, timeout=30)
    assert ok.status_code == 200 and len(ok.json()["results"]) == 1000  # at the limit, not over


def test_jobs_are_listed_newest_first_page_by_page_and_only_the_clients_own(stack: Any) -> None:
    base, key = stack.base_url, new_key(stack)
    other = new_key(stack)
    made = [post(base, key, "/v1/jobs/init", {"provider": "fake", "model": "m"}).json()["job_id"] for _ in range(5)]
    post(base, other, "/v1/jobs/init", {"provider": "fake", "model": "m"})
    seen: list[str] = []
    token = None
    for _ in range(5):
        url = f"{base}/v1/jobs?limit=2" + (f"&page_token={token}" if token else "")
        page = requests.get(url, headers={"X-API-Key": key}, timeout=30).json()
        seen += [j["job_id"] for j in page["jobs"]]
        token = page["next_page_token"]
        if not token:
            break
    assert seen == list(reversed(made))
    bad = requests.get(f"{base}/v1/jobs?page_token=zzz", headers={"X-API-Key": key}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "page_token"
    assert requests.get(f"{base}/v1/jobs?limit=0", headers={"X-API-Key": key}, timeout=30).status_code == 400


def test_events_stream_status_changes_and_end_at_a_terminal_state(stack: Any) -> None:
    base, key = stack.base_url, new_key(stack)
    prompts = [{"prompt_id": f"e{i}", "prompt": "x"} for i in range(200)]
    job_id = post(base, key, "/v1/jobs", {"provider": "fake", "model": "m", "prompts": prompts}).json()["job_id"]
    events: list[tuple[str, dict[str, Any]]] = []
    started = time.monotonic()
    with requests.get(f"{base}/v1/jobs/{job_id}/events", headers={"X-API-Key": key}, stream=True, timeout=60) as res:
        assert res.status_code == 200 and res.headers["Content-Type"].startswith("text/event-stream")
        name = ""
        for raw in res.iter_lines():
            line = raw.decode()
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
            if events and events[-1][0] == "done":
                break
            assert time.monotonic() - started < 120
    names = [n for n, _ in events]
    assert names[-1] == "done" and events[-1][1]["status"] == "COMPLETED"
    assert "status" in names and events[-2][1] == events[-1][1]
    statuses = [b["status"] for n, b in events if n == "status"]
    assert statuses[-1] == "COMPLETED" and len(set(json.dumps(b) for _, b in events)) == len(statuses)


def test_the_openapi_document_describes_every_route(stack: Any) -> None:
    from promptforge.api.routes import ROUTES

    doc = requests.get(f"{stack.base_url}/v1/openapi.json", timeout=30).json()
    assert doc["openapi"].startswith("3.1")
    served = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert served == {(r.method, r.path) for r in ROUTES if r.api}  # the web page (/ui) is not API


def test_events_stream_from_the_events_url_the_status_gives_with_cors_for_the_jobs_page(stack: Any) -> None:
    # In production the gateway buffers responses: the status names the events function's
    # own URL, which checks the key itself, and the jobs page (another origin) may read it.
    base, key = stack.base_url, new_key(stack)
    job = init(base, key).json()
    status = requests.get(f"{base}/v1/jobs/{job['job_id']}/status", headers={"X-API-Key": key}, timeout=30).json()
    url = status["events_url"]
    assert url.startswith(stack.function_url("job_events").rstrip("/")) and url.endswith(f"/v1/jobs/{job['job_id']}/events")
    assert requests.get(url, timeout=30).status_code == 401  # no key, no stream
    assert requests.get(url, headers={"X-API-Key": new_key(stack)}, timeout=30).status_code == 404  # not theirs
    upload(job, b'{"prompt_id": "a", "prompt": "hi"}\n')
    names = []
    with requests.get(url, headers={"X-API-Key": key, "Origin": base}, stream=True, timeout=60) as res:
        assert res.status_code == 200 and res.headers["Access-Control-Allow-Origin"] == base
        for raw in res.iter_lines():
            line = raw.decode()
            if line.startswith("event: "):
                names.append(line[7:])
            if names and names[-1] == "done":
                break
    assert names[-1] == "done"
    preflight = {"Origin": base, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-api-key"}
    allowed = requests.options(url, headers=preflight, timeout=30)
    assert allowed.status_code == 204 and allowed.headers["Access-Control-Allow-Origin"] == base
    assert "X-API-Key" in allowed.headers["Access-Control-Allow-Headers"]
    other = requests.options(url, headers={**preflight, "Origin": "https://evil.example"}, timeout=30)
    assert "Access-Control-Allow-Origin" not in other.headers
