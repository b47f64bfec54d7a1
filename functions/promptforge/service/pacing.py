"""Pacing a worker's requests under the provider's limits.

One budget per (provider, model, credential), shared by the chunk workers that use it at
once: each worker registers itself (a heartbeat document), counts the live workers of its
budget every couple of seconds, and paces itself at its share. Within a worker a
:class:`Pacer` reserves each request's slot before sending, corrects the token estimate
with the usage the provider reports, learns limits from ``x-ratelimit-*`` headers, and
on a 429 holds new requests until the provider's ``retry-after`` and trims its rate a
little, recovering it step by step (no global stall).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..config import Settings
from ..domain.ratelimit import Limits, Pace

# The environment variable holding each provider's credential (openai_compatible
# endpoints name their own).
_CREDENTIAL_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
}
CHARS_PER_TOKEN = 4


def budget_id(provider: str, model: str, settings: Settings, endpoint: str | None, base_url: str | None = None) -> str:
    """A stable id for the (provider, model, credential) budget; never reveals the key."""
    configured = settings.endpoints.get(endpoint or "")
    key_env = configured.key_env if configured else _CREDENTIAL_ENV.get(provider, "")
    credential = os.environ.get(key_env or "", "")
    fallback = settings.fake_llm_url if provider == "fake" else ""
    where = configured.base_url if configured is not None else base_url or fallback
    raw = "\0".join((provider, model, where, hashlib.sha256(credential.encode()).hexdigest()))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def limits_for(provider: str, model: str, settings: Settings, endpoint: str | None = None) -> Limits:
    """Configured limits: an endpoint's own, then ``provider/model``, then ``provider``;
    unlimited (learned from headers) if none."""
    configured = settings.endpoints.get(endpoint or "")
    if configured is not None and (configured.rpm or configured.tpm):
        return Limits(rpm=configured.rpm, tpm=configured.tpm)
    table = settings.rate_limits
    entry = table.get(f"{provider}/{model}") or table.get(provider) or {}
    return Limits(rpm=entry.get("rpm"), tpm=entry.get("tpm"))


def estimate_tokens(messages: list[dict[str, Any]], params: dict[str, Any], default_max_tokens: int) -> int:
    """What providers count against the token limit up front: prompt plus ``max_tokens``."""
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(str(part.get("text", ""))) for part in content if isinstance(part, dict))
    prompt = -(-chars // CHARS_PER_TOKEN) + 4 * len(messages)
    return prompt + int(params.get("max_tokens") or default_max_tokens)


class Pacer:
    """One worker's pacing at its share of a budget."""

    RECOVER_STEP = 0.02  # of the rate, per successful request after a 429
    BACKOFF = 0.85  # the rate is trimmed to this after a 429
    FLOOR = 0.3

    def __init__(
        self,
        limits: Limits,
        target: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._limits = limits
        self._target = target
        self._share = 1.0
        self._throttle = 1.0
        self._clock = clock
        self._sleep = sleep
        self._hold_until = 0.0
        self._pace = Pace.for_limits(self._effective(), clock())
        self._gate = asyncio.Lock()
        self.rate_limited = 0

    def _effective(self) -> Limits:
        return self._limits.scaled(self._target * self._share * self._throttle)

    def _rerate(self) -> None:
        self._pace.set_rates(self._effective(), self._clock())

    @property
    def limited(self) -> bool:
        return self._limits.rpm is not None or self._limits.tpm is not None

    async def acquire(self, tokens: int) -> None:
        """Wait for this request's turn, then take its slot.

        Requests queue on a FIFO gate and only the one at its head watches the schedule, so
        a slot is taken at the moment the request goes, at the rate in force then: a new
        share, a 429's hold or a slow-down applies to the very next request.
        """
        async with self._gate:
            while True:
                now = self._clock()
                wait = max(self._hold_until - now, self._pace.wait_for(now))
                if wait <= 0:
                    self._pace.reserve(tokens, now)
                    return
                await self._sleep(wait)

    def settle(self, estimated: int, actual: int) -> None:
        self._pace.settle(estimated, actual)
        if self._throttle < 1.0:
            self._throttle = min(1.0, self._throttle + self.RECOVER_STEP)
            self._rerate()

    def on_rate_limited(self, retry_after: float | None) -> None:
        """A 429: hold new requests for the provider's retry-after, and slow down a little."""
        self.rate_limited += 1
        self._hold_until = max(self._hold_until, self._clock() + (retry_after if retry_after is not None else 1.0))
        self._throttle = max(self.FLOOR, self._throttle * self.BACKOFF)
        self._rerate()

    def set_share(self, workers: int) -> None:
        """This worker is one of ``workers`` sharing the budget."""
        share = 1.0 / max(1, workers)
        if share != self._share:
            self._share = share
            self._rerate()

    def learn(self, info: Any) -> None:
        """Take the provider's own limits (``x-ratelimit-*``) over the configured ones."""
        if info is None:
            return
        rpm = getattr(info, "limit_requests", None)
        tpm = getattr(info, "limit_tokens", None)
        if (rpm and rpm != self._limits.rpm) or (tpm and tpm != self._limits.tpm):
            self._limits = Limits(rpm or self._limits.rpm, tpm or self._limits.tpm)
            self._rerate()
        for remaining, reset in (
            (getattr(info, "remaining_requests", None), getattr(info, "reset_requests_s", None)),
            (getattr(info, "remaining_tokens", None), getattr(info, "reset_tokens_s", None)),
        ):
            if remaining == 0 and reset:
                # Out for now: wait for one request's worth to come back, not for the
                # whole window to refill (the reset header says the latter).
                interval = 60.0 / self._limits.rpm if self._limits.rpm else float(reset)
                self._hold_until = max(self._hold_until, self._clock() + min(float(reset), interval))
