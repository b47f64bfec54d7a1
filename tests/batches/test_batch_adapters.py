"""Each batch adapter against the fake LLM's batch API in its format, over real HTTP:
submit, status as the batch clock moves, outcomes (results with their tokens and finish
reasons, failures classified as fast errors, expiry, cancel), and finding a batch again
after its id was lost.

The fake answers every request of a batch as its fast route would (``complete``), so an
outcome is compared with what the fast path gets for the same request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from infra.fake_llm import complete
from promptforge import config
from promptforge.adapters.batches import LiveBatchProviders
from promptforge.adapters.batches._common import CLOCK_SLACK
from promptforge.adapters.providers import ProviderError
from promptforge.service.batch_port import BatchItem, BatchOutcome, BatchProvider
from promptforge.service.provider_port import ChatRequest
from tests.batches.conftest import BATCH_PROVIDERS, advance, batch_settings
from tests.providers.conftest import KEY, FakeServer

T = TypeVar("T")
MODEL = "model-x"
SECRET = "SECRET-PROMPT-TEXT-5c1e"
# Anthropic tells no progress before a batch ends (every request is "processing").
COUNTS_WHILE_RUNNING = {"openai", "gemini", "fake", "openai_compatible"}


def _messages(i: int) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You answer in one line."},
        {"role": "user", "content": f"Prompt {i} about {SECRET}."},
    ]


def _items(key: str, n: int, **params: Any) -> list[BatchItem]:
    return [BatchItem(f"{key}-{i}", ChatRequest(MODEL, _messages(i), dict(params))) for i in range(n)]


def _run(provider: BatchProvider, call: Callable[[BatchProvider], Awaitable[T]]) -> T:
    async def run() -> T:
        try:
            return await asyncio.wait_for(call(provider), timeout=60)
        finally:
            await provider.aclose()

    return asyncio.run(run())


async def _submit(key: str, items: list[BatchItem], provider: BatchProvider) -> str:
    return await provider.submit(key, MODEL, items)


def _by_id(outcomes: list[BatchOutcome]) -> dict[str, BatchOutcome]:
    by_id = {o.custom_id: o for o in outcomes}
    assert len(by_id) == len(outcomes)
    return by_id


def _no_secrets(error: ProviderError) -> None:
    for text in (error.detail, str(error)):
        assert SECRET not in text and KEY not in text


@pytest.mark.parametrize("name", BATCH_PROVIDERS)
def test_a_batch_runs_to_its_end_and_each_outcome_reads_as_a_fast_answer(name: str, open_batches: Any, fake: FakeServer) -> None:
    fake.configure(batch_completion_s=100)
    items = _items("k1", 3) + [BatchItem("k1-3", ChatRequest(MODEL, _messages(3), {"max_tokens": 2}))]
    batch_id = _run(open_batches(name), lambda p: p.submit("k1", MODEL, items))

    info = _run(open_batches(name), lambda p: p.status(batch_id))
    assert (info.batch_id, info.total, info.done, info.failed, info.ended) == (batch_id, 4, 0, 0, False)
    with pytest.raises(ProviderError) as early:
        _run(open_batches(name), lambda p: p.outcomes(batch_id))
    assert (early.value.code, early.value.retryable) == ("provider_error", True)

    advance(fake, 50)
    info = _run(open_batches(name), lambda p: p.status(batch_id))
    assert (info.total, info.done, info.ended) == (4, 2 if name in COUNTS_WHILE_RUNNING else 0, False)
    advance(fake, 50)
    info = _run(open_batches(name), lambda p: p.status(batch_id))
    assert (info.total, info.done, info.failed, info.ended) == (4, 4, 0, True)

    outcomes = _by_id(_run(open_batches(name), lambda p: p.outcomes(batch_id)))
    assert set(outcomes) == {f"k1-{i}" for i in range(4)}
    for i in range(4):
        max_tokens = 2 if i == 3 else (1024 if name == "anthropic" else None)
        expected = complete(_messages(i), MODEL, max_tokens=max_tokens)
        result = outcomes[f"k1-{i}"].result
        assert result is not None and outcomes[f"k1-{i}"].error is None
        assert result.text == expected.text and result.model == MODEL
        assert (result.input_tokens, result.output_tokens) == (expected.prompt_tokens, expected.completion_tokens)
        assert result.finish_reason == ("length" if i == 3 else "stop")


@pytest.mark.parametrize("name", BATCH_PROVIDERS)
def test_failed_requests_come_back_as_the_fast_paths_errors(name: str, open_batches: Any, fake: FakeServer) -> None:
    fake.configure(batch_failure_rate=0.5, seed=7)
    items = _items("k2", 20, max_tokens=20)
    batch_id = _run(open_batches(name), lambda p: p.submit("k2", MODEL, items))
    draws = random.Random(7)
    failing = {f"k2-{i}" for i in range(20) if draws.random() < 0.5}
    assert 0 < len(failing) < 20

    info = _run(open_batches(name), lambda p: p.status(batch_id))
    assert (info.total, info.done, info.failed, info.ended) == (20, 20, len(failing), True)
    outcomes = _by_id(_run(open_batches(name), lambda p: p.outcomes(batch_id)))
    assert set(outcomes) == {item.custom_id for item in items}
    for custom_id, got in outcomes.items():
        if custom_id in failing:
            assert got.result is None and got.error is not None
            # The fake's server error inside a batch: a 500 (Anthropic: api_error; Gemini: INTERNAL).
            assert (got.error.code, got.error.retryable) == ("provider_error", True)
            _no_secrets(got.error)
        else:
            assert got.error is None and got.result is not None and got.result.output_tokens > 0


@pytest.mark.parametrize("name", BATCH_PROVIDERS)
def test_requests_a_batch_did_not_reach_in_its_window_are_provider_expired(
    name: str, open_batches: Any, fake: FakeServer
) -> None:
    fake.configure(batch_completion_s=100, batch_window_s=60)
    items = _items("k3", 10)
    batch_id = _run(open_batches(name), lambda p: p.submit("k3", MODEL, items))
    advance(fake, 59)
    assert not _run(open_batches(name), lambda p: p.status(batch_id)).ended
    advance(fake, 1)
    info = _run(open_batches(name), lambda p: p.status(batch_id))
    assert (info.total, info.done, info.ended) == (10, 10, True)
    assert info.failed == 4
    outcomes = _by_id(_run(open_batches(name), lambda p: p.outcomes(batch_id)))
    assert {c for c, o in outcomes.items() if o.result is not None} == {f"k3-{i}" for i in range(6)}
    for i in range(6, 10):
        error = outcomes[f"k3-{i}"].error
        assert error is not None and (error.code, error.retryable) == ("provider_expired", False)


@pytest.mark.parametrize("name", BATCH_PROVIDERS)
def test_a_cancelled_batch_ends_with_its_undone_requests_expired(name: str, open_batches: Any, fake: FakeServer) -> None:
    fake.configure(batch_completion_s=100, batch_cancel_s=30)
    items = _items("k4", 4)
    batch_id = _run(open_batches(name), lambda p: p.submit("k4", MODEL, items))
    advance(fake, 50)
    _run(open_batches(name), lambda p: p.cancel(batch_id))
    _run(open_batches(name), lambda p: p.cancel(batch_id))  # asked twice: the same cancel
    assert not _run(open_batches(name), lambda p: p.status(batch_id)).ended
    advance(fake, 30)
    info = _run(open_batches(name), lambda p: p.status(batch_id))
    assert (info.total, info.done, info.failed, info.ended) == (4, 4, 2, True)
    outcomes = _by_id(_run(open_batches(name), lambda p: p.outcomes(batch_id)))
    assert [outcomes[f"k4-{i}"].result is not None for i in range(4)] == [True, True, False, False]
    for i in (2, 3):
        error = outcomes[f"k4-{i}"].error
        assert error is not None and (error.code, error.retryable) == ("provider_expired", False)
    # A batch that has ended is left as it is.
    _run(open_batches(name), lambda p: p.cancel(batch_id))
    assert _run(open_batches(name), lambda p: p.status(batch_id)) == info


@pytest.mark.parametrize("name", BATCH_PROVIDERS)
def test_a_batch_whose_id_was_lost_is_found_by_its_key(name: str, open_batches: Any, fake: FakeServer) -> None:
    fake.configure(batch_completion_s=100)
    # Keys of their own: the OpenAI-format providers share the fake's list of batches.
    lost_key, other_key, third_key = (f"{what}-{uuid.uuid4().hex[:12]}" for what in ("lost", "other", "third"))
    since = datetime.now(UTC)
    lost = _run(open_batches(name), lambda p: p.submit(lost_key, MODEL, _items(lost_key, 3)))
    same_size = _run(open_batches(name), lambda p: p.submit(other_key, MODEL, _items(other_key, 3)))
    other_size = _run(open_batches(name), lambda p: p.submit(third_key, MODEL, _items(third_key, 5)))

    found = _run(open_batches(name), lambda p: p.find(lost_key, since, 3))
    if name == "anthropic":
        # No metadata: every batch of that size since then; the use case keeps the
        # outcomes whose custom_id carries its key.
        assert {lost, same_size} <= set(found) and other_size not in found
    else:
        assert found == [lost]
        assert _run(open_batches(name), lambda p: p.find(f"never-{uuid.uuid4().hex}", since, 3)) == []
    # ``since`` is PromptForge's clock: one running ahead of the provider's still finds
    # the batch, within the allowance for clock skew; batches older than that are not it.
    provider_now = advance(fake, 0)
    ahead = provider_now + CLOCK_SLACK - timedelta(minutes=1)
    assert lost in _run(open_batches(name), lambda p: p.find(lost_key, ahead, 3))
    later = provider_now + CLOCK_SLACK + timedelta(minutes=1)
    assert _run(open_batches(name), lambda p: p.find(lost_key, later, 3)) == []


@pytest.mark.parametrize("name", BATCH_PROVIDERS)
def test_a_refused_call_is_a_provider_error(name: str, open_batches: Any) -> None:
    provider = open_batches(name)
    with pytest.raises(ProviderError) as unknown:
        _run(provider, lambda p: p.status("batches/nope" if name == "gemini" else "nope"))
    assert (unknown.value.code, unknown.value.retryable) == ("invalid_request", False)
    _no_secrets(unknown.value)


@pytest.mark.parametrize("name", BATCH_PROVIDERS)
@pytest.mark.parametrize(
    ("fault", "code"), [("content_filter", "content_filtered"), ("context_length", "context_length_exceeded")]
)
def test_filtered_and_too_long_requests_keep_their_fast_codes(
    name: str, fault: str, code: str, open_batches: Any, fake: FakeServer
) -> None:
    fake.configure(faults={fault: 1.0})
    batch_id = _run(open_batches(name), lambda p: p.submit("k5", MODEL, _items("k5", 2)))
    outcomes = _run(open_batches(name), lambda p: p.outcomes(batch_id))
    assert len(outcomes) == 2
    for got in outcomes:
        assert got.result is None and got.error is not None
        assert (got.error.code, got.error.retryable) == (code, False)
        _no_secrets(got.error)


@pytest.mark.parametrize(("name", "param"), [("openai", "top_k"), ("anthropic", "seed"), ("gemini", "logit_bias")])
def test_a_request_the_provider_cannot_express_is_refused_before_any_call(
    name: str, param: str, open_batches: Any, fake: FakeServer
) -> None:
    # Each provider refuses what its fast path refuses (the OpenAI-compatible wire sends
    # every param as it is).
    items = _items("k6", 1) + [BatchItem("k6-1", ChatRequest(MODEL, _messages(1), {param: 1}))]
    with pytest.raises(ProviderError) as refused:
        _run(open_batches(name), lambda p: p.submit("k6", MODEL, items))
    assert (refused.value.code, refused.value.retryable) == ("invalid_request", False)
    # refusal() tells the use case which request it is, so the others still go in a batch.
    found = _run(open_batches(name), lambda p: asyncio.sleep(0, [p.refusal(item) for item in items]))
    assert found[0] is None and found[1] is not None and (found[1].code, found[1].retryable) == ("invalid_request", False)
    assert fake.stats()["requests_total"] == 0


@pytest.mark.parametrize("name", BATCH_PROVIDERS)
def test_a_batch_the_use_case_should_never_build_is_refused(name: str, open_batches: Any) -> None:
    other_model = [BatchItem("k7-0", ChatRequest("model-y", _messages(0)))]
    twice = _items("k7", 1) * 2
    for items in ([], other_model, twice):
        submit = functools.partial(_submit, "k7", items)
        with pytest.raises(ValueError):
            _run(open_batches(name), submit)


def test_an_endpoint_without_a_key_is_sent_none_not_openais(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = batch_settings(fake.base_url, monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the SDK would send it were it given no key
    keyless = config.Endpoint("keyless", f"{fake.base_url}/v1", batch="openai")
    settings = dataclasses.replace(settings, endpoints={"keyless": keyless})
    with pytest.raises(ProviderError) as refused:
        _run(LiveBatchProviders()("openai_compatible", settings, "keyless"), lambda p: p.submit("k8", MODEL, _items("k8", 1)))
    # The fake takes any key: a 401 means no Authorization header was sent at all.
    assert (refused.value.code, refused.value.retryable) == ("invalid_request", False)
    assert "401" in refused.value.detail and KEY not in str(refused.value)
