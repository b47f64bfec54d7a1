"""Fair use per client: caps that keep one client from slowing every other.

Four caps, each a setting (0 turns it off), each answered with 429 and ``Retry-After``:

* jobs awaiting upload (``max_awaiting_uploads``) and open jobs (``max_open_jobs``: those
  awaiting upload, PENDING, or the active QUEUED/PROCESSING one), checked when a job is
  created (init and inline create). A job turns PENDING only at its upload, so counting
  awaiting + pending + active at creation also bounds the queue behind the active job.
* event streams open at once (``max_event_streams``): a lease per stream with an end the
  stream keeps pushing back, so a lease of an instance that died runs out by itself.
  Callbacks being sent (``max_callbacks_in_flight``) are leases of the same kind, one per
  job, answered by deferring the callback rather than with 429.
* requests per minute (``requests_per_minute``) on every keyed call of the public API.

The functions run as many instances, so every count lives in Firestore. Awaiting jobs and
stream leases sit on one small document per client, changed by compare-and-set: read,
decide, write only if nobody wrote meanwhile, else read again. No lock is held while
deciding, so a burst of one client's requests costs that client retries, never a wait
on a lock that other work needs.

Requests per minute are counted per client and minute, but not with a write per
request: an instance reserves a block of the minute's allowance (a sixtieth of it) with
one atomic increment and spends it locally, and once the minute's allowance is gone it
refuses locally until the minute ends. The shared count never hands out more than the
cap; a client spread over many instances may be refused a little before it (the unspent
rest of each instance's last block), and a refused burst costs no write at all.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

from .. import logs
from ..domain.job import Job, JobStatus
from ..domain.usage import AwaitingUpload, ClientUsage, LeaseKind, block_size, granted, seconds_left, window_start
from .deps import Deps

T = TypeVar("T")

# A stream's lease runs this long past its last renewal; streams renew far more often.
STREAM_LEASE = timedelta(seconds=30)
STREAM_RENEW_SECONDS = 10.0
# Retry-After of the job and stream caps: what frees a place (an upload, a job ending, a
# stream closing) is up to the client, so this is a polling pace, not a promise.
JOB_RETRY_AFTER_SECONDS = 30
STREAM_RETRY_AFTER_SECONDS = 15
# Compare-and-set rounds before giving up: each lost round means another request of the
# same client got its write in, so this is only reached under a burst far past any cap.
_ATTEMPTS = 50


class OverCap(Exception):
    """A request over one of its client's caps (the API answers 429 with ``Retry-After``)."""

    def __init__(self, code: str, message: str, limit: int, current: int, retry_after: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.limit = limit
        self.current = current
        self.retry_after = retry_after

    def again(self) -> OverCap:
        """The same refusal, for another request (each raise gets its own exception)."""
        return OverCap(self.code, self.message, self.limit, self.current, self.retry_after)


# --- jobs ------------------------------------------------------------------------------


def admit_job(deps: Deps, job: Job) -> None:
    """Create ``job`` (AWAITING_UPLOAD) if its client is within its job caps; else raise
    :class:`OverCap` and create nothing."""
    s = deps.settings
    if not (s.max_awaiting_uploads or s.max_open_jobs):
        deps.store.create_job(job)
        return
    for attempt in range(_ATTEMPTS):
        usage, awaiting = _shared(deps, f"jobs/{job.client_id}", lambda: _look_at_jobs(deps, job.client_id))
        listed = (*awaiting, AwaitingUpload(job.job_id, job.upload_expires_at))
        if deps.store.put_usage(usage.replace(awaiting=listed), new_job=job):
            return
        _pause(attempt)
    raise _busy(s.max_awaiting_uploads or s.max_open_jobs)


def _look_at_jobs(deps: Deps, client_id: str) -> tuple[ClientUsage, tuple[AwaitingUpload, ...]]:
    """The client's usage as stored, and its awaiting jobs if one more fits; else OverCap."""
    usage = deps.store.get_usage(client_id)
    return usage, _count_or_refuse(deps, client_id, usage.live_awaiting(deps.now()))


def _count_or_refuse(deps: Deps, client_id: str, awaiting: tuple[AwaitingUpload, ...]) -> tuple[AwaitingUpload, ...]:
    """The client's awaiting jobs, if one more job fits under both caps; else OverCap.

    The list is looked at closely only when it would refuse: a listed job may have moved
    on (uploaded, cancelled). The client's slot and queue are read after its jobs, so a job
    seen past AWAITING_UPLOAD is counted there; one seen awaiting and then uploaded may be
    counted twice. Never too few, so the caps hold.
    """
    s = deps.settings
    looked = False
    if s.max_awaiting_uploads and len(awaiting) >= s.max_awaiting_uploads:
        awaiting, looked = _still_awaiting(deps, awaiting), True
        if len(awaiting) >= s.max_awaiting_uploads:
            raise _refused(
                "too_many_awaiting_uploads",
                f"This client has {len(awaiting)} jobs awaiting their upload, the most allowed "
                f"({s.max_awaiting_uploads}); upload their files or cancel some first",
                s.max_awaiting_uploads,
                len(awaiting),
            )
    if not s.max_open_jobs:
        return awaiting
    held = _held(deps, client_id)
    if not looked and len(awaiting) + held >= s.max_open_jobs:
        still = _still_awaiting(deps, awaiting)
        if len(still) < len(awaiting):
            held = _held(deps, client_id)
        awaiting = still
    if len(awaiting) + held >= s.max_open_jobs:
        raise _refused(
            "too_many_open_jobs",
            f"This client has {len(awaiting) + held} open jobs (awaiting upload, pending or running), "
            f"the most allowed ({s.max_open_jobs}); wait for some to end or cancel some first",
            s.max_open_jobs,
            len(awaiting) + held,
        )
    return awaiting


def _refused(code: str, message: str, limit: int, current: int) -> OverCap:
    # Not logged one by one: a client hammering at its cap would flood the log, and the
    # platform's request log has every 429 already.
    return OverCap(code, message, limit, current, JOB_RETRY_AFTER_SECONDS)


def _held(deps: Deps, client_id: str) -> int:
    """The client's jobs past their upload and not ended: the PENDING queue and the slot."""
    client = deps.store.get_client_state(client_id)
    return len(client.pending) + (1 if client.active_job_id else 0)


def _still_awaiting(deps: Deps, awaiting: tuple[AwaitingUpload, ...]) -> tuple[AwaitingUpload, ...]:
    """The entries whose job is still AWAITING_UPLOAD (one read for all of them)."""
    statuses = deps.store.get_job_statuses(a.job_id for a in awaiting)
    return tuple(a for a in awaiting if statuses.get(a.job_id) is JobStatus.AWAITING_UPLOAD)


# --- event streams ----------------------------------------------------------------------


def open_stream(deps: Deps, client_id: str) -> str:
    """Take one of the client's event-stream leases and return its id; :class:`OverCap`
    when every one is held."""
    lease = uuid.uuid4().hex
    limit = deps.settings.max_event_streams
    if not limit:
        return lease

    def refusal(held: int) -> OverCap:
        return OverCap(
            "too_many_event_streams",
            f"This client has {held} event streams open, the most allowed ({limit}); close one, or poll the job's status instead",
            limit,
            held,
            STREAM_RETRY_AFTER_SECONDS,
        )

    _take_lease(deps, client_id, LeaseKind.STREAMS, lease, limit, STREAM_LEASE, refusal)
    return lease


def start_callback(deps: Deps, client_id: str, job_id: str, hold: timedelta) -> bool:
    """Take one of the client's places for a callback being sent (``max_callbacks_in_flight``),
    held for ``hold`` at most, so a sender that died frees it; False when none is free."""
    limit = deps.settings.max_callbacks_in_flight
    try:
        _take_lease(deps, client_id, LeaseKind.CALLBACKS, job_id, limit, hold, lambda held: _busy(limit))
    except OverCap:
        return False
    return True


def end_callback(deps: Deps, client_id: str, job_id: str) -> None:
    """Give a callback's place back (best effort: it runs out by itself)."""
    _give_back(deps, client_id, LeaseKind.CALLBACKS, job_id)


def _take_lease(
    deps: Deps,
    client_id: str,
    kind: LeaseKind,
    lease: str,
    limit: int,
    hold: timedelta,
    refusal: Callable[[int], OverCap],
) -> None:
    """Add ``lease`` to the client's leases of ``kind`` until ``hold`` from now (or renew
    it if held); ``refusal(held)`` when ``limit`` others are live."""
    for attempt in range(_ATTEMPTS):
        usage, live = _shared(
            deps, f"{kind.value}/{client_id}", lambda: _look_at_leases(deps, client_id, kind, lease, limit, refusal)
        )
        if deps.store.put_usage(usage.replace(**{kind.value: {**live, lease: deps.now() + hold}})):
            return
        _pause(attempt)
    raise _busy(limit)


def _look_at_leases(
    deps: Deps, client_id: str, kind: LeaseKind, lease: str, limit: int, refusal: Callable[[int], OverCap]
) -> tuple[ClientUsage, dict[str, datetime]]:
    """The client's usage as stored, and its live leases of ``kind`` if one more fits."""
    usage = deps.store.get_usage(client_id)
    live = usage.live(kind, deps.now())
    if lease not in live and len(live) >= limit:
        raise refusal(len(live))
    return usage, live


def renew_stream(deps: Deps, client_id: str, lease: str) -> bool:
    """Push a lease's end back; False when it has already run out (its place may be
    another stream's by now, so the stream should end)."""
    if not deps.settings.max_event_streams:
        return True
    for attempt in range(_ATTEMPTS):
        usage = deps.store.get_usage(client_id)
        now = deps.now()
        live = usage.live_streams(now)
        if lease not in live:
            return False
        if deps.store.put_usage(usage.replace(streams={**live, lease: now + STREAM_LEASE})):
            return True
        _pause(attempt)
    return True  # still held for a while: the next renewal tries again


def close_stream(deps: Deps, client_id: str, lease: str) -> None:
    """Give a lease back. Best effort: a lease left behind runs out by itself."""
    if deps.settings.max_event_streams:
        _give_back(deps, client_id, LeaseKind.STREAMS, lease)


def _give_back(deps: Deps, client_id: str, kind: LeaseKind, lease: str) -> None:
    for attempt in range(_ATTEMPTS):
        usage = deps.store.get_usage(client_id)
        if lease not in getattr(usage, kind.value):
            return
        live = usage.live(kind, deps.now())
        live.pop(lease, None)
        if deps.store.put_usage(usage.replace(**{kind.value: live})):
            return
        _pause(attempt)


# --- requests per minute ----------------------------------------------------------------


@dataclass
class _Share:
    """This instance's part of one client's allowance for one minute."""

    window: datetime
    left: int = 0
    spent: bool = False  # the minute's shared allowance is all handed out


class RequestMeter:
    """The requests this instance may still admit per client this minute (one per store,
    so every process, and every test store, counts for itself)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shares: dict[str, _Share] = {}
        self._reserving: dict[str, threading.Lock] = {}

    def reserving(self, client_id: str) -> threading.Lock:
        """Held by the one reservation of a client under way here. Requests that find the
        share empty at the same moment would otherwise each reserve a block, and spend the
        client's minute on tokens no request uses."""
        with self._lock:
            return self._reserving.setdefault(client_id, threading.Lock())

    def spend(self, client_id: str, window: datetime) -> bool | None:
        """True: admitted from the local share; False: the minute is spent; None: no share
        left here, reserve more."""
        with self._lock:
            share = self._shares.get(client_id)
            if share is None or share.window != window:
                return None
            if share.left > 0:
                share.left -= 1
                return True
            return False if share.spent else None

    def add(self, client_id: str, window: datetime, tokens: int, spent: bool) -> bool:
        """Add a reservation's tokens; returns whether this marked the minute spent."""
        with self._lock:
            share = self._shares.get(client_id)
            if share is None or share.window != window:
                # A new minute: shares of past minutes are worthless.
                self._shares = {c: s for c, s in self._shares.items() if s.window >= window}
                share = self._shares[client_id] = _Share(window)
                self._reserving = {c: r for c, r in self._reserving.items() if c in self._shares or r.locked()}
            newly_spent = spent and not share.spent
            share.left += tokens
            share.spent = share.spent or spent
            return newly_spent


_meters: weakref.WeakKeyDictionary[object, RequestMeter] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def _meter(deps: Deps) -> RequestMeter:
    with _registry_lock:
        meter = _meters.get(deps.store)
        if meter is None:
            meter = _meters[deps.store] = RequestMeter()
        return meter


def check_request(deps: Deps, client_id: str) -> None:
    """Count one request of the client against its per-minute cap; :class:`OverCap` when
    the minute's allowance is gone."""
    limit = deps.settings.requests_per_minute
    if not limit:
        return
    now = deps.now()
    window = window_start(now)
    meter = _meter(deps)
    admitted = meter.spend(client_id, window)
    if admitted is None:
        with meter.reserving(client_id):
            admitted = meter.spend(client_id, window)  # another reservation may have landed
            if admitted is None:
                admitted = _reserve(deps, meter, client_id, window, limit)
    if admitted:
        return
    raise OverCap(
        "rate_limited",
        f"More than {limit} requests in a minute from this client; retry when the minute ends",
        limit,
        limit,
        seconds_left(now, window),
    )


def _reserve(deps: Deps, meter: RequestMeter, client_id: str, window: datetime, limit: int) -> bool:
    """Reserve a block of the client's minute from the shared count; whether this request
    got one of its tokens (fewer than asked means the minute is all handed out)."""
    block = block_size(limit)
    got = granted(limit, block, deps.store.take_requests(client_id, window, block))
    if meter.add(client_id, window, max(0, got - 1), spent=got < block):
        logs.info("request cap reached", client_id=client_id, limit=limit)
    return got > 0


# --- one look for a burst -----------------------------------------------------------------


@dataclass
class _Look:
    """One look at a client's usage under way in this instance, and how it ended."""

    done: threading.Event = field(default_factory=threading.Event)
    answer: Any = None
    refusal: OverCap | None = None
    failed: bool = False


class _Looks:
    """Looks at client usage under way in this instance (one registry per store).

    A request that comes while a look at the same thing is under way waits for it and
    takes its answer instead of reading the same documents again, so a burst of one
    client's requests costs a few reads rather than a few per request. The answer is as
    fresh as the request's own would be, give or take the one look, and every write is
    still a compare-and-set: a shared answer can lose a write, never pass a cap.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._under_way: dict[str, _Look] = {}

    def share(self, key: str, look: Callable[[], T]) -> T:
        with self._lock:
            other = self._under_way.get(key)
            if other is None:
                mine = self._under_way[key] = _Look()
        if other is not None:
            other.done.wait()
            if other.refusal is not None:
                raise other.refusal.again()
            if not other.failed:
                return cast(T, other.answer)
            return look()  # that look failed (the store, say): take one's own
        try:
            mine.answer = look()
        except OverCap as refusal:
            mine.refusal = refusal
            raise
        except BaseException:
            mine.failed = True
            raise
        finally:
            with self._lock:
                del self._under_way[key]
            mine.done.set()
        return cast(T, mine.answer)


_looks: weakref.WeakKeyDictionary[object, _Looks] = weakref.WeakKeyDictionary()


def _shared(deps: Deps, key: str, look: Callable[[], T]) -> T:
    with _registry_lock:
        looks = _looks.get(deps.store)
        if looks is None:
            looks = _looks[deps.store] = _Looks()
    return looks.share(key, look)


# --- shared -------------------------------------------------------------------------------


def _pause(attempt: int) -> None:
    """A short random wait after losing a compare-and-set, so the losers spread out."""
    time.sleep(random.uniform(0, min(0.05, 0.005 * (attempt + 1))))


def _busy(limit: int) -> OverCap:
    return OverCap("rate_limited", "Too many of this client's requests at once; retry shortly", limit, limit, retry_after=1)
