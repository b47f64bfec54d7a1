"""Which input lines a resubmission sends, from an earlier job's error rows."""

from __future__ import annotations

import io
import json
from pathlib import Path

from promptforge_client.models import ErrorRow
from promptforge_client.resubmit import FailedRows


def failed(*rows: dict[str, object]) -> FailedRows:
    out = FailedRows()
    for row in rows:
        out.add(ErrorRow.model_validate(row))
    return out


def select(tmp_path: Path, data: bytes, rows: FailedRows) -> list[bytes]:
    source = tmp_path / "in.jsonl"
    source.write_bytes(data)
    out = io.BytesIO()
    count = rows.copy_lines(source, out)
    lines = out.getvalue().splitlines()
    assert count == len(lines)
    return lines


def line(prompt_id: str, prompt: str = "x") -> bytes:
    return json.dumps({"prompt_id": prompt_id, "prompt": prompt}).encode()


def test_provider_failures_select_the_first_line_with_their_id(tmp_path: Path) -> None:
    data = b"\n".join([line("a"), line("b"), line("c"), line("b", "again")]) + b"\n"
    rows = failed({"prompt_id": "b", "error": "rate_limit_exceeded", "attempts": 3})
    assert select(tmp_path, data, rows) == [line("b")]


def test_invalid_lines_are_matched_by_their_line_number_so_a_duplicate_sends_only_itself(tmp_path: Path) -> None:
    data = b"\n".join([line("a"), b"", line("a", "dup"), line("b")]) + b"\n"
    rows = failed({"prompt_id": "a", "error": "invalid_line", "line": 3, "detail": "duplicate prompt_id"})
    assert select(tmp_path, data, rows) == [line("a", "dup")]  # blank line 2 still counts


def test_a_bom_and_crlf_are_handled_and_lines_without_an_id_are_counted(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + line("a") + b"\r\nnot json\r\n" + line("b") + b"\r\n"
    rows = failed(
        {"prompt_id": "a", "error": "provider_error"},
        {"prompt_id": None, "error": "invalid_line", "line": 2, "detail": "not JSON"},
    )
    assert select(tmp_path, data, rows) == [line("a")]
    assert (rows.rows, rows.without_prompt_id) == (2, 1)


def test_nothing_matches_a_file_without_those_ids(tmp_path: Path) -> None:
    rows = failed({"prompt_id": "zzz", "error": "budget_exceeded"})
    assert select(tmp_path, line("a") + b"\n", rows) == []
    assert "none of the 1 failed rows of job J" in str(rows.nothing_matched("J", "in.jsonl"))
