"""Finishing a job once all its chunks are done: the result parts, errors.jsonl, counts,
COMPLETED, and the client's next PENDING job.

Each chunk leaves its result rows in one staging object; the parts are composed here from
consecutive chunks, one chunk a part up to ``paths.MAX_PARTS`` chunks and more past that,
so a job has at most 999 parts whatever its size (their names sort, and listing and
signing them stays bounded).

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

from collections.abc import Iterable

from .. import logs
from ..domain import paths
from ..domain.job import Job, JobError, JobStatus
from ..domain.outcomes import ErrorCode
from ..domain.records import Chunk, ChunkStatus
from .assemble import publish, verify
from .deps import Deps
from .lifecycle import Ending, end_job, fail_job
from .ports import Tx
from .progress import final_totals, with_stored
from .threads import concurrently

# A chunk re-driven this many times and still wrong fails its job.
MAX_REPAIRS = 3
_STAT_THREADS = 16


class _Inconsistent(Exception):
    """The job's records do not add up; the message says how."""


def finalize_if_done(deps: Deps, job_id: str, recount: bool = False) -> bool:
    """Complete the job if every chunk is done and whole; True if this call completed it.

    The count of done chunks (a few counter reads) says when to look; only then are the
    chunks listed, and they decide. ``recount`` looks even when the count says no (the
    watchdog, for a job in which it finds no unfinished chunk)."""
    job = deps.store.get_job(job_id)
    if job is None or job.status is not JobStatus.PROCESSING or job.chunk_count is None:
        return False
    if not recount and deps.store.chunks_done(job_id).done < job.chunk_count:
        return False
    chunks = deps.store.list_chunks(job_id)
    if len(chunks) != job.chunk_count or any(c.status is not ChunkStatus.DONE for c in chunks):
        return False

    broken = _broken_chunks(deps, job, chunks)
    if broken:
        _redrive(deps, job, broken)
        return False
    s = deps.settings
    publish_parts(deps, job, [(c, [paths.chunk_results_object(job.client_id, job_id, c.index)]) for c in chunks])
    sources = [paths.plan_errors_object(job.client_id, job_id)] if job.invalid_count else []
    sources += [paths.chunk_errors_object(job.client_id, job_id, c.index) for c in chunks if c.failed]
    error_bytes = (job.invalid_bytes if job.invalid_count else 0) + sum(c.errors_bytes for c in chunks if c.failed)
    errors_object = paths.result_object(job.client_id, job_id, paths.ERRORS_FILENAME)
    publish(deps.blobs, s.results_bucket, sources, errors_object, error_bytes, paths.scratch_prefix(job.client_id, job_id))
    try:
        result = end_job(deps, job_id, Ending(JobStatus.COMPLETED, only_from=JobStatus.PROCESSING, settle=_settle))
    except _Inconsistent as exc:
        logs.error("job output does not add up", job_id=job_id)
        fail_job(deps, job_id, JobError(ErrorCode.INCONSISTENT_RESULTS, f"{exc}; partial results are kept"))
        return False
    return result.won


def _settle(tx: Tx, job: Job) -> Job:
    """The completing transaction's reads: the chunk records the final counts come from."""
    return _completed(job, tx.list_chunks(job.job_id))


def _completed(job: Job, chunks: list[Chunk]) -> Job:
    """The job with its final counts, from chunk records read in the completing
    transaction; raises :class:`_Inconsistent` unless they account for every prompt."""
    if len(chunks) != job.chunk_count or any(c.status is not ChunkStatus.DONE or c.stopped for c in chunks):
        raise _Inconsistent("not every chunk finished")
    short = [c.index for c in chunks if not c.adds_up()]
    if short:
        raise _Inconsistent(f"chunks {short} do not account for their lines")
    totals = final_totals(job, chunks)
    if totals.completed + totals.failed != job.prompt_count:
        raise _Inconsistent(f"{totals.completed} results and {totals.failed} errors for {job.prompt_count} prompts")
    files = part_names(job, chunks) + (paths.ERRORS_FILENAME,)
    return with_stored(job, totals).replace(result_files=files)


def _parts(job: Job, chunks: Iterable[Chunk]) -> dict[int, list[Chunk]]:
    """The chunks with result rows, by the part (0-based) their rows go into."""
    ordered = sorted(chunks, key=lambda c: c.index)
    count = max([job.chunk_count or 0] + [c.index + 1 for c in ordered])
    parts: dict[int, list[Chunk]] = {}
    for c in ordered:
        if c.completed:
            parts.setdefault(paths.part_of(c.index, count), []).append(c)
    return parts


def part_names(job: Job, chunks: Iterable[Chunk]) -> tuple[str, ...]:
    """The job's result files, in order: a part for each group of chunks with results."""
    return tuple(paths.part_filename(p) for p in sorted(_parts(job, chunks)))


def publish_parts(deps: Deps, job: Job, staged: list[tuple[Chunk, list[str]]]) -> tuple[str, ...]:
    """Compose each part from its chunks' result objects (``staged``: a chunk and the
    objects holding its result rows, in order), whole under its final name and checked
    against the sizes the chunks recorded; returns the parts' file names."""
    bucket, client, job_id = deps.settings.results_bucket, job.client_id, job.job_id
    sources = {c.index: names for c, names in staged}
    parts = _parts(job, (c for c, _ in staged))

    def one(part: int) -> str:
        members = parts[part]
        name = paths.part_filename(part)
        target = paths.result_object(client, job_id, name)
        objects = [n for c in members for n in sources[c.index]]
        scratch = paths.scratch_prefix(client, job_id, part_index=part)
        publish(deps.blobs, bucket, objects, target, sum(c.results_bytes for c in members), scratch)
        return name

    return tuple(concurrently(one, sorted(parts), _STAT_THREADS))


def _broken_chunks(deps: Deps, job: Job, chunks: list[Chunk]) -> list[Chunk]:
    """Done chunks whose rows or published objects are not what their checkpoints say."""
    bucket = deps.settings.results_bucket

    def whole(c: Chunk) -> bool:
        if not c.adds_up():
            return False
        if c.completed and not verify(
            deps.blobs, bucket, paths.chunk_results_object(job.client_id, job.job_id, c.index), c.results_bytes
        ):
            return False
        return not c.failed or verify(
            deps.blobs, bucket, paths.chunk_errors_object(job.client_id, job.job_id, c.index), c.errors_bytes
        )

    verdicts = concurrently(whole, chunks, _STAT_THREADS)
    return [c for c, ok in zip(chunks, verdicts, strict=True) if not ok]


def _redrive(deps: Deps, job: Job, broken: list[Chunk]) -> None:
    """Open broken chunks again and send them back to a worker, or fail the job when one
    has been repaired too often."""
    job_id = job.job_id

    now = deps.now()

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
            tx.count_done(job_id, c.index, -1, now)
        return True

    if not deps.store.run_transaction(reopen):
        logs.error("chunk output still wrong after repairs", job_id=job_id, chunks=[c.index for c in broken])
        fail_job(
            deps,
            job_id,
            JobError(
                ErrorCode.INCONSISTENT_RESULTS,
                f"chunk output still wrong after {MAX_REPAIRS} repairs; partial results are kept",
            ),
        )
        return
    # Act on what is stored (a retried commit can hide that this call reopened them).
    indexes = {c.index for c in broken}
    for c in deps.store.list_chunks(job_id):
        if c.index in indexes and c.status is not ChunkStatus.DONE:
            logs.error("chunk output not whole; re-driving", job_id=job_id, chunk=c.index, repairs=c.repairs)
            deps.tasks.enqueue_chunk(job_id, c.index, f"r{c.repairs}")
