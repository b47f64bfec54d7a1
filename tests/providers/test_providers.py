"""Each provider against the fake LLM speaking its wire format, over real HTTP: answers,
tokens, rate-limit information, and every failure mapped to its stable code.

The fake's replies are a pure function of the conversation (``reply_for``), whatever the
format, so a provider that maps messages faithfully (system prompt, roles, contents)
gets exactly the reply the OpenAI format would.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from infra.fake_llm import complete, reply_for
from promptforge.adapters import providers as providers_pkg
from promptforge.adapters.providers import ChatRequest, ChatResult, Provider, ProviderError, _json
from tests.providers.conftest import KEY, PROVIDERS, FakeServer

SECRET = "SECRET-PROMPT-TEXT-91b4"
MESSAGES = [
    {"role": "system", "content": "You answer in one line."},
    {"role": "user", "content": f"Tell me about {SECRET}."},
    {"role": "assistant", "content": "Which part?"},
    {"role": "user", "content": "The first part."},
]
# Gemini reports no rate limits in headers (it puts retry delays in error bodies).
SENDS_LIMIT_HEADERS = {"openai", "anthropic", "openai_compatible", "fake"}


def _call(provider: Provider, request: ChatRequest) -> ChatResult:
    async def run() -> ChatResult:
        try:
            return await asyncio.wait_for(provider.complete(request), timeout=30)
        finally:
            await provider.aclose()

    return asyncio.run(run())


def _error(provider: Provider, request: ChatRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        _call(provider, request)
    error = caught.value
    # Never the prompt, never the key, never the provider's message (which can quote both).
    for text in (error.detail, str(error)):
        assert SECRET not in text and KEY not in text
        assert "Rate limit reached" not in text and "prompt is too long" not in text
    return error


def _request(**params: Any) -> ChatRequest:
    return ChatRequest(model="model-x", messages=list(MESSAGES), params=params)


@pytest.mark.parametrize("name", PROVIDERS)
def test_success_gives_the_reply_tokens_and_rate_limits(name: str, open_named: Any, fake: FakeServer) -> None:
    fake.configure(rpm=600, tpm=100_000)
    result = _call(open_named(name), _request(max_tokens=50))
    expected = complete(MESSAGES, "model-x", max_tokens=50)
    assert result.text == reply_for(MESSAGES, "model-x") == expected.text
    assert (result.input_tokens, result.output_tokens) == (expected.prompt_tokens, expected.completion_tokens)
    assert result.finish_reason == "stop"
    assert result.model == "model-x"
    if name in SENDS_LIMIT_HEADERS:
        limits = result.rate_limits
        assert limits is not None
        assert (limits.limit_requests, limits.remaining_requests) == (600, 599)
        # The fake charges prompt tokens + max_tokens, as providers estimate.
        assert (limits.limit_tokens, limits.remaining_tokens) == (100_000, 100_000 - expected.prompt_tokens - 50)
        assert limits.reset_requests_s is not None and 0 <= limits.reset_requests_s <= 2
        assert limits.reset_tokens_s is not None and 0 <= limits.reset_tokens_s <= 2
    else:
        assert result.rate_limits is None
    stats = fake.stats()
    assert stats["requests_total"] == 1 and stats["by_status"] == {"200": 1}


@pytest.mark.parametrize("name", PROVIDERS)
def test_max_tokens_and_stop_are_mapped(name: str, open_named: Any) -> None:
    cut = _call(open_named(name), _request(max_tokens=2))
    assert cut.text == reply_for(MESSAGES, "model-x")[:8]
    assert (cut.finish_reason, cut.output_tokens) == ("length", 2)
    stopped = _call(open_named(name), _request(stop=["reply"]))
    assert stopped.text == "fake "
    assert stopped.finish_reason == "stop"


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_429_is_rate_limit_exceeded_with_retry_after(name: str, open_named: Any, fake: FakeServer) -> None:
    fake.configure(rpm=2)
    started = time.monotonic()
    for _ in range(2):
        _call(open_named(name), _request(max_tokens=5))
    error = _error(open_named(name), _request(max_tokens=5))
    assert (error.code, error.retryable) == ("rate_limit_exceeded", True)
    # The bucket refills at 2/60 per second: one request's worth in 30 s from the first
    # request, less the time the three calls took (seconds on a busy machine).
    taken = time.monotonic() - started
    assert error.retry_after is not None and 29.5 - taken <= error.retry_after <= 30.5
    if name in SENDS_LIMIT_HEADERS:
        assert error.rate_limits is not None
        assert (error.rate_limits.limit_requests, error.rate_limits.remaining_requests) == (2, 0)
    assert fake.stats()["rate_limited"] == 1


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize(
    ("fault", "code", "retryable"),
    [
        ("server_error", "provider_error", True),
        ("disconnect", "provider_error", True),
        ("malformed", "provider_error", True),
        ("content_filter", "content_filtered", False),
        ("context_length", "context_length_exceeded", False),
    ],
)
def test_each_fault_maps_to_its_code(
    name: str, fault: str, code: str, retryable: bool, open_named: Any, fake: FakeServer
) -> None:
    fake.configure(faults={fault: 1.0})
    error = _error(open_named(name), _request(max_tokens=5))
    assert (error.code, error.retryable) == (code, retryable), error.detail
    assert fake.stats()["by_fault"] == {fault: 1}


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_hung_request_is_a_retryable_timeout(
    name: str, open_named: Any, fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(providers_pkg, "PROVIDER_TIMEOUT_S", 0.5)
    # The server hangs 40 times the client's timeout: a client that waited for the server
    # instead of timing out would take 20 s, so half that tells the two apart on a machine
    # however busy (a bound of a few tenths of a second over 0.5 s did not).
    fake.configure(faults={"timeout": 1.0}, hang_ms=20_000)
    start = time.monotonic()
    error = _error(open_named(name), _request(max_tokens=5))
    assert (error.code, error.retryable) == ("timeout", True)
    assert time.monotonic() - start < 10.0  # the client's timeout, not the server's hang


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_real_context_window_and_a_refused_body_are_not_retryable(name: str, open_named: Any, fake: FakeServer) -> None:
    fake.configure(context_window=20)
    too_long = _error(open_named(name), _request(max_tokens=100))
    assert (too_long.code, too_long.retryable) == ("context_length_exceeded", False)
    assert "HTTP 400" in too_long.detail
    fake.configure(context_window=None)
    # max_tokens=0 is refused by every format's validation.
    refused = _error(open_named(name), _request(max_tokens=0))
    assert (refused.code, refused.retryable) == ("invalid_request", False)
    assert fake.stats()["by_status"] == {"400": 2}


@pytest.mark.parametrize(
    ("name", "param"),
    [("openai", "top_k"), ("anthropic", "seed"), ("anthropic", "presence_penalty")],
)
def test_a_parameter_the_provider_lacks_fails_without_a_call(name: str, param: str, open_named: Any, fake: FakeServer) -> None:
    error = _error(open_named(name), _request(**{param: 1}))
    assert (error.code, error.retryable) == ("invalid_request", False)
    assert param in error.detail
    assert fake.stats()["requests_total"] == 0


def test_openai_sends_max_completion_tokens_and_compatible_servers_get_params_verbatim(open_named: Any, fake: FakeServer) -> None:
    # top_k is refused by OpenAI (above) but forwarded to OpenAI-compatible servers.
    assert _call(open_named("openai_compatible"), _request(top_k=5, max_tokens=3)).output_tokens == 3
    assert _call(open_named("openai"), _request(max_tokens=3)).finish_reason == "length"


def test_a_compatible_server_gets_params_orjson_cannot_encode(open_named: Any, fake: FakeServer) -> None:
    # Bodies go out through orjson, which refuses integers beyond 64 bits; a job's params
    # come from the client's JSON and can hold one: the body is encoded another way, not refused.
    huge = 2**70
    assert json.loads(_json.dumps({"seed": huge, "text": "naïve"})) == {"seed": huge, "text": "naïve"}
    assert _call(open_named("openai_compatible"), _request(seed=huge, max_tokens=3)).output_tokens == 3


def test_anthropic_refusal_and_gemini_safety_are_content_filtered(open_named: Any, fake: FakeServer) -> None:
    fake.configure(faults={"content_filter": 1.0})
    for name in ("anthropic", "gemini"):
        error = _error(open_named(name), _request())
        assert error.code == "content_filtered"
        assert ("refusal" if name == "anthropic" else "SAFETY") in error.detail


def test_anthropic_without_max_tokens_uses_the_documented_default(open_named: Any) -> None:
    from promptforge.adapters.providers.anthropic_sdk import DEFAULT_MAX_TOKENS, request_body

    assert request_body(_request())["max_tokens"] == DEFAULT_MAX_TOKENS == 1024
    assert _call(open_named("anthropic"), _request()).text == reply_for(MESSAGES, "model-x")


def test_missing_credentials_make_the_provider_unavailable(open_named: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, name in (("OPENAI_API_KEY", "openai"), ("ANTHROPIC_API_KEY", "anthropic"), ("GEMINI_API_KEY", "gemini")):
        monkeypatch.delenv(var)
        with pytest.raises(providers_pkg.ProviderUnavailable, match=var):
            open_named(name)
