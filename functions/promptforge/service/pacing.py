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
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..config import Settings, secret
from ..domain.provider_registry import credential_env
from ..domain.ratelimit import Limits, Pace

CHARS_PER_TOKEN = 4


def budget_id(provider: str, model: str, settings: Settings, endpoint: str | None, base_url: str | None = None) -> str:
    """A stable id for the (provider, model, credential) budget; never reveals the key."""
    configured = settings.endpoints.get(endpoint or "")
    key_env = configured.key_env if configured else credential_env(provider)
    credential = secret(key_env or "")
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


def max_tokens_of(params: dict[str, Any], default_max_tokens: int) -> int:
    """The completion tokens a request may use: what providers reserve for it up front."""
    return int(params.get("max_tokens") or default_max_tokens)


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
    return prompt + max_tokens_of(params, default_max_tokens)


@dataclass(frozen=True)
class Learned:
    """What one worker of a budget learned that the others should know at once: the
    provider's limits from its headers, and until when it asked to be left alone (a
    429's retry-after, on the wall clock so another process can use it)."""

    rpm: float | None = None
    tpm: float | None = None
    hold_until: float = 0.0


class _Mode(Enum):
    FIRST = "first"  # nothing known: one request goes alone, its answer tells the limits
    RAMP = "ramp"  # the provider sends no limits: a window of requests in flight that
    # doubles every round trip until the provider refuses one, then grows slowly
    KNOWN = "known"  # configured or learned limits: paced as a rate


class Pacer:
    """The pace of one budget in one process, shared by every chunk running on it.

    Requests wait in a priority queue (the chunk that started first goes first, so chunks
    finish one after another and a chunk's hand-over never leaves the limit unused) and
    only the head watches the schedule, so a slot is taken at the moment a request goes,
    at the rate in force then: a new share, a 429's hold or a learned limit applies to the
    very next request. Tokens are charged as providers charge them, prompt plus
    ``max_tokens`` up front, and nothing is given back when the answer is shorter.
    """

    RECOVER_STEP = 0.02  # of the rate, per answered request after a 429
    BACKOFF = 0.85  # the rate is trimmed to this after a 429
    FLOOR = 0.3
    MAX_WINDOW = 4096.0  # requests in flight, at most, while ramping

    def __init__(
        self,
        limits: Limits,
        target: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._limits = limits
        self._target = target
        self._share = 1.0
        self._throttle = 1.0
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._hold_until = 0.0
        self._mode = _Mode.KNOWN if limits.rpm or limits.tpm else _Mode.FIRST
        self._in_flight = 0
        self._window = 1.0  # requests in flight allowed before limits are known
        self._refused = False  # a 429 came while ramping: grow the window slowly now
        self._learned = False  # the limits in force came from the provider's headers
        self._pace = Pace.for_limits(self._effective(), clock())
        self._queue: list[tuple[float, int, asyncio.Event]] = []
        self._seq = itertools.count()
        self.rate_limited = 0

    # --- what the pace is --------------------------------------------------------------

    def _effective(self) -> Limits:
        return self._limits.scaled(self._target * self._share * self._throttle)

    def _rerate(self) -> None:
        self._pace.set_rates(self._effective(), self._clock())
        self._kick()

    @property
    def limited(self) -> bool:
        return self._mode is _Mode.KNOWN

    @property
    def limits(self) -> Limits:
        return self._limits

    # --- the queue ---------------------------------------------------------------------

    def _kick(self) -> None:
        """Wake the head of the queue to look at the schedule again."""
        if self._queue:
            self._queue[0][2].set()

    def _wait(self, now: float) -> float | None:
        """Seconds until the head may go; None while it must wait for an answer."""
        if self._mode is not _Mode.KNOWN and self._in_flight >= max(1.0, self._window * self._share):
            return None
        return max(self._hold_until - now, self._pace.wait_for(now))

    async def acquire(self, tokens: int, priority: float = 0.0) -> None:
        """Wait for this request's turn (lower ``priority`` first, then arrival), then take
        its slot."""
        entry = (priority, next(self._seq), asyncio.Event())
        heapq.heappush(self._queue, entry)
        self._kick()
        try:
            while True:
                if self._queue[0] is not entry:
                    entry[2].clear()
                    await entry[2].wait()
                    continue
                now = self._clock()
                wait = self._wait(now)
                if wait is None:
                    entry[2].clear()
                    await entry[2].wait()
                    continue
                if wait <= 0:
                    heapq.heappop(self._queue)
                    self._in_flight += 1
                    self._pace.reserve(tokens, now)
                    self._kick()
                    return
                # Look again when the slot is due: a request of an earlier chunk may have
                # come in ahead meanwhile, or the rate changed.
                await self._sleep(wait)
        except BaseException:
            if entry in self._queue:
                self._queue.remove(entry)
                heapq.heapify(self._queue)
                self._kick()
            raise

    # --- what the provider said --------------------------------------------------------

    def answered(self, estimated: int, charged: int, info: Any = None) -> None:
        """An answer: correct the token reservation to what the provider charged (prompt
        plus ``max_tokens``: a shorter answer gives nothing back), and learn from it."""
        self._pace.settle(estimated, charged)
        if self._mode is not _Mode.KNOWN:
            # One more in flight per answer doubles the window every round trip; after
            # a refusal, one more per window's worth of answers.
            self._window = min(self.MAX_WINDOW, self._window + (1.0 / self._window if self._refused else 1.0))
        self._heard(info)
        if self._throttle < 1.0:
            self._throttle = min(1.0, self._throttle + self.RECOVER_STEP)
            self._rerate()

    def failed(self, info: Any = None, *, timed_out: bool = False) -> None:
        """An error other than a 429: the provider counted the request; nothing is given back.

        A timeout while no limits are known halves the window as a 429 would: a server that
        queues what it cannot serve and never refuses (llama.cpp's, a vLLM with no limiter in
        front) gives no other sign of too much in flight, and a window that only grew would
        let its queue grow until every request waited past the timeout.
        """
        self._heard(info)
        if timed_out and self._mode is not _Mode.KNOWN:
            self._window = max(1.0, self._window / 2)
            self._refused = True

    def on_rate_limited(self, retry_after: float | None, info: Any = None) -> None:
        """A 429: hold new requests for the provider's retry-after, and slow down a little."""
        self.rate_limited += 1
        self._heard(info)
        self._hold_until = max(self._hold_until, self._clock() + (retry_after if retry_after is not None else 1.0))
        if self._mode is not _Mode.KNOWN:
            self._window = max(1.0, self._window / 2)
            self._refused = True
        else:
            self._throttle = max(self.FLOOR, self._throttle * self.BACKOFF)
        self._rerate()

    def _heard(self, info: Any) -> None:
        """Any answer frees its place in flight and ends the first request's wait; limits
        in it set the pace."""
        self._in_flight = max(0, self._in_flight - 1)
        self.learn(info)
        if self._mode is _Mode.FIRST:
            self._mode = _Mode.RAMP
        self._kick()

    def learn(self, info: Any) -> None:
        """Take the provider's own limits (``x-ratelimit-*``) over the configured ones."""
        if info is None:
            return
        rpm = getattr(info, "limit_requests", None)
        tpm = getattr(info, "limit_tokens", None)
        if rpm or tpm:
            self._adopt_limits(rpm, tpm)
        for remaining, reset in (
            (getattr(info, "remaining_requests", None), getattr(info, "reset_requests_s", None)),
            (getattr(info, "remaining_tokens", None), getattr(info, "reset_tokens_s", None)),
        ):
            if remaining == 0 and reset:
                # Out for now: wait for one request's worth to come back, not for the
                # whole window to refill (the reset header says the latter).
                interval = 60.0 / self._limits.rpm if self._limits.rpm else float(reset)
                self._hold_until = max(self._hold_until, self._clock() + min(float(reset), interval))

    def _adopt_limits(self, rpm: float | None, tpm: float | None) -> None:
        new = Limits(rpm or self._limits.rpm, tpm or self._limits.tpm)
        if new != self._limits or self._mode is not _Mode.KNOWN:
            self._limits = new
            self._mode = _Mode.KNOWN
            self._learned = True
            self._rerate()

    # --- sharing with the other workers of the budget ----------------------------------

    def set_share(self, share: float) -> None:
        """This process's share of the budget (0 < share <= 1)."""
        share = min(1.0, max(share, 1e-3))
        if share != self._share:
            self._share = share
            self._rerate()

    def learned(self) -> Learned:
        """What this pacer knows that another process's pacer of the budget should."""
        hold = self._hold_until - self._clock()
        return Learned(
            rpm=self._limits.rpm if self._learned else None,
            tpm=self._limits.tpm if self._learned else None,
            hold_until=self._wall() + hold if hold > 0 else 0.0,
        )

    def adopt(self, other: Learned) -> None:
        """Take what another process learned: its limits when this one has none from the
        provider, and its hold."""
        if (other.rpm or other.tpm) and not self._learned:
            self._adopt_limits(other.rpm, other.tpm)
        if other.hold_until:
            hold = other.hold_until - self._wall()
            if hold > 0:
                self._hold_until = max(self._hold_until, self._clock() + hold)
                self._kick()
