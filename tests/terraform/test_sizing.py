"""The chunk queue sizing (terraform/modules/sizing), evaluated by the real Terraform CLI.

The module has no provider, so `terraform apply` runs offline and computes its outputs.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest

from terraform.checks.offline import environment, terraform_bin
from tests.terraform.tfmodel import terraform_dir

ROOT_MODULE = """
module "sizing" {{
  source             = "{source}"
  rate_limits        = jsondecode({limits})
  worker_concurrency = {concurrency}
  max_chunk_workers  = {cap}
  chunks_per_instance = {per_instance}
}}
output "sizing" {{
  value = module.sizing
}}
"""


def size(tmp_path: Path, limits: dict[str, Any], concurrency: int, cap: int = 100, per_instance: int = 1) -> dict[str, Any]:
    source = (terraform_dir() / "modules" / "sizing").resolve()
    config = ROOT_MODULE.format(
        source=source, limits=json.dumps(json.dumps(limits)), concurrency=concurrency, cap=cap, per_instance=per_instance
    )
    (tmp_path / "main.tf").write_text(config)
    tf = terraform_bin()
    for args in (["init", "-input=false", "-no-color"], ["apply", "-auto-approve", "-input=false", "-no-color"]):
        run = subprocess.run([tf, *args], cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
    out = subprocess.run([tf, "output", "-json", "sizing"], cwd=tmp_path, env=environment(), capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_workers_follow_littles_law_under_the_tighter_limit(tmp_path: Path) -> None:
    limits = {
        # 2M tpm / 500 tokens = 4,000 rpm < 10,000 rpm: the token limit binds.
        "openai/gpt-4o-mini": {"rpm": 10000, "tpm": 2000000, "tokens_per_request": 500, "latency_seconds": 3},
        "anthropic": {"rpm": 4000},  # defaults: 1,000 tokens, 5 s
    }
    s = size(tmp_path, limits, concurrency=32)
    assert s["effective_rpm_by_limit"] == {"openai/gpt-4o-mini": 4000, "anthropic": 4000}
    # 4,000 rpm x 3 s / 60 = 200 in flight / 32 = 6.25 -> 7; 4,000 x 5 / 60 = 333 / 32 -> 11.
    assert s["workers_by_limit"] == {"openai/gpt-4o-mini": 7, "anthropic": 11}
    assert s["chunk_queue_max_concurrent_dispatches"] == 18
    assert s["chunk_queue_max_dispatches_per_second"] == math.ceil(18 / 10)
    assert s["chunk_function_max_instances"] == 18 + 2


def test_the_worker_cap_bounds_the_queue(tmp_path: Path) -> None:
    s = size(tmp_path, {"openai": {"rpm": 30000, "latency_seconds": 10}}, concurrency=8, cap=40)
    assert s["workers_by_limit"] == {"openai": 625}
    assert s["chunk_queue_max_concurrent_dispatches"] == 40
    assert s["chunk_function_max_instances"] == 44


@pytest.mark.parametrize("limits", [{}, {"fake": {"rpm": 1}}])
def test_there_is_always_at_least_one_worker(tmp_path: Path, limits: dict[str, Any]) -> None:
    s = size(tmp_path, limits, concurrency=128)
    assert s["chunk_queue_max_concurrent_dispatches"] == 1
    assert s["chunk_queue_max_dispatches_per_second"] == 1


def test_instances_serving_several_chunks_each_need_far_fewer_instances(tmp_path: Path) -> None:
    limits = {"openai": {"rpm": 10000, "latency_seconds": 3}}  # 500 in flight
    s = size(tmp_path, limits, concurrency=32, per_instance=8)
    assert s["chunk_queue_max_concurrent_dispatches"] == 16  # 500 / 32 -> 16 chunks
    assert s["chunk_function_max_instances"] == 2 + 1  # 16 chunks, 8 an instance, one spare
