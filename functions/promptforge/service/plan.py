"""Planning: read the uploaded file, report bad lines and repeated prompt_ids, cut chunks,
start workers; in steps of bounded work and memory, whatever the size of the file.

The steps, each recorded in the job's :class:`PlanState` before the next starts:

- SCAN, one per slice of the file (at most ``plan_slice_bytes``, ``plan_slice_records``
  records or ``plan_slice_chunks`` chunks, ending where a chunk closes): parses every line
  and writes the slice's bad-line rows, its chunk cuts and its prompt_id records, grouped
  into buckets (domain/dedupe.py).
- DEDUPE, one per run of buckets holding at most ``plan_dedupe_records`` records: reads
  those buckets of every slice and writes the duplicates it finds (line, first line).
- MERGE, one per slice: its error rows in line order (bad lines and duplicates; the
  duplicates' prompt_ids are read again from the file) and its chunk documents, each
  skipping the lines planning reported.
- START: publishes the planning errors object and moves the job to PROCESSING with the
  same counts one pass over the file gives.
- ENQUEUE, one per slice: the tasks of its chunks; then the working objects go.

A step's objects carry its step number and a nonce, and the state names the objects of
the delivery whose commit moved it on: a step repeated after a crash, or run twice at
once, writes objects nobody reads, and its commit (conditioned on the step number)
changes nothing. An invocation runs steps until ``plan_invocation_seconds`` passed or it
scanned a slice's worth of bytes, then enqueues a planning task named after the next
step. A step started by more than ``plan_max_attempts`` deliveries fails the job
(``planning_failed``), so a file that cannot be planned ends instead of being retried
forever.
"""

from __future__ import annotations

import heapq
import json
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Generator, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import timedelta
from typing import BinaryIO

from .. import logs
from ..domain import paths
from ..domain.chunking import ChunkCutter, ChunkSpec
from ..domain.dedupe import (
    BUCKETS,
    HEADER,
    Duplicate,
    SliceIds,
    bucket_span,
    find_duplicates,
    pack_pairs,
    pairs_header_size,
    pairs_span,
    read_header,
    read_pairs_header,
    split_buckets,
    unpack_pairs,
)
from ..domain.job import Job, JobError, JobStatus
from ..domain.jsonl import LineError, PromptLine, RawLine, dump_line, iter_raw_lines, parse_line
from ..domain.outcomes import ErrorCode
from ..domain.plan_state import PlanPhase, PlanSlice, PlanState
from ..domain.records import Chunk
from .assemble import publish
from .deps import Deps
from .lifecycle import fail_job
from .ports import Tx

# Error rows of a slice are spooled to a local file past this size.
_SPOOL_BYTES = 4 * 1024 * 1024
# Bytes between duplicate lines are read and dropped this much at a time.
_SKIP_BLOCK = 1024 * 1024
# Rows planning writes are JSON dumps, far below this; a longer one is corrupt.
_MAX_ROW_BYTES = 1024 * 1024


MAX_SLICES = 1500


class PlanningBroken(Exception):
    """Planning's own objects do not add up; the step fails and is retried (and the job
    fails once it has been tried too often)."""


@dataclass(frozen=True)
class _Next:
    state: PlanState  # what the step produced, to commit
    read: int = 0  # bytes of the upload it read


def plan_job(deps: Deps, job_id: str) -> str:
    """Run the job's next planning steps. Safe to run again, or at once, for the same job."""
    s = deps.settings
    deadline = time.monotonic() + s.plan_invocation_seconds
    claimed = _claim(deps, job_id)
    if isinstance(claimed, str):
        return claimed
    job, state = claimed
    if state.attempts > s.plan_max_attempts:
        message = f"planning stopped at step {state.step} ({state.phase.value.lower()}) after {s.plan_max_attempts} attempts"
        if fail_job(deps, job_id, JobError(ErrorCode.PLANNING_FAILED, message)):
            logs.error("planning failed", job_id=job_id, step=state.step, phase=state.phase.value)
        return "failed: planning"
    read = 0
    delivery = uuid.uuid4().hex
    while True:
        result = _run_step(deps, job, state)
        if isinstance(result, str):
            return result
        read += result.read
        after = result.state
        go_on = after.phase is not PlanPhase.DONE and time.monotonic() < deadline and read < s.plan_slice_bytes
        committed = _commit(deps, state, after, go_on, delivery)
        if committed is None:
            return "ignored: another delivery took the step"
        job, state = committed
        if state.phase is PlanPhase.DONE:
            return "planned"
        if job.status not in (JobStatus.QUEUED, JobStatus.PROCESSING):
            return f"ignored: job is {job.status.value}"
        if not go_on:
            deps.tasks.enqueue_plan(job_id, f"p{state.step}")
            return f"continues at step {state.step}"


def _run_step(deps: Deps, job: Job, state: PlanState) -> _Next | str:
    # Called by name, not through a table: the IAM test follows these calls to the
    # buckets and queues each function needs.
    if state.phase is PlanPhase.SCAN:
        return _scan(deps, job, state)
    if state.phase is PlanPhase.DEDUPE:
        return _dedupe(deps, job, state)
    if state.phase is PlanPhase.MERGE:
        return _merge(deps, job, state)
    if state.phase is PlanPhase.START:
        return _start(deps, job, state)
    if state.phase is PlanPhase.ENQUEUE:
        return _enqueue(deps, job, state)
    return "ignored: job is planned"


def new_salt() -> str:
    """The key of a job's id digests: unknown to the client, so it cannot pick ids that
    crowd one bucket (and one dedupe step)."""
    return secrets.token_hex(16)


def _claim(deps: Deps, job_id: str) -> tuple[Job, PlanState] | str:
    """Count this delivery as an attempt at the current step (creating the state for a
    job that starts planning); a string says why there is nothing to do."""
    expire_at = deps.now() + timedelta(days=deps.settings.results_retention_days)

    def claim(tx: Tx) -> tuple[Job, PlanState] | str:
        job = tx.get_job(job_id)
        if job is None:
            return "ignored: unknown job"
        state = tx.get_plan(job_id)
        if job.status is JobStatus.QUEUED:
            if state is None:
                state = PlanState(job_id, new_salt(), expire_at)
        elif job.status is JobStatus.PROCESSING:
            if state is None or state.phase is PlanPhase.DONE:
                return "ignored: job is planned"
        else:
            return f"ignored: job is {job.status.value}"
        state = state.replace(attempts=state.attempts + 1, expire_at=expire_at)
        tx.put_plan(state)
        return job, state

    return deps.store.run_transaction(claim)


def _commit(deps: Deps, before: PlanState, after: PlanState, claim_next: bool, delivery: str) -> tuple[Job, PlanState] | None:
    """Store ``after`` as the next step's state if the state is still at ``before``'s
    step; the START step also moves the job to PROCESSING, in the same transaction.
    ``claim_next`` counts this delivery as the next step's first attempt. None when
    another delivery moved the state on."""
    job_id = before.job_id
    now = deps.now()
    expire_at = now + timedelta(days=deps.settings.results_retention_days)
    stored_state = after.replace(
        step=before.step + 1, attempts=1 if claim_next else 0, expire_at=expire_at, committed_by=delivery
    )

    def commit(tx: Tx) -> tuple[Job, PlanState] | None:
        job = tx.get_job(job_id)
        current = tx.get_plan(job_id)
        if job is None or current is None or current.step != before.step:
            return None
        if before.phase is PlanPhase.START:
            if job.status is not JobStatus.QUEUED:
                return job, current  # cancelled or failed meanwhile: nothing to start
            job = job.replace(
                prompt_count=after.records,
                invalid_count=after.invalid,
                invalid_bytes=after.invalid_bytes,
                chunk_count=after.next_chunk,
            ).transition(JobStatus.PROCESSING, now)
            tx.put_job(job)
        tx.put_plan(stored_state)
        return job, stored_state

    committed = deps.store.run_transaction(commit)
    if committed is None:
        # A commit retried after an unknown outcome finds the state moved on, maybe by
        # itself: the delivery that wrote the stored state is named in it.
        stored = deps.store.get_plan(job_id)
        job = deps.store.get_job(job_id)
        if stored is None or job is None or stored.step != before.step + 1 or stored.committed_by != delivery:
            return None
        committed = job, stored
    if before.phase is PlanPhase.START and committed[0].status is JobStatus.PROCESSING:
        logs.info("job planned", job_id=job_id, prompts=after.records, invalid=after.invalid, chunks=after.next_chunk)
    return committed


def _tag(state: PlanState) -> str:
    """Names this delivery's objects of the current step."""
    return f"{state.step:05d}-{uuid.uuid4().hex[:8]}"


def _object(job: Job, tag: str, kind: str) -> str:
    return paths.plan_object(job.client_id, job.job_id, f"{tag}.{kind}")


# SCAN


def _scan(deps: Deps, job: Job, st: PlanState) -> _Next | str:
    s = deps.settings
    if len(st.slices) >= MAX_SLICES:
        # The state lists every slice: past this many it nears Firestore's 1 MiB document.
        # The defaults cut the largest file allowed into about 200.
        message = f"the file needs more than {MAX_SLICES} planning slices; raise PROMPTFORGE_PLAN_SLICE_*"
        fail_job(deps, job.job_id, JobError(ErrorCode.PLANNING_FAILED, message))
        return "failed: too many slices"
    tag = _tag(st)
    cutter = ChunkCutter(s.chunk_max_lines, s.chunk_max_bytes, st.next_chunk)
    ids = SliceIds(bytes.fromhex(st.salt))
    specs: list[ChunkSpec] = []
    records, json_objects = st.records, st.json_objects
    taken = bad = bad_bytes = 0
    end, next_line = st.offset, st.next_line
    at_end = True
    upload = paths.upload_object(job.client_id, job.job_id)
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as errors:
        with deps.blobs.open_read(s.upload_bucket, upload, st.offset) as src:
            for raw in iter_raw_lines(src, s.max_line_bytes, st.offset, st.next_line):
                end, next_line = raw.end, raw.number + 1
                parsed = parse_line(raw, s.max_line_bytes)
                if parsed is None:
                    spec = cutter.add(raw.number, raw.start, raw.end, record=False, skip=False)
                else:
                    records += 1
                    taken += 1
                    if records > s.max_prompts_per_job:
                        fail_job(
                            deps,
                            job.job_id,
                            JobError(ErrorCode.TOO_MANY_PROMPTS, f"the file has more than {s.max_prompts_per_job} prompts"),
                        )
                        return "failed: too many prompts"
                    # Every line that names a prompt_id claims it, valid or not (the
                    # dedupe steps decide which lines repeat an id).
                    if parsed.prompt_id is not None:
                        ids.add(parsed.prompt_id, raw.number, raw.start, raw.end, isinstance(parsed, PromptLine))
                    if isinstance(parsed, LineError):
                        row = dump_line(parsed.to_row())
                        bad += 1
                        bad_bytes += len(row)
                        errors.write(row)
                    if isinstance(parsed, PromptLine) or parsed.json_object:
                        json_objects += 1
                    spec = cutter.add(raw.number, raw.start, raw.end, record=True, skip=isinstance(parsed, LineError))
                if spec is not None:
                    specs.append(spec)
                    full = end - st.offset >= s.plan_slice_bytes or taken >= s.plan_slice_records
                    if full or len(specs) >= s.plan_slice_chunks:
                        at_end = False
                        break
        if at_end:
            last = cutter.finish()
            if last is not None:
                specs.append(last)
        if bad:
            errors.seek(0)
            with deps.blobs.open_write(s.results_bucket, _object(job, tag, "errors")) as out:
                shutil.copyfileobj(errors, out)
    if len(ids):
        deps.blobs.write(s.results_bucket, _object(job, tag, "ids"), ids.take_bytes(), "application/octet-stream")
    if specs:
        deps.blobs.write(s.results_bucket, _object(job, tag, "chunks"), b"".join(_spec_line(c) for c in specs))
    piece = PlanSlice(tag, st.offset, end, st.next_line, next_line, st.next_chunk, len(specs), taken, len(ids), bad, bad_bytes)
    totals = tuple(a + b for a, b in zip(st.bucket_totals or (0,) * BUCKETS, ids.counts, strict=True))
    after = st.replace(
        offset=end,
        next_line=next_line,
        next_chunk=st.next_chunk + len(specs),
        records=records,
        json_objects=json_objects,
        slices=(*st.slices, piece),
        bucket_totals=totals,
    )
    read = end - st.offset
    if not at_end:
        return _Next(after, read)
    if records == 0:
        fail_job(deps, job.job_id, JobError(ErrorCode.EMPTY_FILE, "the file holds no prompts"))
        return "failed: no prompts"
    if json_objects == 0:
        fail_job(deps, job.job_id, JobError(ErrorCode.NOT_JSONL, "no line of the file is a JSON object; expected JSONL"))
        return "failed: not JSONL"
    bounds = tuple(split_buckets(totals, s.plan_dedupe_records))
    return _Next(after.replace(phase=PlanPhase.DEDUPE if bounds else PlanPhase.MERGE, cursor=0, bounds=bounds), read)


def _spec_line(spec: ChunkSpec) -> bytes:
    fields = [spec.index, spec.start, spec.end, spec.first_line, spec.record_count, list(spec.skip_lines)]
    return json.dumps(fields).encode() + b"\n"


# DEDUPE


def _dedupe(deps: Deps, job: Job, st: PlanState) -> _Next:
    bucket = deps.settings.results_bucket
    first, stop = st.bounds[st.cursor], st.bounds[st.cursor + 1]
    # The run's records of every slice, as read: packed, at most about plan_dedupe_records.
    sections: list[tuple[list[int], bytes]] = []
    for piece in st.slices:
        if not piece.ids:
            sections.append(([0] * BUCKETS, b""))
            continue
        name = _object(job, piece.tag, "ids")
        with deps.blobs.open_read(bucket, name, 0, HEADER.size) as f:
            counts = read_header(f.read())
        if sum(counts) != piece.ids:
            raise PlanningBroken(f"slice {piece.tag} holds {sum(counts)} id records, its state says {piece.ids}")
        start, end = bucket_span(counts, first, stop)
        data = b""
        if end > start:
            with deps.blobs.open_read(bucket, name, start, end) as f:
                data = f.read()
        if len(data) != end - start:
            raise PlanningBroken(f"slice {piece.tag}: its ids object does not hold what its header says")
        sections.append((counts, data))
    found = find_duplicates(sections, first, stop)
    del sections
    tag = ""
    if any(found):
        tag = _tag(st)
        deps.blobs.write(bucket, _object(job, tag, "dups"), pack_pairs(found), "application/octet-stream")
    after = st.replace(dedupe_tags=(*st.dedupe_tags, tag))
    if st.cursor + 2 < len(st.bounds):
        return _Next(after.replace(cursor=st.cursor + 1))
    return _Next(after.replace(phase=PlanPhase.MERGE, cursor=0))


# MERGE


def _merge(deps: Deps, job: Job, st: PlanState) -> _Next:
    s = deps.settings
    index = st.cursor
    piece = st.slices[index]
    dups = sorted(_slice_duplicates(deps, job, st, index))
    errors_tag, errors_bytes = piece.tag, piece.bad_bytes
    read = 0
    if dups:
        # Bad lines and duplicates, in line order, as one pass over the file writes them.
        errors_tag = _tag(st)
        read = piece.end - piece.start
        rows, errors_bytes = 0, 0
        with ExitStack() as stack:
            merged = heapq.merge(
                stack.enter_context(closing(_bad_rows(deps, job, piece))),
                stack.enter_context(closing(_duplicate_rows(deps, job, piece, dups))),
                key=lambda row: row[0],
            )
            out = stack.enter_context(deps.blobs.open_write(s.results_bucket, _object(job, errors_tag, "errors")))
            for _, row in merged:
                out.write(row)
                rows += 1
                errors_bytes += len(row)
        if rows != piece.bad + len(dups):
            raise PlanningBroken(f"slice {piece.tag}: {rows} error rows for {piece.bad} bad lines and {len(dups)} duplicates")
    if piece.chunks:
        deps.store.save_chunks(_chunks(deps, job, piece, [d.line for d in dups]))
    done = piece.replace(dups=len(dups), errors_tag=errors_tag if piece.bad or dups else "", errors_bytes=errors_bytes)
    slices = (*st.slices[:index], done, *st.slices[index + 1 :])
    if index + 1 < len(slices):
        return _Next(st.replace(slices=slices, cursor=index + 1), read)
    return _Next(st.replace(slices=slices, phase=PlanPhase.START, cursor=0), read)


def _slice_duplicates(deps: Deps, job: Job, st: PlanState, index: int) -> Iterator[Duplicate]:
    bucket = deps.settings.results_bucket
    n = len(st.slices)
    for tag in st.dedupe_tags:
        if not tag:
            continue
        name = _object(job, tag, "dups")
        with deps.blobs.open_read(bucket, name, 0, pairs_header_size(n)) as f:
            counts = read_pairs_header(f.read(), n)
        start, end = pairs_span(counts, index, n)
        if end > start:
            with deps.blobs.open_read(bucket, name, start, end) as f:
                yield from unpack_pairs(f.read())


def _bad_rows(deps: Deps, job: Job, piece: PlanSlice) -> Generator[tuple[int, bytes]]:
    """The scan's error rows of a slice, with their line numbers."""
    if not piece.bad:
        return
    with deps.blobs.open_read(deps.settings.results_bucket, _object(job, piece.tag, "errors")) as f:
        for raw in iter_raw_lines(f, _MAX_ROW_BYTES):
            if raw.oversize:
                raise PlanningBroken(f"slice {piece.tag}: an error row is corrupt")
            yield int(json.loads(raw.data)["line"]), raw.data + b"\n"


def _duplicate_rows(deps: Deps, job: Job, piece: PlanSlice, dups: list[Duplicate]) -> Generator[tuple[int, bytes]]:
    """The error rows of a slice's duplicate lines (in line order), their prompt_ids read
    again from the file: the bytes between them are skipped, never split into lines."""
    s = deps.settings
    upload = paths.upload_object(job.client_id, job.job_id)
    with deps.blobs.open_read(s.upload_bucket, upload, piece.start, piece.end) as src:
        pos = piece.start
        for dup in dups:
            if not piece.start <= pos <= dup.start or dup.start + dup.length > piece.end:
                raise PlanningBroken(f"slice {piece.tag}: line {dup.line} does not lie where the scan found it")
            _skip(src, dup.start - pos)
            data = src.read(dup.length)
            pos = dup.start + len(data)
            text = data[:-1] if data.endswith(b"\n") else data
            text = text[:-1] if text.endswith(b"\r") else text
            parsed = parse_line(RawLine(dup.line, dup.start, pos, text), s.max_line_bytes)
            if len(data) != dup.length or not isinstance(parsed, PromptLine):
                raise PlanningBroken(f"slice {piece.tag}: line {dup.line} is not the valid line the scan found")
            detail = f"duplicate prompt_id (first on line {dup.first})"
            yield dup.line, dump_line(LineError(dup.line, detail, parsed.prompt_id, True).to_row())


def _skip(src: BinaryIO, n: int) -> None:
    while n > 0:
        got = len(src.read(min(n, _SKIP_BLOCK)))
        if not got:
            raise PlanningBroken("the file ended early")
        n -= got


def _chunks(deps: Deps, job: Job, piece: PlanSlice, dup_lines: list[int]) -> list[Chunk]:
    """A slice's chunk documents, each skipping its bad and duplicate lines."""
    with deps.blobs.open_read(deps.settings.results_bucket, _object(job, piece.tag, "chunks")) as f:
        specs = [json.loads(line) for line in f.read().splitlines()]
    if [c[0] for c in specs] != list(range(piece.first_chunk, piece.first_chunk + piece.chunks)):
        raise PlanningBroken(f"slice {piece.tag}: its chunk cuts are not chunks {piece.first_chunk}+{piece.chunks}")
    out: list[Chunk] = []
    k = 0
    for n, (index, start, end, first_line, record_count, skips) in enumerate(specs):
        stop = specs[n + 1][3] if n + 1 < len(specs) else piece.next_line
        mine: list[int] = []
        while k < len(dup_lines) and dup_lines[k] < stop:
            mine.append(dup_lines[k])
            k += 1
        out.append(Chunk(job.job_id, index, start, end, first_line, record_count, tuple(sorted([*skips, *mine]))))
    if k != len(dup_lines):
        raise PlanningBroken(f"slice {piece.tag}: a duplicate lies in none of its chunks")
    return out


# START


def _start(deps: Deps, job: Job, st: PlanState) -> _Next:
    s = deps.settings
    sources = [_object(job, p.errors_tag, "errors") for p in st.slices if p.invalid]
    if sources:
        target = paths.plan_errors_object(job.client_id, job.job_id)
        publish(deps.blobs, s.results_bucket, sources, target, st.invalid_bytes, paths.scratch_prefix(job.client_id, job.job_id))
    if sum(p.chunks for p in st.slices) != st.next_chunk:
        raise PlanningBroken(f"slices hold {sum(p.chunks for p in st.slices)} chunks, {st.next_chunk} were cut")
    return _Next(st.replace(phase=PlanPhase.ENQUEUE, cursor=0))


# ENQUEUE


def _enqueue(deps: Deps, job: Job, st: PlanState) -> _Next:
    """Start the chunks of the next slice that has any; the slices passed over are done."""
    index = st.cursor
    for chunk in range(st.slices[index].first_chunk, st.slices[index].first_chunk + st.slices[index].chunks):
        deps.tasks.enqueue_chunk(job.job_id, chunk)
    stop = index + 1
    while stop < len(st.slices) and not st.slices[stop].chunks:
        stop += 1
    # These slices' working objects are read by no later step (the results bucket's age
    # rule removes any a crash leaves behind).
    names: list[str] = []
    for piece in st.slices[index:stop]:
        held = {"ids": piece.ids, "chunks": piece.chunks, "errors": piece.bad}
        names += [_object(job, piece.tag, kind) for kind, n in held.items() if n]
        if piece.dups:
            names.append(_object(job, piece.errors_tag, "errors"))
    last = stop == len(st.slices)
    if last:
        names += [_object(job, tag, "dups") for tag in st.dedupe_tags if tag]
    _forget(deps, names)
    if last:
        return _Next(st.replace(phase=PlanPhase.DONE, cursor=0))
    return _Next(st.replace(cursor=stop))


def _forget(deps: Deps, names: list[str]) -> None:
    for name in names:
        try:
            deps.blobs.delete(deps.settings.results_bucket, name)
        except Exception as exc:
            logs.warning("could not delete a planning object", error_type=type(exc).__name__)
