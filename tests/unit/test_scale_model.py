"""The scale benchmark's cost model: process_chunk's production compute, and the pricing of counts."""

from __future__ import annotations

import argparse
import math

import pytest

from infra.bench.scale import Run, Size, chunk_compute, costs, function_sizes, load_prices
from infra.stack import FUNCTIONS

MILLION = 1_000_000


def test_one_chunk_on_one_instance_for_the_whole_job_at_300_ms() -> None:
    # 10,000 rpm = 166.7 prompts/s: 1M prompts take 6,000 s; 50 requests in flight fit one
    # chunk worker of 128; 0.08 vCPU of work needs no second instance.
    m = chunk_compute(MILLION, 10_000, 0.3, 480e-6, worker_concurrency=128, instance_concurrency=1)
    assert (m.wall_s, m.chunks, m.instances, m.instance_s) == (6000, 1, 1, 6000)
    assert m.cpu_busy == pytest.approx(0.08)


def test_at_3_s_four_chunks_take_four_instances_unless_an_instance_takes_several() -> None:
    alone = chunk_compute(MILLION, 10_000, 3.0, 480e-6, worker_concurrency=128, instance_concurrency=1)
    assert (alone.chunks, alone.instances, alone.instance_s) == (4, 4, 24_000)
    shared = chunk_compute(MILLION, 10_000, 3.0, 480e-6, worker_concurrency=128, instance_concurrency=10)
    assert (shared.chunks, shared.instances, shared.instance_s) == (4, 1, 6000)
    # Ten chunks on instances of ten: Cloud Run keeps them at 60% of their concurrency.
    many = chunk_compute(MILLION, 10_000, 3.0, 480e-6, worker_concurrency=50, instance_concurrency=10)
    assert (many.chunks, many.instances) == (10, 2)


def test_cpu_adds_instances_to_keep_each_at_its_target() -> None:
    # 10 ms of CPU per prompt at 166.7 prompts/s is 1.67 vCPUs: three instances at 60%.
    m = chunk_compute(MILLION, 10_000, 3.0, 0.01, worker_concurrency=128, instance_concurrency=10)
    assert m.instances == 3 == math.ceil(10_000 / 60 * 0.01 / 0.6)
    assert m.cpu_busy == pytest.approx(10_000 / 60 * 0.01 / 3)


def test_the_model_refuses_what_has_no_meaning() -> None:
    with pytest.raises(ValueError):
        chunk_compute(MILLION, 0, 0.3, 0.0, worker_concurrency=128, instance_concurrency=1)
    with pytest.raises(ValueError):
        chunk_compute(MILLION, 10_000, 0.3, 0.0, worker_concurrency=128, instance_concurrency=0)


def test_every_function_has_a_size_and_every_price_a_source() -> None:
    sizes = function_sizes()
    assert {f.name for f in FUNCTIONS} <= set(sizes)
    assert all(s.memory_gib > 0 and s.concurrency >= 1 for s in sizes.values())
    assert all(p > 0 for p in load_prices().values())


def _args() -> argparse.Namespace:
    return argparse.Namespace(rpm=10_000.0, latency_ms=[300.0, 3000.0], worker_concurrency=128, retention_days=30.0)


def test_counts_are_priced_per_million_prompts() -> None:
    prices = {k: 0.0 for k in load_prices()} | {"firestore_read": 1e-6, "tasks_operation": 1e-6, "run_vcpu_second": 1e-3}
    sizes = {f.name: Size(1.0, 1) for f in FUNCTIONS}
    run = Run(
        prompts=1000,
        wall_s=10.0,
        cpu_s={"process_chunk": 0.5, "plan_job": 0.2},
        ops={"plan_job": {"firestore.reads": 3, "tasks.creates": 2}, "process_chunk": {"firestore.reads": 7}},
        client={"function_requests": 5, "storage.class_a": 1, "storage.class_b": 2, "upload_events": 1},
    )
    at_300, at_3000 = costs(run, _args(), prices, sizes)
    assert at_300.lines["firestore reads"] == pytest.approx(10 * 1e-6 * 1000)
    assert at_300.lines["tasks"] == pytest.approx(2 * 2 * 1e-6 * 1000)
    assert at_300.lines["other functions' compute"] == pytest.approx(0.2 * 1e-3 * 1000)  # plan_job's CPU
    assert at_300.lines["process_chunk compute"] == pytest.approx(6000 * 1e-3)  # one instance, 6,000 s
    assert at_3000.lines["process_chunk compute"] == pytest.approx(24_000 * 1e-3)
    assert at_3000.total - at_300.total == pytest.approx(18_000 * 1e-3)


def test_a_run_with_unpriced_calls_is_not_priced() -> None:
    run = Run(prompts=10, wall_s=1.0, ops={"plan_job": {"unpriced.store.purge": 1}}, client={})
    with pytest.raises(SystemExit, match="unpriced.store.purge"):
        costs(run, _args(), load_prices(), function_sizes())
