"""Error codes and rows as types: the enum matches the documented strings, rows keep
their bytes, and both stores count every row code the same way (memory and emulators)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from promptforge.domain.job import JobError, JobStatus
from promptforge.domain.jsonl import LineError, dump_line
from promptforge.domain.outcomes import (
    JOB_ERROR_CODES,
    PROVIDER_ERROR_CODES,
    ROW_ERROR_CODES,
    ErrorCode,
    ErrorRow,
    ResultRow,
    UnknownErrorCode,
)
from promptforge.domain.records import Chunk, ChunkStatus, count_errors
from promptforge.service import lifecycle
from promptforge.service.deps import StaticDeps
from promptforge.service.provider_port import ProviderError

ROOT = Path(__file__).resolve().parents[2]


def _table_codes(doc: str, heading: str) -> set[str]:
    """The backticked codes in the column headed ``heading`` of the doc's tables."""
    codes: set[str] = set()
    column = None
    for line in (ROOT / doc).read_text().splitlines():
        line = line.strip()
        if not line.startswith("|"):
            column = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if column is None:
            column = next((i for i, c in enumerate(cells) if c.strip("`") == heading), None)
        elif not set(cells[column]) <= set("-: "):
            codes.update(re.findall(r"`([a-z_]+)`", cells[column])[:1])
    return codes


def test_the_enum_holds_exactly_the_documented_codes() -> None:
    provider = _table_codes("docs/providers.md", "code")
    job = _table_codes("docs/input.md", "error.code")
    assert provider == {c.value for c in PROVIDER_ERROR_CODES}
    assert job <= {c.value for c in ErrorCode} and job
    contract = (ROOT / "docs/api-contract.md").read_text()
    assert '"error": "invalid_line"' in contract and "`budget_exceeded`" in contract
    assert "`upload_expired`" in contract or '"upload_expired"' in contract
    documented = provider | job | {"invalid_line", "budget_exceeded", "upload_expired"}
    docs = ROOT.joinpath("README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    rest = {c.value for c in ErrorCode} - documented
    assert rest == {"stuck", "inconsistent_results", "provider_unavailable"}
    assert all(f"`{code}`" in docs or f'"{code}"' in docs or f"{code}`" in docs for code in rest)
    assert set(ROW_ERROR_CODES) == PROVIDER_ERROR_CODES | {ErrorCode.BUDGET_EXCEEDED, ErrorCode.INVALID_LINE}


def test_rows_keep_todays_bytes() -> None:
    answered = ResultRow("p1", "hi", "m", 3, 2, "stop", 1).to_json()
    assert dump_line(answered) == dump_line(
        {
            "prompt_id": "p1",
            "result": "hi",
            "model": "m",
            "tokens_used": 5,
            "input_tokens": 3,
            "output_tokens": 2,
            "finish_reason": "stop",
            "attempts": 1,
        }
    )
    failed = ErrorRow("p2", ErrorCode.TIMEOUT, attempts=3, detail="no answer").to_json()
    assert dump_line(failed) == b'{"prompt_id": "p2", "error": "timeout", "attempts": 3, "detail": "no answer"}\n'
    assert list(ErrorRow("p3", ErrorCode.BUDGET_EXCEEDED, attempts=0).to_json()) == ["prompt_id", "error", "attempts"]
    assert list(LineError(4, "not JSON").to_row()) == ["prompt_id", "error", "line", "detail"]
    assert type(failed["error"]) is str


def test_a_code_outside_the_enum_is_refused_where_rows_are_recorded() -> None:
    with pytest.raises(UnknownErrorCode):
        count_errors([{"prompt_id": "p", "error": "brand_new_code"}])
    with pytest.raises(UnknownErrorCode):
        Chunk("j", 0, 0, 0, 0, 1, error_counts={"brand_new_code": 1})
    with pytest.raises(UnknownErrorCode):
        ErrorRow("p", "stuck")  # type: ignore[arg-type]  # a job code is not a row code
    with pytest.raises(ValueError):
        ProviderError("brand_new_code", "x", False)  # type: ignore[arg-type]
    with pytest.raises(UnknownErrorCode):
        JobError(ErrorCode.TIMEOUT, "x")  # a row code is not a job's error.code
    with pytest.raises(UnknownErrorCode):
        JobError("brand_new_code", "x")  # type: ignore[arg-type]


def test_a_job_error_keeps_its_code_and_string_through_the_store(deps: StaticDeps) -> None:
    assert set(ErrorCode) - set(ROW_ERROR_CODES) == JOB_ERROR_CODES
    new = lifecycle.create_job(deps, "codes-client", {"provider": "fake", "model": "m"})
    assert lifecycle.fail_job(deps, new.job.job_id, JobError(ErrorCode.UPLOAD_EXPIRED, "too late"))
    failed = deps.store.get_job(new.job.job_id)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.code is ErrorCode.UPLOAD_EXPIRED
    body = failed.error.to_dict()
    assert body == {"code": "upload_expired", "message": "too late"} and type(body["code"]) is str


def test_both_stores_count_every_row_code_in_live_totals(deps: StaticDeps) -> None:
    # Chunk k carries k + 1 rows of each code, so a code summed twice or dropped shows.
    chunks = []
    for k in range(2):
        rows = [ErrorRow(f"p{k}{n}{code}", code, attempts=1).to_json() for code in ROW_ERROR_CODES for n in range(k + 1)]
        counts = count_errors(rows)
        chunks.append(
            Chunk("codes-job", k, 0, 0, 0, len(rows), status=ChunkStatus.RUNNING, failed=len(rows), error_counts=counts)
        )
    deps.store.save_chunks(chunks)
    totals = deps.store.chunk_totals("codes-job")
    assert totals.error_counts == {code.value: 3 for code in ROW_ERROR_CODES}
    assert totals.failed == 3 * len(ROW_ERROR_CODES)
