"""Where every object of a job lives in Cloud Storage: the one place that knows."""

from __future__ import annotations

import math
import re

ERRORS_FILENAME = "errors.jsonl"
# A job has at most this many result parts, whatever its chunk count: three-digit part
# numbers then always sort, and the listing (and its signing) stays bounded.
MAX_PARTS = 999
_UPLOAD = re.compile(r"^uploads/(?P<client>[A-Za-z0-9_-]+)/(?P<job>[0-9a-f-]{36})\.jsonl$")


def upload_object(client_id: str, job_id: str) -> str:
    """The object the client uploads its prompts to (uploads bucket)."""
    return f"uploads/{client_id}/{job_id}.jsonl"


def parse_upload_object(name: str) -> tuple[str, str] | None:
    """``(client_id, job_id)`` of an upload object name, or None for any other object."""
    m = _UPLOAD.match(name)
    return (m["client"], m["job"]) if m else None


def part_filename(part_index: int) -> str:
    """The name of result part ``part_index`` (0-based): ``results_part_001.jsonl`` on."""
    assert 0 <= part_index < MAX_PARTS
    return f"results_part_{part_index + 1:03d}.jsonl"


def part_group(chunk_count: int) -> int:
    """How many consecutive chunks go into one result part: one each up to ``MAX_PARTS``
    chunks (so a part is a chunk, as it always was), more past that."""
    return max(1, math.ceil(chunk_count / MAX_PARTS))


def part_of(chunk_index: int, chunk_count: int) -> int:
    """The result part (0-based) a chunk's rows go into."""
    return chunk_index // part_group(chunk_count)


def chunk_results_object(client_id: str, job_id: str, chunk_index: int) -> str:
    """A finished chunk's result rows, one object (results bucket, not shown to the
    client): finalization composes consecutive ones into the parts."""
    return f"staging/{client_id}/{job_id}/results_chunk_{chunk_index + 1:05d}.jsonl"


def result_object(client_id: str, job_id: str, filename: str) -> str:
    """A file the client downloads (results bucket)."""
    return f"results/{client_id}/{job_id}/{filename}"


def plan_errors_object(client_id: str, job_id: str) -> str:
    """Invalid lines found by planning (results bucket, not shown to the client)."""
    return f"staging/{client_id}/{job_id}/errors_plan.jsonl"


def plan_object(client_id: str, job_id: str, name: str) -> str:
    """A working object of planning (results bucket, not shown to the client)."""
    return f"staging/{client_id}/{job_id}/plan/{name}"


def chunk_errors_object(client_id: str, job_id: str, chunk_index: int) -> str:
    """Failed prompts of one chunk (results bucket, not shown to the client)."""
    return f"staging/{client_id}/{job_id}/errors_chunk_{chunk_index + 1:05d}.jsonl"


def segment_object(client_id: str, job_id: str, chunk_index: int, delivery: int, seq: int, kind: str) -> str:
    """A checkpoint of a chunk's finished rows (``kind`` is ``results`` or ``errors``)."""
    return f"staging/{client_id}/{job_id}/chunk_{chunk_index + 1:05d}/d{delivery:04d}-s{seq:05d}.{kind}.jsonl"


def is_results_segment(name: str) -> bool:
    return name.endswith(".results.jsonl")


def scratch_prefix(client_id: str, job_id: str, chunk_index: int | None = None, part_index: int | None = None) -> str:
    """Where temporary objects of an assembly go (results bucket, never shown)."""
    if part_index is not None:
        owner = f"part_{part_index + 1:03d}"
    else:
        owner = "job" if chunk_index is None else f"chunk_{chunk_index + 1:05d}"
    return f"staging/{client_id}/{job_id}/scratch/{owner}"
