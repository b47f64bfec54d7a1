"""Processing one chunk: claim it, run its prompts, write its part, record it done.

A chunk is claimed under a lease, so a second delivery of the same task while the
first runs is turned away (and retried later by Cloud Tasks); a delivery after the
chunk is done changes nothing and calls no model.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .. import logs
from ..adapters.providers import ChatRequest, Provider, ProviderError, ProviderUnavailable, open_provider
from ..domain import paths
from ..domain.job import Job, JobError
from ..domain.jsonl import PromptLine, iter_raw_lines, parse_line
from ..domain.records import Chunk, ChunkStatus
from ..domain.retry import RetryPolicy
from .deps import Deps
from .finalize import finalize_if_done
from .lifecycle import fail_job
from .pacing import Pacer, budget_id, estimate_tokens, limits_for
from .ports import Tx

# Renewed with every progress write, so a live worker keeps it; a killed one frees
# its chunk for the task's retry within this time.
LEASE = timedelta(seconds=60)
PROGRESS_EVERY_S = 2.0


class ChunkBusy(Exception):
    """Another delivery holds the chunk's lease; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"chunk is being processed; retry in {retry_after}s")
        self.retry_after = retry_after


@dataclass
class _Outcome:
    rows: list[dict[str, Any]]
    errors: list[dict[str, Any]]


def process_chunk(deps: Deps, job_id: str, index: int) -> str:
    """Run chunk ``index`` of a job. Raises :class:`ChunkBusy` when another delivery owns it."""
    job = deps.store.get_job(job_id)
    if job is None:
        return "ignored: unknown job"
    if job.status.terminal:
        return f"ignored: job is {job.status.value}"
    chunk = _claim(deps, job_id, index)
    if chunk is None:
        finalize_if_done(deps, job_id)
        return "already done"

    try:
        done = _produce(deps, job, chunk)
    except ProviderUnavailable as exc:
        _release(deps, chunk)
        fail_job(deps, job_id, JobError("provider_unavailable", str(exc)))
        return "failed: provider unavailable"
    except BaseException:
        # Hand the chunk back at once so the task's retry need not wait out the lease.
        _release(deps, chunk)
        raise
    if _record_done(deps, done):
        logs.info("chunk done", job_id=job_id, chunk=index, completed=done.completed, failed=done.failed)
    finalize_if_done(deps, job_id)
    return "done"


def _produce(deps: Deps, job: Job, chunk: Chunk) -> Chunk:
    """Write the chunk's part and its errors; the chunk with its counts."""
    s = deps.settings
    part = paths.result_object(job.client_id, job.job_id, paths.part_filename(chunk.index))
    errors_name = paths.chunk_errors_object(job.client_id, job.job_id, chunk.index)
    if deps.blobs.exists(s.results_bucket, part):
        # An earlier delivery wrote the part, then died before recording it: keep its work.
        return _recount(deps, chunk, part, errors_name)
    outcome = asyncio.run(_run(deps, job, chunk))
    # Errors first, part last: an existing part means both are complete.
    deps.blobs.write(s.results_bucket, errors_name, _jsonl(outcome.errors))
    deps.blobs.write(s.results_bucket, part, _jsonl(outcome.rows))
    return _counted(chunk, outcome.rows, outcome.errors)


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


def _claim(deps: Deps, job_id: str, index: int) -> Chunk | None:
    now = deps.now()

    def claim(tx: Tx) -> Chunk | None | int:
        chunk = tx.get_chunk(job_id, index)
        if chunk is None or chunk.status is ChunkStatus.DONE:
            return None
        if chunk.status is ChunkStatus.RUNNING and chunk.lease_until and chunk.lease_until > now:
            return max(1, int((chunk.lease_until - now).total_seconds()))
        claimed = chunk.replace(status=ChunkStatus.RUNNING, lease_until=now + LEASE, deliveries=chunk.deliveries + 1)
        tx.put_chunk(claimed)
        return claimed

    result = deps.store.run_transaction(claim)
    if isinstance(result, int):
        raise ChunkBusy(min(result, 60))
    return result


def _record_done(deps: Deps, chunk: Chunk) -> bool:
    def record(tx: Tx) -> bool:
        current = tx.get_chunk(chunk.job_id, chunk.index)
        job = tx.get_job(chunk.job_id)
        if current is None or job is None or current.status is ChunkStatus.DONE:
            return False
        tx.put_chunk(chunk.replace(status=ChunkStatus.DONE, lease_until=None))
        tx.put_job(job.replace(chunks_done=job.chunks_done + 1))
        return True

    return bool(deps.store.run_transaction(record))


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in rows)


def _counted(chunk: Chunk, rows: list[dict[str, Any]], errors: list[dict[str, Any]]) -> Chunk:
    return chunk.replace(
        completed=len(rows),
        failed=len(errors),
        input_tokens=sum(r.get("input_tokens", 0) for r in rows),
        output_tokens=sum(r.get("output_tokens", 0) for r in rows),
    )


def _recount(deps: Deps, chunk: Chunk, part: str, errors_name: str) -> Chunk:
    def rows_of(name: str) -> list[dict[str, Any]]:
        with deps.blobs.open_read(deps.settings.results_bucket, name) as f:
            return [json.loads(line) for line in f.read().splitlines() if line.strip()]

    return _counted(chunk, rows_of(part), rows_of(errors_name))


def _lines(deps: Deps, job: Job, chunk: Chunk) -> list[PromptLine]:
    s = deps.settings
    skip = set(chunk.skip_lines)
    out: list[PromptLine] = []
    upload = paths.upload_object(job.client_id, job.job_id)
    with deps.blobs.open_read(s.upload_bucket, upload, chunk.start, chunk.end) as src:
        for raw in iter_raw_lines(src, s.max_line_bytes, offset=chunk.start, first_number=chunk.first_line):
            if raw.number in skip:
                continue
            parsed = parse_line(raw, s.max_line_bytes)
            if isinstance(parsed, PromptLine):
                out.append(parsed)
    return out


def chat_request(job: Job, line: PromptLine) -> ChatRequest:
    """The provider request for a line: the line's overrides over the job's settings."""
    messages = list(line.messages) if line.messages is not None else [{"role": "user", "content": line.prompt}]
    system = line.system_prompt if line.system_prompt is not None else job.system_prompt
    if system and messages[0].get("role") != "system":
        messages.insert(0, {"role": "system", "content": system})
    return ChatRequest(model=job.model, messages=messages, params={**job.params, **line.params})


async def call_with_retries(
    provider: Provider,
    request: ChatRequest,
    prompt_id: str,
    max_attempts: int,
    policy: RetryPolicy,
    pacer: Pacer,
    estimate: int,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """One prompt to completion under the pacer: ``(result_row, None)`` or ``(None, error_row)``.

    A 429 is paced by the pacer (which holds requests for the retry-after); other
    retryable errors back off with jitter; every try counts toward ``max_attempts``.
    """
    attempt = 0
    while True:
        attempt += 1
        await pacer.acquire(estimate)
        try:
            result = await provider.complete(request)
        except ProviderError as exc:
            pacer.settle(estimate, 0)
            pacer.learn(getattr(exc, "rate_limits", None))
            if exc.code == "rate_limit_exceeded":
                pacer.on_rate_limited(exc.retry_after)
            if not exc.retryable or attempt >= max_attempts:
                return None, {"prompt_id": prompt_id, "error": exc.code, "attempts": attempt, "detail": exc.detail}
            if exc.code != "rate_limit_exceeded":
                await sleep(policy.delay(attempt, exc.retry_after))
            continue
        pacer.settle(estimate, result.input_tokens + result.output_tokens)
        pacer.learn(getattr(result, "rate_limits", None))
        return {
            "prompt_id": prompt_id,
            "result": result.text,
            "model": result.model,
            "tokens_used": result.input_tokens + result.output_tokens,
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "finish_reason": result.finish_reason,
            "attempts": attempt,
        }, None


class _ChunkRun:
    """One delivery running one chunk's prompts: pacing, progress, budget."""

    def __init__(self, deps: Deps, job: Job, chunk: Chunk) -> None:
        self.deps = deps
        self.job = job
        self.chunk = chunk
        s = deps.settings
        self.budget = budget_id(job.provider, job.model, s, job.base_url)
        self.worker_id = uuid.uuid4().hex
        self.pacer = Pacer(limits_for(job.provider, job.model, s), s.rate_target)
        self.completed = self.failed = self.tokens_in = self.tokens_out = 0
        self.over_budget = False
        self.stop = asyncio.Event()

    async def run(self) -> _Outcome:
        lines = _lines(self.deps, self.job, self.chunk)
        results: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = [(None, None)] * len(lines)
        sem = asyncio.Semaphore(self.deps.settings.worker_concurrency)
        policy = RetryPolicy()
        provider = open_provider(self.job.provider, self.deps.settings, self.job.base_url)
        await asyncio.to_thread(self._check_in)

        async def one(i: int, line: PromptLine) -> None:
            request = chat_request(self.job, line)
            estimate = estimate_tokens(request.messages, request.params, self.deps.settings.default_max_tokens_estimate)
            async with sem:
                if self.over_budget:
                    results[i] = (None, {"prompt_id": line.prompt_id, "error": "budget_exceeded", "attempts": 0})
                else:
                    results[i] = await call_with_retries(
                        provider, request, line.prompt_id, self.job.max_attempts, policy, self.pacer, estimate
                    )
            row, _ = results[i]
            if row is not None:
                self.completed += 1
                self.tokens_in += row["input_tokens"]
                self.tokens_out += row["output_tokens"]
            else:
                self.failed += 1

        started = time.monotonic()
        reporter = asyncio.create_task(self._report())
        try:
            await asyncio.gather(*(one(i, line) for i, line in enumerate(lines)))
        finally:
            # Let a progress write in flight land before the chunk is recorded done.
            self.stop.set()
            await reporter
            await provider.aclose()
            await asyncio.to_thread(self.deps.store.drop_worker, self.budget, self.worker_id)
        logs.info(
            "chunk ran",
            job_id=self.job.job_id,
            chunk=self.chunk.index,
            prompts=len(lines),
            seconds=round(time.monotonic() - started, 3),
            rate_limited=self.pacer.rate_limited,
        )
        return _Outcome([r for r, _ in results if r is not None], [e for _, e in results if e is not None])

    def _check_in(self) -> None:
        """Heartbeat on the rate budget, take this worker's share, and check the job's token budget."""
        store, now = self.deps.store, self.deps.now()
        store.heartbeat_worker(self.budget, self.worker_id, now + LEASE)
        self.pacer.set_share(store.live_workers(self.budget, now))
        if self.job.budget_tokens is not None and not self.over_budget:
            totals = store.chunk_totals(self.job.job_id)
            if totals.input_tokens + totals.output_tokens >= self.job.budget_tokens:
                self.over_budget = True
                logs.info("token budget reached", job_id=self.job.job_id, chunk=self.chunk.index)

    def _save_progress(self) -> None:
        snapshot = self.chunk.replace(
            completed=self.completed,
            failed=self.failed,
            input_tokens=self.tokens_in,
            output_tokens=self.tokens_out,
            lease_until=self.deps.now() + LEASE,
        )
        self.deps.store.save_chunk_progress(snapshot)
        self._check_in()

    async def _report(self) -> None:
        # Progress for the status endpoint (this worker is the chunk's only writer), the
        # heartbeat that keeps its lease and its share of the rate budget, and the budget.
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), PROGRESS_EVERY_S)
            except TimeoutError:
                await asyncio.to_thread(self._save_progress)


async def _run(deps: Deps, job: Job, chunk: Chunk) -> _Outcome:
    return await _ChunkRun(deps, job, chunk).run()
