"""The command line and the SDK end to end on the local stack: the installed
``promptforge`` script as a real subprocess, the real service, the files on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from promptforge_client import AsyncClient, Client, JobStatus, NotFoundError
from tests.conftest import ROOT, free_port
from tests.e2e.test_lifecycle_http import new_key

PROMPTFORGE = Path(sys.executable).parent / "promptforge"
EXAMPLES = ROOT / "examples" / "prompts.jsonl"


@pytest.fixture(scope="module")
def key(stack: Any) -> str:
    return new_key(stack)


def promptforge(stack: Any, key: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script with the stack's URL and ``key`` in its environment."""
    if not PROMPTFORGE.exists():
        pytest.fail(f"{PROMPTFORGE} is missing: run infra/bootstrap.sh, which installs the project's package", pytrace=False)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTFORGE_")}
    base = {**clean, "PROMPTFORGE_URL": stack.base_url, "PROMPTFORGE_API_KEY": key, "XDG_CONFIG_HOME": "/nonexistent"}
    done = subprocess.run(
        [str(PROMPTFORGE), *argv], env={**base, **(env or {})}, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert not key or key not in done.stdout + done.stderr
    return done


def rows_in(directory: Path) -> dict[str, list[dict[str, Any]]]:
    return {f.name: [json.loads(line) for line in f.read_text().splitlines()] for f in sorted(directory.iterdir())}


def test_submit_wait_out_shows_progress_and_leaves_every_prompt_exactly_once(stack: Any, key: str, tmp_path: Path) -> None:
    done = promptforge(
        stack, key, "submit", str(EXAMPLES), "--provider", "fake", "--model", "fake-small", "--wait", "--out", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr

    job_id, target = done.stdout.splitlines()
    assert Path(target) == tmp_path / job_id
    progress = [line for line in done.stderr.splitlines() if line.startswith("progress: ")]
    # Not a terminal: the plain display, a line per change, from waiting to the end.
    assert progress[0].split()[1] in ("AWAITING_UPLOAD", "QUEUED", "PENDING", "PROCESSING"), done.stderr
    assert progress[-1].startswith("progress: COMPLETED 1,000/1,000 processed, 1,000 completed, 0 failed, "), done.stderr
    assert "COMPLETED: 1,000 completed, 0 failed of 1,000 in " in done.stderr

    files = rows_in(Path(target))
    assert set(files) == {"results_part_001.jsonl", "results_part_002.jsonl", "errors.jsonl"}
    assert files["errors.jsonl"] == []
    wanted = [json.loads(line)["prompt_id"] for line in EXAMPLES.read_text().splitlines() if line.strip()]
    got = Counter(row["prompt_id"] for rows in files.values() for row in rows)
    assert set(got) == set(wanted) and set(got.values()) == {1}
    assert all(row["result"] and row["model"] == "fake-small" for rows in files.values() for row in rows)


def test_resubmit_sends_the_failed_lines_of_a_job_with_invalid_lines(stack: Any, key: str, tmp_path: Path) -> None:
    good = [json.dumps({"prompt_id": f"g{i}", "prompt": f"Say {i}."}) for i in range(20)]
    broken = [
        json.dumps({"prompt_id": "bad-params", "prompt": "Hi.", "params": {"temperature": 7}}),
        json.dumps({"prompt_id": "no-prompt"}),
        "this line is not JSON",
        json.dumps({"prompt_id": "g3", "prompt": "a second g3"}),
    ]
    original = tmp_path / "original.jsonl"
    original.write_text("\n".join(good[:10] + broken + good[10:]) + "\n")
    first = promptforge(stack, key, "submit", str(original), "--provider", "fake", "--model", "fake-small", "--wait")
    assert first.returncode == 0, first.stderr
    first_id = first.stdout.split()[0]
    assert "COMPLETED: 20 completed, 4 failed of 24" in first.stderr

    # The file with its two fixable lines fixed in place (the same line numbers).
    fixed = tmp_path / "fixed.jsonl"
    repaired = [
        json.dumps({"prompt_id": "bad-params", "prompt": "Hi.", "params": {"temperature": 0.7}}),
        json.dumps({"prompt_id": "no-prompt", "prompt": "Now with a prompt."}),
        *broken[2:],
    ]
    fixed.write_text("\n".join(good[:10] + repaired + good[10:]) + "\n")
    again = promptforge(stack, key, "resubmit", first_id, "--file", str(fixed), "--wait", "--out", str(tmp_path / "out"))
    assert again.returncode == 0, again.stderr
    second_id, target = again.stdout.splitlines()
    assert f"created with 3 lines of {fixed} (4 failed rows in job {first_id}" in again.stderr
    assert "1 of them are lines without a prompt_id, which cannot be resubmitted" in again.stderr
    files = rows_in(Path(target))
    results = sorted(row["prompt_id"] for name, rows in files.items() if name != "errors.jsonl" for row in rows)
    assert results == ["bad-params", "g3", "no-prompt"] and files["errors.jsonl"] == []

    status = promptforge(stack, key, "status", second_id, "--json")
    assert json.loads(status.stdout)["metadata"] == {"resubmit_of": first_id}
    nothing = promptforge(stack, key, "resubmit", second_id, "--file", str(fixed))
    assert nothing.returncode == 0 and f"nothing to resubmit: job {second_id} has no failed rows" in nothing.stderr


def test_error_envelopes_become_one_line_messages_and_exit_codes(stack: Any, key: str, tmp_path: Path) -> None:
    with Client(stack.base_url, key) as client:
        waiting = client.jobs.init("fake", "fake-small")  # never uploaded

    bad_key = promptforge(stack, "pf_not_a_real_key_at_all", "status", waiting.job_id)
    assert bad_key.returncode == 3
    assert bad_key.stderr.startswith("promptforge: unauthenticated: Missing or invalid X-API-Key (HTTP 401")
    assert len(bad_key.stderr.splitlines()) == 1

    unknown = promptforge(stack, key, "status", "0b0e7bb2-3a4b-4c5d-8e9f-0a1b2c3d4e5f")
    assert (unknown.returncode, unknown.stderr) == (4, "promptforge: not_found: Job not found (HTTP 404)\n")

    early = promptforge(stack, key, "results", waiting.job_id)
    assert (
        early.returncode == 5
        and "job_not_completed: Job is not yet completed (HTTP 409, current status: AWAITING_UPLOAD" in early.stderr
    )

    cancelled = promptforge(stack, key, "cancel", waiting.job_id)
    assert cancelled.returncode == 0 and "CANCELLED" in cancelled.stdout
    twice = promptforge(stack, key, "cancel", waiting.job_id)
    assert twice.returncode == 5 and "job_terminal: Job has already ended (HTTP 409, current status: CANCELLED)" in twice.stderr

    invalid = promptforge(stack, key, "submit", str(EXAMPLES), "--provider", "fake", "--model", "m", "--params", "max_token=5")
    assert invalid.returncode == 6 and "invalid_request: params" in invalid.stderr and "field: params" in invalid.stderr

    unreachable = promptforge(stack, key, "status", waiting.job_id, env={"PROMPTFORGE_URL": f"http://127.0.0.1:{free_port()}"})
    assert unreachable.returncode == 7 and unreachable.stderr.startswith("promptforge: network: cannot reach http://127.0.0.1:")

    no_key = promptforge(stack, "", "list")
    assert no_key.returncode == 2 and "no API key" in no_key.stderr


def test_operators_manage_keys_with_the_same_command(stack: Any, tmp_path: Path) -> None:
    operator_env = {**stack.env(), "PROMPTFORGE_BASE_URL": ""}
    created = promptforge(stack, "unused", "keys", "create", "--label", "cli-test", "--json", env=operator_env)
    assert created.returncode == 0, created.stderr
    made = json.loads(created.stdout)
    assert promptforge(stack, made["api_key"], "list", "--json").returncode == 0

    listed = promptforge(stack, "unused", "keys", "list", env=operator_env)
    assert made["prefix"] in listed.stdout and made["client_id"] in listed.stdout
    revoked = promptforge(stack, "unused", "keys", "revoke", made["prefix"], env=operator_env)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert promptforge(stack, made["api_key"], "list").returncode == 3


def test_the_sdk_on_the_stack_lists_runs_inline_jobs_streams_rows_and_events(stack: Any, key: str, tmp_path: Path) -> None:
    rows = [{"prompt_id": f"s{i}", "prompt": f"Count to {i}."} for i in range(30)] + [{"prompt_id": "s-bad"}]
    with Client(stack.base_url, key) as client:
        job = client.jobs.submit(rows, "fake", "fake-small")
        seen = list(client.jobs.events(job.job_id))
        assert seen[-1].status is JobStatus.COMPLETED and seen[-1].completed_count == 30
        assert all(a != b for a, b in zip(seen, seen[1:], strict=False))  # one per change
        final = client.jobs.wait(job.job_id)
        assert (final.completed_count, final.failed_count) == (30, 1)

        inline = client.jobs.inline_results(job.job_id)
        assert sorted(r.prompt_id for r in inline.results) == sorted(r["prompt_id"] for r in rows[:30])
        assert [(e.prompt_id, e.error, e.line) for e in inline.errors] == [("s-bad", "invalid_line", 31)]
        assert sorted(r.prompt_id for r in client.jobs.iter_results(job.job_id)) == sorted(r.prompt_id for r in inline.results)
        assert [e.prompt_id for e in client.jobs.iter_errors(job.job_id)] == ["s-bad"]
        assert next(iter(client.jobs.list(1))).job_id == job.job_id
        with pytest.raises(NotFoundError):
            client.jobs.get("0b0e7bb2-3a4b-4c5d-8e9f-0a1b2c3d4e5f")

    async def run_async() -> list[str]:
        async with AsyncClient(stack.base_url, key) as client:
            small = await client.jobs.submit([{"prompt_id": "a1", "prompt": "Hi."}], "fake", "fake-small", inline=False)
            await client.jobs.wait(small.job_id, timeout=120)
            return [r.prompt_id async for r in client.jobs.iter_results(small.job_id)]

    assert anyio.run(run_async) == ["a1"]
