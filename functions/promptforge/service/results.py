"""Which files a client may download for a job, including partial results of a job that
was cancelled or failed."""

from __future__ import annotations

from .. import logs
from ..domain import paths
from ..domain.job import Job, JobStatus
from ..domain.records import ChunkStatus
from .deps import Deps


def partial_files(deps: Deps, job: Job) -> tuple[str, ...]:
    """What a FAILED or CANCELLED job produced: a part per chunk with results (written now
    from its checkpoints when its worker never got to), and errors.jsonl with every error
    row recorded so far. Idempotent: a repeated call writes the same objects."""
    assert job.status in (JobStatus.FAILED, JobStatus.CANCELLED)
    s = deps.settings
    files: list[str] = []
    error_sources = [paths.plan_errors_object(job.client_id, job.job_id)] if job.invalid_count else []
    for chunk in deps.store.list_chunks(job.job_id):
        part = paths.result_object(job.client_id, job.job_id, paths.part_filename(chunk.index))
        if chunk.status is ChunkStatus.DONE:
            if chunk.completed:
                files.append(paths.part_filename(chunk.index))
            if chunk.failed:
                error_sources.append(paths.chunk_errors_object(job.client_id, job.job_id, chunk.index))
            continue
        results = [n for n in chunk.segments if paths.is_results_segment(n)]
        error_sources += [n for n in chunk.segments if not paths.is_results_segment(n)]
        if results:
            deps.blobs.concatenate(s.results_bucket, results, part)
            files.append(paths.part_filename(chunk.index))
    deps.blobs.concatenate(s.results_bucket, error_sources, paths.result_object(job.client_id, job.job_id, paths.ERRORS_FILENAME))
    logs.info("partial results assembled", job_id=job.job_id, parts=len(files))
    return (*files, paths.ERRORS_FILENAME)
