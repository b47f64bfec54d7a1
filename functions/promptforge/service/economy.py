"""Economy jobs: each chunk runs as one of the provider's own batches, at its batch price.

A chunk of an economy job is planned, claimed, checkpointed, published and recorded done
exactly like a fast one (:mod:`.chunks`); only the middle differs. Instead of a request
per prompt, one delivery submits the chunk's prompts as a provider batch and hands the
chunk back; poll deliveries (chunk tasks scheduled with a growing delay, never a
function waiting) read the batch's progress; the delivery that finds it ended maps its
outcomes to the same result and error rows a fast chunk writes, through the same
checkpoints, and finishes the chunk.

Exactly once:

* **A batch is created at most once per chunk.** The chunk's batch key is stored (with
  the time) before the provider is asked to create the batch, its id after. A delivery
  that finds a key without an id does not know whether the create went through, so it
  asks the provider for batches bearing the key (:meth:`BatchProvider.find`) and adopts
  them; only when there are none does it create one, under the same key.
* **Results are mapped once.** Every request's ``custom_id`` is the key and the line
  number; the mapping writes rows through the chunk's checkpoints, so a delivery that
  dies mid-way leaves a next one only the rows not yet checkpointed; outcomes of another
  chunk's batch (a provider that cannot filter by key may return one) or a second copy
  of a request are dropped.
* **One chain of polls.** Each poll task carries its number; the chunk stores the number
  of the next one. A poll older than that (a duplicate delivery, a retry of a poll that
  already ran) changes nothing and schedules nothing. A delivery that carries no number
  (the first, or the watchdog's re-drive of a chunk whose poll was lost) polls and
  becomes the head of the chain. Between polls the chunk's ``lease_until`` is the next
  poll's time (plus a lease), so the watchdog sees a waiting chunk as alive and re-drives
  it only when its poll is overdue by the grace period.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from .. import logs
from ..domain.chunk_outcomes import ChunkOutcome
from ..domain.job import Job
from ..domain.jsonl import PromptLine
from ..domain.outcomes import ErrorCode, ErrorRow, ResultRow
from ..domain.records import Chunk, ChunkStatus
from . import runtime
from .batch_port import BatchItem, BatchOutcome, BatchProvider
from .calls import chat_request
from .chunks import LeaseLost, _ChunkRun, _lines
from .deps import Deps
from .provider_port import ProviderError

# How many of a cancelled job's chunks the cancel wakes at once to cancel their
# provider batches; the others are cancelled at their next poll.
CANCEL_FANOUT = 100


def batch_key(job_id: str, index: int) -> str:
    """The chunk's batch key: the same for every delivery of the chunk, and short and
    plain enough for every provider's id rules (Anthropic: ``[a-zA-Z0-9_-]{1,64}``)."""
    return "pf" + hashlib.sha256(f"{job_id}/{index}".encode()).hexdigest()[:24]


def custom_id(key: str, line: int) -> str:
    return f"{key}-{line}"


class EconomyRun(_ChunkRun):
    """One delivery of an economy job's chunk (the lease held): submit, poll or map."""

    def __init__(self, deps: Deps, job: Job, chunk: Chunk, poll: int | None) -> None:
        super().__init__(deps, job, chunk)
        self.poll = poll

    def execute(self) -> ChunkOutcome:
        chunk = self.chunk
        if self.poll is not None and self.poll < chunk.batch_polls:
            self._wait(chunk.batch_polls, schedule=False)
            return ChunkOutcome.STALE_POLL
        if chunk.adds_up():
            # Every row is checkpointed already (a delivery died before DONE, or finalization
            # re-drove the chunk to publish it again): no need to ask the provider, whose
            # results may be gone by now.
            return self._done()
        provider = self.deps.batch_providers(self.job.provider, self.s, self.job.endpoint)
        try:
            if not chunk.batch_ids:
                return self._submit(provider, look=True)
            try:
                return self._poll(provider)
            except ProviderError as exc:
                if exc.retryable:
                    raise  # the poll task's retry asks again
                # The provider will not tell us about the batch at all (a revoked key, a
                # batch it no longer knows): every prompt gets that as its error row, as
                # a fast call would, after asking it to stop the batch.
                self._cancel_quietly(provider)
                todo, late = self._todo()
                self._rows(todo, {}, self.chunk.batch_key or "", refused=exc)
                self.checkpoints.pending.errors.extend(late)
                return self._done()
        finally:
            runtime.run(provider.aclose())

    def _cancel_quietly(self, provider: BatchProvider) -> None:
        for batch_id in self.chunk.batch_ids:
            try:
                runtime.run(provider.cancel(batch_id))
            except ProviderError as exc:
                logs.warning("could not cancel a provider batch", job_id=self.job.job_id, chunk=self.chunk.index, code=exc.code)

    # --- submit -----------------------------------------------------------------------

    def _todo(self) -> tuple[list[PromptLine], list[dict[str, Any]]]:
        """The chunk's lines with no checkpointed row, and late invalid-line rows."""
        done_ids, done_lines = self.checkpoints.load()
        lines, late_errors = _lines(self.deps, self.job, self.chunk)
        todo = [line for line in lines if line.prompt_id not in done_ids]
        return todo, [e for e in late_errors if e["line"] not in done_lines]

    def _submit(self, provider: BatchProvider, look: bool) -> ChunkOutcome:
        todo, late = self._todo()
        if not todo:
            # Every prompt already has its row (a mapping delivery died before DONE).
            self.checkpoints.pending.errors.extend(late)
            return self._done()
        key = self.chunk.batch_key or batch_key(self.job.job_id, self.chunk.index)
        ids: list[str] = []
        if look and self.chunk.batch_key is not None and self.chunk.batch_since is not None:
            # A create may have gone through before the delivery that asked for it died.
            ids = runtime.run(provider.find(key, self.chunk.batch_since - timedelta(minutes=5), len(todo)))
        found = bool(ids)
        if not ids:
            accepted: list[tuple[PromptLine, BatchItem]] = []
            refused: dict[str, BatchOutcome] = {}
            for line in todo:
                item = BatchItem(custom_id(key, line.line), chat_request(self.job, line))
                refusal = provider.refusal(item)
                if refusal is None:
                    accepted.append((line, item))
                else:
                    refused[item.custom_id] = BatchOutcome(item.custom_id, error=refusal)
            if refused:
                # Their rows now, before the batch: a later delivery finds them checkpointed.
                self._rows([line for line in todo if custom_id(key, line.line) in refused], refused, key)
                self._flush()
            todo = [line for line, _ in accepted]
            items = [item for _, item in accepted]
            if not items:
                self.checkpoints.pending.errors.extend(late)
                return self._done()
            self._store(batch_key=key, batch_since=self.deps.now())
            try:
                ids = [runtime.run(provider.submit(key, self.job.model, items))]
            except ProviderError as exc:
                if exc.retryable:
                    raise  # the task's retry finds the key and asks the provider first
                # The provider refused the batch itself (too large, a bad model): every
                # prompt in it gets the refusal as its error row, as a fast call would.
                self._rows(todo, {}, key, refused=exc)
                self.checkpoints.pending.errors.extend(late)
                return self._done()
        self._store(batch_ids=tuple(ids), batch_total=len(todo), batch_found=found)
        logs.info("economy batch submitted", job_id=self.job.job_id, chunk=self.chunk.index, batches=len(ids), prompts=len(todo))
        self._wait(self.chunk.batch_polls, schedule=True)
        return ChunkOutcome.BATCH_SUBMITTED

    # --- poll -------------------------------------------------------------------------

    def _poll(self, provider: BatchProvider) -> ChunkOutcome:
        infos = [runtime.run(provider.status(batch_id)) for batch_id in self.chunk.batch_ids]
        ended = all(info.ended for info in infos)
        self._store(
            batch_total=sum(i.total for i in infos),
            batch_done=sum(i.done for i in infos),
            batch_failed=sum(i.failed for i in infos),
            batch_ended=ended,
        )
        if not ended:
            self._wait(self.chunk.batch_polls + 1, schedule=True)
            return ChunkOutcome.BATCH_RUNNING
        return self._map(provider)

    def _wait(self, poll: int, schedule: bool) -> None:
        """Hand the chunk back until poll ``poll``: schedule it (before storing its number,
        so a crash between the two leaves a poll that is still current), then release
        the lease, keeping the poll's time as the chunk's sign of life."""
        s = self.s
        lease = timedelta(seconds=s.chunk_lease_seconds)
        if not schedule:  # a stale poll: the chain's own schedule stands
            wake = self.chunk.batch_next_poll
            self._store(status=ChunkStatus.PENDING, lease_until=wake + lease if wake else None)
            return
        delay = min(s.economy_poll_max_seconds, s.economy_poll_first_seconds * 2 ** min(poll, 20))
        due = self.deps.now() + timedelta(seconds=delay)
        self.deps.tasks.enqueue_chunk(self.job.job_id, self.chunk.index, f"p{poll}", delay_s=delay, poll=poll)
        self._store(status=ChunkStatus.PENDING, batch_polls=poll, batch_next_poll=due, lease_until=due + lease)

    # --- map --------------------------------------------------------------------------

    def _map(self, provider: BatchProvider) -> ChunkOutcome:
        todo, late = self._todo()
        key = self.chunk.batch_key or ""
        found: dict[str, BatchOutcome] = {}
        for batch_id in self.chunk.batch_ids:
            for outcome in runtime.run(provider.outcomes(batch_id)):
                if not outcome.custom_id.startswith(key + "-"):
                    continue  # another chunk's batch, adopted by a provider that cannot filter
                kept = found.get(outcome.custom_id)
                if kept is None or (kept.result is None and outcome.result is not None):
                    found[outcome.custom_id] = outcome  # one row a request; an answer over an error
        if self.chunk.batch_found and todo and not any(custom_id(key, line.line) in found for line in todo):
            # None of the chunk's requests is in the batches it adopted after a crash:
            # they were another chunk's, and this chunk's own create never happened.
            logs.warning("economy batch not found under its key; submitting it", job_id=self.job.job_id, chunk=self.chunk.index)
            self._store(batch_ids=(), batch_found=False, batch_ended=False, batch_done=0, batch_failed=0)
            return self._submit(provider, look=False)
        self._rows(todo, found, key)
        self.checkpoints.pending.errors.extend(late)
        return self._done()

    def _rows(
        self, todo: Sequence[PromptLine], found: dict[str, BatchOutcome], key: str, refused: ProviderError | None = None
    ) -> None:
        """Each line's row from its outcome in ``found`` (by its custom id under ``key``;
        none: the batch ended without running it), or ``refused`` for every line;
        checkpointed a batch of rows at a time."""
        cp = self.checkpoints
        for line in todo:
            outcome = found.get(custom_id(key, line.line))
            if outcome is not None and outcome.result is not None:
                r = outcome.result
                row = ResultRow(line.prompt_id, r.text, r.model, r.input_tokens, r.output_tokens, r.finish_reason, 1)
                cp.pending.results.append(row.to_json())
            else:
                error = refused or (outcome.error if outcome is not None else None)
                code = error.code if error is not None else ErrorCode.PROVIDER_EXPIRED
                detail = error.detail if error is not None else "the provider's batch ended without running this request"
                cp.pending.errors.append(ErrorRow(line.prompt_id, code, attempts=1, detail=detail).to_json())
            if cp.full:
                cp.write(cp.take())

    def _flush(self) -> None:
        if self.checkpoints.pending:
            self.checkpoints.write(self.checkpoints.take())

    def _done(self) -> ChunkOutcome:
        self._flush()
        self._finish()
        return ChunkOutcome.DONE

    def _store(self, **changes: Any) -> None:
        """Record batch fields on the chunk, only while this delivery holds it."""
        mine = self.chunk

        def save(current: Chunk | None) -> Chunk:
            if current is None or current.deliveries != mine.deliveries or current.status is not ChunkStatus.RUNNING:
                raise LeaseLost()
            return current.replace(**changes)

        stored = self.deps.store.update_chunk(mine.job_id, mine.index, save)
        if stored is None:
            raise LeaseLost()
        self.checkpoints.chunk = stored


def stop_batches(deps: Deps, job: Job, index: int) -> bool:
    """Cancel the provider batches of a chunk of an economy job that ended early (failed
    or cancelled); True when there was one to cancel. Its finished requests are not
    mapped: the job's counts and files are those of the moment it ended."""
    chunk = deps.store.get_chunk(job.job_id, index)
    if chunk is None or not chunk.batch_ids or chunk.batch_ended:
        return False
    provider = deps.batch_providers(job.provider, deps.settings, job.endpoint)
    try:
        for batch_id in chunk.batch_ids:
            runtime.run(provider.cancel(batch_id))
    finally:
        runtime.run(provider.aclose())

    def ended(current: Chunk | None) -> Chunk | None:
        return current.replace(batch_ended=True, lease_until=None) if current is not None else None

    deps.store.update_chunk(job.job_id, index, ended)
    logs.info("economy batches cancelled", job_id=job.job_id, chunk=index, batches=len(chunk.batch_ids))
    return True


def wake_to_stop(deps: Deps, job: Job) -> None:
    """At the cancel of an economy job: wake its chunks now (not at their next poll) so
    their provider batches are cancelled."""
    for index in range(min(job.chunk_count or 0, CANCEL_FANOUT)):
        deps.tasks.enqueue_chunk(job.job_id, index, "stop")
