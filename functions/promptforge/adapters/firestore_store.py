"""The JobStore on Firestore: the one place that knows the document layout.

```
jobs/{job_id}                    Job
jobs/{job_id}/chunks/{00000}     Chunk (one writer at a time: its lease holder)
jobs/{job_id}/done_counts/{0-7}  how many chunks are DONE: a shard of the count
budgets/{id}/workers/{worker}    a chunk worker drawing on a rate budget, until when
clients/{client_id}              ClientState: the active job and the PENDING queue
api_keys/{sha256 of the key}     ApiKey
usage/{client_id}                ClientUsage: jobs awaiting upload, event stream leases
usage/{client_id}/request_minutes/{YYYYMMDDTHHMM}   requests handed out in that minute
plans/{job_id}                   PlanState: where the job's planning stands
```
Counts that many workers produce live on chunk documents and are summed with an
aggregation query, so no worker contends on the job document while it runs. The count of
DONE chunks is kept in a few shard documents, each changed by a server-side increment in
the transaction that marks a chunk DONE (or reopens it): the count and the chunks'
statuses commit together, and chunks finishing together write different documents
without reading them, so none waits on another (Firestore sustains about one write a
second on one document).
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from proto.datetime_helpers import DatetimeWithNanoseconds

from ..domain.job import Job, JobError, JobMode, JobStatus
from ..domain.outcomes import ROW_ERROR_CODES
from ..domain.plan_state import PlanPhase, PlanSlice, PlanState
from ..domain.records import ApiKey, BatchTotals, Chunk, ChunkStatus, ClientState, DoneCount, Totals, Waiting
from ..domain.usage import REQUEST_WINDOW, AwaitingUpload, ClientUsage
from ..service.ports import BudgetBeat, DoneMark, StoreContention

T = TypeVar("T")
_BATCH = 400  # below Firestore's 500 writes per batch
# Shards of a job's count of DONE chunks: a job's chunks can finish this many a second
# before any shard goes past Firestore's sustained write rate of a document; reading the
# count costs as many document reads.
DONE_SHARDS = 8


class AlreadyExists(Exception):
    """A document that must be new exists already."""


# The caller's free-form maps are kept as JSON text: Firestore field names cannot be empty
# and maps nest at most 20 deep, and neither limit is the caller's business.
_JSON_FIELDS = ("params", "metadata")


def job_to_doc(job: Job) -> dict[str, Any]:
    doc = dataclasses.asdict(job)
    for name in _JSON_FIELDS:
        doc[name] = json.dumps(doc[name])
    doc["status"] = job.status.value
    doc["mode"] = job.mode.value
    doc["error"] = job.error.to_dict() if job.error else None
    doc["result_files"] = list(job.result_files)
    return doc


def job_from_doc(doc: dict[str, Any]) -> Job:
    fields = {f.name for f in dataclasses.fields(Job)}
    data = {k: v for k, v in doc.items() if k in fields}
    for name in _JSON_FIELDS:
        if isinstance(data.get(name), str):
            data[name] = json.loads(data[name])
    data["status"] = JobStatus(data["status"])
    data["mode"] = JobMode(data.get("mode") or JobMode.FAST)  # jobs stored before modes are fast
    data["error"] = JobError(**data["error"]) if data.get("error") else None
    data["result_files"] = tuple(data.get("result_files") or ())
    return Job(**data)


def chunk_to_doc(chunk: Chunk) -> dict[str, Any]:
    doc = dataclasses.asdict(chunk)
    doc["status"] = chunk.status.value
    doc["skip_lines"] = list(chunk.skip_lines)
    doc["segments"] = list(chunk.segments)
    doc["batch_ids"] = list(chunk.batch_ids)
    # Every code present, zeros included: a query's aggregations count only documents that
    # have every field they sum (so one missing field would hide a chunk from all sums).
    doc["error_counts"] = {code: 0 for code in ROW_ERROR_CODES} | chunk.error_counts
    return doc


def chunk_from_doc(doc: dict[str, Any]) -> Chunk:
    data = dict(doc)
    data["status"] = ChunkStatus(data["status"])
    data["skip_lines"] = tuple(data.get("skip_lines") or ())
    data["segments"] = tuple(data.get("segments") or ())
    data["batch_ids"] = tuple(data.get("batch_ids") or ())
    data["error_counts"] = {k: int(v) for k, v in (data.get("error_counts") or {}).items() if v}
    return Chunk(**data)


def client_to_doc(client: ClientState) -> dict[str, Any]:
    return {
        "active_job_id": client.active_job_id,
        "pending": [{"job_id": w.job_id, "uploaded_at": w.uploaded_at} for w in client.pending],
        "webhook_secret": client.webhook_secret,
    }


def client_from_doc(client_id: str, doc: dict[str, Any] | None) -> ClientState:
    doc = doc or {}
    pending = tuple(Waiting(w["job_id"], w["uploaded_at"]) for w in doc.get("pending") or ())
    return ClientState(client_id, doc.get("active_job_id"), pending, doc.get("webhook_secret"))


def usage_to_doc(usage: ClientUsage) -> dict[str, Any]:
    return {
        "awaiting": [{"job_id": a.job_id, "expires_at": a.expires_at} for a in usage.awaiting],
        "streams": dict(usage.streams),
        "callbacks": dict(usage.callbacks),
    }


def usage_from_doc(client_id: str, doc: dict[str, Any] | None, version: str) -> ClientUsage:
    doc = doc or {}
    awaiting = tuple(AwaitingUpload(a["job_id"], a["expires_at"]) for a in doc.get("awaiting") or ())
    return ClientUsage(client_id, awaiting, dict(doc.get("streams") or {}), dict(doc.get("callbacks") or {}), version)


def plan_to_doc(state: PlanState) -> dict[str, Any]:
    doc = dataclasses.asdict(state)
    doc["phase"] = state.phase.value
    doc["slices"] = [dataclasses.asdict(s) for s in state.slices]
    for name in ("bucket_totals", "bounds", "dedupe_tags"):
        doc[name] = list(doc[name])
    return doc


def plan_from_doc(doc: dict[str, Any]) -> PlanState:
    data = dict(doc)
    data["phase"] = PlanPhase(data["phase"])
    data["slices"] = tuple(PlanSlice(**s) for s in data.get("slices") or ())
    for name in ("bucket_totals", "bounds", "dedupe_tags"):
        data[name] = tuple(data.get(name) or ())
    return PlanState(**data)


def _chunk_id(index: int) -> str:
    return f"{index:05d}"


def _count(query: Any) -> int:
    """The value of a query's one count aggregation."""
    return sum(int(r.value or 0) for row in query.get() for r in row)


def _done_counts(db: firestore.Client, job_id: str) -> Any:
    return db.collection("jobs").document(job_id).collection("done_counts")


def _read(db: firestore.Client, ref: Any, transaction: bytes | None = None) -> dict[str, Any] | None:
    """One document's fields (None if it does not exist), by a GetDocument call.

    ``DocumentReference.get`` asks through BatchGetDocuments, a streaming call: the gRPC
    client starts a thread to drive each stream, and the snapshot deep-copies the fields
    it hands out. A chunk worker reads a few documents per chunk and per checkpoint, and
    those two costs were most of the CPU of the reads; GetDocument is a unary call with
    the same consistency, the same transaction semantics and the client's default retry.
    """
    fields, _ = _read_versioned(db, ref, transaction)
    return fields


def _read_versioned(db: firestore.Client, ref: Any, transaction: bytes | None = None) -> tuple[dict[str, Any] | None, Any]:
    """:func:`_read`, with the document's update time (None with no document): the version
    a conditional write names."""
    request: dict[str, Any] = {"name": ref._document_path}
    if transaction is not None:
        request["transaction"] = transaction
    try:
        doc = db._firestore_api.get_document(request=request, metadata=db._rpc_metadata)
    except gexc.NotFound:
        return None, None
    fields: dict[str, Any] = _helpers.decode_dict(doc.fields, db)
    return fields, doc.update_time


def shard_size(index: int, chunk_count: int) -> int:
    """How many of a job's ``chunk_count`` chunks the done counter of chunk ``index`` counts."""
    shard = index % DONE_SHARDS
    return chunk_count // DONE_SHARDS + (1 if shard < chunk_count % DONE_SHARDS else 0)


class _Tx:
    def __init__(self, db: firestore.Client, txn: firestore.Transaction) -> None:
        self._db = db
        self._txn = txn
        # Done marks to fill from the commit: (position of the write, chunks its counter counts, mark).
        self.marks: list[tuple[int, int, DoneMark]] = []

    def _get(self, ref: Any) -> dict[str, Any] | None:
        return _read(self._db, ref, self._txn.id)

    def get_job(self, job_id: str) -> Job | None:
        doc = self._get(self._db.collection("jobs").document(job_id))
        return job_from_doc(doc) if doc else None

    def get_client(self, client_id: str) -> ClientState:
        return client_from_doc(client_id, self._get(self._db.collection("clients").document(client_id)))

    def get_chunk(self, job_id: str, index: int) -> Chunk | None:
        doc = self._get(self._db.collection("jobs").document(job_id).collection("chunks").document(_chunk_id(index)))
        return chunk_from_doc(doc) if doc else None

    def list_chunks(self, job_id: str) -> list[Chunk]:
        query = self._db.collection("jobs").document(job_id).collection("chunks").order_by("index")
        return [chunk_from_doc(s.to_dict()) for s in query.stream(transaction=self._txn)]

    def get_plan(self, job_id: str) -> PlanState | None:
        doc = self._get(self._db.collection("plans").document(job_id))
        return plan_from_doc(doc) if doc else None

    def put_plan(self, state: PlanState) -> None:
        self._txn.set(self._db.collection("plans").document(state.job_id), plan_to_doc(state))

    def put_job(self, job: Job) -> None:
        self._txn.set(self._db.collection("jobs").document(job.job_id), job_to_doc(job))

    def put_client(self, client: ClientState) -> None:
        self._txn.set(self._db.collection("clients").document(client.client_id), client_to_doc(client))

    def put_chunk(self, chunk: Chunk) -> None:
        ref = self._db.collection("jobs").document(chunk.job_id).collection("chunks").document(_chunk_id(chunk.index))
        self._txn.set(ref, chunk_to_doc(chunk))

    def count_done(self, job_id: str, index: int, delta: int, at: datetime, chunk_count: int = 0) -> DoneMark:
        ref = _done_counts(self._db, job_id).document(str(index % DONE_SHARDS))
        self._txn.set(ref, {"done": firestore.Increment(delta), "at": at}, merge=True)
        mark = DoneMark()
        if chunk_count:
            self.marks.append((len(self._txn._write_pbs) - 1, shard_size(index, chunk_count), mark))
        return mark

    def committed(self, results: list[Any]) -> None:
        """Fill the done marks from the commit's write results: an increment's result is
        the counter's value after it."""
        for position, size, mark in self.marks:
            transforms = results[position].transform_results if position < len(results) else ()
            mark.may_complete = int(transforms[0].integer_value) >= size if transforms else None


class FirestoreJobStore:
    """JobStore backed by a Firestore database (or its emulator)."""

    def __init__(self, client: firestore.Client) -> None:
        self._db = client

    def run_transaction(self, fn: Callable[[_Tx], T]) -> T:
        attempts: list[_Tx] = []

        @firestore.transactional  # type: ignore[untyped-decorator]
        def body(txn: firestore.Transaction) -> T:
            attempts.append(_Tx(self._db, txn))
            return fn(attempts[-1])

        # The client retries a commit aborted by contention, five times; a read aborted by
        # contention (the emulator does this after its lock timeout), or five lost commits in
        # a row, is retried here with jittered backoff before the error goes up.
        for attempt in range(6):
            try:
                txn = self._db.transaction()
                result: T = body(txn)
                attempts[-1].committed(list(getattr(txn, "write_results", None) or ()))
                return result
            except (gexc.Aborted, ValueError) as exc:
                contended = isinstance(exc, gexc.Aborted) or isinstance(exc.__cause__, gexc.Aborted)
                if not contended:
                    raise
                if attempt == 5:
                    raise StoreContention("a transaction could not commit under contention") from exc
                time.sleep(random.uniform(0.05, 0.1) * 2**attempt)
        raise AssertionError("unreachable")

    def create_job(self, job: Job) -> None:
        try:
            self._db.collection("jobs").document(job.job_id).create(job_to_doc(job))
        except gexc.AlreadyExists as exc:
            raise AlreadyExists(job.job_id) from exc

    def get_job(self, job_id: str) -> Job | None:
        doc = _read(self._db, self._db.collection("jobs").document(job_id))
        return job_from_doc(doc) if doc is not None else None

    def find_jobs(self, status: JobStatus, status_before: datetime | None = None, limit: int = 500) -> list[Job]:
        query = self._db.collection("jobs").where(filter=firestore.FieldFilter("status", "==", status.value))
        if status_before is not None:
            query = query.where(filter=firestore.FieldFilter("status_at", "<", status_before))
        query = query.order_by("status_at").limit(limit)
        return [job_from_doc(s.to_dict()) for s in query.stream()]

    def list_jobs(self, client_id: str, limit: int, after: tuple[datetime, str] | None = None) -> list[Job]:
        query = (
            self._db.collection("jobs")
            .where(filter=firestore.FieldFilter("client_id", "==", client_id))
            .order_by("created_at", direction=firestore.Query.DESCENDING)
            .order_by("job_id", direction=firestore.Query.DESCENDING)
        )
        if after is not None:
            query = query.start_after({"created_at": after[0], "job_id": after[1]})
        return [job_from_doc(s.to_dict()) for s in query.limit(limit).stream()]

    def get_chunk(self, job_id: str, index: int) -> Chunk | None:
        doc = _read(self._db, self._chunks(job_id).document(_chunk_id(index)))
        return chunk_from_doc(doc) if doc is not None else None

    def update_chunk(self, job_id: str, index: int, change: Callable[[Chunk | None], Chunk | None]) -> Chunk | None:
        ref = self._chunks(job_id).document(_chunk_id(index))
        for attempt in range(6):
            doc, version = _read_versioned(self._db, ref)
            updated = change(chunk_from_doc(doc) if doc is not None else None)
            if updated is None:
                return None
            if (updated.job_id, updated.index) != (job_id, index):
                raise ValueError("update_chunk changes the chunk it read, no other")
            # The write goes through only if the document is still the version read (or,
            # read as missing, still missing): what a transaction would have ensured. An
            # update naming every field of the chunk replaces the document.
            batch = self._db.batch()
            if version is None:
                batch.create(ref, chunk_to_doc(updated))
            else:
                batch.update(ref, chunk_to_doc(updated), option=self._db.write_option(last_update_time=version))
            try:
                batch.commit()
                return updated
            except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound, gexc.Aborted):
                if attempt == 5:
                    raise
                time.sleep(random.uniform(0.005, 0.01) * 2**attempt)  # someone wrote between: read again
        raise AssertionError("unreachable")

    def get_plan(self, job_id: str) -> PlanState | None:
        snap = self._db.collection("plans").document(job_id).get()
        return plan_from_doc(snap.to_dict()) if snap.exists else None

    def _chunks(self, job_id: str) -> Any:
        return self._db.collection("jobs").document(job_id).collection("chunks")

    def save_chunks(self, chunks: Iterable[Chunk]) -> None:
        batch = self._db.batch()
        pending = 0
        for chunk in chunks:
            batch.set(self._chunks(chunk.job_id).document(_chunk_id(chunk.index)), chunk_to_doc(chunk))
            pending += 1
            if pending == _BATCH:
                batch.commit()
                batch, pending = self._db.batch(), 0
        if pending:
            batch.commit()

    def list_chunks(self, job_id: str) -> list[Chunk]:
        return [chunk_from_doc(s.to_dict()) for s in self._chunks(job_id).order_by("index").stream()]

    def chunk_totals(self, job_id: str) -> Totals:
        # Firestore takes at most five aggregations a query: sum the fields five at a time.
        fields = ["completed", "failed", "input_tokens", "output_tokens"]
        fields += [f"error_counts.{code}" for code in ROW_ERROR_CODES]
        values: dict[str, int] = {}
        for i in range(0, len(fields), 5):
            query = None
            for n, name in enumerate(fields[i : i + 5]):
                base = query if query is not None else self._chunks(job_id)
                query = base.sum(name, alias=f"f{i + n}")
            assert query is not None
            values.update({r.alias: int(r.value or 0) for row in query.get() for r in row})
        numbers = {name: values.get(f"f{k}", 0) for k, name in enumerate(fields)}
        errors = {name.split(".", 1)[1]: v for name, v in numbers.items() if name.startswith("error_counts.") and v}
        return Totals(numbers["completed"], numbers["failed"], numbers["input_tokens"], numbers["output_tokens"], errors)

    def batch_totals(self, job_id: str) -> BatchTotals:
        # Three aggregation queries: the request counts summed, apart from chunk_totals'
        # sums (an aggregation skips a document missing any field it sums, and chunks
        # stored before these fields existed lack them), and two filtered counts, as
        # neither a key nor a flag can be summed.
        chunks = self._chunks(job_id)
        sums = chunks.sum("batch_total", alias="total").sum("batch_done", alias="done").sum("batch_failed", alias="failed")
        values = {r.alias: int(r.value or 0) for row in sums.get() for r in row}
        # batch_key != null: a batch created, or its create under way (the key is stored first).
        created = chunks.where(filter=firestore.FieldFilter("batch_key", "!=", None)).count(alias="n")
        ended = chunks.where(filter=firestore.FieldFilter("batch_ended", "==", True)).count(alias="n")
        return BatchTotals(
            batches=_count(created),
            ended=_count(ended),
            requests=values.get("total", 0),
            requests_done=values.get("done", 0),
            requests_failed=values.get("failed", 0),
        )

    def chunks_done(self, job_id: str) -> DoneCount:
        shards = [s.to_dict() for s in _done_counts(self._db, job_id).stream()]
        times = [d["at"] for d in shards if d.get("at") is not None]
        return DoneCount(sum(int(d.get("done") or 0) for d in shards), max(times) if times else None)

    def lease_ended_chunks(self, job_id: str, before: datetime, limit: int) -> list[Chunk]:
        # A null lease_until (no lease) never matches an inequality.
        query = self._chunks(job_id).where(filter=firestore.FieldFilter("lease_until", "<", before))
        found = [chunk_from_doc(s.to_dict()) for s in query.order_by("lease_until").limit(limit).stream()]
        return sorted(found, key=lambda c: c.index)

    def unfinished_chunks(self, job_id: str, limit: int) -> list[Chunk]:
        waiting = [ChunkStatus.PENDING.value, ChunkStatus.RUNNING.value]
        query = self._chunks(job_id).where(filter=firestore.FieldFilter("status", "in", waiting)).limit(limit)
        return sorted((chunk_from_doc(s.to_dict()) for s in query.stream()), key=lambda c: c.index)

    def latest_lease(self, job_id: str) -> datetime | None:
        # Nulls sort first, so the last in lease order holds the latest lease if any holds one.
        query = self._chunks(job_id).order_by("lease_until", direction=firestore.Query.DESCENDING).limit(1)
        found = [s.get("lease_until") for s in query.stream()]
        return found[0] if found else None

    def jobs_to_stamp(self, limit: int) -> list[Job]:
        query = self._db.collection("jobs").where(filter=firestore.FieldFilter("records_unstamped", "==", True))
        return [job_from_doc(s.to_dict()) for s in query.limit(limit).stream()]

    def stamp_expiry(self, job_id: str, expire_at: datetime, limit: int) -> int:
        # Every chunk document is written with an expire_at field, null until now.
        query = self._chunks(job_id).where(filter=firestore.FieldFilter("expire_at", "==", None)).limit(limit)
        chunks = [s.reference for s in query.stream()]
        refs = list(chunks)
        if len(chunks) < limit:  # the chunks' last batch: the counters go with it
            refs += [s.reference for s in _done_counts(self._db, job_id).stream()]
        for i in range(0, len(refs), _BATCH):
            batch = self._db.batch()
            for ref in refs[i : i + _BATCH]:
                batch.update(ref, {"expire_at": expire_at})
            batch.commit()
        return len(chunks)

    def _budget_workers(self, budget: str) -> Any:
        return self._db.collection("budgets").document(budget).collection("workers")

    def heartbeat_worker(self, budget: str, worker_id: str, beat: BudgetBeat) -> None:
        # One document per process: no two processes ever write the same document.
        self._budget_workers(budget).document(worker_id).set(dataclasses.asdict(beat))

    def budget_workers(self, budget: str, now: datetime) -> list[BudgetBeat]:
        query = self._budget_workers(budget).where(filter=firestore.FieldFilter("until", ">", now))
        return [BudgetBeat(**snap.to_dict()) for snap in query.stream()]

    def drop_worker(self, budget: str, worker_id: str) -> None:
        self._budget_workers(budget).document(worker_id).delete()

    def put_api_key(self, key: ApiKey) -> None:
        self._db.collection("api_keys").document(key.key_hash).set(dataclasses.asdict(key))

    def get_api_key(self, key_hash: str) -> ApiKey | None:
        snap = self._db.collection("api_keys").document(key_hash).get()
        return ApiKey(**snap.to_dict()) if snap.exists else None

    def list_api_keys(self) -> list[ApiKey]:
        return [ApiKey(**s.to_dict()) for s in self._db.collection("api_keys").order_by("created_at").stream()]

    def get_client_state(self, client_id: str) -> ClientState:
        snap = self._db.collection("clients").document(client_id).get()
        return client_from_doc(client_id, snap.to_dict() if snap.exists else None)

    def get_job_statuses(self, job_ids: Iterable[str]) -> dict[str, JobStatus]:
        refs = [self._db.collection("jobs").document(job_id) for job_id in job_ids]
        if not refs:
            return {}
        snaps = self._db.get_all(refs, field_paths=["status"])
        return {s.id: JobStatus(s.get("status")) for s in snaps if s.exists}

    def get_usage(self, client_id: str) -> ClientUsage:
        snap = self._db.collection("usage").document(client_id).get()
        if not snap.exists:
            return ClientUsage(client_id)
        # The update time is the version: a write conditioned on it fails if anything wrote since.
        return usage_from_doc(client_id, snap.to_dict(), snap.update_time.rfc3339())

    def put_usage(self, usage: ClientUsage, new_job: Job | None = None) -> bool:
        ref = self._db.collection("usage").document(usage.client_id)
        batch = self._db.batch()
        if usage.version:
            seen = DatetimeWithNanoseconds.from_rfc3339(usage.version)
            batch.update(ref, usage_to_doc(usage), option=self._db.write_option(last_update_time=seen))
        else:
            batch.create(ref, usage_to_doc(usage))
        if new_job is not None:
            batch.create(self._db.collection("jobs").document(new_job.job_id), job_to_doc(new_job))
        try:
            batch.commit()
        except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound, gexc.Aborted):
            return False  # someone wrote (or deleted) first: the caller reads again and decides again
        return True

    def take_requests(self, client_id: str, window: datetime, count: int) -> int:
        ref = self._db.collection("usage").document(client_id).collection("request_minutes")
        doc = ref.document(window.strftime("%Y%m%dT%H%M"))
        # An increment is applied by the server and its result comes back with the write, so
        # this needs no read and no transaction; expire_at lets a TTL policy delete old windows.
        result = doc.set({"taken": firestore.Increment(count), "expire_at": window + 2 * REQUEST_WINDOW}, merge=True)
        return int(result.transform_results[0].integer_value)
