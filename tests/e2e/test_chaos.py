"""Crashes and races on the whole local stack: the worker process killed with SIGKILL at
random moments during a job, ten jobs of one client uploaded at once, and cancel."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
import requests

from promptforge.domain.records import ChunkStatus
from tests.conftest import wait_until
from tests.e2e.test_lifecycle_http import init, new_key, upload, wait


def download(base: str, key: str, job_id: str, partial: bool = False) -> dict[str, list[dict[str, Any]]]:
    url = f"{base}/v1/jobs/{job_id}/results" + ("?partial=true" if partial else "")
    res = requests.get(url, headers={"X-API-Key": key}, timeout=60)
    assert res.status_code == 200, res.text
    return {
        f["filename"]: [json.loads(line) for line in requests.get(f["url"], timeout=60).text.splitlines()]
        for f in res.json()["files"]
    }


def status(base: str, key: str, job_id: str) -> dict[str, Any]:
    return dict(requests.get(f"{base}/v1/jobs/{job_id}/status", headers={"X-API-Key": key}, timeout=30).json())


def settled_stats(llm: str) -> dict[str, Any]:
    """The fake server's counts once requests the killed worker had already written to its
    sockets have arrived and been served (the kernel still delivers them): nothing in
    flight, and the same total over 0.3 s, the quiet interval that says so."""
    last: dict[str, Any] = {}

    def settled() -> dict[str, Any] | None:
        nonlocal last
        stats, previous = dict(requests.get(f"{llm}/_stats", timeout=5).json()), last
        last = stats
        return stats if stats["in_flight"] == 0 and stats["requests_total"] == previous.get("requests_total") else None

    return wait_until("the fake LLM to settle (nothing in flight, no new request)", settled, 30, interval_s=0.3)


def job_store(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The stack's Firestore, read as the service reads it (chunk records and all)."""
    from google.cloud import firestore

    from promptforge.adapters.firestore_store import FirestoreJobStore

    env = stack.env()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", env["FIRESTORE_EMULATOR_HOST"])
    db = firestore.Client(project=env["GOOGLE_CLOUD_PROJECT"], database=env["PROMPTFORGE_FIRESTORE_DATABASE"])
    return FirestoreJobStore(db)


def test_sigkill_of_the_worker_loses_and_duplicates_nothing(stack: Any) -> None:
    base, key = stack.base_url, new_key(stack)
    llm = stack.env()["PROMPTFORGE_FAKE_LLM_URL"].removesuffix("/v1")
    n = 5000
    data = b"".join(json.dumps({"prompt_id": f"c{i:05d}", "prompt": f"chaos {i}"}).encode() + b"\n" for i in range(n))
    requests.post(f"{llm}/_config", json={"latency_ms": 40}, timeout=5).raise_for_status()
    calls_before = requests.get(f"{llm}/_stats", timeout=5).json()["requests_total"]
    rng = random.Random(20261123)
    kills: list[dict[str, int]] = []
    try:
        job = init(base, key).json()
        upload(job, data)
        wait_until("the job to start", lambda: status(base, key, job["job_id"])["status"] == "PROCESSING", 120, 0.1)
        # Kill at random points of the job's progress (not of the clock, which runs at the
        # machine's speed), so every run gets its four kills.
        marks = [rng.uniform(lo, hi) * n for lo, hi in ((0.05, 0.2), (0.3, 0.45), (0.55, 0.7), (0.75, 0.9))]
        for mark in marks:

            def reached(mark: float = mark) -> dict[str, Any] | None:
                now = status(base, key, job["job_id"])
                done = now["status"] != "PROCESSING" or now["completed_count"] + now["failed_count"] >= mark
                return now if done else None

            now = wait_until(f"the job to reach {mark:.0f} prompts", reached, 300)
            if now["status"] != "PROCESSING":
                break
            stack.kill("process_chunk")
            stats = settled_stats(llm)
            durable = status(base, key, job["job_id"])
            calls = stats["requests_total"] - calls_before
            done = durable["completed_count"] + durable["failed_count"]
            # In flight at the kill: sent to the model, not yet recorded durably.
            kills.append({"calls": calls, "durable": done, "in_flight": calls - done})
            # The scenario, not a wait: the worker stays down a random while, during which
            # the task queue's deliveries to it fail and are retried.
            time.sleep(rng.uniform(0.2, 1.0))
            stack.start("process_chunk")
        final = wait(base, key, job["job_id"], timeout_s=400)
    finally:
        requests.post(f"{llm}/_config", json={"latency_ms": 0}, timeout=5)
    total_calls = requests.get(f"{llm}/_stats", timeout=5).json()["requests_total"] - calls_before
    files = download(base, key, job["job_id"])
    seen = Counter(r["prompt_id"] for rows in files.values() for r in rows)
    duplicates = sum(c - 1 for c in seen.values() if c > 1)
    # Calls the retry policy made on purpose (a provider error, then another attempt).
    retries = sum(r.get("attempts", 1) - 1 for rows in files.values() for r in rows)
    by_status = requests.get(f"{llm}/_stats", timeout=5).json().get("by_status")
    print(
        f"\nchaos: kills={len(kills)} prompts={n} model_calls={total_calls} retries={retries} "
        f"duplicates={duplicates} per_kill={kills} fake_llm_by_status={by_status}"
    )
    assert final["status"] == "COMPLETED" and len(kills) == 4
    assert duplicates == 0 and sorted(seen) == [f"c{i:05d}" for i in range(n)]
    assert files["errors.jsonl"] == []
    # Every call beyond one per prompt was in flight at a kill: nothing recorded was re-run.
    assert total_calls - retries <= n + kills[-1]["in_flight"]


def test_ten_jobs_of_one_client_uploaded_at_once_run_one_at_a_time_in_upload_order(stack: Any) -> None:
    base, key = stack.base_url, new_key(stack)
    jobs = [init(base, key).json() for _ in range(10)]
    data = [
        b"".join(json.dumps({"prompt_id": f"j{j}-{i}", "prompt": "hi"}).encode() + b"\n" for i in range(60)) for j in range(10)
    ]
    threads = [threading.Thread(target=upload, args=(job, d)) for job, d in zip(jobs, data, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    most_active = 0
    deadline = time.monotonic() + 240
    finals: dict[str, dict[str, Any]] = {}
    while len(finals) < 10 and time.monotonic() < deadline:
        # One query reads every job at once, so the count is of one moment.
        page = requests.get(f"{base}/v1/jobs?limit=10", headers={"X-API-Key": key}, timeout=30).json()["jobs"]
        most_active = max(most_active, sum(1 for s in page if s["status"] in ("QUEUED", "PROCESSING")))
        finals = {s["job_id"]: s for s in page if s["status"] in ("COMPLETED", "FAILED", "CANCELLED")}
        time.sleep(0.1)
    assert len(finals) == 10 and all(s["status"] == "COMPLETED" for s in finals.values())
    assert most_active <= 1
    runs = sorted((s["started_processing_at"], s["completed_at"], k) for k, s in finals.items())
    for (_, end, _), (start, _, _) in zip(runs, runs[1:], strict=False):
        assert end <= start  # one active job at a time
    # after the first to take the slot, jobs start in the order their uploads finalized
    finalized = upload_times(stack, [j["job_id"] for j in jobs])
    started = [k for _, _, k in runs][1:]
    assert started == sorted(started, key=lambda k: finalized[k])


def upload_times(stack: Any, job_ids: list[str]) -> dict[str, str]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    env = stack.env()
    client = storage.Client(
        project=env["GOOGLE_CLOUD_PROJECT"],
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]},
    )
    out = {}
    for blob in client.list_blobs(env["PROMPTFORGE_UPLOAD_BUCKET"], prefix="uploads/"):
        job_id = blob.name.rsplit("/", 1)[-1].removesuffix(".jsonl")
        if job_id in job_ids:
            out[job_id] = blob.time_created.isoformat()
    return out


def test_cancel_through_the_api_keeps_what_finished(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    base, key = stack.base_url, new_key(stack)
    llm = stack.env()["PROMPTFORGE_FAKE_LLM_URL"].removesuffix("/v1")
    data = b"".join(json.dumps({"prompt_id": f"x{i:04d}", "prompt": "slow"}).encode() + b"\n" for i in range(3000))
    # 2 s answers: the four chunks in flight take about 12 s for the file, so the cancel
    # lands while they run (at 200 ms they could all finish first, and none is stopped).
    requests.post(f"{llm}/_config", json={"latency_ms": 2000}, timeout=5).raise_for_status()
    try:
        job = init(base, key).json()
        upload(job, data)
        wait_until("100 completed prompts", lambda: status(base, key, job["job_id"])["completed_count"] >= 100, 60, 0.2)
        cancel = requests.post(f"{base}/v1/jobs/{job['job_id']}/cancel", headers={"X-API-Key": key}, timeout=30)
        assert cancel.status_code == 200 and cancel.json()["status"] == "CANCELLED"
        again = requests.post(f"{base}/v1/jobs/{job['job_id']}/cancel", headers={"X-API-Key": key}, timeout=30)
        assert again.status_code == 409 and again.json()["error"]["code"] == "job_terminal"
        assert again.json()["error"]["details"]["current_status"] == "CANCELLED"
        plain = requests.get(f"{base}/v1/jobs/{job['job_id']}/results", headers={"X-API-Key": key}, timeout=30)
        assert plain.status_code == 409

        # Workers stop starting prompts within seconds (their heartbeat is every 2 s): each
        # chunk that ran is recorded as stopped, and then no request reaches the model.
        store = job_store(stack, monkeypatch)

        def all_chunks_stopped() -> list[Any] | None:
            chunks = store.list_chunks(job["job_id"])
            return chunks if chunks and all(c.status is not ChunkStatus.RUNNING for c in chunks) else None

        chunks = wait_until("every running chunk to record its stop", all_chunks_stopped, 60, 0.2)
        assert any(c.stopped for c in chunks)
        assert all(c.status is ChunkStatus.PENDING or c.adds_up() for c in chunks)
        started = settled_stats(llm)["requests_total"]
        assert status(base, key, job["job_id"])["completed_count"] < 3000
    finally:
        requests.post(f"{llm}/_config", json={"latency_ms": 0}, timeout=5)
    files = download(base, key, job["job_id"], partial=True)
    got = [r["prompt_id"] for name, rows in files.items() if name != "errors.jsonl" for r in rows]
    assert len(got) == len(set(got)) >= 100
    # Still no request since the chunks stopped, however long the download took.
    assert requests.get(f"{llm}/_stats", timeout=5).json()["requests_total"] == started


def test_compose_503s_and_a_kill_mid_assembly_lose_no_row(stack: Any) -> None:
    """The worker's storage calls go through a proxy that answers every third compose with
    a 503 (half of them after the compose took effect), and the worker is killed while its
    first temporary compose is in flight. 1,000 prompts in two chunks of more than 60
    checkpoints each, so each part takes more than one compose request."""
    from infra.storage_faults import ComposePolicy, StorageFaultProxy

    base, key = stack.base_url, new_key(stack)
    n = 1000
    data = b"".join(json.dumps({"prompt_id": f"k{i:05d}", "prompt": f"compose {i}"}).encode() + b"\n" for i in range(n))
    policy = ComposePolicy(fail_every=3, hold_first_scratch=True)
    saved = dict(stack.extra_env)
    seen_completed: list[int] = []
    with StorageFaultProxy(stack.env()["STORAGE_EMULATOR_HOST"], policy) as proxy:
        try:
            # A checkpoint holds at most 5 + 3 rows (rows finish in the 4 slots while one is
            # written), so each 500-line chunk has more than 60 segments, however slow the machine.
            stack.extra_env.update(
                {
                    "STORAGE_EMULATOR_HOST": proxy.url,
                    "PROMPTFORGE_CHECKPOINT_ROWS": "5",
                    "PROMPTFORGE_WORKER_CONCURRENCY": "4",
                }
            )
            stack.kill("process_chunk")
            stack.start("process_chunk")
            job = init(base, key).json()
            upload(job, data)
            deadline = time.monotonic() + 120
            while not policy.hold.is_set() and time.monotonic() < deadline:
                seen_completed.append(status(base, key, job["job_id"])["completed_count"])
                time.sleep(0.05)
            assert policy.hold.is_set(), "no temporary compose was seen"
            stack.kill("process_chunk")
            policy.release.set()  # the dead worker's compose reaches the emulator late
            stack.start("process_chunk")
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                now = status(base, key, job["job_id"])
                seen_completed.append(now["completed_count"])
                if now["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                    break
                time.sleep(0.2)
        finally:
            stack.extra_env.clear()
            stack.extra_env.update(saved)
            stack.kill("process_chunk")
            stack.start("process_chunk")
    final = status(base, key, job["job_id"])
    files = download(base, key, job["job_id"])
    seen = Counter(r["prompt_id"] for rows in files.values() for r in rows)
    print(
        f"\ncompose faults: composes={policy.seen} failed_before={policy.failed_before} "
        f"failed_after={policy.failed_after} completed={final['completed_count']}"
    )
    assert final["status"] == "COMPLETED" and final["completed_count"] == n and final["failed_count"] == 0
    assert sorted(seen) == [f"k{i:05d}" for i in range(n)] and max(seen.values()) == 1
    assert files["errors.jsonl"] == []
    assert all(a <= b for a, b in zip(seen_completed, seen_completed[1:], strict=False)), "completed_count went back"
    assert policy.failed_before + policy.failed_after > 0
