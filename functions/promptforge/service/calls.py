"""One prompt through a provider: the request built from the line and the job, and the
single retry policy around the call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..adapters.providers import ChatRequest, Provider, ProviderError
from ..domain.job import Job
from ..domain.jsonl import PromptLine
from ..domain.retry import RetryPolicy
from .pacing import Pacer


def chat_request(job: Job, line: PromptLine) -> ChatRequest:
    """The provider request for a line: the line's overrides over the job's settings."""
    messages = list(line.messages) if line.messages is not None else [{"role": "user", "content": line.prompt}]
    system = line.system_prompt if line.system_prompt is not None else job.system_prompt
    if system and messages[0].get("role") != "system":
        messages.insert(0, {"role": "system", "content": system})
    return ChatRequest(model=job.model, messages=messages, params={**job.params, **line.params})


async def call_with_retries(
    provider: Provider,
    request: ChatRequest,
    prompt_id: str,
    max_attempts: int,
    policy: RetryPolicy,
    pacer: Pacer,
    estimate: int,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """One prompt to completion under the pacer: ``(result_row, None)`` or ``(None, error_row)``.

    A 429 is paced by the pacer (which holds requests for the retry-after); other
    retryable errors back off with jitter; every try counts toward ``max_attempts``.
    """
    attempt = 0
    while True:
        attempt += 1
        await pacer.acquire(estimate)
        try:
            result = await provider.complete(request)
        except ProviderError as exc:
            pacer.settle(estimate, 0)
            pacer.learn(getattr(exc, "rate_limits", None))
            if exc.code == "rate_limit_exceeded":
                pacer.on_rate_limited(exc.retry_after)
            if not exc.retryable or attempt >= max_attempts:
                return None, {"prompt_id": prompt_id, "error": exc.code, "attempts": attempt, "detail": exc.detail}
            if exc.code != "rate_limit_exceeded":
                await sleep(policy.delay(attempt, exc.retry_after))
            continue
        pacer.settle(estimate, result.input_tokens + result.output_tokens)
        pacer.learn(getattr(result, "rate_limits", None))
        return {
            "prompt_id": prompt_id,
            "result": result.text,
            "model": result.model,
            "tokens_used": result.input_tokens + result.output_tokens,
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "finish_reason": result.finish_reason,
            "attempts": attempt,
        }, None
