"""Read models: what a job's status shows, a page of a client's jobs, and the totals both
show, computed here once.

A job's counts are stored on it when it completes (:func:`final_totals`, in the completing
transaction). Before that, and for a job that failed or was cancelled once its chunks
existed, they are live: summed over the chunk documents the workers update
(:func:`live_totals`), until the watchdog, once none of an ended job's workers writes any
more, stores them on the job too (:func:`settled`). Either way the invalid lines found in
planning count as failures with the code ``invalid_line``.

An economy job's status also shows, while it is PROCESSING, its provider batches'
progress (:func:`batch_progress`): the providers' own counts, summed over its chunks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ..domain.job import ENDED_EARLY, Job, JobMode, JobStatus
from ..domain.outcomes import ErrorCode
from ..domain.pricing import estimated_cost_usd
from ..domain.records import BatchTotals, Chunk, Totals
from .deps import Deps
from .threads import concurrently

# A list page reads the live totals of its unfinished jobs side by side, on at most this
# many threads: the page then waits about one aggregation's round trip, not one a job.
PAGE_TOTALS_THREADS = 8


@dataclass(frozen=True)
class JobView:
    """A job as its status shows it: the stored job and the totals to show with it."""

    job: Job
    totals: Totals
    estimated_cost_usd: float | None
    events_url: str | None
    # Seconds until a poll is worth making; None once the job ended.
    retry_after: int | None
    # An economy job's provider batches while it is PROCESSING; None otherwise.
    provider_batches: BatchTotals | None = None

    @property
    def tokens_used(self) -> int:
        return self.totals.input_tokens + self.totals.output_tokens


@dataclass(frozen=True)
class JobPage:
    """A page of a client's jobs, newest first; ``after`` is the cursor of the next page."""

    views: list[JobView]
    after: tuple[datetime, str] | None = None


def with_invalid_lines(job: Job, chunks: Totals) -> Totals:
    """The job's totals from its chunks' totals: planning's invalid lines added as failures."""
    errors = dict(chunks.error_counts)
    if job.invalid_count:
        code = ErrorCode.INVALID_LINE.value
        errors[code] = errors.get(code, 0) + job.invalid_count
    return Totals(chunks.completed, job.invalid_count + chunks.failed, chunks.input_tokens, chunks.output_tokens, errors)


def summed(chunks: Iterable[Chunk]) -> Totals:
    """The chunks' counts added up (the completing transaction reads them itself)."""
    completed = failed = tokens_in = tokens_out = 0
    errors: dict[str, int] = {}
    for c in chunks:
        completed, failed = completed + c.completed, failed + c.failed
        tokens_in, tokens_out = tokens_in + c.input_tokens, tokens_out + c.output_tokens
        for code, n in c.error_counts.items():
            errors[code] = errors.get(code, 0) + n
    return Totals(completed, failed, tokens_in, tokens_out, errors)


def final_totals(job: Job, chunks: Iterable[Chunk]) -> Totals:
    """The totals a completing job stores, from its chunk records."""
    return with_invalid_lines(job, summed(chunks))


def stored_totals(job: Job) -> Totals:
    """The totals stored on the job (its final ones once COMPLETED; zero before)."""
    return Totals(job.completed_count, job.failed_count, job.input_tokens, job.output_tokens, dict(job.error_counts))


def with_stored(job: Job, totals: Totals) -> Job:
    """``job`` with ``totals`` as the counts stored on it."""
    return job.replace(
        completed_count=totals.completed,
        failed_count=totals.failed,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        error_counts=dict(totals.error_counts),
    )


def settled(job: Job, totals: Totals) -> Job:
    """A FAILED or CANCELLED job with its live ``totals`` stored on it for good: only once
    none of its workers writes any more, so they are its last live ones."""
    assert job.status in ENDED_EARLY, job.status
    return with_stored(job, totals).replace(totals_settled=True)


def is_live(job: Job) -> bool:
    """Whether the job's counts are read from its chunks: while it runs, and after it
    failed or was cancelled with chunks (whose prompts in flight still finish) until the
    watchdog settled them on the job."""
    if job.status is JobStatus.PROCESSING:
        return True
    return job.status in ENDED_EARLY and bool(job.chunk_count) and not job.totals_settled


def live_totals(deps: Deps, job: Job) -> Totals:
    return with_invalid_lines(job, deps.store.chunk_totals(job.job_id))


def shows_batches(job: Job) -> bool:
    """Whether the status shows the job's provider batches: an economy job's, while the
    providers work through them (before, there are none; after, the counts say it all)."""
    return job.mode is JobMode.ECONOMY and job.status is JobStatus.PROCESSING


def batch_progress(deps: Deps, job: Job) -> BatchTotals | None:
    return deps.store.batch_totals(job.job_id) if shows_batches(job) else None


def view(deps: Deps, job: Job, totals: Totals | None = None, batches: BatchTotals | None = None) -> JobView:
    """The job's status: ``totals`` (and ``batches``) where they were read already, else
    read here."""
    if totals is None:
        totals = live_totals(deps, job) if is_live(job) else stored_totals(job)
    if batches is None:
        batches = batch_progress(deps, job)
    s = deps.settings
    economy = job.mode is JobMode.ECONOMY
    return JobView(
        job=job,
        totals=totals,
        estimated_cost_usd=estimated_cost_usd(job.provider, job.model, totals.input_tokens, totals.output_tokens, economy),
        events_url=f"{s.events_url}/v1/jobs/{job.job_id}/events" if s.events_url else None,
        # An economy job changes at its chunks' polls, the first a poll delay after submitting:
        # asking sooner only costs the client's calls and our aggregation queries.
        retry_after=None if job.status.terminal else max(s.status_poll_seconds, s.economy_poll_first_seconds if economy else 0),
        provider_batches=batches,
    )


def page(deps: Deps, client_id: str, limit: int, after: tuple[datetime, str] | None) -> JobPage:
    """A page of the client's jobs, newest first.

    A page costs one query for the jobs, plus, for each job whose counts are live, the
    aggregation :meth:`JobStore.chunk_totals` makes (and an economy job's
    :meth:`JobStore.batch_totals`). Those jobs are few whatever the page size: a client has
    one PROCESSING job at a time, and a job that failed or was cancelled
    after planning reads its chunks only until the watchdog settles its counts on it (its
    grace period after the end, plus a sweep). Their aggregations run side by side, so the
    page waits about one.
    """
    jobs = deps.store.list_jobs(client_id, limit + 1, after)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    live = [j for j in jobs if is_live(j)]
    read = concurrently(lambda j: (live_totals(deps, j), batch_progress(deps, j)), live, PAGE_TOTALS_THREADS)
    found = dict(zip((j.job_id for j in live), read, strict=True))
    views = [view(deps, j, *found[j.job_id]) if j.job_id in found else view(deps, j, stored_totals(j)) for j in jobs]
    last = jobs[-1] if more and jobs else None
    return JobPage(views, (last.created_at, last.job_id) if last else None)
