"""Pacing math and the pacer, on a simulated clock: no sleeping, no flakiness."""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest

from promptforge.domain.ratelimit import Limits, Pace, Schedule
from promptforge.service.pacing import Pacer, estimate_tokens, limits_for
from tests.conftest import make_settings


class Clock:
    """Virtual time for coroutines: sleeping tasks wake in order of their wake time, and the
    clock jumps to the next wake-up once every task is waiting."""

    def __init__(self) -> None:
        self.t = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._sleepers, (self.t + max(0.0, seconds), self._seq, fut))
        await fut

    async def run(self, *coros: Any) -> None:
        tasks = [asyncio.ensure_future(c) for c in coros]
        while not all(t.done() for t in tasks):
            for _ in range(10):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            if self._sleepers:
                wake, _, fut = heapq.heappop(self._sleepers)
                self.t = max(self.t, wake)
                fut.set_result(None)
        for t in tasks:
            t.result()


def test_a_schedule_spaces_requests_evenly_after_a_small_burst() -> None:
    s = Schedule(rate=10.0, now=0.0, burst_s=0.2)
    starts = [s.reserve(1, 0.0) for _ in range(12)]
    assert starts[:3] == [0.0, 0.0, 0.0]  # one, plus a burst of 0.2 s worth at 10/s
    assert starts[-1] == pytest.approx(0.9)
    assert all(b - a == pytest.approx(0.1) for a, b in zip(starts[3:], starts[4:], strict=False))


def test_an_idle_schedule_does_not_bank_more_than_its_burst() -> None:
    s = Schedule(rate=10.0, now=0.0, burst_s=0.2)
    waits = [s.reserve(1, 100.0) for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] > 0


def test_tokens_limit_the_pace_and_settling_refunds_the_estimate() -> None:
    pace = Pace.for_limits(Limits(rpm=None, tpm=6000), now=0.0)  # 100 tokens/s
    assert pace.reserve(500, 0.0) == 0.0
    second = pace.reserve(500, 0.0)
    assert second == pytest.approx(4.8)  # 500 tokens at 100/s, less the 0.2 s burst
    pace.settle(500, 100)  # the first used 100, not 500: 4 s given back
    assert pace.reserve(100, 0.0) == pytest.approx(5.8)  # after 1 s + 5 s, less the burst


def test_limits_come_from_configuration_model_first() -> None:
    s = make_settings(rate_limits={"fake": {"rpm": 100}, "fake/big": {"rpm": 5, "tpm": 50}})
    assert limits_for("fake", "big", s) == Limits(5, 50)
    assert limits_for("fake", "small", s) == Limits(100, None)
    assert limits_for("openai", "x", s) == Limits(None, None)


def test_the_token_estimate_is_prompt_plus_max_tokens() -> None:
    msgs = [{"role": "user", "content": "x" * 40}]
    assert estimate_tokens(msgs, {"max_tokens": 50}, 256) == 10 + 4 + 50
    assert estimate_tokens(msgs, {}, 256) == 10 + 4 + 256


def run_workers(workers: int, rpm: float, seconds: float, target: float = 0.97) -> tuple[list[float], int]:
    """Workers sharing one budget against a provider that counts a sliding 60 s window."""
    clock = Clock()
    sent: list[float] = []
    window: deque[float] = deque()
    rejected = 0

    async def worker(pacer: Pacer) -> None:
        nonlocal rejected
        while clock() < 1000.0 + seconds:
            await pacer.acquire(10)
            now = clock()
            while window and window[0] <= now - 60:
                window.popleft()
            if len(window) >= rpm:
                rejected += 1
                pacer.on_rate_limited(1.0)
                continue
            window.append(now)
            sent.append(now)
            pacer.settle(10, 10)

    async def main() -> None:
        pacers = [Pacer(Limits(rpm=rpm), target, clock=clock, sleep=clock.sleep) for _ in range(workers)]
        for p in pacers:
            p.set_share(workers)
        await clock.run(*(worker(p) for p in pacers))

    asyncio.run(main())
    return sent, rejected


@pytest.mark.parametrize("workers", [1, 4, 10])
def test_workers_sharing_a_budget_stay_under_the_window_and_near_the_limit(workers: int) -> None:
    rpm = 600.0
    sent, rejected = run_workers(workers, rpm, seconds=180)
    assert rejected == 0
    # throughput over the run: the target share of the limit, within the burst
    assert len(sent) / 3 == pytest.approx(rpm * 0.97, rel=0.02)


def test_a_new_rate_applies_to_the_very_next_request_not_after_a_queue_drains() -> None:
    clock = Clock()
    pacer = Pacer(Limits(rpm=60), 1.0, clock=clock, sleep=clock.sleep)  # one a second
    sent: list[float] = []

    async def worker() -> None:
        await pacer.acquire(1)
        sent.append(clock())

    async def main() -> None:
        waiting = [worker() for _ in range(50)]  # fifty requests queue up at 1/s

        async def speed_up() -> None:
            await clock.sleep(2.5)
            pacer.set_share(1)
            pacer.learn(SimpleNamespace(limit_requests=6000, limit_tokens=None, remaining_requests=None))

        await clock.run(*waiting, speed_up())

    asyncio.run(main())
    # after the change at 2.5 s the rest go at 100/s: all fifty within about 3 s
    assert max(sent) - min(sent) < 4.0


def test_a_429_holds_requests_for_the_retry_after_and_trims_the_rate() -> None:
    clock = Clock()
    pacer = Pacer(Limits(rpm=600), 1.0, clock=clock, sleep=clock.sleep)
    pacer.on_rate_limited(2.5)
    start = clock()
    asyncio.run(clock.run(pacer.acquire(1)))
    assert clock() - start >= 2.5
    assert pacer.rate_limited == 1


def test_limits_learned_from_headers_replace_the_configured_ones() -> None:
    clock = Clock()
    pacer = Pacer(Limits(rpm=60), 1.0, clock=clock, sleep=clock.sleep)
    pacer.learn(SimpleNamespace(limit_requests=6000, limit_tokens=None, remaining_requests=5000, reset_requests_s=1))
    start = clock()

    async def burst() -> None:
        for _ in range(100):
            await pacer.acquire(1)

    asyncio.run(clock.run(burst()))
    assert clock() - start == pytest.approx(1.0, abs=0.3)  # 100 requests at 100/s, not 60/min
    # out of requests: wait one request's interval (at 6000/min), not the 7 s to a full window
    pacer.learn(SimpleNamespace(limit_requests=None, remaining_requests=0, reset_requests_s=7.0))
    before = clock()
    asyncio.run(clock.run(pacer.acquire(1)))
    assert 0.0099 <= clock() - before < 0.5
