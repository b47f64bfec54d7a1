"""Which files a client may download for a job, including partial results of a job that
was cancelled or failed; their download URLs; and their rows, for a job small enough to
answer in the body."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import logs
from ..domain import paths
from ..domain.job import ENDED_EARLY, Job, JobStatus
from ..domain.records import Chunk, ChunkStatus
from .assemble import publish
from .deps import Deps
from .finalize import publish_parts
from .ports import Tx
from .threads import concurrently

# Download URLs signed at once. Each signature can be a signBlob call to IAM (~50 ms), and
# a job lists up to paths.MAX_PARTS + 1 files: 1,000 files take ~1.6 s on 32 threads.
SIGN_THREADS = 32


class NotReady(Exception):
    """The job has no files to give: it is not COMPLETED, nor a FAILED or CANCELLED job
    whose partial results were asked for."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.status.value)
        self.job = job


class TooLargeInline(Exception):
    """The job's rows are past the limits of an answer in the body."""

    def __init__(self, limit_rows: int, limit_bytes: int) -> None:
        super().__init__(f"{limit_rows} rows, {limit_bytes} bytes")
        self.limit_rows, self.limit_bytes = limit_rows, limit_bytes


@dataclass(frozen=True)
class Download:
    """A file of the job and its signed URL, valid until ``expires_at``."""

    filename: str
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class InlineRows:
    """The rows of a job's files: its results' lines, then its errors' lines."""

    results: list[dict[str, Any]]
    errors: list[dict[str, Any]]


def files(deps: Deps, job: Job, partial: bool) -> tuple[str, ...]:
    """The files the job exposes: a COMPLETED job's, or with ``partial`` what a FAILED or
    CANCELLED job produced; else :class:`NotReady`."""
    if partial and job.status in ENDED_EARLY:
        return listed_partial_files(deps, job)
    if job.status is JobStatus.COMPLETED:
        return job.result_files
    raise NotReady(job)


def downloads(deps: Deps, job: Job, names: tuple[str, ...]) -> list[Download]:
    """A fresh signed URL for each of ``names``, all valid for the configured time."""
    ttl = timedelta(seconds=deps.settings.download_url_ttl_seconds)
    expires = deps.now() + ttl
    return [Download(name, url, expires) for name, url in zip(names, download_urls(deps, job, names, ttl), strict=True)]


def inline_rows(deps: Deps, job: Job, names: tuple[str, ...]) -> InlineRows:
    """The rows of ``names``, or :class:`TooLargeInline` past ``inline_max_prompts`` rows or
    ``inline_max_bytes`` bytes: a COMPLETED job's count refuses before any read, and every
    file read stops one byte past the limit."""
    s = deps.settings
    too_big = TooLargeInline(s.inline_max_prompts, s.inline_max_bytes)
    if job.status is JobStatus.COMPLETED and job.completed_count + job.failed_count > s.inline_max_prompts:
        raise too_big
    rows = InlineRows([], [])
    size = 0
    for name in names:
        with deps.blobs.open_read(s.results_bucket, paths.result_object(job.client_id, job.job_id, name)) as f:
            data = f.read(s.inline_max_bytes + 1)
        size += len(data)
        if size > s.inline_max_bytes:
            raise too_big
        target = rows.errors if name == paths.ERRORS_FILENAME else rows.results
        target.extend(json.loads(line) for line in data.splitlines() if line.strip())
        if len(rows.results) + len(rows.errors) > s.inline_max_prompts:
            raise too_big
    return rows


def download_urls(deps: Deps, job: Job, names: tuple[str, ...], ttl: timedelta) -> list[str]:
    """A fresh signed GET URL for each of the job's files, in order."""
    bucket = deps.settings.results_bucket

    def sign(name: str) -> str:
        return deps.blobs.signed_download_url(bucket, paths.result_object(job.client_id, job.job_id, name), name, ttl)

    if not names:
        return []
    # The first signature alone: it fetches the signing credentials the others reuse.
    first = sign(names[0])
    return [first, *concurrently(sign, list(names[1:]), SIGN_THREADS)]


def partial_files(deps: Deps, job: Job) -> tuple[str, ...]:
    """What a FAILED or CANCELLED job produced: its result parts, grouped as a completed
    job's are, from each chunk's published rows or, for a chunk its worker never finished,
    from its checkpoints; and errors.jsonl with every error row recorded so far.
    Idempotent: a repeated call writes the same objects."""
    assert job.status in ENDED_EARLY
    bucket = deps.settings.results_bucket
    client, job_id = job.client_id, job.job_id
    error_sources = [paths.plan_errors_object(client, job_id)] if job.invalid_count else []
    error_bytes = job.invalid_bytes if job.invalid_count else 0
    staged: list[tuple[Chunk, list[str]]] = []
    for chunk in deps.store.list_chunks(job_id):
        if chunk.status is ChunkStatus.DONE:
            staged.append((chunk, [paths.chunk_results_object(client, job_id, chunk.index)]))
            if chunk.failed:
                error_sources.append(paths.chunk_errors_object(client, job_id, chunk.index))
                error_bytes += chunk.errors_bytes
            continue
        staged.append((chunk, [n for n in chunk.segments if paths.is_results_segment(n)]))
        error_sources += [n for n in chunk.segments if not paths.is_results_segment(n)]
        error_bytes += chunk.errors_bytes
    files = (*publish_parts(deps, job, staged), paths.ERRORS_FILENAME)
    errors_object = paths.result_object(client, job_id, paths.ERRORS_FILENAME)
    publish(deps.blobs, bucket, error_sources, errors_object, error_bytes, paths.scratch_prefix(client, job_id))
    logs.info("partial results assembled", job_id=job.job_id, parts=len(files) - 1)
    if not any(c.status is ChunkStatus.RUNNING for c, _ in staged):
        # No worker can add rows any more: keep the listing, so the next call is a read.
        _keep(deps, job_id, files)
    return files


def _keep(deps: Deps, job_id: str, files: tuple[str, ...]) -> None:
    def keep(tx: Tx) -> None:
        current = tx.get_job(job_id)
        if current is not None and current.status in ENDED_EARLY and not current.result_files:
            tx.put_job(current.replace(result_files=files))

    deps.store.run_transaction(keep)


def listed_partial_files(deps: Deps, job: Job) -> tuple[str, ...]:
    """The files of a FAILED or CANCELLED job: kept from an earlier call once its workers
    were all gone, else assembled now."""
    return job.result_files or partial_files(deps, job)
