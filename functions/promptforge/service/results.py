"""Which files a client may download for a job, including partial results of a job that
was cancelled or failed."""

from __future__ import annotations

from .. import logs
from ..domain import paths
from ..domain.job import Job, JobStatus
from ..domain.records import ChunkStatus
from .assemble import publish
from .deps import Deps


def partial_files(deps: Deps, job: Job) -> tuple[str, ...]:
    """What a FAILED or CANCELLED job produced: a part per chunk with results (written now
    from its checkpoints when its worker never got to), and errors.jsonl with every error
    row recorded so far. Idempotent: a repeated call writes the same objects."""
    assert job.status in (JobStatus.FAILED, JobStatus.CANCELLED)
    bucket = deps.settings.results_bucket
    client, job_id = job.client_id, job.job_id
    files: list[str] = []
    error_sources = [paths.plan_errors_object(client, job_id)] if job.invalid_count else []
    error_bytes = job.invalid_bytes if job.invalid_count else 0
    for chunk in deps.store.list_chunks(job_id):
        part = paths.result_object(client, job_id, paths.part_filename(chunk.index))
        if chunk.status is ChunkStatus.DONE:
            if chunk.completed:
                files.append(paths.part_filename(chunk.index))
            if chunk.failed:
                error_sources.append(paths.chunk_errors_object(client, job_id, chunk.index))
                error_bytes += chunk.errors_bytes
            continue
        results = [n for n in chunk.segments if paths.is_results_segment(n)]
        error_sources += [n for n in chunk.segments if not paths.is_results_segment(n)]
        error_bytes += chunk.errors_bytes
        if results:
            publish(deps.blobs, bucket, results, part, chunk.results_bytes, paths.scratch_prefix(client, job_id, chunk.index))
            files.append(paths.part_filename(chunk.index))
    errors_object = paths.result_object(client, job_id, paths.ERRORS_FILENAME)
    publish(deps.blobs, bucket, error_sources, errors_object, error_bytes, paths.scratch_prefix(client, job_id))
    logs.info("partial results assembled", job_id=job.job_id, parts=len(files))
    return (*files, paths.ERRORS_FILENAME)
