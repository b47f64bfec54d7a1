"""Processing one chunk: claim it, run its prompts with checkpoints, write its part,
record it done.

A delivery claims the chunk under a lease and a fencing token (the chunk's delivery
count). Finished rows are checkpointed as small segment objects listed on the chunk
document, so a delivery killed mid-chunk costs only the prompts that had not been
checkpointed; the next delivery reads the segments and skips what is done. A second
delivery while the lease holds is turned away (Cloud Tasks retries it later); a delivery
after the chunk is done calls no model. A delivery stops taking prompts when the job is
cancelled or failed, and hands the rest of its chunk to a continuation task before its
dispatch deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .. import logs
from ..domain import paths
from ..domain.chunk_outcomes import ChunkOutcome, HaltReason
from ..domain.job import Job, JobError, JobMode
from ..domain.jsonl import LineError, PromptLine, dump_line, iter_raw_lines, parse_line
from ..domain.outcomes import ErrorCode, ErrorRow
from ..domain.records import Chunk, ChunkStatus, count_errors
from ..domain.retry import RetryPolicy
from . import runtime
from .assemble import publish
from .calls import call_with_retries, chat_request
from .deps import Deps
from .finalize import finalize_if_done
from .lifecycle import fail_job
from .pacing import budget_id, estimate_tokens, limits_for, max_tokens_of
from .ports import Tx
from .provider_port import ProviderUnavailable


class ChunkBusy(Exception):
    """Another delivery holds the chunk's lease; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"chunk is being processed; retry in {retry_after}s")
        self.retry_after = retry_after


class LeaseLost(Exception):
    """A later delivery took this chunk over (this one stalled past its lease)."""


class ChunkInconsistent(Exception):
    """A chunk's checkpoints do not account for every one of its lines: it is not done."""


def process_chunk(deps: Deps, job_id: str, index: int, poll: int | None = None) -> ChunkOutcome:
    """Run chunk ``index`` of a job. Raises :class:`ChunkBusy` when another delivery owns it.

    ``poll`` is set on the poll deliveries of an economy job's chunk (:mod:`.economy`)."""
    # Imported here: the economy run is a kind of chunk run, built on this module.
    from . import economy

    job = deps.store.get_job(job_id)
    if job is None:
        return ChunkOutcome.IGNORED_UNKNOWN_JOB
    if job.status.terminal:
        if job.mode is JobMode.ECONOMY and economy.stop_batches(deps, job, index):
            return ChunkOutcome.BATCH_CANCELLED
        return ChunkOutcome.ignored(job.status)
    chunk = _claim(deps, job_id, index)
    if chunk is None:
        finalize_if_done(deps, job_id)
        return ChunkOutcome.ALREADY_DONE
    run = economy.EconomyRun(deps, job, chunk, poll) if job.mode is JobMode.ECONOMY else _ChunkRun(deps, job, chunk)
    try:
        outcome = run.execute()
    except ProviderUnavailable as exc:
        _release(deps, chunk)
        fail_job(deps, job_id, JobError(ErrorCode.PROVIDER_UNAVAILABLE, str(exc)))
        return ChunkOutcome.FAILED_PROVIDER_UNAVAILABLE
    except LeaseLost:
        logs.warning("chunk taken over by a later delivery", job_id=job_id, chunk=index)
        return ChunkOutcome.LEASE_LOST
    except ChunkInconsistent as exc:
        _release(deps, chunk)
        logs.error("chunk output does not add up", job_id=job_id, chunk=index)
        fail_job(deps, job_id, JobError(ErrorCode.INCONSISTENT_RESULTS, f"{exc}; partial results are kept"))
        return ChunkOutcome.FAILED_INCONSISTENT
    except BaseException:
        # Hand the chunk back at once so the task's retry need not wait out the lease.
        _release(deps, chunk)
        raise
    if outcome is ChunkOutcome.DONE and run.may_complete is not False:
        # Only a chunk whose DONE commit filled its share of the done count can be the
        # job's last; the others skip reading the count.
        finalize_if_done(deps, job_id)
    return outcome


def _lease(deps: Deps) -> timedelta:
    return timedelta(seconds=deps.settings.chunk_lease_seconds)


def _claim(deps: Deps, job_id: str, index: int) -> Chunk | None:
    now = deps.now()

    def claim(tx: Tx) -> Chunk | None | int:
        chunk = tx.get_chunk(job_id, index)
        if chunk is None or chunk.status is ChunkStatus.DONE:
            return None
        if chunk.status is ChunkStatus.RUNNING and chunk.lease_until and chunk.lease_until > now:
            return max(1, int((chunk.lease_until - now).total_seconds()))
        claimed = chunk.replace(status=ChunkStatus.RUNNING, lease_until=now + _lease(deps), deliveries=chunk.deliveries + 1)
        tx.put_chunk(claimed)
        return claimed

    result = deps.store.run_transaction(claim)
    if isinstance(result, int):
        raise ChunkBusy(min(result, 60))
    if result is None:
        return None
    # Read back: a retried commit can hide that this call's claim went through. A plain
    # read sees every committed write, as a transaction that only reads would.
    stored = deps.store.get_chunk(job_id, index)
    if stored is None or stored.deliveries != result.deliveries or stored.status is not ChunkStatus.RUNNING:
        raise ChunkBusy(1)
    return stored


def _release(deps: Deps, chunk: Chunk) -> None:
    """Give up a lease this delivery holds (best effort: the lease expires anyway)."""

    def release(tx: Tx) -> None:
        current = tx.get_chunk(chunk.job_id, chunk.index)
        if current is not None and current.status is ChunkStatus.RUNNING and current.deliveries == chunk.deliveries:
            tx.put_chunk(current.replace(status=ChunkStatus.PENDING, lease_until=None))

    try:
        deps.store.run_transaction(release)
    except Exception as exc:
        logs.warning("could not release a chunk lease", job_id=chunk.job_id, chunk=chunk.index, error_type=type(exc).__name__)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(dump_line(r) for r in rows)


@dataclass
class _Pending:
    """Rows finished since the last checkpoint."""

    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.results) + len(self.errors)


class Checkpointer:
    """The rows of one delivery not yet checkpointed, when to checkpoint them (enough
    rows, rows waiting long enough, or a lease due for renewal), and the write itself:
    segment objects, then the chunk updated only if this delivery still holds it.

    ``clock`` is a monotonic clock in seconds (injected, so a test can drive the timing);
    wall time, for the lease, is ``deps.now``.
    """

    def __init__(self, deps: Deps, job: Job, chunk: Chunk, clock: Callable[[], float]) -> None:
        self.deps = deps
        self.s = deps.settings
        self.job = job
        self.chunk = chunk  # as stored: the fencing token and the checkpoints so far
        self.clock = clock
        self.pending = _Pending()
        self.seq = 0
        self.last_checkpoint = self.last_renewal = clock()
        self.renew_after = self.s.chunk_lease_seconds / 3

    def load(self) -> tuple[set[str], set[int]]:
        """The prompt_ids, and the line numbers of late invalid lines, already checkpointed."""
        ids: set[str] = set()
        lines: set[int] = set()
        for name in self.chunk.segments:
            with self.deps.blobs.open_read(self.s.results_bucket, name) as f:
                for row in (json.loads(line) for line in f.read().splitlines() if line.strip()):
                    if row.get("error") == ErrorCode.INVALID_LINE:
                        lines.add(row["line"])
                    else:
                        ids.add(row["prompt_id"])
        return ids, lines

    @property
    def full(self) -> bool:
        """Enough rows wait to checkpoint them now."""
        return len(self.pending) >= self.s.checkpoint_rows

    def due(self) -> bool:
        """Rows waited long enough, or the lease is due for renewal."""
        now = self.clock()
        waited = bool(self.pending) and now - self.last_checkpoint >= self.s.checkpoint_seconds
        return waited or now - self.last_renewal >= self.renew_after

    def take(self) -> _Pending:
        """Hand over the rows waiting for a checkpoint (on the event loop's thread, so no
        row can be appended to a batch that is already being written)."""
        rows, self.pending = self.pending, _Pending()
        return rows

    def write(self, rows: _Pending) -> None:
        """Write ``rows`` as segments and list them on the chunk, renewing the lease
        (blocking: called from a worker thread)."""
        names: list[str] = []
        sizes = {"results": 0, "errors": 0}
        for kind, batch in (("results", rows.results), ("errors", rows.errors)):
            if batch:
                name = paths.segment_object(
                    self.job.client_id, self.job.job_id, self.chunk.index, self.chunk.deliveries, self.seq, kind
                )
                data = _jsonl(batch)
                self.deps.blobs.write(self.s.results_bucket, name, data)
                names.append(name)
                sizes[kind] = len(data)
        self.seq += 1
        mine = self.chunk
        lease_until = self.deps.now() + _lease(self.deps)

        def save(current: Chunk | None) -> Chunk:
            if current is None or current.deliveries != mine.deliveries or current.status is not ChunkStatus.RUNNING:
                raise LeaseLost()
            updated = current.replace(
                segments=current.segments + tuple(n for n in names if n not in current.segments),
                lease_until=lease_until,
                completed=mine.completed + len(rows.results),
                failed=mine.failed + len(rows.errors),
                input_tokens=mine.input_tokens + sum(r.get("input_tokens", 0) for r in rows.results),
                output_tokens=mine.output_tokens + sum(r.get("output_tokens", 0) for r in rows.results),
                error_counts=count_errors(rows.errors, mine.error_counts),
                results_bytes=mine.results_bytes + sizes["results"],
                errors_bytes=mine.errors_bytes + sizes["errors"],
            )
            return updated

        # A read and a write conditioned on it: a takeover between the two fails the write,
        # and the read again finds the chunk taken.
        stored = self.deps.store.update_chunk(mine.job_id, mine.index, save)
        if stored is None:  # save returns a chunk or raises: nothing stored is no lease
            raise LeaseLost()
        self.chunk = stored
        self.last_checkpoint = self.last_renewal = self.clock()


class ChunkRunner:
    """The asynchronous part of a delivery: lanes that run the chunk's prompts through
    the provider under the budget's pacer, a keeper that checkpoints and renews the
    lease, and the halt checks (the time box, by ``clock``; the job's stop signal, from
    the hub's beat)."""

    def __init__(self, deps: Deps, job: Job, checkpoints: Checkpointer, clock: Callable[[], float]) -> None:
        self.deps = deps
        self.s = deps.settings
        self.job = job
        self.checkpoints = checkpoints
        self.clock = clock
        self.budget = budget_id(job.provider, job.model, self.s, job.endpoint, job.base_url)
        self.limits = limits_for(job.provider, job.model, self.s, job.endpoint)
        self.hub: runtime.Hub | None = None
        self.priority = 0.0
        self.stop: HaltReason | None = None  # this delivery's own stop: the time box
        self.started = clock()
        self.begun = 0

    @property
    def halt(self) -> HaltReason | None:
        """Why no new prompt may start: the time box, or the job's stop signal."""
        if self.stop:
            return self.stop
        return self.hub.signals_for(self.job.job_id).halt if self.hub is not None else None

    @property
    def over_budget(self) -> bool:
        return self.hub is not None and self.hub.signals_for(self.job.job_id).over_budget

    def may_start(self) -> bool:
        """Whether the next prompt may start. Past the time box, stop starting prompts
        (but always start at least one, so every delivery makes progress)."""
        if self.begun and self.clock() - self.started > self.s.chunk_time_budget_seconds:
            self.stop = self.stop or HaltReason.TIME_BOX
        if self.halt:
            return False
        self.begun += 1
        return True

    async def run(self, lines: list[PromptLine]) -> None:
        expected = max(1, min(self.job.chunk_count or 1, self.s.max_concurrent_chunks))
        self.hub, number = await runtime.attach(self.deps, self.budget, self.limits, self.job.job_id, expected)
        try:
            await self._run_attached(lines, self.hub, number)
        finally:
            await runtime.detach(self.hub, number)

    async def _run_attached(self, lines: list[PromptLine], hub: runtime.Hub, number: int) -> None:
        policy = RetryPolicy()
        # Chunks that started earlier go first, so chunks end one after another.
        self.priority = float(number)
        pacer = hub.pacer
        provider = self.deps.providers(self.job.provider, self.s, self.job.endpoint, self.job.base_url)
        cp = self.checkpoints
        stop = asyncio.Event()
        writing = asyncio.Lock()  # checkpoints write the chunk one at a time
        self.started = self.clock()

        async def one(line: PromptLine) -> None:
            request = chat_request(self.job, line)
            estimate = estimate_tokens(request.messages, request.params, self.s.default_max_tokens_estimate)
            if not self.may_start():
                return  # not started: stays for a continuation, or unrun in a stopped job
            row: dict[str, Any] | None
            err: dict[str, Any] | None
            if self.over_budget:
                row, err = None, ErrorRow(line.prompt_id, ErrorCode.BUDGET_EXCEEDED, attempts=0).to_json()
            else:
                row, err = await call_with_retries(
                    provider,
                    request,
                    line.prompt_id,
                    self.job.max_attempts,
                    policy,
                    pacer,
                    estimate,
                    max_tokens_of(request.params, self.s.default_max_tokens_estimate),
                    self.priority,
                    self.s.rate_limit_max_wait_seconds,
                )
            if row is not None:
                cp.pending.results.append(row)
            elif err is not None:
                cp.pending.errors.append(err)
            if cp.full:
                # Enough rows wait: checkpoint them now, still holding the lane, so a
                # worker never runs far ahead of its checkpoints.
                async with writing:
                    if cp.full:
                        await asyncio.to_thread(cp.write, cp.take())

        todo = iter(lines)

        async def lane() -> None:
            # ``worker_concurrency`` lanes take the chunk's lines in order, one prompt at a
            # time each: the same prompts in flight as a task per line behind a semaphore,
            # without making a task and queueing on a semaphore for every line.
            for line in todo:
                await one(line)

        async def keeper() -> None:
            # Checkpoints rows that waited long enough, and renews the lease of a chunk
            # whose prompts wait behind an earlier chunk's.
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 0.25)
                except TimeoutError:
                    pass
                async with writing:
                    if cp.due():
                        await asyncio.to_thread(cp.write, cp.take())

        keeping = asyncio.create_task(keeper())
        running = [asyncio.ensure_future(lane()) for _ in range(min(self.s.worker_concurrency, len(lines)))]
        try:
            await asyncio.gather(*running)
        except BaseException:
            # The loop outlives this delivery: stop its other prompts before leaving.
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        finally:
            stop.set()
            try:
                await keeping
            finally:
                await provider.aclose()
        if cp.pending:
            await asyncio.to_thread(cp.write, cp.take())
        logs.info(
            "chunk ran",
            job_id=self.job.job_id,
            chunk=cp.chunk.index,
            prompts=len(lines),
            seconds=round(self.clock() - self.started, 3),
            rate_limited=pacer.rate_limited,
            halted=self.halt,
        )


class _ChunkRun:
    """One delivery running one chunk, the synchronous frame: load the checkpoints, run
    the rest (:class:`ChunkRunner`), then finish the chunk or hand it over."""

    def __init__(self, deps: Deps, job: Job, chunk: Chunk, clock: Callable[[], float] = time.monotonic) -> None:
        self.deps = deps
        self.s = deps.settings
        self.job = job
        self.checkpoints = Checkpointer(deps, job, chunk, clock)
        self.runner = ChunkRunner(deps, job, self.checkpoints, clock)
        # From the DONE commit: False when this chunk cannot have been the job's last.
        self.may_complete: bool | None = None

    @property
    def chunk(self) -> Chunk:
        """The chunk as this delivery last stored it (the fencing token, the checkpoints)."""
        return self.checkpoints.chunk

    @property
    def halt(self) -> HaltReason | None:
        return self.runner.halt

    def execute(self) -> ChunkOutcome:
        """Run the chunk to its end, a stop, or a hand-over; returns the outcome.

        An earlier delivery may have published the part and died before recording the
        chunk done: its rows are all in the listed checkpoints, so this delivery calls no
        model and publishes the same part again from them. An object already under the
        part's name is never trusted as it stands.
        """
        done_ids, done_lines = self.checkpoints.load()
        lines, late_errors = _lines(self.deps, self.job, self.chunk)
        lines = [line for line in lines if line.prompt_id not in done_ids]
        self.checkpoints.pending.errors.extend(e for e in late_errors if e["line"] not in done_lines)
        runtime.run(self.runner.run(lines))
        if self.runner.stop is HaltReason.TIME_BOX:
            self._hand_over()
            return ChunkOutcome.CONTINUED
        self._finish()
        return ChunkOutcome.STOPPED if self.halt else ChunkOutcome.DONE

    def _hand_over(self) -> None:
        """Past the time box: release the chunk and enqueue its continuation."""
        self._release_for_continuation()
        self.deps.tasks.enqueue_chunk(self.job.job_id, self.chunk.index, f"c{self.chunk.continuations + 1}")
        logs.info(
            "chunk continued", job_id=self.job.job_id, chunk=self.chunk.index, done=self.chunk.completed + self.chunk.failed
        )

    def _release_for_continuation(self) -> None:
        mine = self.chunk

        def release(tx: Tx) -> None:
            current = tx.get_chunk(mine.job_id, mine.index)
            if current is None or current.deliveries != mine.deliveries:
                raise LeaseLost()
            tx.put_chunk(current.replace(status=ChunkStatus.PENDING, lease_until=None, continuations=current.continuations + 1))

        self.deps.store.run_transaction(release)

    def _finish(self) -> None:
        """Publish the chunk's result rows and error rows from its checkpoints, each whole
        in one final request and checked against the recorded sizes, as staging objects
        that finalization composes into the job's parts; then record the chunk done. The
        DONE write and the job's count of done chunks commit together; the job document is
        not touched."""
        client, job_id, index = self.job.client_id, self.job.job_id, self.chunk.index
        self._verify_lease()
        mine = self.chunk
        stopped = self.halt is not None
        if not stopped and not mine.adds_up():
            # Every line was run or skipped, so the checkpoints must hold a row for each.
            raise ChunkInconsistent(
                f"chunk {index} of job {job_id} holds {mine.completed + mine.failed} rows, expected {mine.expected_rows}"
            )
        bucket, scratch = self.s.results_bucket, paths.scratch_prefix(client, job_id, index)
        results = [n for n in mine.segments if paths.is_results_segment(n)]
        errors = [n for n in mine.segments if not paths.is_results_segment(n)]
        # An object of no rows is never read (finalization and partial results take a
        # chunk's results only if it completed a prompt, its errors only if one failed), so
        # none is written; a count or a size without its rows still goes to publish, which
        # refuses it.
        if errors or mine.failed or mine.errors_bytes:
            errors_object = paths.chunk_errors_object(client, job_id, index)
            publish(self.deps.blobs, bucket, errors, errors_object, mine.errors_bytes, scratch)
        if results or mine.completed or mine.results_bytes:
            staged = paths.chunk_results_object(client, job_id, index)
            publish(self.deps.blobs, bucket, results, staged, mine.results_bytes, scratch)
        now = self.deps.now()

        def record(tx: Tx) -> Any:  # the count's DoneMark (ports), or None: counted before
            current = tx.get_chunk(job_id, index)
            if current is None or current.status is ChunkStatus.DONE:
                return None
            if current.deliveries != mine.deliveries or current.segments != mine.segments:
                raise LeaseLost()
            tx.put_chunk(current.replace(status=ChunkStatus.DONE, lease_until=None, stopped=stopped))
            return tx.count_done(job_id, index, 1, now, self.job.chunk_count or 0)

        mark = self.deps.store.run_transaction(record)
        self.may_complete = mark.may_complete if mark is not None else None
        logs.info("chunk done", job_id=job_id, chunk=index, completed=mine.completed, failed=mine.failed, stopped=stopped)

    def _verify_lease(self) -> None:
        """Turn back before publishing if a later delivery took the chunk over. A check at
        one instant, so a plain read (which sees every committed write) does what a
        transaction would; a takeover after it is caught by the DONE transaction, which
        compares the delivery and the segments, and finalization checks every published
        object's size."""
        current = self.deps.store.get_chunk(self.chunk.job_id, self.chunk.index)
        if current is None or current.deliveries != self.chunk.deliveries:
            raise LeaseLost()


def _lines(deps: Deps, job: Job, chunk: Chunk) -> tuple[list[PromptLine], list[dict[str, Any]]]:
    """The chunk's prompts, and error rows for any line planning did not already report
    (none, unless the parser changed between planning and now: never drop a line)."""
    s = deps.settings
    skip = set(chunk.skip_lines)
    out: list[PromptLine] = []
    errors: list[dict[str, Any]] = []
    upload = paths.upload_object(job.client_id, job.job_id)
    with deps.blobs.open_read(s.upload_bucket, upload, chunk.start, chunk.end) as src:
        for raw in iter_raw_lines(src, s.max_line_bytes, offset=chunk.start, first_number=chunk.first_line):
            if raw.number in skip:
                continue
            parsed = parse_line(raw, s.max_line_bytes)
            if isinstance(parsed, PromptLine):
                out.append(parsed)
            elif isinstance(parsed, LineError):
                errors.append(parsed.to_row())
    return out, errors
