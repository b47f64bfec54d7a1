"""Fair use per client (service/quotas.py), on in-memory adapters and on the emulators:
the job caps, the event-stream leases and the requests per minute, alone and under
concurrent callers."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from promptforge.domain import paths
from promptforge.domain.job import JobStatus
from promptforge.domain.usage import block_size, window_start
from promptforge.service import lifecycle, quotas
from promptforge.service.deps import StaticDeps

SPEC = {"provider": "fake", "model": "fake-model"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(second=5, microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class OtherInstance:
    """The same store seen from another function instance (its own request meter)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def capped(deps: StaticDeps, clock: Clock | None = None, **caps: int) -> StaticDeps:
    """``deps`` with every cap off but those given."""
    off: dict[str, Any] = {"max_awaiting_uploads": 0, "max_open_jobs": 0, "max_event_streams": 0, "requests_per_minute": 0}
    settings = dataclasses.replace(deps.settings, **{**off, **caps})
    return dataclasses.replace(deps, settings=settings, clock=clock or deps.clock)


def client() -> str:
    return f"quota-{uuid.uuid4().hex[:12]}"


def create(deps: StaticDeps, client_id: str) -> str:
    return lifecycle.create_job(deps, client_id, dict(SPEC)).job.job_id


def upload(deps: StaticDeps, client_id: str, job_id: str) -> JobStatus:
    data = b'{"prompt_id": "a", "prompt": "hi"}\n'
    name = paths.upload_object(client_id, job_id)
    deps.blobs.write(deps.settings.upload_bucket, name, data)
    lifecycle.accept_upload(deps, deps.settings.upload_bucket, name, len(data), deps.now())
    job = deps.store.get_job(job_id)
    assert job is not None
    return job.status


def refusal(fn: Any, *args: Any) -> quotas.OverCap:
    with pytest.raises(quotas.OverCap) as caught:
        fn(*args)
    return caught.value


# --- jobs ------------------------------------------------------------------------------


def test_jobs_awaiting_upload_are_capped_and_an_upload_frees_a_place(deps: StaticDeps) -> None:
    deps, me = capped(deps, max_awaiting_uploads=3), client()
    made = [create(deps, me) for _ in range(3)]
    over = refusal(create, deps, me)
    assert (over.code, over.limit, over.current) == ("too_many_awaiting_uploads", 3, 3)
    assert over.retry_after == quotas.JOB_RETRY_AFTER_SECONDS and me not in over.message
    assert len(deps.store.list_jobs(me, 10)) == 3  # the refused job was not created
    assert upload(deps, me, made[0]) is JobStatus.QUEUED
    create(deps, me)
    assert refusal(create, deps, me).current == 3
    other = client()
    create(deps, other)  # another client's count is its own


def test_cancelled_and_expired_awaiting_jobs_stop_counting(deps: StaticDeps) -> None:
    clock = Clock()
    deps, me = capped(deps, clock, max_awaiting_uploads=2), client()
    first, _ = create(deps, me), create(deps, me)
    job = deps.store.get_job(first)
    assert job is not None
    lifecycle.cancel_job(deps, job)
    create(deps, me)
    assert refusal(create, deps, me).code == "too_many_awaiting_uploads"
    clock.advance(deps.settings.upload_url_ttl_seconds + 1)  # no file can come any more
    create(deps, me)
    create(deps, me)


def test_open_jobs_count_the_awaiting_the_pending_and_the_active_one(deps: StaticDeps) -> None:
    deps, me = capped(deps, max_awaiting_uploads=10, max_open_jobs=3), client()
    active, pending = create(deps, me), create(deps, me)
    assert upload(deps, me, active) is JobStatus.QUEUED
    assert upload(deps, me, pending) is JobStatus.PENDING
    create(deps, me)  # awaiting: 1 + 1 pending + 1 active
    over = refusal(create, deps, me)
    assert (over.code, over.limit, over.current) == ("too_many_open_jobs", 3, 3)
    job = deps.store.get_job(pending)
    assert job is not None
    lifecycle.cancel_job(deps, job)
    create(deps, me)


def test_an_inline_job_is_held_to_the_same_caps(deps: StaticDeps) -> None:
    deps, me = capped(deps, max_awaiting_uploads=1), client()
    create(deps, me)
    prompts = [{"prompt_id": "a", "prompt": "hi"}]
    over = refusal(lifecycle.create_inline_job, deps, me, dict(SPEC), prompts)
    assert over.code == "too_many_awaiting_uploads"


def test_concurrent_creations_never_pass_the_cap(deps: StaticDeps) -> None:
    deps, me = capped(deps, max_awaiting_uploads=5), client()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def one() -> None:
        try:
            create(deps, me)
            code = "created"
        except quotas.OverCap as exc:
            code = exc.code
        with lock:
            outcomes[code] += 1

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == Counter({"created": 5, "too_many_awaiting_uploads": 15})
    assert len(deps.store.list_jobs(me, 100)) == 5
    assert len(deps.store.get_usage(me).awaiting) == 5


def test_with_the_job_caps_off_nothing_is_counted(deps: StaticDeps) -> None:
    deps, me = capped(deps), client()
    for _ in range(12):
        create(deps, me)
    assert deps.store.get_usage(me).awaiting == ()


# --- event streams ----------------------------------------------------------------------


def test_event_streams_are_leased_up_to_the_cap(deps: StaticDeps) -> None:
    clock = Clock()
    deps, me = capped(deps, clock, max_event_streams=2), client()
    first, second = quotas.open_stream(deps, me), quotas.open_stream(deps, me)
    over = refusal(quotas.open_stream, deps, me)
    assert (over.code, over.limit, over.current) == ("too_many_event_streams", 2, 2)
    assert over.retry_after == quotas.STREAM_RETRY_AFTER_SECONDS
    quotas.close_stream(deps, me, first)
    third = quotas.open_stream(deps, me)
    # Renewed leases hold; one that is not renewed runs out, and its place is free again.
    clock.advance(20)
    assert quotas.renew_stream(deps, me, third)
    clock.advance(20)
    assert not quotas.renew_stream(deps, me, second)  # its instance died 40 s ago
    fourth = quotas.open_stream(deps, me)
    assert set(deps.store.get_usage(me).live_streams(clock())) == {third, fourth}


def test_concurrent_stream_opens_take_exactly_the_cap(deps: StaticDeps) -> None:
    deps, me = capped(deps, max_event_streams=5), client()
    opened: list[str] = []
    refused: list[str] = []

    def one() -> None:
        try:
            opened.append(quotas.open_stream(deps, me))
        except quotas.OverCap as exc:
            refused.append(exc.code)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(opened) == 5 and refused == ["too_many_event_streams"] * 15
    assert set(deps.store.get_usage(me).streams) == set(opened)


# --- requests per minute ----------------------------------------------------------------


def test_requests_per_minute_hold_across_instances_and_reset_each_minute(deps: StaticDeps) -> None:
    clock = Clock()
    limit = 120
    base = capped(deps, clock, requests_per_minute=limit)
    instances = [base] + [dataclasses.replace(base, store=OtherInstance(base.store)) for _ in range(2)]
    me = client()
    admitted = 0
    for i in range(3 * limit):
        try:
            quotas.check_request(instances[i % 3], me)
            admitted += 1
        except quotas.OverCap as over:
            assert (over.code, over.limit) == ("rate_limited", limit)
            assert over.retry_after == 55  # the clock stands 5 s into its minute
    # Never more than the cap; at most each instance's unspent last block less.
    assert limit - 3 * (block_size(limit) - 1) <= admitted <= limit
    clock.advance(60)
    quotas.check_request(instances[1], me)
    quotas.check_request(base, client())  # and another client has its own minute


def test_concurrent_requests_reserve_one_block_at_a_time(deps: StaticDeps) -> None:
    """Forty requests of one client landing at once on each of two instances: each
    instance reserves a block at a time, so the minute is not spent on unused tokens."""
    clock = Clock()
    limit = 600
    store = deps.store

    class Remote(OtherInstance):
        def take_requests(self, *args: Any) -> int:
            time.sleep(0.02)  # a round trip, so that the requests really overlap
            return int(store.take_requests(*args))

    base = capped(deps, clock, requests_per_minute=limit)
    instances = [dataclasses.replace(base, store=Remote(store)) for _ in range(2)]
    me = client()
    outcomes: Counter[bool] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(80)

    def one(instance: StaticDeps) -> None:
        start.wait()
        try:
            quotas.check_request(instance, me)
            ok = True
        except quotas.OverCap:
            ok = False
        with lock:
            outcomes[ok] += 1

    threads = [threading.Thread(target=one, args=(instances[i % 2],)) for i in range(80)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == Counter({True: 80})
    handed_out = deps.store.take_requests(me, window_start(clock()), 0)
    assert handed_out <= 80 + 2 * block_size(limit), "whole blocks reserved for requests that never came"


def test_a_spent_minute_is_refused_without_asking_the_store_again(deps: StaticDeps) -> None:
    clock = Clock()
    deps, me = capped(deps, clock, requests_per_minute=60), client()
    calls = 0
    store = deps.store

    class Counting(OtherInstance):
        def take_requests(self, *args: Any) -> int:
            nonlocal calls
            calls += 1
            return int(store.take_requests(*args))

    deps = dataclasses.replace(deps, store=Counting(store))
    for _ in range(60):
        quotas.check_request(deps, me)
    for _ in range(50):
        assert refusal(quotas.check_request, deps, me).code == "rate_limited"
    assert calls == 61  # a block of one per admitted request, then the one that came back empty
