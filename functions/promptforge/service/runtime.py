"""The process's chunk runtime: one event loop for every chunk it runs, and one pace per
rate budget shared by all of them.

A process_chunk instance serves several chunk requests at once (Cloud Run concurrency).
Each request thread hands its chunk's coroutine to the one loop here, so the chunks of a
budget draw on one :class:`~.pacing.Pacer`: what one learns (limits from headers, a 429's
retry-after) holds for all of them at once, a chunk's hand-over leaves the limit to the
others instead of idling its share, and HTTP sessions are shared per process.

Between processes, a :class:`Hub` registers this process on its budget (one small
document, renewed every ``heartbeat_seconds``) with the number of chunks it runs and what
it learned; every process paces at its chunks' share of the live total and adopts what
the others learned. The same beat reads the jobs' stop signals (cancelled, failed,
token budget reached) once per job, not once per chunk.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
import weakref
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import uvloop

from .. import logs
from ..domain.chunk_outcomes import HaltReason
from ..domain.ratelimit import Limits
from .deps import Deps
from .pacing import Learned, Pacer
from .ports import BudgetBeat

T = TypeVar("T")

# Blocking store and storage calls of every running chunk go through this many threads.
_IO_THREADS = 64


class _LoopThread:
    """An event loop running forever in a daemon thread, started on first use.

    The loop is uvloop's: a chunk worker's CPU goes mostly to the event loop's bookkeeping
    around each provider request, and uvloop does that bookkeeping in C (~10-15% less CPU
    per request, ``infra/bench/provider_cpu.py --loop``). uvloop is a pinned dependency
    (functions/requirements.txt), so it is imported outright: a missing one fails the
    import, never falls back to a slower loop unnoticed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = uvloop.new_event_loop()
                loop.set_default_executor(ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="chunk-io"))
                started = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                threading.Thread(target=serve, name="chunk-loop", daemon=True).start()
                started.wait()
                self._loop = loop
            return self._loop


_LOOP = _LoopThread()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the process's chunk loop and wait for it (from a request thread)."""
    return asyncio.run_coroutine_threadsafe(coro, _LOOP.loop()).result()


@dataclass
class JobSignals:
    """What the beat found about one job, for its running chunks."""

    halt: HaltReason | None = None  # why no new prompt may start: the job ended
    over_budget: bool = False


_NO_SIGNALS = JobSignals()


@dataclass
class Hub:
    """The chunks of one budget running in this process (lives on the chunk loop)."""

    deps: Deps
    budget: str
    pacer: Pacer
    expected: int  # chunks assumed to share the budget until the others have checked in
    worker_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    chunks: dict[int, str] = field(default_factory=dict)  # attach number -> job_id
    signals: dict[str, JobSignals] = field(default_factory=dict)
    others: int = 0  # chunks of other processes, as of the last beat
    since: float = field(default_factory=time.monotonic)
    beating: asyncio.Task[None] | None = None

    def signals_for(self, job_id: str) -> JobSignals:
        """What the last beat found about ``job_id`` (nothing yet: no stop)."""
        return self.signals.get(job_id, _NO_SIGNALS)

    def share(self) -> float:
        mine = len(self.chunks)
        total = mine + self.others
        if time.monotonic() - self.since < self.deps.settings.heartbeat_seconds:
            # Processes that started with this one may not have checked in yet.
            total = max(total, self.expected)
        return mine / max(1, total)

    def beat(self) -> None:
        """Register, read the other processes' beats, and the jobs' stop signals (blocking)."""
        store, now, s = self.deps.store, self.deps.now(), self.deps.settings
        learned = self.pacer.learned()
        until = now + timedelta(seconds=max(3 * s.heartbeat_seconds, 10.0))
        mine = BudgetBeat(until, len(self.chunks), learned.rpm, learned.tpm, learned.hold_until)
        store.heartbeat_worker(self.budget, self.worker_id, mine)
        beats = store.budget_workers(self.budget, now)
        # The read follows this process's own write (Firestore reads are strongly
        # consistent), so the total includes this process's chunks.
        self.others = max(0, sum(b.weight for b in beats) - len(self.chunks))
        for b in beats:
            self.pacer.adopt(Learned(b.rpm, b.tpm, b.hold_until))
        for job_id in set(self.chunks.values()):
            job = store.get_job(job_id)
            signals = self.signals.setdefault(job_id, JobSignals())
            if job is None or job.status.terminal:
                signals.halt = HaltReason.job_ended(job.status if job else None)
            if job is not None and job.budget_tokens is not None and not signals.over_budget:
                totals = store.chunk_totals(job_id)
                if totals.input_tokens + totals.output_tokens >= job.budget_tokens:
                    signals.over_budget = True
                    logs.info("token budget reached", job_id=job_id)
        self.pacer.set_share(self.share())


# Hubs by store (a test's store, or the process's one) and budget; pacers outlive their
# hub, so a chunk that starts after a gap keeps what the budget learned.
_hubs: weakref.WeakKeyDictionary[Any, dict[str, Hub]] = weakref.WeakKeyDictionary()
_pacers: weakref.WeakKeyDictionary[Any, dict[tuple[str, Limits, float], Pacer]] = weakref.WeakKeyDictionary()
_attach_numbers = itertools.count()


async def attach(deps: Deps, budget: str, limits: Limits, job_id: str, expected: int) -> tuple[Hub, int]:
    """Join the budget's hub (starting it, with a first beat, if this is its first chunk);
    returns the hub and this chunk's attach number, which is also its priority."""
    hubs = _hubs.setdefault(deps.store, {})
    number = next(_attach_numbers)
    hub = hubs.get(budget)
    if hub is None:
        pacers = _pacers.setdefault(deps.store, {})
        key = (budget, limits, deps.settings.rate_target)
        pacer = pacers.get(key) or pacers.setdefault(key, Pacer(limits, deps.settings.rate_target))
        hub = hubs[budget] = Hub(deps, budget, pacer, expected)
        hub.chunks[number] = job_id
        try:
            await asyncio.to_thread(hub.beat)
        except BaseException:
            del hub.chunks[number]
            hubs.pop(budget, None)
            raise
        hub.beating = asyncio.create_task(_keep(hub))
    else:
        hub.chunks[number] = job_id
        hub.expected = max(hub.expected, expected)
        hub.pacer.set_share(hub.share())
    return hub, number


async def detach(hub: Hub, number: int) -> None:
    """Leave the hub; the last chunk out stops its beat and drops its registration."""
    hub.chunks.pop(number, None)
    if hub.chunks:
        hub.pacer.set_share(hub.share())
        return
    hubs = _hubs.get(hub.deps.store, {})
    if hubs.get(hub.budget) is hub:
        del hubs[hub.budget]
    if hub.beating is not None:
        hub.beating.cancel()
    await asyncio.to_thread(hub.deps.store.drop_worker, hub.budget, hub.worker_id)


async def _keep(hub: Hub) -> None:
    """Beat every ``heartbeat_seconds`` while the hub has chunks. A failed beat is tried
    again at the next one: the registration outlives a few missed beats."""
    while hub.chunks:
        await asyncio.sleep(hub.deps.settings.heartbeat_seconds)
        if not hub.chunks:
            return
        try:
            await asyncio.to_thread(hub.beat)
        except Exception as exc:
            logs.warning("budget beat failed", error_type=type(exc).__name__)
