"""Systematic crash points: run a whole job while the N-th I/O call of one kind fails.

A :class:`Injector` counts every call the service makes to Firestore (a transaction counts
as one call), Cloud Storage and Cloud Tasks, through wrappers around the real adapters
(in memory or on the emulators). At the chosen call it either raises a 503, or the
process "dies" before or just after the call took effect: :class:`Crash` is a
``BaseException``, so no ``except Exception`` in the service code catches it, and once
dead, every further call of that incarnation dies too (no lease is released, nothing is
cleaned up), as with a SIGKILL. The :class:`JobRun` harness then plays Cloud Tasks
(named tasks, retries of a failed delivery), advances a fake clock past leases and runs
the watchdog until the job ends, and reports what a client would see.
"""

from __future__ import annotations

import json
import os
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from google.api_core.exceptions import ServiceUnavailable

from promptforge.adapters.metering import Intercepted
from promptforge.domain import paths
from promptforge.domain.job import Job, JobMode
from promptforge.domain.outcomes import ErrorCode
from promptforge.service import keys, lifecycle, watchdog
from promptforge.service.batch_port import BatchInfo, BatchItem, BatchOutcome
from promptforge.service.chunks import ChunkBusy, process_chunk
from promptforge.service.deps import StaticDeps
from promptforge.service.plan import plan_job
from promptforge.service.ports import BlobStore
from promptforge.service.provider_port import ChatRequest, ChatResult, ProviderError

KINDS = ("firestore", "storage", "tasks")
MODES = ("503", "die", "die-after")


class Crash(BaseException):
    """The worker process died at this point."""


@dataclass(frozen=True)
class Fault:
    kind: str
    n: int  # the n-th call of this kind, counted from 1
    mode: str

    def __str__(self) -> str:
        return f"{self.kind}#{self.n}:{self.mode}"


class Injector:
    def __init__(self, fault: Fault | None) -> None:
        self.fault = fault
        self.counts: Counter[str] = Counter()
        self.fired = False
        self.dead = False
        self._die_after = False

    def before(self, kind: str) -> None:
        if self.dead:
            raise Crash("already dead")
        self.counts[kind] += 1
        f = self.fault
        if f is None or self.fired or f.kind != kind or self.counts[kind] != f.n:
            return
        self.fired = True
        if f.mode == "503":
            raise ServiceUnavailable(f"injected at {f}")
        if f.mode == "die":
            self.dead = True
            raise Crash(str(f))
        self._die_after = True

    def after(self) -> None:
        if self._die_after:
            self._die_after = False
            self.dead = True
            raise Crash(f"{self.fault} (after the call)")

    def call(self, kind: str, fn: Callable[[], Any]) -> Any:
        self.before(kind)
        result = fn()
        self.after()
        return result

    def revive(self) -> None:
        """A new instance starts (the fault, once fired, does not fire again)."""
        self.dead = False


class Faulty(Intercepted):
    """An adapter whose every method call counts as one I/O call of ``kind``."""

    def __init__(self, inner: Any, inj: Injector, kind: str) -> None:
        super().__init__(inner)
        self._inj = inj
        self._kind = kind

    def _around(self, name: str, call: Callable[[], Any], args: tuple[Any, ...]) -> Any:
        return self._inj.call(self._kind, call)


class FaultyBlobs(Faulty):
    """Cloud Storage, whose streams are one call each: a read when it opens, a write
    when it closes."""

    def __init__(self, inner: BlobStore, inj: Injector) -> None:
        super().__init__(inner, inj, "storage")

    @contextmanager
    def open_read(self, bucket: str, name: str, start: int = 0, end: int | None = None) -> Iterator[BinaryIO]:
        self._inj.before("storage")
        with self._inner.open_read(bucket, name, start, end) as f:
            self._inj.after()
            yield f

    @contextmanager
    def open_write(self, bucket: str, name: str) -> Iterator[BinaryIO]:
        import io

        buf = io.BytesIO()
        yield buf
        # The object is uploaded when the stream closes: that is the call.
        self._inj.call("storage", lambda: self._inner.write(bucket, name, buf.getvalue()))


class QueueTasks:
    """Cloud Tasks as the harness plays it: named tasks, each name created once."""

    def __init__(self) -> None:
        self.queue: deque[tuple[str, tuple[Any, ...]]] = deque()
        self.names: set[str] = set()

    def _add(self, name: str, task: tuple[str, tuple[Any, ...]]) -> None:
        if name not in self.names:
            self.names.add(name)
            self.queue.append(task)

    def enqueue_plan(self, job_id: str, tag: str = "") -> None:
        self._add(f"plan-{job_id}{tag}", ("plan", (job_id,)))

    def enqueue_notify(self, job_id: str) -> None:
        self._add(f"notify-{job_id}", ("notify", (job_id,)))

    def enqueue_chunk(self, job_id: str, index: int, tag: str = "", delay_s: float = 0.0, poll: int | None = None) -> None:
        # A delay is played as no delay: the harness delivers tasks in order, and an
        # economy poll that comes early only finds the provider's batch still running.
        self._add(f"chunk-{job_id}-{index}{tag}", ("chunk", (job_id, index, poll)))


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def scripted_prompt_id(request: ChatRequest) -> str:
    """The prompt_id a scripted request is for (the prompts are ``answer <prompt_id>``)."""
    return str(request.messages[-1]["content"]).split()[-1]


def scripted_answer(prompt_id: str) -> ChatResult | ProviderError:
    """The script: prompts whose id ends in 7 are refused for good, the others answered."""
    if prompt_id.endswith("7"):
        return ProviderError(ErrorCode.INVALID_REQUEST, "refused by the scripted provider", retryable=False)
    return ChatResult(text=f"answer to {prompt_id}", model="scripted", input_tokens=3, output_tokens=5)


class ScriptedProvider:
    """Answers at once; prompts whose id ends in 7 are refused for good. Every call is
    checked against what is already checkpointed."""

    def __init__(self, checkpointed: Callable[[], set[str]]) -> None:
        self.calls: Counter[str] = Counter()
        self.after_checkpoint: list[str] = []
        self._checkpointed = checkpointed

    async def complete(self, request: ChatRequest) -> ChatResult:
        prompt_id = scripted_prompt_id(request)
        self.calls[prompt_id] += 1
        if prompt_id in self._checkpointed():
            self.after_checkpoint.append(prompt_id)
        answer = scripted_answer(prompt_id)
        if isinstance(answer, ProviderError):
            raise answer
        return answer

    async def aclose(self) -> None:
        return None


class ScriptedBatches:
    """The batch API of the same script, for economy jobs: a batch ends the second time
    its status is read, having run every request. Counts the creates under each key and
    the requests sent for each prompt, checked against what is already checkpointed."""

    def __init__(self, checkpointed: Callable[[], set[str]]) -> None:
        self.sent: Counter[str] = Counter()
        self.creates: Counter[str] = Counter()
        self.after_checkpoint: list[str] = []
        self._checkpointed = checkpointed
        self._batches: dict[str, tuple[str, list[BatchItem]]] = {}
        self._looked: Counter[str] = Counter()

    def refusal(self, item: BatchItem) -> ProviderError | None:
        return None

    async def submit(self, key: str, model: str, items: Sequence[BatchItem]) -> str:
        done = self._checkpointed()
        for item in items:
            prompt_id = scripted_prompt_id(item.request)
            self.sent[prompt_id] += 1
            if prompt_id in done:
                self.after_checkpoint.append(prompt_id)
        self.creates[key] += 1
        batch_id = f"b{len(self._batches)}"
        self._batches[batch_id] = (key, list(items))
        return batch_id

    async def find(self, key: str, since: datetime, count: int) -> list[str]:
        return [b for b, (k, _) in self._batches.items() if k == key]

    async def status(self, batch_id: str) -> BatchInfo:
        self._looked[batch_id] += 1
        n = len(self._batches[batch_id][1])
        ended = self._looked[batch_id] > 1
        return BatchInfo(batch_id, n, n if ended else 0, 0, ended)

    async def outcomes(self, batch_id: str) -> list[BatchOutcome]:
        out = []
        for item in self._batches[batch_id][1]:
            answer = scripted_answer(scripted_prompt_id(item.request))
            if isinstance(answer, ProviderError):
                out.append(BatchOutcome(item.custom_id, error=answer))
            else:
                out.append(BatchOutcome(item.custom_id, result=answer))
        return out

    async def cancel(self, batch_id: str) -> None:
        raise AssertionError("nothing cancels a batch in a job that completes")

    async def aclose(self) -> None:
        return None


@dataclass
class Outcome:
    job: Job
    results: list[dict[str, Any]]
    errors: list[dict[str, Any]]
    calls: Counter[str]
    after_checkpoint: list[str]
    counts: Counter[str]
    live_completed: list[int] = field(default_factory=list)
    repairs: int = 0
    deliveries: int = 0
    creates: Counter[str] = field(default_factory=Counter)  # economy: provider batches created under each key


def prompts(n: int) -> tuple[bytes, list[str]]:
    ids = [f"q{i:04d}" for i in range(n)]
    data = b"".join(json.dumps({"prompt_id": i, "prompt": f"answer {i}"}).encode() + b"\n" for i in ids)
    # Two lines planning reports, so errors.jsonl has rows from planning and from workers.
    return data + b"not json\n" + json.dumps({"prompt_id": "q0000", "prompt": "again"}).encode() + b"\n", ids


class JobRun:
    """One job from its upload event to a terminal state, under at most one fault."""

    MAX_STEPS = 2_000

    def __init__(self, base: StaticDeps, fault: Fault | None, monkeypatch: Any, economy: bool = False) -> None:
        self.inner = base
        self.economy = economy
        self.clock = Clock()
        self.inj = Injector(fault)
        self.tasks = QueueTasks()
        self._segments: dict[str, set[str]] = {}
        self.provider: ScriptedProvider = ScriptedProvider(self._checkpointed)
        self.batches = ScriptedBatches(self._checkpointed)
        self.deps = StaticDeps(
            base.settings,
            Faulty(base.store, self.inj, "firestore"),
            FaultyBlobs(base.blobs, self.inj),
            Faulty(self.tasks, self.inj, "tasks"),
            self.clock,
            providers=lambda *a, **k: self.provider,
            batch_providers=lambda *a, **k: self.batches,
        )
        self.job_id = ""
        self.client_id = ""

    def _checkpointed(self) -> set[str]:
        """prompt_ids in segments listed on the job's chunk records (read past the faults)."""
        done: set[str] = set()
        bucket = self.inner.settings.results_bucket
        for chunk in self.inner.store.list_chunks(self.job_id):
            for name in chunk.segments:
                if name not in self._segments:
                    with self.inner.blobs.open_read(bucket, name) as f:
                        self._segments[name] = {json.loads(line)["prompt_id"] for line in f.read().splitlines()}
                done |= self._segments[name]
        return done

    def submit(self, data: bytes) -> None:
        """The client's part, without faults: a key, init, the upload; then the event."""
        base = StaticDeps(self.inner.settings, self.inner.store, self.inner.blobs, self.tasks, self.clock)
        _, key = keys.create_key(base)
        new = lifecycle.create_job(base, key.client_id, {"provider": "fake", "model": "scripted", "max_attempts": 2})
        self.client_id, self.job_id = key.client_id, new.job.job_id
        if self.economy:

            def to_economy(tx: Any) -> None:
                tx.put_job(tx.get_job(self.job_id).replace(mode=JobMode.ECONOMY))

            base.store.run_transaction(to_economy)
        name = paths.upload_object(self.client_id, self.job_id)
        self.inner.blobs.write(self.inner.settings.upload_bucket, name, data)
        self.tasks.queue.append(("upload", (self.inner.settings.upload_bucket, name, len(data), self.clock())))

    def _deliver(self, kind: str, args: tuple[Any, ...]) -> None:
        if kind == "upload":
            lifecycle.accept_upload(self.deps, *args)
        elif kind == "plan":
            plan_job(self.deps, *args)
        elif kind == "chunk":
            process_chunk(self.deps, *args)
        # callbacks ("notify") have no receiver here

    def run(self) -> Outcome:
        s = self.inner.settings
        live: list[int] = []
        deliveries = 0
        for _ in range(self.MAX_STEPS):
            job = self.inner.store.get_job(self.job_id)
            assert job is not None
            if job.status.terminal and not self.tasks.queue:
                break
            if self.tasks.queue:
                task = self.tasks.queue.popleft()
                deliveries += 1
                try:
                    self._deliver(*task)
                except Crash:
                    self.inj.revive()
                    self.tasks.queue.append(task)  # no answer: Cloud Tasks delivers it again
                except ChunkBusy as busy:
                    self.clock.advance(busy.retry_after)
                    self.tasks.queue.append(task)
                except ServiceUnavailable:
                    self.tasks.queue.append(task)
            else:
                # Nothing queued and not ended: time passes and the watchdog looks.
                self.clock.advance(s.watchdog_grace_seconds + s.chunk_lease_seconds + 1)
                try:
                    watchdog.sweep(self.deps)
                except Crash:
                    self.inj.revive()
                except ServiceUnavailable:
                    pass
            live.append(self.inner.store.chunk_totals(self.job_id).completed)
        else:
            raise AssertionError(f"job did not end in {self.MAX_STEPS} steps")
        job = self.inner.store.get_job(self.job_id)
        assert job is not None
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for filename in job.result_files:
            with self.inner.blobs.open_read(s.results_bucket, paths.result_object(self.client_id, self.job_id, filename)) as f:
                rows = [json.loads(line) for line in f.read().splitlines()]
            (errors if filename == paths.ERRORS_FILENAME else results).extend(rows)
        return Outcome(
            job=job,
            results=results,
            errors=errors,
            calls=self.batches.sent if self.economy else self.provider.calls,
            after_checkpoint=self.batches.after_checkpoint if self.economy else self.provider.after_checkpoint,
            creates=self.batches.creates,
            counts=Counter(self.inj.counts),
            live_completed=live,
            repairs=sum(c.repairs for c in self.inner.store.list_chunks(self.job_id)),
            deliveries=deliveries,
        )


def run_job(
    deps: StaticDeps, fault: Fault | None, monkeypatch: Any, n_prompts: int, economy: bool = False
) -> tuple[Outcome, list[str]]:
    """The job of ``prompts(n_prompts)`` from its upload to its end, under ``fault``,
    which must fire; an economy job's chunks go through the scripted batch API."""
    data, ids = prompts(n_prompts)
    job = JobRun(deps, fault, monkeypatch, economy)
    job.submit(data)
    outcome = job.run()
    if fault is not None:
        assert job.inj.fired, f"{fault}: the fault never fired"
    return outcome, ids


def each_fault(kind: str, mode: str, total: int, run: Callable[[Fault], tuple[Outcome, list[str]]]) -> None:
    """Run the job once for each of the ``total`` calls of ``kind``, that call failing in
    ``mode``, and check every outcome."""
    assert total > 0
    for n in range(1, total + 1):
        fault = Fault(kind, n, mode)
        outcome, ids = run(fault)
        check(outcome, ids, str(fault))


def sampled_faults(total: Counter[str], run: Callable[[Fault], tuple[Outcome, list[str]]]) -> None:
    """About PROMPTFORGE_CRASH_SAMPLE (3) faults of each kind spread over its calls, the
    modes taken in turn, for the slower runs on the emulators; every outcome checked."""
    per_kind = int(os.environ.get("PROMPTFORGE_CRASH_SAMPLE", "3"))
    for k, kind in enumerate(KINDS):
        step = max(1, total[kind] // per_kind)
        for i, n in enumerate(range(1 + k, total[kind] + 1, step)):
            fault = Fault(kind, n, MODES[(i + k) % len(MODES)])
            outcome, ids = run(fault)
            check(outcome, ids, f"emulators {fault}")


def check(outcome: Outcome, ids: list[str], where: str) -> None:
    """What every crash point must leave: a completed job, each prompt once, counts that
    match the files, no checkpointed prompt called again, progress that never went back."""
    job = outcome.job
    assert job.status.value == "COMPLETED", f"{where}: ended {job.status.value} {job.error}"
    seen = Counter(r["prompt_id"] for r in outcome.results + outcome.errors if r.get("prompt_id"))
    expected = Counter(ids)
    expected["q0000"] += 1  # the duplicate line's error row names its prompt_id too
    assert seen == expected, f"{where}: rows differ: {seen - expected} extra, {expected - seen} missing"
    assert len(outcome.errors) == job.failed_count and len(outcome.results) == job.completed_count, where
    assert job.completed_count + job.failed_count == job.prompt_count, where
    assert outcome.after_checkpoint == [], f"{where}: called again after checkpoint: {outcome.after_checkpoint}"
    live = outcome.live_completed
    assert all(a <= b for a, b in zip(live, live[1:], strict=False)), f"{where}: completed count went back: {live}"
    assert outcome.repairs == 0, f"{where}: finalization had to repair {outcome.repairs} chunk(s)"
    assert all(n == 1 for n in outcome.creates.values()), f"{where}: a chunk's batch was created twice: {outcome.creates}"
