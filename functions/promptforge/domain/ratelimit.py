"""Rate limits as schedules: when may the next request go, given requests per minute and
tokens per minute.

Each limit is kept as the earliest time its next unit is free (the virtual-scheduling
form of a token bucket). A request reserves its request and its estimated tokens at once,
and waits until both are free. Pacing evenly at rate r never puts more than r x 60 into any
60-second window, which is what providers' sliding windows count. Pure: times are given.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """A provider's limits for one (provider, model, credential); None means unlimited."""

    rpm: float | None = None
    tpm: float | None = None

    def scaled(self, factor: float) -> Limits:
        return Limits(None if self.rpm is None else self.rpm * factor, None if self.tpm is None else self.tpm * factor)


class Schedule:
    """One limit: ``rate`` units a second, with a burst of ``burst_s`` seconds' worth."""

    def __init__(self, rate: float, now: float, burst_s: float = 0.2) -> None:
        self.rate = rate
        self.burst_s = burst_s
        self._free_at = now  # when the next unit is free

    def wait_for(self, now: float) -> float:
        """Seconds from now until the next unit may go (nothing is reserved)."""
        return max(0.0, self._free_at - self.burst_s - now)

    def reserve(self, cost: float, now: float) -> float:
        """Spend ``cost`` units; returns how many seconds from now they may go."""
        start = max(self._free_at - self.burst_s, now)
        # An idle schedule starts again from now: it never banks more than its burst.
        self._free_at = max(self._free_at, now) + cost / self.rate
        return start - now

    def refund(self, cost: float) -> None:
        """Give back (or, when negative, charge extra) units already reserved."""
        self._free_at -= cost / self.rate

    def pause_until(self, when: float) -> None:
        """Nothing new goes before ``when`` (a provider's retry-after)."""
        self._free_at = max(self._free_at, when + self.burst_s)


@dataclass
class Pace:
    """Both limits of one worker: its share of the (provider, model, credential) budget."""

    requests: Schedule | None
    tokens: Schedule | None

    @classmethod
    def for_limits(cls, limits: Limits, now: float) -> Pace:
        pace = cls(None, None)
        pace.set_rates(limits, now)
        return pace

    def reserve(self, tokens: float, now: float) -> float:
        """Reserve one request carrying ``tokens``; returns the seconds to wait before sending.

        Every caller gets its own slot, in order, so waiting callers do not race.
        """
        waits = [s.reserve(c, now) for s, c in ((self.requests, 1.0), (self.tokens, tokens)) if s is not None]
        return max(waits, default=0.0)

    def wait_for(self, now: float) -> float:
        """Seconds until both limits let the next request go (nothing is reserved)."""
        return max((s.wait_for(now) for s in (self.requests, self.tokens) if s is not None), default=0.0)

    def settle(self, estimated: float, actual: float) -> None:
        """Correct a reservation made with an estimate, once the provider said the truth."""
        if self.tokens:
            self.tokens.refund(estimated - actual)

    def pause_until(self, when: float) -> None:
        for schedule in (self.requests, self.tokens):
            if schedule:
                schedule.pause_until(when)

    def set_rates(self, limits: Limits, now: float) -> None:
        """New rates (a new share, or limits learned from the provider); keeps what is queued."""
        if limits.rpm:
            if self.requests is None:
                self.requests = Schedule(limits.rpm / 60.0, now)
            self.requests.rate = limits.rpm / 60.0
        if limits.tpm:
            if self.tokens is None:
                self.tokens = Schedule(limits.tpm / 60.0, now)
            self.tokens.rate = limits.tpm / 60.0
