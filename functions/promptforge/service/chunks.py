"""Processing one chunk: claim it, run its prompts, write its part, record it done.

A chunk is claimed under a lease, so a second delivery of the same task while the
first runs is turned away (and retried later by Cloud Tasks); a delivery after the
chunk is done changes nothing and calls no model.
"""

from __future__ import annotations

import asyncio
import json
import time
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
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """One prompt to completion: ``(result_row, None)`` or ``(None, error_row)``."""
    attempt = 0
    while True:
        attempt += 1
        try:
            result = await provider.complete(request)
        except ProviderError as exc:
            if not exc.retryable or attempt >= max_attempts:
                return None, {"prompt_id": prompt_id, "error": exc.code, "attempts": attempt, "detail": exc.detail}
            await sleep(policy.delay(attempt, exc.retry_after))
            continue
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


async def _run(deps: Deps, job: Job, chunk: Chunk) -> _Outcome:
    lines = _lines(deps, job, chunk)
    results: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = [(None, None)] * len(lines)
    progress = {"completed": 0, "failed": 0, "in": 0, "out": 0}
    sem = asyncio.Semaphore(deps.settings.worker_concurrency)
    policy = RetryPolicy()
    provider = open_provider(job.provider, deps.settings, job.base_url)

    async def one(i: int, line: PromptLine) -> None:
        async with sem:
            row, err = await call_with_retries(provider, chat_request(job, line), line.prompt_id, job.max_attempts, policy)
        results[i] = (row, err)
        if row is not None:
            progress["completed"] += 1
            progress["in"] += row["input_tokens"]
            progress["out"] += row["output_tokens"]
        else:
            progress["failed"] += 1

    stop = asyncio.Event()

    async def report() -> None:
        # Progress for the status endpoint; this worker is the chunk's only writer.
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), PROGRESS_EVERY_S)
            except TimeoutError:
                snapshot = chunk.replace(
                    completed=progress["completed"],
                    failed=progress["failed"],
                    input_tokens=progress["in"],
                    output_tokens=progress["out"],
                    lease_until=deps.now() + LEASE,
                )
                await asyncio.to_thread(deps.store.save_chunk_progress, snapshot)

    started = time.monotonic()
    reporter = asyncio.create_task(report())
    try:
        await asyncio.gather(*(one(i, line) for i, line in enumerate(lines)))
    finally:
        # Let a progress write in flight land before the chunk is recorded done.
        stop.set()
        await reporter
        await provider.aclose()
    logs.info("chunk ran", job_id=job.job_id, chunk=chunk.index, prompts=len(lines), seconds=round(time.monotonic() - started, 3))
    rows = [r for r, _ in results if r is not None]
    errors = [e for _, e in results if e is not None]
    return _Outcome(rows, errors)
