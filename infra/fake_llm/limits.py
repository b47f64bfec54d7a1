"""Requests-per-minute and tokens-per-minute limits, enforced as providers do.

Each limit is a continuously refilling token bucket, the algorithm Anthropic documents
for its limits ("your capacity is continuously replenished up to your maximum limit,
rather than being reset at fixed intervals") and the behaviour OpenAI's headers
describe (``x-ratelimit-reset-*`` is the time until the budget is full again):

* the bucket holds at most ``limit * burst_s / 60`` (by default the whole minute's
  limit, so an idle client may burst that much; ``burst_s=1`` instead enforces
  6,000/min as 100/s, the way OpenAI says it may quantize limits);
* it refills at ``limit / 60`` per second, continuously;
* a request needs 1 from the requests bucket and its token estimate from the tokens
  bucket; it is refused (429) when either has less, and then takes nothing (unless
  ``charge_rejected``: OpenAI says refused requests count against the limit too);
* what a request takes is never given back, whatever its answer uses: providers charge
  prompt tokens plus ``max_tokens`` up front and refund nothing within the window.

There is one pair of buckets per model, as providers limit per model. Pure: the clock is
passed in, so tests can drive time exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_EPSILON = 1e-9


@dataclass
class Bucket:
    """A token bucket that refills continuously at ``rate`` per second up to ``capacity``."""

    capacity: float
    rate: float
    level: float
    updated: float

    @classmethod
    def full(cls, per_minute: float, burst_s: float, now: float) -> Bucket:
        capacity = max(1.0, per_minute * burst_s / 60.0)
        return cls(capacity=capacity, rate=per_minute / 60.0, level=capacity, updated=now)

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until the bucket holds ``amount`` (0 if it does; inf if it never can)."""
        if self.level >= amount - _EPSILON:  # float sums of refills should not refuse an exact fit
            return 0.0
        if amount > self.capacity:
            return math.inf
        return (amount - self.level) / self.rate

    def until_full(self) -> float:
        return (self.capacity - self.level) / self.rate if self.rate > 0 else 0.0

    def remaining(self) -> int:
        return max(0, math.floor(self.level + _EPSILON))

    def minute_remaining(self) -> int:
        """The level of a window holding a whole minute of the limit, charged alike.

        Both start full, lose the same amounts and refill at the same rate, so they differ
        by exactly the minute's part this bucket cannot hold; they are full together.
        """
        per_minute = self.rate * 60
        return min(round(per_minute), max(0, math.floor(self.level + max(0.0, per_minute - self.capacity) + _EPSILON)))


@dataclass(frozen=True)
class LimitView:
    """What the rate-limit headers of one answer report (None: that limit is not set).

    ``limit_*`` is the per-minute limit, ``remaining_*`` what the bucket holds now, and
    ``reset_*_s`` the seconds until it is full again.

    ``minute_remaining_*`` is what OpenAI's headers report: the remaining of a window a
    whole minute of the limit deep, charged with the same requests. With buckets of less
    than a minute (``burst_s < 60``) it is the bucket's level plus the part of the minute
    the bucket cannot hold, so a client that reads "5,900 of 6,000 left" may still be
    refused if it sends more than the second's share: what a provider that quantizes its
    per-minute limit shows its clients. Both fill up at the same moment, so ``reset_*_s``
    serves both.
    """

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None
    minute_remaining_requests: int | None = None
    minute_remaining_tokens: int | None = None


@dataclass(frozen=True)
class Decision:
    """The limiter's answer: allowed, or refused with the limit that refused it."""

    allowed: bool
    view: LimitView
    refused_by: str | None = None  # "requests" or "tokens"
    retry_after_s: float | None = None  # None with refused_by="tokens": the request can never fit


class RateLimiter:
    """Per-model requests and tokens buckets. ``rpm``/``tpm`` of None mean no such limit."""

    def __init__(self, rpm: float | None, tpm: float | None, burst_s: float = 60.0, charge_rejected: bool = False) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.burst_s = burst_s
        self.charge_rejected = charge_rejected
        self._buckets: dict[str, tuple[Bucket | None, Bucket | None]] = {}

    @property
    def active(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def reset(self) -> None:
        """Forget every bucket: the next request of each model finds them full."""
        self._buckets.clear()

    def _pair(self, model: str, now: float) -> tuple[Bucket | None, Bucket | None]:
        pair = self._buckets.get(model)
        if pair is None:
            pair = (
                Bucket.full(self.rpm, self.burst_s, now) if self.rpm is not None else None,
                Bucket.full(self.tpm, self.burst_s, now) if self.tpm is not None else None,
            )
            self._buckets[model] = pair
        return pair

    def take(self, model: str, tokens: int, now: float) -> Decision:
        """Admit one request of ``tokens`` estimated tokens for ``model`` at time ``now``."""
        requests, token_bucket = self._pair(model, now)
        for bucket in (requests, token_bucket):
            if bucket is not None:
                bucket.refill(now)
        wait_requests = requests.wait_for(1) if requests is not None else 0.0
        wait_tokens = token_bucket.wait_for(tokens) if token_bucket is not None else 0.0
        if wait_requests > 0 or wait_tokens > 0:
            if self.charge_rejected and requests is not None:
                # May go below zero (down to -capacity): a client that keeps hammering waits longer.
                requests.level = max(-requests.capacity, requests.level - 1)
            refused_by = "requests" if wait_requests >= wait_tokens else "tokens"
            wait = max(wait_requests, wait_tokens)
            return Decision(False, self._view(requests, token_bucket), refused_by, None if math.isinf(wait) else wait)
        if requests is not None:
            requests.level -= 1
        if token_bucket is not None:
            token_bucket.level -= tokens
        return Decision(True, self._view(requests, token_bucket))

    @staticmethod
    def _view(requests: Bucket | None, tokens: Bucket | None) -> LimitView:
        return LimitView(
            limit_requests=round(requests.rate * 60) if requests else None,
            remaining_requests=requests.remaining() if requests else None,
            reset_requests_s=requests.until_full() if requests else None,
            limit_tokens=round(tokens.rate * 60) if tokens else None,
            remaining_tokens=tokens.remaining() if tokens else None,
            reset_tokens_s=tokens.until_full() if tokens else None,
            minute_remaining_requests=requests.minute_remaining() if requests else None,
            minute_remaining_tokens=tokens.minute_remaining() if tokens else None,
        )


def go_duration(seconds: float) -> str:
    """A duration as OpenAI writes it in ``x-ratelimit-reset-*``: ``20ms``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{int(minutes)}m{round(secs, 3):g}s"
    return f"{int(hours)}h{text}" if hours else text
