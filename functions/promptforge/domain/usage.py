"""What a client holds against its fair-use caps: pure records and arithmetic.

The service (``service/quotas.py``) reads a :class:`ClientUsage`, decides, and writes it
back only if nobody changed it meanwhile (compare-and-set on ``version``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum

REQUEST_WINDOW = timedelta(minutes=1)


class LeaseKind(str, Enum):
    """What a client holds a limited number of at once, each with an end: the name of the
    :class:`ClientUsage` field that keeps them."""

    STREAMS = "streams"  # event streams open
    CALLBACKS = "callbacks"  # callbacks being sent


@dataclass(frozen=True)
class AwaitingUpload:
    """A job created and not yet uploaded, as the client's usage lists it."""

    job_id: str
    expires_at: datetime  # its upload URL's expiry: no file can come after it


@dataclass(frozen=True)
class ClientUsage:
    """A client's jobs awaiting upload, open event streams and callbacks being sent, kept
    in one document.

    Entries can go stale (a job uploaded or cancelled, a stream whose instance died): an
    awaiting job counts until its URL expires or a look at the job shows it moved on, a
    stream until its lease runs out. Stale entries only ever over-count, never under.
    """

    client_id: str
    awaiting: tuple[AwaitingUpload, ...] = ()
    streams: Mapping[str, datetime] = field(default_factory=dict)  # lease id -> lease end
    callbacks: Mapping[str, datetime] = field(default_factory=dict)  # job id -> end of its send
    version: str = ""  # the store's version of the document as read; "" when there was none

    def replace(self, **changes: object) -> ClientUsage:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def live_awaiting(self, now: datetime) -> tuple[AwaitingUpload, ...]:
        """Awaiting jobs whose upload URL has not expired."""
        return tuple(a for a in self.awaiting if a.expires_at > now)

    def live_streams(self, now: datetime) -> dict[str, datetime]:
        """Stream leases that have not run out."""
        return self.live(LeaseKind.STREAMS, now)

    def live(self, kind: LeaseKind, now: datetime) -> dict[str, datetime]:
        """Leases of one kind that have not run out."""
        return {lease: until for lease, until in getattr(self, kind.value).items() if until > now}


def window_start(now: datetime) -> datetime:
    """The start of the one-minute request window ``now`` falls in (UTC)."""
    return now.astimezone(UTC).replace(second=0, microsecond=0)


def seconds_left(now: datetime, window: datetime) -> int:
    """Whole seconds until ``window`` ends, at least 1 (a ``Retry-After`` value)."""
    return max(1, math.ceil((window + REQUEST_WINDOW - now).total_seconds()))


def block_size(per_minute: int) -> int:
    """How many requests an instance reserves from the shared count at a time.

    A sixtieth of the cap: at full rate the shared count takes about one write a second
    (Firestore's sustained rate for one document), whatever the number of instances.
    """
    return max(1, per_minute // 60)


def granted(per_minute: int, block: int, total_after: int) -> int:
    """Requests a reservation of ``block`` actually got, given the window's count after it."""
    return max(0, min(block, per_minute - (total_after - block)))
