"""Tests of the fake LLM server (infra/fake_llm): the pure reply functions, the ASGI app
through Starlette's TestClient, and the real server started as a subprocess.

Every network wait has an explicit timeout, so a hung server fails a test instead of
hanging the run.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from infra.fake_llm import (
    REPLY_PREFIX,
    apply_stop,
    complete,
    create_app,
    estimate_tokens,
    prompt_tokens,
    reply_for,
    truncate_to_tokens,
)
from infra.fake_llm.server import FakeLLM, FakeLLMConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-test-key-never-logged"
MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the fake server."},
]
CHAT = "/v1/chat/completions"


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A TestClient on a fresh app with no latency, sending a bearer key by default."""
    with TestClient(create_app(FakeLLMConfig()), headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


# TestClient answers with httpx2's Response when httpx2 is installed (Starlette 1.x prefers
# it) and with httpx's otherwise; both have the same interface, hence Any.
def _chat(client: TestClient, **body: Any) -> Any:
    body.setdefault("model", "gpt-4o-mini")
    body.setdefault("messages", MESSAGES)
    return client.post(CHAT, json=body)


def _assert_openai_error(response: Any, status: int, param: str | None, code: str | None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["message"], str) and error["message"]
    assert error["param"] == param
    assert error["code"] == code
    return error["message"]


# --------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------


def test_estimate_tokens_is_ceil_chars_over_four_and_at_least_one() -> None:
    assert [estimate_tokens("x" * n) for n in (0, 1, 4, 5, 8, 9, 400)] == [1, 1, 1, 2, 2, 3, 100]
    assert estimate_tokens("é" * 5) == 2  # code points, not UTF-8 bytes


def test_reply_for_is_a_pure_function_of_messages_and_model() -> None:
    reply = reply_for(MESSAGES, "gpt-4o-mini")
    assert re.fullmatch(r"fake reply [0-9a-f]{16}", reply)
    assert reply.startswith(REPLY_PREFIX)
    assert reply_for([dict(m) for m in MESSAGES], "gpt-4o-mini") == reply
    # Key order inside a message does not matter; content, order of messages and model do.
    reordered = [{"content": m["content"], "role": m["role"]} for m in MESSAGES]
    assert reply_for(reordered, "gpt-4o-mini") == reply
    assert reply_for(MESSAGES, "gpt-4o") != reply
    assert reply_for(list(reversed(MESSAGES)), "gpt-4o-mini") != reply
    assert reply_for([{"role": "user", "content": "Say hello to the fake server!"}], "gpt-4o-mini") != reply


def test_reply_for_pins_the_documented_formula() -> None:
    # A literal value: a change to the formula breaks every test elsewhere that relies on
    # it, so it must be a deliberate change here too.
    import hashlib

    canonical = '{"messages":[{"content":"hi","role":"user"}],"model":"m"}'
    expected = "fake reply " + hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert reply_for([{"role": "user", "content": "hi"}], "m") == expected


def test_truncation_and_stop_helpers() -> None:
    assert truncate_to_tokens("abcdefghij", None) == ("abcdefghij", False)
    assert truncate_to_tokens("abcdefghij", 3) == ("abcdefghij", False)  # 10 chars = 3 tokens
    assert truncate_to_tokens("abcdefghij", 2) == ("abcdefgh", True)
    assert apply_stop("fake reply 0123", "reply") == ("fake ", True)
    assert apply_stop("fake reply 0123", ["zz", " 01", "ply"]) == ("fake re", True)  # earliest match wins
    assert apply_stop("fake reply 0123", ["", "zz"]) == ("fake reply 0123", False)


def test_complete_reports_consistent_usage() -> None:
    full = complete(MESSAGES, "m")
    assert full.text == reply_for(MESSAGES, "m") and full.finish_reason == "stop"
    assert full.completion_tokens == estimate_tokens(full.text) == 7  # 27 characters
    assert full.prompt_tokens == prompt_tokens(MESSAGES) == estimate_tokens("You are terse.\nSay hello to the fake server.")
    cut = complete(MESSAGES, "m", max_tokens=2)
    assert (cut.text, cut.finish_reason, cut.completion_tokens) == (full.text[:8], "length", 2)
    assert complete(MESSAGES, "m", max_tokens=7).finish_reason == "stop"  # exactly fits


def test_prompt_tokens_counts_text_parts_only() -> None:
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "abcd"}, {"type": "image_url", "image_url": {"url": "x"}}],
        }
    ]
    assert prompt_tokens(parts) == 1
    assert prompt_tokens([{"role": "assistant", "content": None, "tool_calls": [{}]}]) == 1


# --------------------------------------------------------------------------------------
# The app: response shape and determinism
# --------------------------------------------------------------------------------------


def test_chat_completion_has_openai_shape(client: TestClient) -> None:
    before = int(time.time())
    response = _chat(client)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    assert int(response.headers["openai-processing-ms"]) >= 0
    body = response.json()
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", body["id"])
    assert body["object"] == "chat.completion"
    assert before <= body["created"] <= int(time.time()) + 1
    assert body["model"] == "gpt-4o-mini"
    expected = complete(MESSAGES, "gpt-4o-mini")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": expected.text, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    usage = body["usage"]
    assert usage["prompt_tokens"] == expected.prompt_tokens
    assert usage["completion_tokens"] == expected.completion_tokens
    assert usage["total_tokens"] == expected.prompt_tokens + expected.completion_tokens
    # Two calls get distinct ids but the same content.
    again = _chat(client).json()
    assert again["id"] != body["id"]
    assert again["choices"][0]["message"]["content"] == expected.text


def test_reply_ignores_json_formatting_of_the_request(client: TestClient) -> None:
    raw = json.dumps({"messages": [{"content": "hi", "role": "user"}], "model": "m"}, indent=3)
    response = client.post(CHAT, content=raw, headers={"content-type": "application/json"})
    assert response.json()["choices"][0]["message"]["content"] == reply_for([{"role": "user", "content": "hi"}], "m")


@pytest.mark.parametrize(
    ("limits", "max_tokens"),
    [({"max_tokens": 2}, 2), ({"max_completion_tokens": 3}, 3), ({"max_tokens": 5, "max_completion_tokens": 1}, 1)],
)
def test_max_tokens_truncates_with_finish_reason_length(client: TestClient, limits: dict[str, int], max_tokens: int) -> None:
    body = _chat(client, **limits).json()
    full = reply_for(MESSAGES, "gpt-4o-mini")
    choice = body["choices"][0]
    assert choice["message"]["content"] == full[: 4 * max_tokens]
    assert choice["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == max_tokens


def test_max_tokens_large_enough_keeps_whole_reply(client: TestClient) -> None:
    body = _chat(client, max_tokens=1000, max_completion_tokens=None).json()
    assert body["choices"][0]["message"]["content"] == reply_for(MESSAGES, "gpt-4o-mini")
    assert body["choices"][0]["finish_reason"] == "stop"


def test_stop_sequence_and_n_choices(client: TestClient) -> None:
    body = _chat(client, stop=["reply"], n=3).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in body["choices"]} == {"fake "}
    assert {c["finish_reason"] for c in body["choices"]} == {"stop"}
    assert body["usage"]["completion_tokens"] == 3 * estimate_tokens("fake ")


@pytest.mark.parametrize(
    "body",
    [
        # Content as parts, tool turns, and parameters OpenAI-compatible servers take.
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}],
                }
            ]
        },
        {
            "messages": [
                {"role": "developer", "content": "d"},
                {"role": "user", "content": "u"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "r"},
            ]
        },
        {
            "messages": MESSAGES,
            "temperature": 0,
            "top_p": 1,
            "top_k": 40,
            "seed": 7,
            "stream": False,
            "stop": "zz",
            "n": None,
        },
    ],
)
def test_accepts_valid_variants(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post(CHAT, json={"model": "m", **body})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == complete(body["messages"], "m", stop=body.get("stop")).text


# --------------------------------------------------------------------------------------
# The app: validation, auth, unknown routes
# --------------------------------------------------------------------------------------

_M = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": _M}, None, None),
        ({"model": "", "messages": _M}, None, None),
        ({"model": 4, "messages": _M}, "model", "invalid_type"),
        ({"model": "m"}, "messages", "missing_required_parameter"),
        ({"model": "m", "messages": "hi"}, "messages", "invalid_type"),
        ({"model": "m", "messages": []}, "messages", "empty_array"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]", "invalid_type"),
        ({"model": "m", "messages": [{"content": "hi"}]}, "messages[0].role", "missing_required_parameter"),
        ({"model": "m", "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "invalid_value"),
        ({"model": "m", "messages": [{"role": 1, "content": "hi"}]}, "messages[0].role", "invalid_type"),
        ({"model": "m", "messages": [*_M, {"role": "user"}]}, "messages[1].content", "missing_required_parameter"),
        (
            {"model": "m", "messages": [{"role": "assistant", "content": None}]},
            "messages[0].content",
            "missing_required_parameter",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
        ({"model": "m", "messages": [{"role": "user", "content": []}]}, "messages[0].content", "empty_array"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"text": "a"}]}]},
            "messages[0].content[0].type",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].type",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "r"}]},
            "messages[0].tool_call_id",
            "missing_required_parameter",
        ),
        ({"model": "m", "messages": _M, "max_tokens": 0}, "max_tokens", "integer_below_min_value"),
        ({"model": "m", "messages": _M, "max_tokens": 2.5}, "max_tokens", "invalid_type"),
        ({"model": "m", "messages": _M, "max_tokens": True}, "max_tokens", "invalid_type"),
        (
            {"model": "m", "messages": _M, "max_completion_tokens": -1},
            "max_completion_tokens",
            "integer_below_min_value",
        ),
        ({"model": "m", "messages": _M, "n": 129}, "n", "integer_above_max_value"),
        ({"model": "m", "messages": _M, "temperature": 2.5}, "temperature", "decimal_above_max_value"),
        ({"model": "m", "messages": _M, "top_p": "1"}, "top_p", "invalid_type"),
        ({"model": "m", "messages": _M, "stream": True}, "stream", "unsupported_value"),
        ({"model": "m", "messages": _M, "stream": "no"}, "stream", "invalid_type"),
        ({"model": "m", "messages": _M, "stop": ["a", "b", "c", "d", "e"]}, "stop", "array_above_max_length"),
        ({"model": "m", "messages": _M, "stop": [1]}, "stop[0]", "invalid_type"),
        (["not", "an", "object"], None, "invalid_type"),
    ],
)
def test_invalid_bodies_get_openai_400(client: TestClient, body: Any, param: str | None, code: str | None) -> None:
    _assert_openai_error(client.post(CHAT, json=body), 400, param, code)


@pytest.mark.parametrize("raw", [b"{not json", b'{"model": "m", "messages": [], "temperature": NaN}', b"\xff\xfe", b""])
def test_unparseable_body_gets_openai_400(client: TestClient, raw: bytes) -> None:
    message = _assert_openai_error(client.post(CHAT, content=raw), 400, None, None)
    assert "could not parse the JSON body" in message


def test_role_error_lists_supported_values(client: TestClient) -> None:
    response = client.post(CHAT, json={"model": "m", "messages": [{"role": "robot", "content": "hi"}]})
    assert response.json()["error"]["message"] == (
        "Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
    )


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Bearer    ", "Basic dXNlcjpwYXNz", KEY])
def test_missing_or_malformed_bearer_gets_401(authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with TestClient(create_app(), headers=headers) as c:
        # The body is invalid too: auth is checked first, as OpenAI does.
        response = c.post(CHAT, json={"messages": []})
    message = _assert_openai_error(response, 401, None, None)
    assert "API key" in message
    assert KEY not in response.text


def test_any_non_empty_bearer_key_is_accepted() -> None:
    with TestClient(create_app(), headers={"Authorization": "bearer k"}) as c:
        assert c.post(CHAT, json={"model": "m", "messages": _M}).status_code == 200


def test_unknown_route_and_wrong_method_use_openai_error_shape(client: TestClient) -> None:
    message = _assert_openai_error(client.post("/v1/nope", json={}), 404, None, None)
    assert message == "Invalid URL (POST /v1/nope)"
    response = client.get(CHAT)
    assert _assert_openai_error(response, 405, None, None) == f"Invalid method for URL (GET {CHAT})"
    assert response.headers["allow"] == "POST"


# --------------------------------------------------------------------------------------
# The app: control endpoints
# --------------------------------------------------------------------------------------


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz", headers={"Authorization": ""})
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_stats_count_api_requests_and_reset_zeroes_them(client: TestClient) -> None:
    assert _chat(client, model="a").status_code == 200
    assert _chat(client, model="a", max_tokens=1).status_code == 200
    assert _chat(client, model="b").status_code == 200
    assert _chat(client, model="b", messages=[]).status_code == 400
    assert client.post(CHAT, json={"model": "c", "messages": _M}, headers={"Authorization": ""}).status_code == 401
    assert client.post("/v1/other", json={}).status_code == 404
    # Control endpoints are not counted.
    for path in ("/healthz", "/_stats", "/_config"):
        client.get(path)

    stats = client.get("/_stats").json()
    full = complete(MESSAGES, "a")
    assert stats == {
        "requests_total": 6,
        "by_status": {"200": 3, "400": 1, "401": 1, "404": 1},
        # The 401 was refused before its body was read, so model "c" is not counted.
        "by_model": {"a": 2, "b": 2},
        "chat_completions": 5,
        "messages": 0,
        "generate_content": 0,
        "by_fault": {},
        "rate_limited": 0,
        "rate_limited_by": {"requests": 0, "tokens": 0},
        # No limits are set, so the limiter charges nothing.
        "usage": {
            "prompt_tokens": 3 * full.prompt_tokens,
            "completion_tokens": 2 * full.completion_tokens + 1,
            "charged_tokens": 0,
        },
        "in_flight": 0,
        "max_in_flight": 1,
    }

    reset = client.post("/_reset")
    assert reset.status_code == 200
    zero = client.get("/_stats").json()
    assert zero == {
        "requests_total": 0,
        "by_status": {},
        "by_model": {},
        "chat_completions": 0,
        "messages": 0,
        "generate_content": 0,
        "by_fault": {},
        "rate_limited": 0,
        "rate_limited_by": {"requests": 0, "tokens": 0},
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "charged_tokens": 0},
        "in_flight": 0,
        "max_in_flight": 0,
    }
    assert reset.json() == zero
    _chat(client)
    assert client.get("/_stats").json()["requests_total"] == 1


DEFAULT_CONFIG = FakeLLMConfig().as_dict()


def test_config_changes_latency_at_run_time() -> None:
    # The server's sleep is the test's: it records the latency each request waits out,
    # instead of the test timing requests on the wall clock.
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    with TestClient(create_app(FakeLLMConfig(), sleep=sleep), headers={"Authorization": f"Bearer {KEY}"}) as client:
        assert client.get("/_config").json() == DEFAULT_CONFIG
        assert DEFAULT_CONFIG["latency_ms"] == 0.0 and DEFAULT_CONFIG["faults"] == {} and DEFAULT_CONFIG["rpm"] is None
        response = client.post("/_config", json={"latency_ms": 250})
        assert response.status_code == 200
        assert response.json() == {**DEFAULT_CONFIG, "latency_ms": 250.0}
        assert _chat(client).status_code == 200
        assert slept == [0.25]

        # Errors are answered at once, as a real provider does, whatever the latency.
        client.post("/_config", json={"latency_ms": 5000})
        assert _chat(client, messages=[]).status_code == 400
        assert slept == [0.25]

        client.post("/_config", json={"latency_ms": 0})
        assert _chat(client).status_code == 200
        assert slept == [0.25]


@pytest.mark.parametrize(
    "raw",
    [
        '{"jitter_ms": 7, "latency_ms": -1}',
        '{"jitter_ms": "5"}',
        '{"jitter_ms": 7, "latency_ms": true}',
        '{"jitter_ms": 7, "seed": 1.5}',
        '{"jitter_ms": 7, "latency": 3}',
        '{"jitter_ms": 7, "latency_ms": 1e400}',
        '{"jitter_ms": 7, "latency_dist": "gaussian"}',
        '{"jitter_ms": 7, "rpm": 0}',
        '{"jitter_ms": 7, "tpm": 1.5}',
        '{"jitter_ms": 7, "burst_s": 0}',
        '{"jitter_ms": 7, "charge_rejected": 1}',
        '{"jitter_ms": 7, "faults": {"server_error": 0.6, "timeout": 0.6}}',
        '{"jitter_ms": 7, "faults": {"lightning": 0.1}}',
        '{"jitter_ms": 7, "faults": {"malformed": -0.1}}',
        '{"jitter_ms": 7, "faults": []}',
        '{"jitter_ms": NaN}',
        "[1]",
        "{",
    ],
)
def test_invalid_config_is_refused_and_changes_nothing(client: TestClient, raw: str) -> None:
    # Each body but the last three also carries a valid change, which must not be applied.
    response = client.post("/_config", content=raw)
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert client.get("/_config").json() == DEFAULT_CONFIG


def test_jitter_is_seeded_bounded_and_never_negative() -> None:
    fake = FakeLLM(FakeLLMConfig(latency_ms=100, jitter_ms=50, seed=42))
    delays = [fake.delay_seconds() for _ in range(200)]
    assert all(0.05 <= d <= 0.15 for d in delays)
    assert len(set(delays)) > 100  # actually jittered
    same = FakeLLM(FakeLLMConfig(latency_ms=100, jitter_ms=50, seed=42))
    assert [same.delay_seconds() for _ in range(200)] == delays
    # Re-seeding through the run-time config replays the sequence.
    fake.configure({"seed": 42})
    assert [fake.delay_seconds() for _ in range(200)] == delays

    clamped = FakeLLM(FakeLLMConfig(latency_ms=10, jitter_ms=1000, seed=1))
    assert min(clamped.delay_seconds() for _ in range(200)) == 0.0


def test_concurrent_requests_overlap_in_process() -> None:
    # Each request's latency is a barrier that opens only once all 200 are waiting in it:
    # served one after another, the first would wait for ever (bounded below) instead.
    waiting = 0
    all_waiting = asyncio.Event()

    async def barrier(seconds: float) -> None:
        nonlocal waiting
        waiting += 1
        if waiting == 200:
            all_waiting.set()
        await all_waiting.wait()

    app = create_app(FakeLLMConfig(latency_ms=300), sleep=barrier)

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fake", headers={"Authorization": "Bearer k"}) as c:
            responses = await asyncio.gather(
                *(c.post(CHAT, json={"model": "m", "messages": [{"role": "user", "content": f"p{i}"}]}) for i in range(200))
            )
        assert [r.status_code for r in responses] == [200] * 200
        for i, r in enumerate(responses):
            assert r.json()["choices"][0]["message"]["content"] == reply_for([{"role": "user", "content": f"p{i}"}], "m")

    try:
        asyncio.run(asyncio.wait_for(run(), timeout=30))
    except TimeoutError:
        pytest.fail(f"only {waiting} of 200 requests were waiting out their latency at once: they did not overlap")
    stats = app.state.fake_llm.stats.snapshot()
    assert stats["max_in_flight"] == 200 and stats["in_flight"] == 0 and stats["by_status"] == {"200": 200}


# --------------------------------------------------------------------------------------
# The real server, as a subprocess
# --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LiveServer:
    """``python -m infra.fake_llm.server`` on a free port, logs captured in files."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = tmp / "fake_llm.out"
        self.stderr_path = tmp / "fake_llm.err"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Files, not pipes: a full pipe buffer would block the server and hang the test.
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "infra.fake_llm.server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    *extra,
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        self._wait_ready(timeout=20.0)

    def logs(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"fake LLM server exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"fake LLM server not ready within {timeout} s:\n{self.logs()}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        return self.proc.returncode


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(tmp_path_factory.mktemp("fake_llm"), "--latency-ms", "300")
    try:
        yield server
    finally:
        server.stop()


def test_live_server_answers_over_http(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.base_url, timeout=10.0) as c:
        c.post("/_reset").raise_for_status()
        assert c.get("/_config").json()["latency_ms"] == 300.0  # the --latency-ms flag took effect
        response = c.post(CHAT, json={"model": "gpt-4o", "messages": MESSAGES}, headers={"Authorization": f"Bearer {KEY}"})
        assert response.status_code == 200
        body = response.json()
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == reply_for(MESSAGES, "gpt-4o")
        assert c.post(CHAT, json={"model": "gpt-4o", "messages": MESSAGES}).status_code == 401
        stats = c.get("/_stats").json()
        assert stats["requests_total"] == 2 and stats["by_status"] == {"200": 1, "401": 1}


async def _raw_post(port: int, path: str, body: Any) -> tuple[int, Any]:
    """One HTTP/1.1 POST on its own connection, with nothing but asyncio streams.

    Not httpx: measured here, httpx.AsyncClient's connection pool spends 2-10 s of CPU on
    200 concurrent requests, so the requests would reach the server spread out and overlap
    less there (``max_in_flight``) for the client's sake, not the server's.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer k\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
        raw = await reader.read()  # to EOF: the server closes after answering (Connection: close)
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    _, _, content = rest.partition(b"\r\n\r\n")
    return int(status_line.split(b" ")[1]), json.loads(content)


def test_live_server_overlaps_200_concurrent_requests(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.base_url, timeout=10.0) as c:
        c.post("/_config", json={"latency_ms": 300, "jitter_ms": 0}).raise_for_status()
        c.post("/_reset").raise_for_status()

    async def run() -> list[tuple[int, Any]]:
        return await asyncio.gather(
            *(
                _raw_post(live_server.port, CHAT, {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]})
                for i in range(200)
            )
        )

    results = asyncio.run(asyncio.wait_for(run(), timeout=60))
    assert [status for status, _ in results] == [200] * 200
    for i, (_, body) in enumerate(results):
        assert body["choices"][0]["message"]["content"] == reply_for([{"role": "user", "content": f"q{i}"}], "m")
    with httpx.Client(base_url=live_server.base_url, timeout=10.0) as c:
        stats = c.get("/_stats").json()
    assert stats["chat_completions"] == 200 and stats["in_flight"] == 0
    assert stats["max_in_flight"] >= 100, stats  # most of them really slept at the same time


def test_live_server_with_openai_sdk(live_server: LiveServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{live_server.base_url}/v1", api_key=KEY, timeout=10.0, max_retries=0)
    try:
        completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=3)
        assert completion.object == "chat.completion"
        assert completion.model == "gpt-4o-mini"
        assert completion.choices[0].message.content == reply_for(MESSAGES, "gpt-4o-mini")[:12]
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage is not None and completion.usage.completion_tokens == 3
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=[])
        assert caught.value.code == "empty_array" and caught.value.param == "messages"
    finally:
        client.close()


def test_live_server_stops_cleanly_on_sigterm_and_keeps_secrets_out_of_logs(tmp_path: Path) -> None:
    server = LiveServer(tmp_path, "--access-log", "--latency-ms", "0")
    try:
        secret_prompt = "SECRET-PROMPT-7f3a"
        with httpx.Client(base_url=server.base_url, timeout=10.0) as c:
            ok = c.post(
                CHAT,
                json={"model": "m", "messages": [{"role": "user", "content": secret_prompt}]},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            assert ok.status_code == 200
            bad = c.post(
                CHAT,
                json={"model": "m", "messages": [{"role": "user", "content": secret_prompt}], "n": 0},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            assert bad.status_code == 400
    finally:
        code = server.stop()
    assert code == 0, server.logs()
    logs = server.logs()
    assert "POST /v1/chat/completions" in logs  # the access log is on
    assert secret_prompt not in logs
    assert KEY not in logs


# --------------------------------------------------------------------------------------
# Rate limits (in process, on a clock the test drives)
# --------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limited(clock: Clock, **config: Any) -> TestClient:
    return TestClient(create_app(FakeLLMConfig(**config), clock=clock), headers={"Authorization": f"Bearer {KEY}"})


def test_requests_window_refuses_exactly_when_exhausted_and_refills_continuously() -> None:
    clock = Clock()
    with _limited(clock, rpm=5) as c:
        remaining = []
        for _ in range(5):
            response = _chat(c, max_tokens=1)
            assert response.status_code == 200
            remaining.append(response.headers["x-ratelimit-remaining-requests"])
            assert response.headers["x-ratelimit-limit-requests"] == "5"
        assert remaining == ["4", "3", "2", "1", "0"]
        assert response.headers["x-ratelimit-reset-requests"] == "1m0s"  # 5 requests at 1 per 12 s
        refused = _chat(c, max_tokens=1)
        assert refused.status_code == 429
        assert (refused.headers["retry-after"], refused.headers["retry-after-ms"]) == ("12", "12000")
        error = refused.json()["error"]
        assert (error["type"], error["code"], error["param"]) == ("requests", "rate_limit_exceeded", None)
        assert "requests per min (RPM): Limit 5" in error["message"]
        clock.now += 11.9
        assert _chat(c, max_tokens=1).status_code == 429
        clock.now += 0.1  # 12 s: exactly one request's worth is back
        assert _chat(c, max_tokens=1).status_code == 200
        assert _chat(c, max_tokens=1).status_code == 429
        stats = c.get("/_stats").json()
    assert stats["rate_limited"] == 3 and stats["rate_limited_by"] == {"requests": 3, "tokens": 0}
    assert stats["by_status"] == {"200": 6, "429": 3}


def test_tokens_window_charges_prompt_tokens_plus_max_tokens() -> None:
    clock = Clock()
    prompt = prompt_tokens(MESSAGES)  # 11
    cost = prompt + 19  # 30 tokens per request
    with _limited(clock, tpm=100) as c:
        for left in (70, 40, 10):
            response = _chat(c, max_tokens=19)
            assert response.status_code == 200
            assert response.headers["x-ratelimit-remaining-tokens"] == str(left)
            assert "x-ratelimit-limit-requests" not in response.headers  # no requests limit set
        refused = _chat(c, max_tokens=19)
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "tokens"
        # (30 - 10) tokens at 100/60 per second.
        assert refused.headers["retry-after-ms"] == "12000"
        # Without max_tokens the estimate uses default_max_tokens (16).
        clock.now += 60
        c.post("/_config", json={"default_max_tokens": 89})
        assert _chat(c).headers["x-ratelimit-remaining-tokens"] == str(100 - prompt - 89)
        # A request larger than the whole bucket can never pass: 429 without retry-after.
        clock.now += 60
        too_large = _chat(c, max_tokens=500)
        assert too_large.status_code == 429 and "retry-after" not in too_large.headers
        assert "Request too large" in too_large.json()["error"]["message"]
        assert c.get("/_stats").json()["usage"]["charged_tokens"] == 3 * cost + prompt + 89


def test_limits_are_per_model_and_reset_refills_them() -> None:
    clock = Clock()
    with _limited(clock, rpm=1) as c:
        assert _chat(c, model="a").status_code == 200
        assert _chat(c, model="a").status_code == 429
        assert _chat(c, model="b").status_code == 200
        c.post("/_reset")
        assert _chat(c, model="a").status_code == 200


def test_burst_s_and_charge_rejected() -> None:
    clock = Clock()
    # 600/min enforced per second: a bucket of 10.
    with _limited(clock, rpm=600, burst_s=1) as c:
        assert [_chat(c).status_code for _ in range(11)] == [200] * 10 + [429]
    clock = Clock()
    with _limited(clock, rpm=60, burst_s=1, charge_rejected=True) as c:
        assert _chat(c).status_code == 200
        assert _chat(c).status_code == 429  # and it costs a request: the bucket is at -1
        clock.now += 1.0
        assert _chat(c).status_code == 429  # back to 0 only, and -1 again
        clock.now += 2.0
        assert _chat(c).status_code == 200


def test_window_is_exact_at_200_requests_per_second() -> None:
    """6,000/min enforced per second (a bucket of 100): over 5 s of 200 requests/s, the
    first 100 pass at once, then exactly 100 per second."""
    clock = Clock()
    with _limited(clock, rpm=6000, burst_s=1) as c:
        statuses = []
        for i in range(1000):
            clock.now = 1000.0 + i * 0.005
            statuses.append(_chat(c, max_tokens=1).status_code)
    assert statuses[:100] == [200] * 100
    assert statuses.count(200) == 100 + 499  # 4.995 s of refill at 100/s, rounded down
    assert statuses.count(429) == 1000 - 599


def test_openai_headers_report_the_minute_while_a_one_second_bucket_enforces() -> None:
    """6,000/min enforced as 100/s: the headers speak per minute, as OpenAI's do, so
    "5,900 left" goes with a refusal; the reset is the time until the bucket is full."""
    clock = Clock()
    cost = prompt_tokens(MESSAGES) + 10
    with _limited(clock, rpm=6000, tpm=60 * 100 * cost, burst_s=1) as c:
        first = _chat(c, max_tokens=10)
        assert first.headers["x-ratelimit-limit-requests"] == "6000"
        assert first.headers["x-ratelimit-remaining-requests"] == "5999"
        assert first.headers["x-ratelimit-reset-requests"] == "10ms"
        assert first.headers["x-ratelimit-remaining-tokens"] == str(60 * 100 * cost - cost)
        for _ in range(99):
            last = _chat(c, max_tokens=10)
        assert last.status_code == 200
        assert last.headers["x-ratelimit-remaining-requests"] == "5900"
        assert last.headers["x-ratelimit-reset-requests"] == "1s"
        assert last.headers["x-ratelimit-remaining-tokens"] == str(60 * 100 * cost - 100 * cost)
        refused = _chat(c, max_tokens=10)
        assert refused.status_code == 429
        assert refused.headers["x-ratelimit-remaining-requests"] == "5900"
        assert refused.headers["retry-after-ms"] == "10"
        clock.now += 0.5  # half the second's 100 back
        half = _chat(c, max_tokens=10)
        assert half.status_code == 200
        assert half.headers["x-ratelimit-remaining-requests"] == "5949"
        assert half.headers["x-ratelimit-reset-requests"] == "510ms"
        clock.now += 3600
        assert _chat(c, max_tokens=10).headers["x-ratelimit-remaining-requests"] == "5999"


def test_a_minute_deep_bucket_reports_its_own_level() -> None:
    clock = Clock()
    with _limited(clock, rpm=600) as c:  # burst_s 60: the window is the bucket
        for left in ("599", "598"):
            assert _chat(c).headers["x-ratelimit-remaining-requests"] == left
        assert _chat(c).headers["x-ratelimit-reset-requests"] == "300ms"


def test_tokens_are_charged_up_front_and_never_given_back() -> None:
    """prompt + max_tokens leaves the bucket when the request is admitted, however few
    tokens the answer then uses."""
    clock = Clock()
    prompt = prompt_tokens(MESSAGES)
    with _limited(clock, tpm=6600, burst_s=1) as c:  # a bucket of 110 tokens, 110/s
        first = _chat(c, max_tokens=40)
        assert first.status_code == 200
        used = first.json()["usage"]["completion_tokens"]
        assert used < 40  # the reply is short: nothing of the unused part comes back
        second = _chat(c, max_tokens=40)
        assert second.status_code == 200
        assert second.headers["x-ratelimit-remaining-tokens"] == str(6600 - 2 * (prompt + 40))
        third = _chat(c, max_tokens=40)
        assert third.status_code == 429
        assert third.json()["error"]["type"] == "tokens"
        # (prompt + 40) - (110 - 2 * (prompt + 40)) tokens short, at 110 per second.
        short = 3 * (prompt + 40) - 110
        assert third.headers["retry-after-ms"] == str(math.ceil(short * 1000 / 110))
        stats = c.get("/_stats").json()
    assert stats["usage"]["charged_tokens"] == 2 * (prompt + 40)
    assert stats["usage"]["completion_tokens"] == 2 * used


def test_timeline_counts_each_second_of_traffic_and_reset_clears_it() -> None:
    clock = Clock()
    cost = prompt_tokens(MESSAGES) + 5
    with _limited(clock, rpm=120, burst_s=1) as c:  # a bucket of 2, 2 per second
        assert c.get("/_timeline").json() == {"first_epoch": None, "seconds": []}
        assert [_chat(c, max_tokens=5).status_code for _ in range(3)] == [200, 200, 429]
        clock.now += 2.5
        assert _chat(c, max_tokens=5).status_code == 200
        timeline = c.get("/_timeline").json()
        assert abs(timeline["first_epoch"] - time.time()) < 60
        assert timeline["seconds"] == [
            {
                "t": 0,
                "admitted": 2,
                "arrived": 3,
                "charged_tokens": 2 * cost,
                "in_flight_max": 1,
                "status_200": 2,
                "status_429": 1,
            },
            {"t": 1},
            {"t": 2, "admitted": 1, "arrived": 1, "charged_tokens": cost, "in_flight_max": 1, "status_200": 1},
        ]
        c.post("/_reset")
        assert c.get("/_timeline").json() == {"first_epoch": None, "seconds": []}


def test_reset_fault_in_process_fails_the_call_like_a_reset_socket() -> None:
    app = create_app(FakeLLMConfig(faults={"reset": 1.0}))
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as c:
        with pytest.raises(ConnectionResetError):
            _chat(c)
        stats = c.get("/_stats").json()
    assert stats["by_fault"] == {"reset": 1}
    assert stats["by_status"] == {"0": 1}


def test_live_reset_fault_resets_the_connection_before_any_answer(tmp_path: Path) -> None:
    """Half the requests answered 500, half reset: a reset shows the client no status
    line at all, the statistics count it under 0, and the log stays quiet about it."""
    server = LiveServer(tmp_path, "--fault", "reset=0.5", "--fault", "server_error=0.5", "--seed", "5")
    try:

        async def one(i: int) -> str:
            try:
                status, _ = await _raw_post(server.port, CHAT, {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]})
            except (ConnectionResetError, IndexError):  # reset while reading, or nothing at all read
                return "reset"
            return str(status)

        async def run() -> list[str]:
            return list(await asyncio.gather(*(one(i) for i in range(40))))

        outcomes = asyncio.run(asyncio.wait_for(run(), timeout=60))
        with httpx.Client(base_url=server.base_url, timeout=10.0) as c:
            stats = c.get("/_stats").json()
            assert c.get("/healthz").status_code == 200  # the server lives on
    finally:
        server.stop()
    counts = Counter(outcomes)
    assert set(counts) == {"reset", "500"}
    assert stats["by_fault"] == {"reset": counts["reset"], "server_error": counts["500"]}
    assert stats["by_status"] == {"0": counts["reset"], "500": counts["500"]}
    logs = server.logs()
    assert "Traceback" not in logs and "ASGI callable" not in logs, logs


def test_anthropic_route_reports_anthropic_ratelimit_headers() -> None:
    clock = Clock()
    with _limited(clock, rpm=2, tpm=1000) as c:
        body = {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
        ok = c.post("/v1/messages", json=body, headers=headers)
        assert ok.status_code == 200
        assert ok.headers["anthropic-ratelimit-requests-limit"] == "2"
        assert ok.headers["anthropic-ratelimit-requests-remaining"] == "1"
        assert ok.headers["anthropic-ratelimit-tokens-remaining"] == str(1000 - 1 - 10)
        assert ok.headers["anthropic-ratelimit-input-tokens-limit"] == "1000"
        reset = datetime.fromisoformat(ok.headers["anthropic-ratelimit-requests-reset"].replace("Z", "+00:00"))
        assert 29 <= reset.timestamp() - time.time() <= 32  # one request back in 30 s
        assert "x-ratelimit-limit-requests" not in ok.headers
        c.post("/v1/messages", json=body, headers=headers)
        refused = c.post("/v1/messages", json=body, headers=headers)
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert refused.headers["retry-after"] == "30"


# --------------------------------------------------------------------------------------
# Anthropic and Gemini shapes
# --------------------------------------------------------------------------------------

ANTHROPIC_HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}


def _messages(client: TestClient, headers: dict[str, str] | None = None, **body: Any) -> Any:
    body.setdefault("model", "claude-x")
    body.setdefault("max_tokens", 100)
    body.setdefault("messages", [{"role": "user", "content": "Say hello to the fake server."}])
    return client.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS if headers is None else headers)


def test_anthropic_message_has_anthropic_shape_and_the_same_reply(client: TestClient) -> None:
    response = _messages(client, system="You are terse.")
    assert response.status_code == 200, response.text
    assert response.headers["request-id"].startswith("req_")
    body = response.json()
    expected = complete(MESSAGES, "claude-x")  # the system prompt as a leading system message
    assert re.fullmatch(r"msg_[0-9a-f]{24}", body["id"])
    assert body == {
        "id": body["id"],
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": expected.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": expected.prompt_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": expected.completion_tokens,
            "service_tier": "standard",
        },
    }
    stopped = _messages(client, stop_sequences=["zz", "reply"]).json()
    assert (stopped["stop_reason"], stopped["stop_sequence"], stopped["content"][0]["text"]) == (
        "stop_sequence",
        "reply",
        "fake ",
    )
    cut = _messages(client, max_tokens=2).json()
    assert (cut["stop_reason"], cut["usage"]["output_tokens"]) == ("max_tokens", 2)
    # Content blocks read as the same text.
    blocks = [{"role": "user", "content": [{"type": "text", "text": "Say hello to the fake server."}]}]
    assert _messages(client, messages=blocks).json()["content"][0]["text"] == reply_for(
        [{"role": "user", "content": [{"type": "text", "text": "Say hello to the fake server."}]}], "claude-x"
    )
    assert client.get("/_stats").json()["messages"] == 4


@pytest.mark.parametrize(
    ("headers", "body", "status", "kind", "message"),
    [
        ({"anthropic-version": "2023-06-01"}, {}, 401, "authentication_error", "x-api-key header is required"),
        ({"x-api-key": KEY}, {}, 400, "invalid_request_error", "anthropic-version: header is required"),
        (ANTHROPIC_HEADERS, {"max_tokens": None}, 400, "invalid_request_error", "max_tokens: Field required"),
        (ANTHROPIC_HEADERS, {"messages": []}, 400, "invalid_request_error", "messages: at least one message is required"),
        (
            ANTHROPIC_HEADERS,
            {"messages": [{"role": "system", "content": "x"}]},
            400,
            "invalid_request_error",
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (ANTHROPIC_HEADERS, {"stop": ["x"]}, 400, "invalid_request_error", "stop: Extra inputs are not permitted"),
        (
            ANTHROPIC_HEADERS,
            {"temperature": 1.5},
            400,
            "invalid_request_error",
            "temperature: Input should be a number between 0 and 1",
        ),
    ],
)
def test_anthropic_errors_have_anthropic_shape(
    headers: dict[str, str], body: dict[str, Any], status: int, kind: str, message: str
) -> None:
    payload = {k: v for k, v in body.items() if v is not None}
    with TestClient(create_app()) as client:  # no default Authorization header
        if body.get("max_tokens", 1) is None:
            response = client.post(
                "/v1/messages", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}, headers=headers
            )
        else:
            response = _messages(client, headers=headers, **payload)
    assert response.status_code == status
    data = response.json()
    assert set(data) == {"type", "error", "request_id"} and data["type"] == "error"
    assert data["error"] == {"type": kind, "message": message}


def test_anthropic_accepts_a_bearer_key_as_the_sdk_sends_it(client: TestClient) -> None:
    assert _messages(client, headers={"Authorization": "Bearer k", "anthropic-version": "2023-06-01"}).status_code == 200


def _generate(client: TestClient, model: str = "gemini-x", headers: dict[str, str] | None = None, **body: Any) -> Any:
    body.setdefault("contents", [{"role": "user", "parts": [{"text": "Say hello to the fake server."}]}])
    return client.post(
        f"/v1beta/models/{model}:generateContent", json=body, headers={"x-goog-api-key": KEY} if headers is None else headers
    )


def test_gemini_generate_content_shape_and_the_same_reply(client: TestClient) -> None:
    body = _generate(
        client,
        systemInstruction={"parts": [{"text": "You are terse."}]},
        generationConfig={"maxOutputTokens": 100, "stopSequences": ["zz"]},
    ).json()
    expected = complete(MESSAGES, "gemini-x")
    assert body["candidates"] == [
        {"content": {"parts": [{"text": expected.text}], "role": "model"}, "finishReason": "STOP", "index": 0}
    ]
    usage = body["usageMetadata"]
    assert (usage["promptTokenCount"], usage["candidatesTokenCount"]) == (expected.prompt_tokens, expected.completion_tokens)
    assert body["modelVersion"] == "gemini-x"
    cut = _generate(client, generation_config={"max_output_tokens": 2}).json()  # snake_case is accepted too
    assert cut["candidates"][0]["finishReason"] == "MAX_TOKENS"
    refused = _generate(client, generationConfig={"maxTokens": 2})
    assert refused.status_code == 400
    assert refused.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert 'Unknown name "maxTokens"' in refused.json()["error"]["message"]
    anonymous = _generate(client, headers={})
    assert anonymous.status_code == 403 and anonymous.json()["error"]["status"] == "PERMISSION_DENIED"
    assert client.get("/_stats").json()["generate_content"] == 4


def test_gemini_429_carries_retry_info_in_its_body() -> None:
    clock = Clock()
    with _limited(clock, rpm=1) as c:
        assert _generate(c).status_code == 200
        refused = _generate(c)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["details"] == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "60s"}]
    assert "retry-after" not in refused.headers  # Gemini does not send it


# --------------------------------------------------------------------------------------
# Faults and latency distributions
# --------------------------------------------------------------------------------------


def test_faults_follow_their_rates_deterministically_for_a_seed() -> None:
    faults = {"server_error": 0.1, "malformed": 0.05, "content_filter": 0.1, "context_length": 0.05}
    # What 300 draws of random.Random(7) give, in the fixed order of FAULT_KINDS.
    rng = random.Random(7)
    expected: Counter[str] = Counter()
    for _ in range(300):
        u = rng.random()
        for kind in ("server_error", "timeout", "disconnect", "malformed", "content_filter", "context_length"):
            u -= faults.get(kind, 0.0)
            if u < 0:
                expected[kind] += 1
                break

    def run() -> tuple[list[int], dict[str, int]]:
        with TestClient(create_app(FakeLLMConfig(seed=7, faults=faults)), headers={"Authorization": f"Bearer {KEY}"}) as c:
            statuses = []
            for _ in range(300):
                response = _chat(c, max_tokens=5)
                statuses.append(response.status_code)
                if response.status_code == 200:
                    try:
                        finish = response.json()["choices"][0]["finish_reason"]
                    except ValueError:
                        finish = "malformed"
                    assert finish in ("length", "stop", "content_filter", "malformed")
            return statuses, c.get("/_stats").json()["by_fault"]

    statuses, by_fault = run()
    assert by_fault == dict(sorted(expected.items()))
    assert statuses.count(500) == expected["server_error"]
    assert statuses.count(400) == expected["context_length"]
    assert 40 <= sum(expected.values()) <= 110  # about 30% of 300
    assert run() == (statuses, by_fault)  # the same seed, the same faults in the same order


def test_exponential_latency_has_the_configured_mean_and_is_seeded() -> None:
    fake = FakeLLM(FakeLLMConfig(latency_ms=300, latency_dist="exponential", seed=3))
    delays = [fake.delay_seconds() for _ in range(20_000)]
    assert abs(statistics.fmean(delays) - 0.3) < 0.015
    assert min(delays) >= 0 and len(set(delays)) > 19_000
    assert statistics.median(delays) == pytest.approx(0.3 * math.log(2), rel=0.05)
    fake.configure({"seed": 3})
    assert [fake.delay_seconds() for _ in range(100)] == delays[:100]


def test_lognormal_latency_has_the_configured_median_and_a_p99_of_four_times_it() -> None:
    """The provider-like default: median 300 ms, 99th percentile about 1.2 s."""
    fake = FakeLLM(FakeLLMConfig(latency_ms=300, latency_dist="lognormal", seed=3))
    drawn = [fake.delay_seconds() for _ in range(40_000)]
    delays = sorted(drawn)
    assert statistics.median(delays) == pytest.approx(0.3, rel=0.03)
    assert delays[int(0.99 * len(delays))] == pytest.approx(1.2, rel=0.08)
    assert statistics.fmean(delays) == pytest.approx(0.3 * math.exp(fake.config.latency_sigma**2 / 2), rel=0.03)
    fake.configure({"seed": 3})
    assert [fake.delay_seconds() for _ in range(100)] == drawn[:100]


def test_context_window_is_enforced_before_the_limits() -> None:
    clock = Clock()
    with _limited(clock, rpm=1, context_window=40) as c:
        too_long = _chat(c, max_tokens=30)  # 11 prompt tokens + 30
        _assert_openai_error(too_long, 400, "messages", "context_length_exceeded")
        assert "maximum context length is 40 tokens" in too_long.json()["error"]["message"]
        assert _chat(c, max_tokens=29).status_code == 200  # the refused one took nothing


# --------------------------------------------------------------------------------------
# The real server under load
# --------------------------------------------------------------------------------------


def test_live_rate_limit_holds_at_about_100_requests_per_second(tmp_path: Path) -> None:
    """6,000/min enforced per second against a client sending as fast as it can: the
    server admits its burst of 100 plus 100 per second of the run, within 5%."""
    server = LiveServer(tmp_path, "--rpm", "6000", "--burst-s", "1", "--log-level", "warning")
    try:

        async def run() -> tuple[float, list[int]]:
            start = time.monotonic()
            statuses = await asyncio.gather(
                *(
                    _raw_post(server.port, CHAT, {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]})
                    for i in range(600)
                )
            )
            return time.monotonic() - start, [s for s, _ in statuses]

        elapsed, statuses = asyncio.run(asyncio.wait_for(run(), timeout=60))
        with httpx.Client(base_url=server.base_url, timeout=10.0) as c:
            stats = c.get("/_stats").json()
    finally:
        server.stop()
    admitted = statuses.count(200)
    assert admitted + statuses.count(429) == 600
    assert stats["rate_limited"] == statuses.count(429)
    assert 100 <= admitted <= 100 + 100 * elapsed * 1.05 + 1, (admitted, elapsed)
