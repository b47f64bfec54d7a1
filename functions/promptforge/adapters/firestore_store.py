"""The JobStore on Firestore: the one place that knows the document layout.

```
jobs/{job_id}                    Job
jobs/{job_id}/chunks/{00000}     Chunk (one writer at a time: its lease holder)
clients/{client_id}              ClientState
api_keys/{sha256 of the key}     ApiKey
```
Counts that many workers produce live on chunk documents and are summed with an
aggregation query, so no worker contends on the job document while it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud import firestore

from ..domain.job import Job, JobError, JobStatus
from ..domain.records import ApiKey, Chunk, ChunkStatus, ClientState, Totals

T = TypeVar("T")
_BATCH = 400  # below Firestore's 500 writes per batch


class AlreadyExists(Exception):
    """A document that must be new exists already."""


def job_to_doc(job: Job) -> dict[str, Any]:
    doc = dataclasses.asdict(job)
    doc["status"] = job.status.value
    doc["error"] = job.error.to_dict() if job.error else None
    doc["result_files"] = list(job.result_files)
    return doc


def job_from_doc(doc: dict[str, Any]) -> Job:
    fields = {f.name for f in dataclasses.fields(Job)}
    data = {k: v for k, v in doc.items() if k in fields}
    data["status"] = JobStatus(data["status"])
    data["error"] = JobError(**data["error"]) if data.get("error") else None
    data["result_files"] = tuple(data.get("result_files") or ())
    return Job(**data)


def chunk_to_doc(chunk: Chunk) -> dict[str, Any]:
    doc = dataclasses.asdict(chunk)
    doc["status"] = chunk.status.value
    doc["skip_lines"] = list(chunk.skip_lines)
    return doc


def chunk_from_doc(doc: dict[str, Any]) -> Chunk:
    data = dict(doc)
    data["status"] = ChunkStatus(data["status"])
    data["skip_lines"] = tuple(data.get("skip_lines") or ())
    return Chunk(**data)


def _chunk_id(index: int) -> str:
    return f"{index:05d}"


class _Tx:
    def __init__(self, db: firestore.Client, txn: firestore.Transaction) -> None:
        self._db = db
        self._txn = txn

    def _get(self, ref: Any) -> dict[str, Any] | None:
        snap = ref.get(transaction=self._txn)
        return snap.to_dict() if snap.exists else None

    def get_job(self, job_id: str) -> Job | None:
        doc = self._get(self._db.collection("jobs").document(job_id))
        return job_from_doc(doc) if doc else None

    def get_client(self, client_id: str) -> ClientState:
        doc = self._get(self._db.collection("clients").document(client_id))
        return ClientState(client_id, (doc or {}).get("active_job_id"))

    def oldest_pending_job(self, client_id: str) -> Job | None:
        query = (
            self._db.collection("jobs")
            .where(filter=firestore.FieldFilter("client_id", "==", client_id))
            .where(filter=firestore.FieldFilter("status", "==", JobStatus.PENDING.value))
            .order_by("uploaded_at")
            .limit(1)
        )
        for snap in query.stream(transaction=self._txn):
            return job_from_doc(snap.to_dict())
        return None

    def get_chunk(self, job_id: str, index: int) -> Chunk | None:
        doc = self._get(self._db.collection("jobs").document(job_id).collection("chunks").document(_chunk_id(index)))
        return chunk_from_doc(doc) if doc else None

    def put_job(self, job: Job) -> None:
        self._txn.set(self._db.collection("jobs").document(job.job_id), job_to_doc(job))

    def put_client(self, client: ClientState) -> None:
        self._txn.set(self._db.collection("clients").document(client.client_id), {"active_job_id": client.active_job_id})

    def put_chunk(self, chunk: Chunk) -> None:
        ref = self._db.collection("jobs").document(chunk.job_id).collection("chunks").document(_chunk_id(chunk.index))
        self._txn.set(ref, chunk_to_doc(chunk))


class FirestoreJobStore:
    """JobStore backed by a Firestore database (or its emulator)."""

    def __init__(self, client: firestore.Client) -> None:
        self._db = client

    def run_transaction(self, fn: Callable[[_Tx], T]) -> T:
        @firestore.transactional  # type: ignore[untyped-decorator]
        def body(txn: firestore.Transaction) -> T:
            return fn(_Tx(self._db, txn))

        result: T = body(self._db.transaction())
        return result

    def create_job(self, job: Job) -> None:
        try:
            self._db.collection("jobs").document(job.job_id).create(job_to_doc(job))
        except gexc.AlreadyExists as exc:
            raise AlreadyExists(job.job_id) from exc

    def get_job(self, job_id: str) -> Job | None:
        snap = self._db.collection("jobs").document(job_id).get()
        return job_from_doc(snap.to_dict()) if snap.exists else None

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

    def save_chunk_progress(self, chunk: Chunk) -> None:
        self._chunks(chunk.job_id).document(_chunk_id(chunk.index)).update(
            {
                "completed": chunk.completed,
                "failed": chunk.failed,
                "input_tokens": chunk.input_tokens,
                "output_tokens": chunk.output_tokens,
                "lease_until": chunk.lease_until,
            }
        )

    def chunk_totals(self, job_id: str) -> Totals:
        query = (
            self._chunks(job_id)
            .sum("completed", alias="completed")
            .sum("failed", alias="failed")
            .sum("input_tokens", alias="input_tokens")
            .sum("output_tokens", alias="output_tokens")
        )
        values = {r.alias: int(r.value or 0) for row in query.get() for r in row}
        return Totals(**values)

    def put_api_key(self, key: ApiKey) -> None:
        self._db.collection("api_keys").document(key.key_hash).set(dataclasses.asdict(key))

    def get_api_key(self, key_hash: str) -> ApiKey | None:
        snap = self._db.collection("api_keys").document(key_hash).get()
        return ApiKey(**snap.to_dict()) if snap.exists else None

    def list_api_keys(self) -> list[ApiKey]:
        return [ApiKey(**s.to_dict()) for s in self._db.collection("api_keys").order_by("created_at").stream()]
