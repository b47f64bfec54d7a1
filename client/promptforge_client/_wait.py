"""How ``jobs.wait`` paces its polls, apart from the I/O so both clients share it."""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import APIError, NetworkError, PromptForgeError, WaitTimeout

# A long wait should outlive a brief outage: this many failed polls in a row, with backoff.
MAX_TRANSIENT_FAILURES = 5
MIN_INTERVAL = 0.2


class Pacer:
    """The delay before the next status poll: the service's ``Retry-After`` when it gives
    one, ``poll_interval`` otherwise, backoff after a transient failure, and never past the
    caller's ``timeout``."""

    def __init__(
        self, job_id: str, timeout: float | None, poll_interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.job_id = job_id
        self.clock = clock
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.deadline = None if timeout is None else clock() + timeout
        self.failures = 0

    def polled(self, retry_after: float | None) -> float:
        """The delay after a successful poll of a job that has not ended."""
        self.failures = 0
        return self._bounded(self.poll_interval if retry_after is None else max(MIN_INTERVAL, retry_after))

    def failed(self, exc: PromptForgeError) -> float:
        """The delay after a failed poll; re-raises ``exc`` when it is not worth retrying."""
        transient = isinstance(exc, NetworkError) or (isinstance(exc, APIError) and (exc.status >= 500 or exc.status == 429))
        self.failures += 1
        if not transient or self.failures > MAX_TRANSIENT_FAILURES:
            raise exc
        hint = exc.retry_after if isinstance(exc, APIError) and exc.retry_after is not None else 0.0
        return self._bounded(max(hint, min(30.0, 2.0 ** (self.failures - 1))))

    def _bounded(self, delay: float) -> float:
        if self.deadline is None:
            return delay
        remaining = self.deadline - self.clock()
        if remaining <= 0:
            raise WaitTimeout(self.job_id, self.timeout or 0.0)
        return min(delay, remaining)
