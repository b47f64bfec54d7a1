"""Economy jobs on the whole local stack, through the public HTTP API: each chunk goes to the
provider's batch API (the fake LLM's), is polled from Cloud Tasks, and comes back as the
rows a fast job writes, at half its cost, exactly once through a worker kill, duplicate poll
deliveries and a cancel.

The shared test stack enables only the offline providers; this module restarts the
functions that open or check providers with openai, anthropic and gemini enabled against
its fake LLM (``Stack.sdk_providers_env``), and back again at its end. The fake's batches
finish their requests over a few seconds of its clock (``batch_completion_s``); the stack
polls them after 1 s, doubling to 5 s (``infra/stack.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from infra.bench.economy import (
    MODELS,
    Delivery,
    all_batches_created,
    chunk_store,
    download,
    duplicate_polls,
    exactly_once,
    jsonl,
    prompt_lines,
    restart_worker,
    status,
    submit,
    wait_for,
)
from promptforge.domain.chunk_outcomes import ChunkOutcome
from tests.conftest import wait_until
from tests.e2e.test_fair_use import restart
from tests.e2e.test_lifecycle_http import new_key

# The functions that check a job's provider (the API's create calls) or open it (the worker).
RESTARTED = ["jobs_init", "jobs_create", "process_chunk"]
BATCH_KNOBS = ("batch_completion_s", "batch_cancel_s")
# A delivery of a poll that goes on with the chain: it polled (and maybe mapped) the batch.
ADVANCED = {ChunkOutcome.BATCH_RUNNING, ChunkOutcome.DONE}
# One that changed nothing: a later poll is due, the chunk or the job is done.
NOTHING = {ChunkOutcome.STALE_POLL, ChunkOutcome.ALREADY_DONE, ChunkOutcome.IGNORED_JOB_COMPLETED}
JOB_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def economy(stack: Any) -> Iterator[Any]:
    """The stack with openai, anthropic and gemini served by its fake LLM."""
    llm = stack.env()["PROMPTFORGE_FAKE_LLM_URL"].removesuffix("/v1")
    defaults = requests.get(f"{llm}/_config", timeout=5).json()
    saved = dict(stack.extra_env)
    stack.extra_env.update(stack.sdk_providers_env())
    try:
        print(f"\nrestarted {RESTARTED} with openai, anthropic and gemini in {restart(stack, RESTARTED):.1f}s")
        yield stack
    finally:
        requests.post(f"{llm}/_config", json={k: defaults[k] for k in BATCH_KNOBS}, timeout=5)
        stack.extra_env.clear()
        stack.extra_env.update(saved)
        restart(stack, RESTARTED)


@pytest.fixture()
def store(stack: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The stack's Firestore, read as the service reads it (the chunks' batch records)."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", stack.env()["FIRESTORE_EMULATOR_HOST"])
    return chunk_store(stack)


def fake_batches(stack: Any, **config: float) -> str:
    """Set the fake LLM's batch timing; its base URL."""
    llm = str(stack.env()["PROMPTFORGE_FAKE_LLM_URL"]).removesuffix("/v1")
    requests.post(f"{llm}/_config", json=config, timeout=5).raise_for_status()
    return llm


def keys(stack: Any, n: int) -> list[str]:
    """Keys of ``n`` new clients: a client runs one job at a time, these run side by side."""
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: new_key(stack), range(n)))


def finished(base: str, key: str, job_id: str) -> dict[str, Any]:
    return wait_for(base, key, job_id, lambda s: False, JOB_TIMEOUT_S)


def sorted_files(files: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {name: sorted(rows, key=lambda r: (str(r.get("prompt_id")), r.get("line", 0))) for name, rows in files.items()}


def assert_one_chain(deliveries: list[Delivery], chunks: int) -> None:
    """Redelivered polls went on with each chunk's chain at most once: of the copies of
    the poll a chunk expected next, one at most polled (the scheduled task may have come
    first: then none did); an older poll changed nothing."""
    assert {d.chunk for d in deliveries} == set(range(chunks)), deliveries
    for chunk in range(chunks):
        mine = [d for d in deliveries if d.chunk == chunk]
        expected = max(d.poll for d in mine)
        assert {d.outcome for d in mine} <= ADVANCED | NOTHING, mine
        assert sum(d.outcome in ADVANCED for d in mine) <= 1, mine
        assert all(d.outcome in NOTHING for d in mine if d.poll < expected), mine
        assert sum(d.poll == expected for d in mine) == 2, mine
    assert all(d.unanswered == 0 for d in deliveries), deliveries


def assert_like_fast(base: str, economy_job: tuple[str, str], fast_job: tuple[str, str], ids: list[str]) -> None:
    """The economy job completed with the fast job's files, rows, counts and tokens, every
    prompt_id once, at half its estimated cost."""
    eco, fast = finished(base, *economy_job), finished(base, *fast_job)
    assert eco["status"] == fast["status"] == "COMPLETED", (eco, fast)
    assert (eco["mode"], fast["mode"]) == ("economy", "fast")
    assert eco["provider_batches"] is None and fast["provider_batches"] is None
    same = ("prompt_count", "completed_count", "failed_count", "input_tokens", "output_tokens", "tokens_used", "error_counts")
    assert {k: eco[k] for k in same} == {k: fast[k] for k in same}
    assert fast["estimated_cost_usd"] > 0
    assert eco["estimated_cost_usd"] == pytest.approx(fast["estimated_cost_usd"] / 2, abs=2e-6)
    eco_files, fast_files = download(base, *economy_job), download(base, *fast_job)
    assert exactly_once(ids, eco_files) and exactly_once(ids, fast_files)
    assert list(eco_files) == list(fast_files)
    assert sorted_files(eco_files) == sorted_files(fast_files)


def test_an_economy_job_is_a_fast_one_at_half_price_through_a_worker_kill_and_duplicate_polls(economy: Any, store: Any) -> None:
    stack, base = economy, economy.base_url
    fake_batches(stack, batch_completion_s=8.0)
    prompts = prompt_lines(1200, "e")
    ids = [pid for pid, _ in prompts]
    data = jsonl(prompts) + b"this line is broken\n"
    eco_key, fast_key = keys(stack, 2)
    eco = submit(base, eco_key, data, "fake", "economy")
    fast = submit(base, fast_key, data, "fake", "fast")

    # Three chunks of at most 500 lines, so three provider batches, counted while it runs.
    running = wait_for(base, eco_key, eco, all_batches_created(1200), JOB_TIMEOUT_S)
    assert running["status"] == "PROCESSING" and running["mode"] == "economy", running
    batches = running["provider_batches"]
    assert (batches["batches"], batches["requests"]) == (3, 1200), batches
    assert 0 <= batches["requests_failed"] <= batches["requests_done"] <= 1200 and 0 <= batches["ended"] <= 3

    # Cloud Tasks delivering poll tasks again: the one each chunk ran last, and twice at
    # once the one it expects next. One chain of polls goes on; the others change nothing.
    assert_one_chain(duplicate_polls(stack, store, eco, 3), 3)
    # A crash of every worker while the batches run.
    assert status(base, eco_key, eco)["status"] == "PROCESSING"
    restart_worker(stack)

    assert_like_fast(base, (eco_key, eco), (fast_key, fast), ids)
    chunks = [store.get_chunk(eco, i) for i in range(3)]
    assert all(c.batch_ended and len(c.batch_ids) == 1 for c in chunks), chunks
    assert len({c.batch_ids[0] for c in chunks}) == 3  # one batch per chunk, none created twice


def test_economy_on_openai_anthropic_and_gemini_is_fast_at_half_price(economy: Any, store: Any) -> None:
    stack, base = economy, economy.base_url
    fake_batches(stack, batch_completion_s=4.0)
    prompts = prompt_lines(40, "s")
    ids = [pid for pid, _ in prompts]
    providers = ("openai", "anthropic", "gemini")
    client_keys = keys(stack, 2 * len(providers))
    jobs = {}
    for i, provider in enumerate(providers):
        for j, mode in enumerate(("economy", "fast")):
            key = client_keys[2 * i + j]
            jobs[provider, mode] = (key, submit(base, key, jsonl(prompts), provider, mode))

    def while_running(provider: str) -> tuple[dict[str, Any], list[Delivery]]:
        key, job_id = jobs[provider, "economy"]
        running = wait_for(base, key, job_id, all_batches_created(40), JOB_TIMEOUT_S)
        return running, duplicate_polls(stack, store, job_id, 1)

    with ThreadPoolExecutor(len(providers)) as pool:
        for provider, (running, deliveries) in zip(providers, pool.map(while_running, providers), strict=True):
            assert running["status"] == "PROCESSING" and running["model"] == MODELS[provider], running
            assert running["provider_batches"]["requests"] == 40
            assert_one_chain(deliveries, 1)
    for provider in providers:
        assert_like_fast(base, jobs[provider, "economy"], jobs[provider, "fast"], ids)


def test_cancelling_an_economy_job_cancels_its_provider_batches(economy: Any, store: Any) -> None:
    stack, base = economy, economy.base_url
    llm = fake_batches(stack, batch_completion_s=600.0, batch_cancel_s=2.0)
    [key] = keys(stack, 1)
    job_id = submit(base, key, jsonl(prompt_lines(1200, "c")), "fake", "economy")
    running = wait_for(base, key, job_id, all_batches_created(1200), JOB_TIMEOUT_S)
    assert running["status"] == "PROCESSING", running
    ours = {store.get_chunk(job_id, i).batch_ids[0] for i in range(3)}
    assert len(ours) == 3

    cancel = requests.post(f"{base}/v1/jobs/{job_id}/cancel", headers={"X-API-Key": key}, timeout=30)
    assert cancel.status_code == 200, cancel.text
    assert finished(base, key, job_id)["status"] == "CANCELLED"

    def provider_says() -> Counter[str]:
        listed = requests.get(f"{llm}/v1/batches?limit=100", headers={"Authorization": "Bearer k"}, timeout=10).json()
        return Counter(b["status"] for b in listed["data"] if b["id"] in ours)

    def asked_to_stop() -> Counter[str] | None:
        now = provider_says()
        return now if sum(now.values()) == 3 and set(now) <= {"cancelling", "cancelled"} else None

    # The end of the job wakes its chunks, which ask the provider to stop their batches:
    # cancelling at first, cancelled once the provider (here after 2 s) says so.
    seen = wait_until("the provider to be asked to stop every batch", asked_to_stop, 30, 0.2)
    assert set(seen) <= {"cancelling", "cancelled"}, seen
    wait_until("every batch to be cancelled", lambda: provider_says() == Counter(cancelled=3), 30, 0.2)
    assert all(store.get_chunk(job_id, i).batch_ended for i in range(3))
    assert status(base, key, job_id)["status"] == "CANCELLED"
