"""Finishing a job once all its chunks are done: errors.jsonl, counts, COMPLETED, and
the client's next PENDING job.

Any worker that sees every chunk done may call this; the file writes are idempotent
and only one transaction wins the move to COMPLETED, so a crash or a race between the
last two chunks finalizes exactly once.
"""

from __future__ import annotations

from .. import logs
from ..domain import paths
from ..domain.job import JobStatus
from ..domain.records import ChunkStatus
from .deps import Deps
from .ports import Tx
from .slots import announce_end, ended, hand_over, read_successor, start_active


def finalize_if_done(deps: Deps, job_id: str) -> bool:
    """Complete the job if every chunk is done; True if this call completed it."""
    job = deps.store.get_job(job_id)
    if job is None or job.status is not JobStatus.PROCESSING or job.chunk_count is None:
        return False
    if job.chunks_done < job.chunk_count:
        return False
    chunks = deps.store.list_chunks(job_id)
    if len(chunks) != job.chunk_count or any(c.status is not ChunkStatus.DONE for c in chunks):
        return False

    s = deps.settings
    sources = [paths.plan_errors_object(job.client_id, job_id)] if job.invalid_count else []
    sources += [paths.chunk_errors_object(job.client_id, job_id, c.index) for c in chunks if c.failed]
    deps.blobs.concatenate(s.results_bucket, sources, paths.result_object(job.client_id, job_id, paths.ERRORS_FILENAME))
    files = tuple(paths.part_filename(c.index) for c in chunks if c.completed) + (paths.ERRORS_FILENAME,)
    completed = sum(c.completed for c in chunks)
    failed = job.invalid_count + sum(c.failed for c in chunks)
    tokens_in = sum(c.input_tokens for c in chunks)
    tokens_out = sum(c.output_tokens for c in chunks)
    error_counts: dict[str, int] = {"invalid_line": job.invalid_count} if job.invalid_count else {}
    for c in chunks:
        for code, n in c.error_counts.items():
            error_counts[code] = error_counts.get(code, 0) + n
    if completed + failed != job.prompt_count:
        logs.error("counts do not add up", job_id=job_id, completed=completed, failed=failed, prompts=job.prompt_count)
    now = deps.now()

    def complete(tx: Tx) -> bool:
        current = tx.get_job(job_id)
        if current is None or current.status is not JobStatus.PROCESSING:
            return False
        client, successor = read_successor(tx, current)
        done = current.replace(
            completed_count=completed,
            failed_count=failed,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            result_files=files,
            error_counts=error_counts,
        ).transition(JobStatus.COMPLETED, now)
        tx.put_job(ended(done, deps.settings.results_retention_days))
        hand_over(tx, client, job_id, successor, now)
        return True

    won = deps.store.run_transaction(complete)
    if won:
        logs.info("job completed", job_id=job_id, completed=completed, failed=failed)
        announce_end(deps, job_id)
    start_active(deps, job.client_id)
    return bool(won)
