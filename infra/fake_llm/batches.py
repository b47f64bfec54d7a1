"""What the fake LLM's batch APIs share, whatever the provider's format.

A provider's batch takes many requests at once and answers them within a completion
window, at half price. The fake decides every request's answer when the batch is
created (the same logic as a fast request: :meth:`BatchHost.batch_answer`) and only
*reveals* the answers as time passes: a batch's progress is a pure function of the clock
(:class:`Schedule`), so nothing runs in the background, a restart of a poller sees the
same batch, and a test moves time by moving the clock (``POST /_batches/advance``)
instead of sleeping.

Requests finish one after another, evenly spread over ``batch_completion_s`` seconds from
creation. A batch whose last request would finish after its window (``batch_window_s``)
expires at the end of the window: what was done by then has results, the rest comes back
as expired. A cancel freezes the progress where it is; the batch reports itself
cancelling for ``batch_cancel_s`` seconds, then cancelled, the unfinished requests
reported as cancelled.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from .replies import Completion
from .wire import ErrorKind, Prompt, WireError

__all__ = [
    "BatchAnswer",
    "BatchHost",
    "BatchTiming",
    "Ending",
    "Failed",
    "Filtered",
    "Schedule",
    "list_or_create",
    "lookup",
    "page",
    "parse_limit",
]

Ending = Literal["completed", "expired", "cancelled"]
T = TypeVar("T")


@dataclass(frozen=True)
class Filtered:
    """A request whose answer the provider's safety system stopped (a 200 without content)."""

    prompt_tokens: int


@dataclass(frozen=True)
class Failed:
    """A request the provider failed to answer: ``kind`` and its message's ``info`` as the
    fast route would answer it (see :data:`~.wire.ErrorKind`)."""

    kind: ErrorKind
    info: dict[str, object]


# How the provider answered one request of a batch, in neutral form: each format renders it.
BatchAnswer = Completion | Filtered | Failed


@dataclass(frozen=True)
class BatchTiming:
    """The timing settings a batch takes at its creation (later changes do not move it)."""

    completion_s: float
    window_s: float
    cancel_s: float


class BatchHost(Protocol):
    """What a provider's batch API needs from the server."""

    def batch_now(self) -> float:
        """The batches' clock: Unix seconds, which a test may move forward."""
        ...

    def batch_timing(self) -> BatchTiming:
        """The timing a batch created now gets."""
        ...

    def batch_answer(self, prompt: Prompt) -> BatchAnswer:
        """Answer one request of a batch as the fast route would (context window, faults)."""
        ...

    def batch_limits(self, api: str) -> tuple[int, int]:
        """The most requests and bytes one batch of ``api`` (``openai``, ``anthropic``) may hold."""
        ...


@dataclass
class Schedule:
    """When each of a batch's ``n`` requests is done and how the batch ends.

    Everything is computed from the times given, so any poll at any moment sees the
    state the batch would have reached by then.
    """

    created_at: float
    n: int
    timing: BatchTiming
    cancel_requested_at: float | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("a batch has at least one request")

    @property
    def expires_at(self) -> float:
        return self.created_at + self.timing.window_s

    def done_at(self, i: int) -> float:
        """When request ``i`` (0-based, in the order given) is done, were nothing to stop it."""
        return self.created_at + self.timing.completion_s * (i + 1) / self.n

    def _cutoff(self) -> float:
        # No request finishes after the window ends or after a cancel was asked for.
        if self.cancel_requested_at is None:
            return self.expires_at
        return min(self.expires_at, self.cancel_requested_at)

    def ending(self) -> tuple[Ending, float]:
        """How the batch ends and when."""
        natural = self.created_at + self.timing.completion_s
        if natural <= self._cutoff():
            return "completed", natural
        if self.cancel_requested_at is not None and self.cancel_requested_at < self.expires_at:
            return "cancelled", self.cancel_requested_at + self.timing.cancel_s
        return "expired", self.expires_at

    def ended(self, now: float) -> bool:
        return now >= self.ending()[1]

    def cancelling(self, now: float) -> bool:
        """A cancel was asked for and the batch has not ended yet."""
        return self.cancel_requested_at is not None and now >= self.cancel_requested_at and not self.ended(now)

    def done(self, now: float) -> int:
        """How many requests (the first ones, in order) have their answers at ``now``."""
        t = min(now, self._cutoff())
        if self.timing.completion_s <= 0:
            return self.n if t >= self.created_at else 0
        # The closed form, then nudged so that it agrees exactly with done_at's floats.
        k = max(0, min(self.n, math.floor((t - self.created_at) * self.n / self.timing.completion_s)))
        while k < self.n and self.done_at(k) <= t:
            k += 1
        while k > 0 and self.done_at(k - 1) > t:
            k -= 1
        return k


def page(
    newest_first: list[str], limit: int, after: str | None = None, before: str | None = None
) -> tuple[list[str], bool] | None:
    """One page of a newest-first listing: the ``limit`` ids just after the ``after``
    cursor (or just before the ``before`` one, or the first ``limit``), and whether more
    lie beyond it in that direction. None when a cursor names no listed object."""
    for cursor in (after, before):
        if cursor is not None and cursor not in newest_first:
            return None
    if before is not None:
        end = newest_first.index(before)
        start = max(0, end - limit)
        return newest_first[start:end], start > 0
    start = newest_first.index(after) + 1 if after is not None else 0
    return newest_first[start : start + limit], start + limit < len(newest_first)


def parse_limit(text: str | None, default: int, maximum: int) -> int:
    """A listing's ``limit`` query parameter; ValueError saying what is wrong with it."""
    if text is None:
        return default
    if not text.lstrip("-").isdigit():
        raise ValueError(f"expected an integer, but got '{text[:20]}' instead")
    limit = int(text)
    if not 1 <= limit <= maximum:
        raise ValueError(f"expected a value from 1 to {maximum}, but got {limit}")
    return limit


class _Authenticates(Protocol):
    def authenticate(self, request: Request) -> WireError | None: ...


async def list_or_create(
    request: Request,
    dialect: _Authenticates,
    list_batches: Callable[[Request], Response],
    create: Callable[[Request], Awaitable[Response]],
) -> Response:
    """A provider's collection route: the key checked, ``GET`` lists, ``POST`` creates; a
    :class:`WireError` raised on the way is answered in the provider's shape."""
    refused = dialect.authenticate(request)
    if refused is not None:
        return refused.response()
    try:
        if request.method == "GET":
            return list_batches(request)
        return await create(request)
    except WireError as exc:
        return exc.response()


def lookup(
    request: Request, dialect: _Authenticates, table: Mapping[str, T], param: str, not_found: Callable[[str], Response]
) -> T | Response:
    """The object whose id the path parameter ``param`` names, once the key is checked; or
    the answer refusing the request."""
    refused = dialect.authenticate(request)
    if refused is not None:
        return refused.response()
    ident = request.path_params[param]
    found = table.get(ident)
    return found if found is not None else not_found(ident)
