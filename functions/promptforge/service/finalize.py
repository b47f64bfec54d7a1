"""Finishing a job once all its chunks are done: errors.jsonl, counts, COMPLETED, and
the client's next PENDING job.

Any worker that sees every chunk done may call this; the file writes are idempotent
and only one transaction wins the move to COMPLETED, so a crash or a race between the
last two chunks finalizes exactly once.

Nothing is completed over output that does not add up. Before publishing, every chunk's
rows must account for its lines and its published objects must have the sizes its
checkpoints add up to; a chunk that fails this is re-driven (its delivery publishes again
from the checkpoints, and runs any line they lack). The move to COMPLETED then checks,
in the same transaction, that results plus errors equal the job's prompts. A job whose
output cannot be made whole ends FAILED with ``inconsistent_results``, never COMPLETED.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .. import logs
from ..domain import paths
from ..domain.job import Job, JobError, JobStatus
from ..domain.records import Chunk, ChunkStatus
from .assemble import publish, verify
from .deps import Deps
from .lifecycle import fail_job
from .ports import Tx
from .slots import announce_end, ended, hand_over, read_successor, start_active

# A chunk re-driven this many times and still wrong fails its job.
MAX_REPAIRS = 3
_STAT_THREADS = 16


class _Inconsistent(Exception):
    """The job's records do not add up; the message says how."""


def finalize_if_done(deps: Deps, job_id: str) -> bool:
    """Complete the job if every chunk is done and whole; True if this call completed it."""
    job = deps.store.get_job(job_id)
    if job is None or job.status is not JobStatus.PROCESSING or job.chunk_count is None:
        return False
    if job.chunks_done < job.chunk_count:
        return False
    chunks = deps.store.list_chunks(job_id)
    if len(chunks) != job.chunk_count or any(c.status is not ChunkStatus.DONE for c in chunks):
        return False

    broken = _broken_chunks(deps, job, chunks)
    if broken:
        _redrive(deps, job, broken)
        return False
    s = deps.settings
    sources = [paths.plan_errors_object(job.client_id, job_id)] if job.invalid_count else []
    sources += [paths.chunk_errors_object(job.client_id, job_id, c.index) for c in chunks if c.failed]
    error_bytes = (job.invalid_bytes if job.invalid_count else 0) + sum(c.errors_bytes for c in chunks if c.failed)
    errors_object = paths.result_object(job.client_id, job_id, paths.ERRORS_FILENAME)
    publish(deps.blobs, s.results_bucket, sources, errors_object, error_bytes, paths.scratch_prefix(job.client_id, job_id))
    now = deps.now()

    def complete(tx: Tx) -> Job | None:
        current = tx.get_job(job_id)
        if current is None or current.status is not JobStatus.PROCESSING:
            return None
        stored = tx.list_chunks(job_id)
        client, successor = read_successor(tx, current)
        done = _completed(current, stored).transition(JobStatus.COMPLETED, now)
        tx.put_job(ended(done, deps.settings.results_retention_days))
        hand_over(tx, client, job_id, successor, now)
        return done

    try:
        won = deps.store.run_transaction(complete)
    except _Inconsistent as exc:
        logs.error("job output does not add up", job_id=job_id)
        fail_job(deps, job_id, JobError("inconsistent_results", f"{exc}; partial results are kept"))
        return False
    if won is not None:
        logs.info("job completed", job_id=job_id, completed=won.completed_count, failed=won.failed_count)
        announce_end(deps, job_id)
    start_active(deps, job.client_id)
    return won is not None


def _completed(job: Job, chunks: list[Chunk]) -> Job:
    """The job with its final counts, from chunk records read in the completing
    transaction; raises :class:`_Inconsistent` unless they account for every prompt."""
    if len(chunks) != job.chunk_count or any(c.status is not ChunkStatus.DONE or c.stopped for c in chunks):
        raise _Inconsistent("not every chunk finished")
    short = [c.index for c in chunks if not c.adds_up()]
    if short:
        raise _Inconsistent(f"chunks {short} do not account for their lines")
    completed = sum(c.completed for c in chunks)
    failed = job.invalid_count + sum(c.failed for c in chunks)
    if completed + failed != job.prompt_count:
        raise _Inconsistent(f"{completed} results and {failed} errors for {job.prompt_count} prompts")
    error_counts: dict[str, int] = {"invalid_line": job.invalid_count} if job.invalid_count else {}
    for c in chunks:
        for code, n in c.error_counts.items():
            error_counts[code] = error_counts.get(code, 0) + n
    files = tuple(paths.part_filename(c.index) for c in chunks if c.completed) + (paths.ERRORS_FILENAME,)
    return job.replace(
        completed_count=completed,
        failed_count=failed,
        input_tokens=sum(c.input_tokens for c in chunks),
        output_tokens=sum(c.output_tokens for c in chunks),
        result_files=files,
        error_counts=error_counts,
    )


def _broken_chunks(deps: Deps, job: Job, chunks: list[Chunk]) -> list[Chunk]:
    """Done chunks whose rows or published objects are not what their checkpoints say."""
    bucket = deps.settings.results_bucket

    def whole(c: Chunk) -> bool:
        if not c.adds_up():
            return False
        if c.completed and not verify(
            deps.blobs, bucket, paths.result_object(job.client_id, job.job_id, paths.part_filename(c.index)), c.results_bytes
        ):
            return False
        return not c.failed or verify(
            deps.blobs, bucket, paths.chunk_errors_object(job.client_id, job.job_id, c.index), c.errors_bytes
        )

    with ThreadPoolExecutor(max_workers=min(_STAT_THREADS, max(1, len(chunks)))) as pool:
        verdicts = list(pool.map(whole, chunks))
    return [c for c, ok in zip(chunks, verdicts, strict=True) if not ok]


def _redrive(deps: Deps, job: Job, broken: list[Chunk]) -> None:
    """Open broken chunks again and send them back to a worker, or fail the job when one
    has been repaired too often."""
    job_id = job.job_id

    def reopen(tx: Tx) -> bool:
        current = tx.get_job(job_id)
        stored = [tx.get_chunk(job_id, c.index) for c in broken]
        if current is None or current.status is not JobStatus.PROCESSING:
            return True
        if any(c is not None and c.repairs >= MAX_REPAIRS for c in stored):
            return False
        reopened = [
            c.replace(status=ChunkStatus.PENDING, lease_until=None, repairs=c.repairs + 1)
            for c in stored
            if c is not None and c.status is ChunkStatus.DONE
        ]
        for c in reopened:
            tx.put_chunk(c)
        if reopened:
            tx.put_job(current.replace(chunks_done=current.chunks_done - len(reopened)))
        return True

    if not deps.store.run_transaction(reopen):
        logs.error("chunk output still wrong after repairs", job_id=job_id, chunks=[c.index for c in broken])
        fail_job(
            deps,
            job_id,
            JobError("inconsistent_results", f"chunk output still wrong after {MAX_REPAIRS} repairs; partial results are kept"),
        )
        return
    # Act on what is stored (a retried commit can hide that this call reopened them).
    indexes = {c.index for c in broken}
    for c in deps.store.list_chunks(job_id):
        if c.index in indexes and c.status is not ChunkStatus.DONE:
            logs.error("chunk output not whole; re-driving", job_id=job_id, chunk=c.index, repairs=c.repairs)
            deps.tasks.enqueue_chunk(job_id, c.index, f"r{c.repairs}")
