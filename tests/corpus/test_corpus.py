"""Every malformed input in this folder, run through the use cases (create, upload,
planning, chunks, finalization) on memory and on the emulators, against expected.json.

A case whose expected outcome (the contract's) differs from today's behaviour carries a
``contract_mismatch`` and runs as a strict xfail, so it starts failing once it is fixed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from promptforge.domain.job import JobStatus
from promptforge.service.deps import StaticDeps
from tests.service.test_lifecycle import all_rows, drain, submit

HERE = Path(__file__).resolve().parent
NOT_CASES = {"expected.json", ".gitattributes"}  # and the Python files


def load_expected() -> dict[str, dict[str, Any]]:
    return dict(json.loads((HERE / "expected.json").read_text(encoding="utf-8"))["cases"])


EXPECTED = load_expected()


def _params() -> list[Any]:
    out = []
    for name, case in EXPECTED.items():
        marks = [pytest.mark.xfail(strict=True, reason=case["contract_mismatch"])] if "contract_mismatch" in case else []
        out.append(pytest.param(name, case, id=name, marks=marks))
    return out


def test_every_file_in_the_corpus_has_an_expected_outcome_and_back() -> None:
    files = {p.name for p in HERE.iterdir() if p.is_file() and p.name not in NOT_CASES and p.suffix != ".py"}
    assert files == set(EXPECTED)
    for name, case in EXPECTED.items():
        assert case["description"] and case["status"] in ("COMPLETED", "FAILED"), name
        assert ("error_code" in case) == (case["status"] == "FAILED"), name
        assert ("results" in case and "errors" in case) == (case["status"] == "COMPLETED"), name
        # "today" (shown in docs/input.md) describes a mismatch; it goes when the mismatch is fixed.
        assert ("today" in case) == ("contract_mismatch" in case), name


@pytest.mark.parametrize("name,case", _params())
def test_a_malformed_input_has_its_expected_outcome(deps: StaticDeps, name: str, case: dict[str, Any]) -> None:
    if case.get("settings"):
        deps.settings = dataclasses.replace(deps.settings, **case["settings"])
    data = (HERE / name).read_bytes()
    client_id, job_id = submit(deps, data)
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None

    if case["status"] == "FAILED":
        assert job.status is JobStatus.FAILED, f"{name}: {job.status.value}"
        assert job.error is not None and job.error.code == case["error_code"] and job.error.message
        return

    assert job.status is JobStatus.COMPLETED, f"{name}: {job.status.value} {job.error}"
    results, errors = all_rows(deps, client_id, job_id)
    assert sorted(r["prompt_id"] for r in results) == sorted(case["results"])
    assert sorted(([e.get("line"), e["error"]] for e in errors), key=str) == sorted(case["errors"], key=str)
    # Every non-blank line in exactly one row, and the counts say so.
    assert job.prompt_count == len(case["results"]) + len(case["errors"])
    assert (job.completed_count, job.failed_count) == (len(case["results"]), len(case["errors"]))
    for e in errors:
        assert isinstance(e["detail"], str) and e["detail"], e
    if "result_files" in case:
        assert list(job.result_files) == case["result_files"]
