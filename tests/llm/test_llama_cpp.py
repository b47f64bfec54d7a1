"""PromptForge against a real OpenAI-compatible server someone else wrote: llama.cpp's
server (llama-cpp-python) with Gemma 3 270M, configured as the operator's
``openai_compatible`` endpoint, driven through the public API of the local stack.

The server computes one request at a time and queues the rest (its real concurrency
limit, see infra/model_server.py). Answers are kept short (``max_tokens`` 8 to 16), so the
model's time stays well under a minute here.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest
import requests

from infra import model_server
from tests.conftest import wait_until
from tests.e2e.test_chaos import download, status
from tests.e2e.test_lifecycle_http import init, new_key, upload, wait

MAX_TOKENS = 16
TOPICS = ["the sea", "a mountain", "bread", "the moon", "a river", "winter", "a library", "the wind"]


def _lines(n: int, prefix: str) -> list[dict[str, Any]]:
    return [{"prompt_id": f"{prefix}{i:03d}", "prompt": f"Write one sentence about {TOPICS[i % len(TOPICS)]}."} for i in range(n)]


def run(stack: Any, key: str, lines: list[dict[str, Any]], **job: Any) -> str:
    """Submit ``lines`` as a job on the model server's endpoint; returns the job id."""
    spec = {"provider": "openai_compatible", "endpoint": model_server.ENDPOINT, "model": model_server.MODEL, **job}
    res = init(stack.base_url, key, **spec)
    assert res.status_code == 201, res.text
    created = res.json()
    upload(created, "".join(json.dumps(line) + "\n" for line in lines).encode())
    return str(created["job_id"])


def rows(stack: Any, key: str, job_id: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The job's result rows and error rows by prompt_id, each prompt_id exactly once."""
    files = download(stack.base_url, key, job_id)
    results = [row for name, part in files.items() if name != "errors.jsonl" for row in part]
    errors = files.get("errors.jsonl", [])
    ids = Counter(row["prompt_id"] for row in results + errors)
    assert not [pid for pid, n in ids.items() if n > 1], ids
    return {r["prompt_id"]: r for r in results}, {r["prompt_id"]: r for r in errors}


@pytest.fixture(scope="module")
def key(model_stack: Any) -> str:
    return new_key(model_stack)


@pytest.fixture(scope="module")
def mixed_job(model_stack: Any, key: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """One job: short prompts, one cut to 4 tokens, one longer, one over the context."""
    lines = _lines(4, "s")
    # Greedy: the same 4 tokens every run, none of them the end of the answer.
    cut = {"max_tokens": 4, "temperature": 0}
    lines.append({"prompt_id": "cut", "prompt": "Tell me a long story about a dragon.", "params": cut})
    lines.append({"prompt_id": "longer", "prompt": "Summarise this: " + "The quick brown fox jumps over the lazy dog. " * 8})
    # Over the server's 512-token context on its own.
    lines.append({"prompt_id": "huge", "prompt": "word " * (model_server.CONTEXT_TOKENS + 200)})
    job_id = run(model_stack, key, lines, params={"max_tokens": MAX_TOKENS})
    final = wait(model_stack.base_url, key, job_id, timeout_s=300)
    results, errors = rows(model_stack, key, job_id)
    assert set(results) | set(errors) == {line["prompt_id"] for line in lines}
    return final, results, errors


def test_a_job_completes_with_the_servers_usage_in_its_token_totals(model_stack: Any, mixed_job: Any) -> None:
    final, results, errors = mixed_job
    assert final["status"] == "COMPLETED" and final["completed_count"] == len(results) == 6
    assert {r["model"] for r in results.values()} == {model_server.MODEL}
    # Real counts from the server's tokenizer: non-zero, longer prompts count more, and the
    # answers stop at the job's max_tokens.
    assert all(r["input_tokens"] > 0 and 0 <= r["output_tokens"] <= MAX_TOKENS for r in results.values())
    assert results["longer"]["input_tokens"] > results["s000"]["input_tokens"] + 50
    assert sum(r["output_tokens"] for r in results.values()) > 0
    # The job's totals are the rows' usage, nothing else (the failed prompt had none).
    assert final["input_tokens"] == sum(r["input_tokens"] for r in results.values())
    assert final["output_tokens"] == sum(r["output_tokens"] for r in results.values())
    assert final["tokens_used"] == final["input_tokens"] + final["output_tokens"]
    # And they are the server's own figures: the same request sent to it directly counts
    # the same prompt tokens.
    url = f"http://127.0.0.1:{model_stack.ports['model-server']}/v1/chat/completions"
    messages = [{"role": "user", "content": "Write one sentence about the sea."}]
    body: dict[str, Any] = {"model": model_server.MODEL, "messages": messages, "max_tokens": 1}
    direct = requests.post(url, json=body, timeout=60).json()
    assert results["s000"]["input_tokens"] == direct["usage"]["prompt_tokens"]


def test_a_prompt_over_the_context_is_a_context_length_error_row_sent_once(mixed_job: Any) -> None:
    final, _, errors = mixed_job
    assert set(errors) == {"huge"}
    huge = errors["huge"]
    assert (huge["error"], huge["attempts"]) == ("context_length_exceeded", 1)
    assert huge["detail"] == "provider answered HTTP 400 (context_length_exceeded)"
    assert final["failed_count"] == 1 and final["error_counts"] == {"context_length_exceeded": 1}


def test_finish_reason_length_is_recorded_on_the_row(mixed_job: Any) -> None:
    _, results, _ = mixed_job
    assert (results["cut"]["finish_reason"], results["cut"]["output_tokens"]) == ("length", 4)
    # Every other answer either stopped by itself or ran into the job's max_tokens.
    for row in results.values():
        assert row["finish_reason"] in ("stop", "length")
        if row["finish_reason"] == "length":
            assert row["output_tokens"] == (4 if row is results["cut"] else MAX_TOKENS)


def test_a_full_server_queues_and_nothing_fails(model_stack: Any, key: str) -> None:
    """The server sends no limits, so the worker's window of requests in flight opens by
    one per answer and the server soon holds several at once; it computes one at a time
    and the others wait in its queue: none may fail or be retried."""
    lines = _lines(16, "q")
    job_id = run(model_stack, key, lines, params={"max_tokens": 8})
    final = wait(model_stack.base_url, key, job_id, timeout_s=300)
    results, errors = rows(model_stack, key, job_id)
    assert (final["status"], final["completed_count"], final["failed_count"]) == ("COMPLETED", 16, 0)
    assert not errors and set(results) == {line["prompt_id"] for line in lines}
    assert [r["attempts"] for r in results.values()] == [1] * 16


def test_the_model_server_killed_and_restarted_mid_job_loses_nothing(model_stack: Any, key: str) -> None:
    lines = _lines(20, "k")
    # Retries enough to outlast the restart (about 2 s): backoff doubles from 0.5 s.
    job_id = run(model_stack, key, lines, params={"max_tokens": MAX_TOKENS}, max_attempts=10)

    def some_done() -> dict[str, Any] | None:
        now = status(model_stack.base_url, key, job_id)
        return now if (now["completed_count"] or 0) >= 3 else None

    before = wait_until("three answers checkpointed", some_done, timeout_s=180, interval_s=0.2)
    assert before["status"] == "PROCESSING" and before["completed_count"] < len(lines)
    model_stack.kill("model-server")
    time.sleep(1.0)  # requests meet a closed port meanwhile
    model_stack.start("model-server")

    final = wait(model_stack.base_url, key, job_id, timeout_s=300)
    results, errors = rows(model_stack, key, job_id)
    assert (final["status"], final["completed_count"], final["failed_count"]) == ("COMPLETED", 20, 0)
    assert not errors and set(results) == {line["prompt_id"] for line in lines}
    # The kill did hit requests in flight: they were sent again and answered.
    assert max(r["attempts"] for r in results.values()) > 1
    assert final["output_tokens"] == sum(r["output_tokens"] for r in results.values())
