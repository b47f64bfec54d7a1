"""Which input lines to send again: those behind an earlier job's ``errors.jsonl`` rows.

A row that failed at the provider (rate limits, budget, refusals) names its ``prompt_id``:
the first input line with that id goes again. A row for an invalid line names its 1-based
``line`` as well, and only that very line goes again; so a duplicated ``prompt_id`` (whose
first line succeeded) re-sends just the duplicate, and an invalid line fixed in place in the
file is sent in its fixed form. Rows without a ``prompt_id`` (lines that were not JSON at
all) cannot be matched and are counted instead.

The input is streamed line by line; only the failed ids are held in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import BinaryIO

from .errors import NothingToResubmit
from .models import ErrorRow, Job

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Resubmission:
    """What ``jobs.resubmit`` did."""

    job: Job
    """The new job."""
    lines: int
    """Input lines sent in it."""
    failed_rows: int
    """Rows in the earlier job's ``errors.jsonl``."""
    without_prompt_id: int
    """Of those, rows for lines with no prompt_id, which cannot be resubmitted."""


@dataclass
class FailedRows:
    """The earlier job's error rows, reduced to what matching input lines needs."""

    ids: set[str] = field(default_factory=set)
    invalid_lines: dict[str, set[int]] = field(default_factory=dict)
    rows: int = 0
    without_prompt_id: int = 0

    def add(self, row: ErrorRow) -> None:
        self.rows += 1
        if row.prompt_id is None:
            self.without_prompt_id += 1
        elif row.error == "invalid_line" and row.line is not None:
            self.invalid_lines.setdefault(row.prompt_id, set()).add(row.line)
        else:
            self.ids.add(row.prompt_id)

    def wants(self, prompt_id: str, line: int) -> bool:
        return prompt_id in self.ids or line in self.invalid_lines.get(prompt_id, ())

    def copy_lines(self, source: Path, out: BinaryIO) -> int:
        """Copy the input lines to send again from ``source`` to ``out``, each prompt_id at
        most once; return how many."""
        chosen: set[str] = set()
        with source.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                line = raw.removeprefix(_BOM) if number == 1 else raw
                prompt_id = _prompt_id(line)
                if prompt_id is None or prompt_id in chosen or not self.wants(prompt_id, number):
                    continue
                chosen.add(prompt_id)
                out.write(line.rstrip(b"\r\n") + b"\n")
        return len(chosen)

    def nothing_matched(self, job_id: str, source: str | PathLike[str]) -> NothingToResubmit:
        message = f"none of the {self.rows} failed rows of job {job_id} matches a line of {source}"
        if self.without_prompt_id:
            message += f" ({self.without_prompt_id} are for lines without a prompt_id)"
        return NothingToResubmit(message, self.rows)


def _prompt_id(line: bytes) -> str | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    value = row.get("prompt_id") if isinstance(row, dict) else None
    return value if isinstance(value, str) else None
