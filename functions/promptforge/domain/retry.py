"""The one retry policy: exponential backoff with full jitter, honouring retry-after."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        A provider's retry-after is a floor (waiting less only earns another 429); the
        jitter spreads workers out so they do not retry in lockstep.
        """
        r = rng or random
        backoff = r.uniform(0, min(self.cap_s, self.base_s * 2 ** (attempt - 1)))
        return max(backoff, retry_after or 0.0)
