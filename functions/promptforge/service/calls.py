"""One prompt through a provider: the request built from the line and the job, and the
single retry policy around the call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..domain.job import Job
from ..domain.jsonl import PromptLine
from ..domain.outcomes import ErrorCode, ErrorRow, ResultRow
from ..domain.retry import RetryPolicy
from .pacing import Pacer
from .provider_port import ChatRequest, Provider, ProviderError


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
    charge: int,
    priority: float = 0.0,
    max_rate_limited_s: float = 900.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """One prompt to completion under the pacer: ``(result_row, None)`` or ``(None, error_row)``.

    ``estimate`` is what the pacer reserves (prompt estimate plus ``max_tokens``),
    ``charge`` the ``max_tokens`` part: the provider charges the prompt it counted plus
    that, whatever the answer's length. A 429 says "not now", not "no": the pacer holds
    requests for the retry-after and the prompt waits its turn again, without counting an
    attempt, until it has been refused for ``max_rate_limited_s`` in all. Other retryable
    errors back off with jitter and count toward ``max_attempts``. The row's ``attempts``
    is every request made.
    """
    sent = 0
    failures = 0
    limited_since: float | None = None
    while True:
        sent += 1
        await pacer.acquire(estimate, priority)
        try:
            result = await provider.complete(request)
        except ProviderError as exc:
            error = exc
        except BaseException:
            pacer.failed(None)  # no answer (cancelled, or the process is going down)
            raise
        else:
            pacer.answered(estimate, result.input_tokens + charge, getattr(result, "rate_limits", None))
            answered = ResultRow(
                prompt_id, result.text, result.model, result.input_tokens, result.output_tokens, result.finish_reason, sent
            )
            return answered.to_json(), None
        info = getattr(error, "rate_limits", None)
        if error.code is ErrorCode.RATE_LIMIT_EXCEEDED:
            pacer.on_rate_limited(error.retry_after, info)
            now = clock()
            limited_since = now if limited_since is None else limited_since
            if error.retryable and now - limited_since < max_rate_limited_s:
                continue
        else:
            pacer.failed(info, timed_out=error.code is ErrorCode.TIMEOUT)
            failures += 1
            if error.retryable and failures < max_attempts:
                await sleep(policy.delay(failures, error.retry_after))
                continue
        return None, ErrorRow(prompt_id, error.code, attempts=sent, detail=error.detail).to_json()
