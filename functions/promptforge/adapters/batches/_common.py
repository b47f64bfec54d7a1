"""What the batch adapters share: the errors they make, the checks on what they are
given and read back, and how a cancel leaves an ended batch alone.

Pure asyncio: importing it loads no SDK.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta

from ...domain.outcomes import ErrorCode
from ...service.batch_port import BatchItem, BatchOutcome
from ..providers import _http
from ..providers.base import ChatResult, ProviderError

# ``find`` looks this much before ``since``: ``since`` is PromptForge's clock, a batch's
# creation time the provider's, and a batch the two clocks disagree about must still be
# found (a superset is allowed, a miss would create the batch twice).
CLOCK_SLACK = timedelta(minutes=5)


def earliest(since: datetime) -> datetime:
    """The earliest creation time ``find`` keeps."""
    return since - CLOCK_SLACK


def check_items(model: str, items: Sequence[BatchItem]) -> None:
    """Refuse a batch the use case should never build: empty, a custom_id twice, or a
    request for another model (one batch is one model on every provider)."""
    if not items:
        raise ValueError("a batch needs at least one request")
    seen: set[str] = set()
    for item in items:
        if item.custom_id in seen:
            raise ValueError(f"custom_id {item.custom_id!r} appears twice in one batch")
        seen.add(item.custom_id)
        if item.request.model != model:
            raise ValueError(f"request {item.custom_id!r} is for another model than its batch")


def refusal_of(build: Callable[[], object]) -> ProviderError | None:
    """The error ``build`` (a request's body, made without a call) raises, or None."""
    try:
        build()
    except ProviderError as exc:
        return exc
    return None


def created(ident: object) -> str:
    """The id of a batch the provider says it created (``unreadable`` when it gave none)."""
    if not isinstance(ident, str) or not ident:
        raise unreadable("a created batch without an id")
    return ident


def unreadable(what: str) -> ProviderError:
    """An answer of the batch API that cannot be read (``what`` is our own words):
    retryable, as a malformed fast answer is."""
    return ProviderError(ErrorCode.PROVIDER_ERROR, f"provider sent an unreadable batch answer ({what})", True)


def expired(reason: str) -> ProviderError:
    """A request the batch never ran: its window ended or it was cancelled first."""
    return ProviderError(ErrorCode.PROVIDER_EXPIRED, f"the provider's batch ended before it ran the request ({reason})", False)


def failed_unanswered(code: object) -> ProviderError:
    """A request the batch reports failed without an answer, for a reason other than its
    window or a cancel (``code``, the provider's, is shown when it is an identifier)."""
    shown = _http.safe_code(code)
    return ProviderError(ErrorCode.PROVIDER_ERROR, "the batch request failed" + (f" ({shown})" if shown else ""), True)


def not_ended(state: str) -> ProviderError:
    """``outcomes`` asked of a batch still running."""
    return ProviderError(ErrorCode.PROVIDER_ERROR, f"the batch has not ended ({_http.safe_code(state)})", True)


def refused(codes: Iterable[object]) -> ProviderError:
    """A batch the provider refused as a whole (its input did not validate)."""
    shown = sorted({c for c in (_http.safe_code(code) for code in codes) if c})
    return ProviderError(
        ErrorCode.INVALID_REQUEST, "the provider refused the batch" + (f" ({', '.join(shown)})" if shown else ""), False
    )


def outcome(custom_id: str, read: Callable[[], ChatResult]) -> BatchOutcome:
    """One request's outcome: what ``read`` makes of its answer, or the error it raises
    (a malformed answer, a filtered reply)."""
    try:
        return BatchOutcome(custom_id, result=read())
    except ProviderError as error:
        return BatchOutcome(custom_id, error=error)


class Outcomes:
    """The outcomes of one batch, each custom_id once: a provider that answers one twice
    has sent something that cannot be read, and nothing is guessed."""

    def __init__(self) -> None:
        self._by_id: dict[str, BatchOutcome] = {}

    def add(self, item: BatchOutcome) -> None:
        if item.custom_id in self._by_id:
            raise unreadable("a custom_id answered twice")
        self._by_id[item.custom_id] = item

    def all(self) -> list[BatchOutcome]:
        return list(self._by_id.values())


async def cancel_unless_ended(stopping: Callable[[], Awaitable[bool]], cancel: Callable[[], Awaitable[object]]) -> None:
    """Cancel a batch unless it has ended or is being cancelled already (``stopping``).

    A batch may end between the look and the cancel; the provider then refuses the
    cancel, and a second look tells that refusal from a real failure.
    """
    if await stopping():
        return
    try:
        await cancel()
    except ProviderError:
        if await stopping():
            return
        raise
