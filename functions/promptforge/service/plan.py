"""Planning: read the uploaded file once, report bad lines, cut chunks, start workers."""

from __future__ import annotations

import hashlib

from .. import logs
from ..domain import paths
from ..domain.chunking import ChunkCutter, ChunkSpec
from ..domain.job import Job, JobError, JobStatus
from ..domain.jsonl import LineError, PromptLine, dump_line, iter_raw_lines, parse_line
from ..domain.records import Chunk, ChunkStatus
from .deps import Deps
from .lifecycle import fail_job
from .ports import Tx


class _Scan:
    """What one pass over the file found."""

    def __init__(self) -> None:
        self.records = 0
        self.valid = 0
        self.invalid = 0
        self.invalid_bytes = 0
        self.json_objects = 0
        self.chunks: list[ChunkSpec] = []
        self.too_many = False


def plan_job(deps: Deps, job_id: str) -> str:
    """Plan a QUEUED job and enqueue its chunks. Safe to run again for the same job."""
    job = deps.store.get_job(job_id)
    if job is None:
        return "ignored: unknown job"
    if job.status is JobStatus.PROCESSING and job.chunk_count is not None:
        # A repeated planning task: make sure every unfinished chunk has its task.
        for chunk in deps.store.list_chunks(job_id):
            if chunk.status is not ChunkStatus.DONE:
                deps.tasks.enqueue_chunk(job_id, chunk.index)
        return "re-enqueued unfinished chunks"
    if job.status is not JobStatus.QUEUED:
        return f"ignored: job is {job.status.value}"

    scan = _scan(deps, job)
    if scan.too_many:
        fail_job(
            deps, job_id, JobError("too_many_prompts", f"the file has more than {deps.settings.max_prompts_per_job} prompts")
        )
        return "failed: too many prompts"
    if scan.records == 0:
        fail_job(deps, job_id, JobError("empty_file", "the file holds no prompts"))
        return "failed: no prompts"
    if scan.json_objects == 0:
        fail_job(deps, job_id, JobError("not_jsonl", "no line of the file is a JSON object; expected JSONL"))
        return "failed: not JSONL"

    deps.store.save_chunks(
        Chunk(job_id, s.index, s.start, s.end, s.first_line, s.record_count, s.skip_lines) for s in scan.chunks
    )
    now = deps.now()

    def start(tx: Tx) -> bool:
        current = tx.get_job(job_id)
        if current is None or current.status is not JobStatus.QUEUED:
            return False
        planned = current.replace(
            prompt_count=scan.records,
            invalid_count=scan.invalid,
            invalid_bytes=scan.invalid_bytes,
            chunk_count=len(scan.chunks),
        )
        tx.put_job(planned.transition(JobStatus.PROCESSING, now))
        return True

    deps.store.run_transaction(start)
    # Act on what is stored: a retried commit can hide that this very call started the job.
    after = deps.store.get_job(job_id)
    if after is None or after.status is not JobStatus.PROCESSING:
        return "ignored: job changed while planning"
    for spec in scan.chunks:
        deps.tasks.enqueue_chunk(job_id, spec.index)
    logs.info("job planned", job_id=job_id, prompts=scan.records, invalid=scan.invalid, chunks=len(scan.chunks))
    return "planned"


def _scan(deps: Deps, job: Job) -> _Scan:
    s = deps.settings
    scan = _Scan()
    cutter = ChunkCutter(s.chunk_max_lines, s.chunk_max_bytes)
    # First line of each prompt_id, keyed by a 16-byte digest to bound memory.
    seen: dict[bytes, int] = {}
    upload = paths.upload_object(job.client_id, job.job_id)
    errors_name = paths.plan_errors_object(job.client_id, job.job_id)
    with deps.blobs.open_read(s.upload_bucket, upload) as src, deps.blobs.open_write(s.results_bucket, errors_name) as errors:
        for raw in iter_raw_lines(src, s.max_line_bytes):
            parsed = parse_line(raw, s.max_line_bytes)
            if parsed is None:
                cutter.add(raw.number, raw.start, raw.end, record=False, skip=False)
                continue
            scan.records += 1
            if scan.records > s.max_prompts_per_job:
                scan.too_many = True
                return scan
            # Every line that names a prompt_id claims it, valid or not: a later line with
            # the same id is a duplicate, so an id never lands in both files.
            if parsed.prompt_id is not None:
                digest = hashlib.blake2b(parsed.prompt_id.encode(), digest_size=16).digest()
                first = seen.setdefault(digest, raw.number)
                if first != raw.number and isinstance(parsed, PromptLine):
                    parsed = LineError(raw.number, f"duplicate prompt_id (first on line {first})", parsed.prompt_id, True)
            if isinstance(parsed, LineError):
                scan.invalid += 1
                row = dump_line(parsed.to_row())
                scan.invalid_bytes += len(row)
                errors.write(row)
            else:
                scan.valid += 1
            if isinstance(parsed, PromptLine) or parsed.json_object:
                scan.json_objects += 1
            spec = cutter.add(raw.number, raw.start, raw.end, record=True, skip=isinstance(parsed, LineError))
            if spec is not None:
                scan.chunks.append(spec)
        last = cutter.finish()
        if last is not None:
            scan.chunks.append(last)
    return scan
