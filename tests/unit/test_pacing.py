"""Pacing math and the pacer, on a simulated clock: no sleeping, no flakiness."""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest

from promptforge.domain.outcomes import ErrorCode
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
            pacer.answered(10, 10)

    async def main() -> None:
        pacers = [Pacer(Limits(rpm=rpm), target, clock=clock, sleep=clock.sleep) for _ in range(workers)]
        for p in pacers:
            p.set_share(1 / workers)
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
            pacer.set_share(1.0)
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


def headers(rpm: float | None = None, tpm: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(limit_requests=rpm, limit_tokens=tpm, remaining_requests=None, remaining_tokens=None)


def test_with_no_limit_known_one_request_goes_alone_and_its_headers_set_an_even_pace() -> None:
    clock = Clock()
    pacer = Pacer(Limits(), 1.0, clock=clock, sleep=clock.sleep)
    sent: list[float] = []

    async def request(answer_after: float) -> None:
        await pacer.acquire(1)
        sent.append(clock())
        await clock.sleep(answer_after)
        pacer.answered(1, 1, headers(rpm=600))  # 10 a second

    async def main() -> None:
        await clock.run(*(request(0.3) for _ in range(31)))

    asyncio.run(main())
    start = sent[0]
    # nothing else went before the first answer (0.3 s), then 10 a second: no burst
    assert sent[1] - start >= 0.3 - 1e-9
    assert all(b - a <= 0.1 + 1e-9 for a, b in zip(sent[2:], sent[3:], strict=False))
    assert sent[-1] - sent[1] == pytest.approx(3.0 - 0.2, abs=0.15)  # 30 at 10/s, less the burst


def test_a_provider_that_says_nothing_gets_a_window_that_doubles_every_round_trip() -> None:
    clock = Clock()
    pacer = Pacer(Limits(), 1.0, clock=clock, sleep=clock.sleep)
    in_flight = 0
    peak_by_round: dict[int, int] = {}

    async def request() -> None:
        nonlocal in_flight
        await pacer.acquire(1)
        in_flight += 1
        r = round((clock() - 1000.0) / 0.1)
        peak_by_round[r] = max(peak_by_round.get(r, 0), in_flight)
        await clock.sleep(0.1)
        in_flight -= 1
        pacer.answered(1, 1)

    asyncio.run(clock.run(*(request() for _ in range(200))))
    peaks = [peak_by_round[r] for r in sorted(peak_by_round)][:6]
    assert peaks[:5] == [1, 2, 4, 8, 16]


def test_a_429_while_ramping_halves_the_window() -> None:
    clock = Clock()
    pacer = Pacer(Limits(), 1.0, clock=clock, sleep=clock.sleep)
    pacer.answered(1, 1)  # the first answer (nothing acquired: the window still grows)
    for _ in range(15):
        pacer.answered(1, 1)
    assert pacer._window == 17.0
    pacer.on_rate_limited(0.0)
    assert pacer._window == 8.5


def test_a_server_that_queues_and_never_refuses_is_not_driven_into_timeouts() -> None:
    """llama.cpp's server (and a vLLM with no limiter) sends no limits and no 429: it serves
    one request at a time and queues the rest. Only timeouts say the window is too wide; a
    window that kept growing would queue every request past the timeout."""
    clock = Clock()
    pacer = Pacer(Limits(), 1.0, clock=clock, sleep=clock.sleep)
    service_s, timeout_s = 0.1, 1.0
    free_at = clock()
    outcomes: list[str] = []

    async def prompt() -> None:
        nonlocal free_at
        for _ in range(50):
            await pacer.acquire(1)
            start = max(free_at, clock())
            if start + service_s - clock() > timeout_s:  # still queued when the client gives up
                await clock.sleep(timeout_s)
                outcomes.append("timeout")
                pacer.failed(None, timed_out=True)
                continue
            free_at = start + service_s
            await clock.sleep(free_at - clock())
            outcomes.append("answer")
            pacer.answered(1, 1)
            return
        raise AssertionError("a prompt timed out 50 times")

    asyncio.run(clock.run(*(prompt() for _ in range(400))))
    assert outcomes.count("answer") == 400
    # The window settles near what the server holds within the timeout (10 here).
    assert outcomes.count("timeout") < 40, outcomes.count("timeout")
    assert pacer._window < 2 * timeout_s / service_s


def test_requests_of_an_earlier_chunk_go_first() -> None:
    clock = Clock()
    pacer = Pacer(Limits(rpm=60), 1.0, clock=clock, sleep=clock.sleep)  # one a second
    order: list[str] = []

    async def request(tag: str, priority: float) -> None:
        await pacer.acquire(1, priority)
        order.append(tag)

    async def main() -> None:
        late = [request(f"late{i}", 2.0) for i in range(3)]
        early = [request(f"early{i}", 1.0) for i in range(3)]
        await clock.run(*late, *early)

    asyncio.run(main())
    # the first late request was alone and went at once; then every early one before the late
    assert order[1:4] == ["early0", "early1", "early2"]


def test_tokens_are_charged_as_the_provider_charges_them_and_never_refunded_for_a_short_answer() -> None:
    clock = Clock()
    pacer = Pacer(Limits(tpm=6000), 1.0, clock=clock, sleep=clock.sleep)  # 100 tokens/s
    sent: list[float] = []

    async def request() -> None:
        await pacer.acquire(300)  # prompt estimate 44 + max_tokens 256
        sent.append(clock())
        # the provider counted a 44-token prompt and answered in 3 tokens: it charged 300
        pacer.answered(300, 44 + 256)

    asyncio.run(clock.run(*(request() for _ in range(4))))
    assert sent[-1] - sent[0] == pytest.approx(3 * 3.0 - 0.2, abs=0.01)


def test_what_one_process_learned_is_adopted_by_another() -> None:
    clock = Clock()
    first = Pacer(Limits(), 1.0, clock=clock, sleep=clock.sleep, wall=lambda: clock() + 5e6)
    first.answered(1, 1, headers(rpm=1200, tpm=50000))
    first.on_rate_limited(4.0)
    other = Pacer(Limits(), 1.0, clock=clock, sleep=clock.sleep, wall=lambda: clock() + 5e6)
    other.adopt(first.learned())
    assert other.limited and other.limits == Limits(1200, 50000)
    start = clock()
    asyncio.run(clock.run(other.acquire(1)))
    assert clock() - start == pytest.approx(4.0)  # the 429's hold holds here too


class Refusing:
    """A provider that answers 429 ``times`` times, then answers."""

    def __init__(self, times: int) -> None:
        self.left = times

    async def complete(self, request: Any) -> Any:
        from promptforge.adapters.providers import ChatResult, ProviderError

        if self.left:
            self.left -= 1
            raise ProviderError(ErrorCode.RATE_LIMIT_EXCEEDED, "provider answered HTTP 429", True, 0.5)
        return ChatResult(text="ok", model="m", input_tokens=3, output_tokens=2)


def call(provider: Any, clock: Clock, max_rate_limited_s: float) -> tuple[Any, Any]:
    from promptforge.adapters.providers import ChatRequest
    from promptforge.domain.retry import RetryPolicy
    from promptforge.service.calls import call_with_retries

    pacer = Pacer(Limits(rpm=6000), 1.0, clock=clock, sleep=clock.sleep)
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], params={})
    out: list[tuple[Any, Any]] = []

    async def go() -> None:
        out.append(
            await call_with_retries(
                provider, request, "p1", 3, RetryPolicy(), pacer, 20, 16, 0.0, max_rate_limited_s, clock.sleep, clock
            )
        )

    asyncio.run(clock.run(go()))
    return out[0]


def test_a_429_is_not_an_attempt_the_prompt_waits_its_turn_again() -> None:
    row, err = call(Refusing(times=8), Clock(), max_rate_limited_s=900)
    assert err is None and row["result"] == "ok"
    assert row["attempts"] == 9  # eight refusals and the answer, with max_attempts 3


def test_a_prompt_refused_for_longer_than_the_cap_fails_as_rate_limited() -> None:
    row, err = call(Refusing(times=1000), Clock(), max_rate_limited_s=10)
    assert row is None and err["error"] == "rate_limit_exceeded"
    assert 20 <= err["attempts"] <= 23  # 0.5 s holds for 10 s
