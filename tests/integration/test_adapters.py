"""Each adapter against the real emulator it talks to in the local stack."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from promptforge.adapters.firestore_store import AlreadyExists
from promptforge.domain.job import Job, JobStatus
from promptforge.domain.records import ApiKey, Chunk, ChunkStatus, ClientState
from promptforge.service.assemble import IncompleteObject, publish
from promptforge.service.lifecycle import upload_headers
from promptforge.wiring import LiveDeps
from tests.conftest import make_settings

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def live(stack: Any) -> LiveDeps:
    env = stack.env()
    for key in ("FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        os.environ[key] = env[key]
    settings = dataclasses.replace(
        make_settings(),
        project=env["GOOGLE_CLOUD_PROJECT"],
        upload_bucket=env["PROMPTFORGE_UPLOAD_BUCKET"],
        results_bucket=env["PROMPTFORGE_RESULTS_BUCKET"],
        storage_emulator_host=env["STORAGE_EMULATOR_HOST"],
        signing_key_file=env["PROMPTFORGE_SIGNING_KEY_FILE"],
        tasks_emulator_host=env["PROMPTFORGE_TASKS_EMULATOR_HOST"],
        chunk_queues=tuple(env["PROMPTFORGE_CHUNK_QUEUES"].split(",")),
        plan_queue=env["PROMPTFORGE_PLAN_QUEUE"],
    )
    return LiveDeps(settings)


def job(client: str, status: JobStatus = JobStatus.AWAITING_UPLOAD, **kw: Any) -> Job:
    return Job(str(uuid.uuid4()), client, status, "fake", "m", T0, T0 + timedelta(hours=1), **kw)


# --- Firestore -------------------------------------------------------------------------


def test_jobs_round_trip_and_create_refuses_an_existing_job(live: LiveDeps) -> None:
    j = job("c-rt", params={"temperature": 0.5}, metadata={"team": "x"})
    live.store.create_job(j)
    assert live.store.get_job(j.job_id) == j
    with pytest.raises(AlreadyExists):
        live.store.create_job(j)
    assert live.store.get_job(str(uuid.uuid4())) is None


def test_a_transaction_commits_all_or_nothing(live: LiveDeps) -> None:
    j = job("c-tx")
    live.store.create_job(j)

    def half(tx: Any) -> None:
        current = tx.get_job(j.job_id)
        tx.put_job(current.transition(JobStatus.QUEUED, T0))
        raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        live.store.run_transaction(half)
    assert live.store.get_job(j.job_id).status is JobStatus.AWAITING_UPLOAD  # type: ignore[union-attr]


def test_a_clients_slot_and_queue_round_trip(live: LiveDeps) -> None:
    client = f"c-{uuid.uuid4().hex[:6]}"
    assert live.store.run_transaction(lambda tx: tx.get_client(client)) == ClientState(client)
    state = ClientState(client, "a").enqueue("late", T0 + timedelta(seconds=9)).enqueue("early", T0)
    live.store.run_transaction(lambda tx: tx.put_client(state))
    back = live.store.run_transaction(lambda tx: tx.get_client(client))
    assert back == state and [w.job_id for w in back.pending] == ["early", "late"]


def test_chunk_progress_is_summed_across_chunks(live: LiveDeps) -> None:
    j = job("c-sum")
    chunks = [Chunk(j.job_id, i, i * 10, i * 10 + 10, i + 1, 1) for i in range(3)]
    live.store.save_chunks(chunks)
    live.store.run_transaction(
        lambda tx: tx.put_chunk(chunks[0].replace(completed=4, failed=1, input_tokens=10, output_tokens=20))
    )
    live.store.run_transaction(lambda tx: tx.put_chunk(chunks[2].replace(completed=2, output_tokens=5)))
    live.store.run_transaction(
        lambda tx: tx.put_chunk(chunks[1].replace(failed=3, error_counts={"timeout": 2, "budget_exceeded": 1}))
    )
    totals = live.store.chunk_totals(j.job_id)
    assert (totals.completed, totals.failed, totals.input_tokens, totals.output_tokens) == (6, 4, 10, 25)
    assert totals.error_counts == {"timeout": 2, "budget_exceeded": 1}
    assert [c.index for c in live.store.list_chunks(j.job_id)] == [0, 1, 2]
    assert live.store.list_chunks(j.job_id)[0].status is ChunkStatus.PENDING


def test_a_chunk_reads_plainly_and_updates_only_the_version_it_read(live: LiveDeps) -> None:
    j = job("c-upd")
    chunk = Chunk(j.job_id, 0, 0, 10, 1, 5)
    assert live.store.get_chunk(j.job_id, 0) is None
    assert live.store.update_chunk(j.job_id, 0, lambda c: None) is None
    live.store.save_chunks([chunk])
    assert live.store.get_chunk(j.job_id, 0) == chunk
    seen: list[Chunk | None] = []

    def change(current: Chunk | None) -> Chunk | None:
        seen.append(current)
        if len(seen) == 1:
            # Another writer commits between this read and its write: the write must fail
            # and the change run again on what that writer stored.
            live.store.run_transaction(lambda tx: tx.put_chunk(chunk.replace(deliveries=7)))
        assert current is not None
        return current.replace(completed=current.completed + 2, segments=(*current.segments, "s"), error_counts={"timeout": 1})

    stored = live.store.update_chunk(j.job_id, 0, change)
    assert [c.deliveries if c else None for c in seen] == [0, 7]
    assert stored == chunk.replace(deliveries=7, completed=2, segments=("s",), error_counts={"timeout": 1})
    assert live.store.get_chunk(j.job_id, 0) == stored
    with pytest.raises(LookupError):
        live.store.update_chunk(j.job_id, 0, lambda c: (_ for _ in ()).throw(LookupError("refused")))
    assert live.store.get_chunk(j.job_id, 0) == stored  # a change that raises writes nothing


def test_a_done_count_change_tells_whether_the_job_may_be_complete(live: LiveDeps) -> None:
    job_id = job("c-mark").job_id

    def count(index: int, delta: int, chunk_count: int = 10) -> bool | None:
        mark = live.store.run_transaction(lambda tx: tx.count_done(job_id, index, delta, T0, chunk_count))
        return mark.may_complete

    # Ten chunks: the counter of chunk 0 counts chunks 0 and 8; that of chunk 5 only chunk 5.
    assert count(0, 1) is False
    assert count(5, 1) is True
    assert count(8, 1) is True
    assert count(8, -1) is False  # reopened
    assert count(8, 1, chunk_count=0) is None  # without the job's size, nothing is known
    assert live.store.chunks_done(job_id).done == 3


def test_api_keys_are_stored_by_hash(live: LiveDeps) -> None:
    digest = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
    live.store.put_api_key(ApiKey(digest, "c-key", "pf_abcdefg", T0))
    assert live.store.get_api_key(digest) == ApiKey(digest, "c-key", "pf_abcdefg", T0)
    assert live.store.get_api_key("0" * 64) is None


# --- Cloud Storage ---------------------------------------------------------------------


def test_objects_write_read_ranges_and_stream(live: LiveDeps) -> None:
    b, name = live.settings.results_bucket, f"t/{uuid.uuid4()}.jsonl"
    assert not live.blobs.exists(b, name)
    live.blobs.write(b, name, b"0123456789")
    assert live.blobs.exists(b, name)
    with live.blobs.open_read(b, name, 3, 7) as f:
        assert f.read() == b"3456"
    streamed = f"t/{uuid.uuid4()}.jsonl"
    with live.blobs.open_write(b, streamed) as w:
        for i in range(1000):
            w.write(b"line %d\n" % i)
    with live.blobs.open_read(b, streamed) as f:
        assert f.read().count(b"\n") == 1000


def test_a_ranged_read_fetches_only_its_range_in_pieces(live: LiveDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    from promptforge.adapters.gcs_blobs import GcsBlobStore

    b, name = live.settings.results_bucket, f"t/{uuid.uuid4()}.bin"
    data = bytes(range(256)) * 40  # 10,240 bytes
    live.blobs.write(b, name, data)
    blobs = GcsBlobStore(storage.Client(project=live.settings.project, credentials=AnonymousCredentials()), None)  # type: ignore[arg-type]
    blobs._read_chunk = 1000
    asked: list[tuple[int, int]] = []
    real = storage.Blob.download_as_bytes

    def counted(self: storage.Blob, *args: Any, **kw: Any) -> bytes:
        asked.append((kw["start"], kw["end"]))
        return bytes(real(self, *args, **kw))

    monkeypatch.setattr(storage.Blob, "download_as_bytes", counted)
    with blobs.open_read(b, name, 1500, 4100) as f:
        got = [f.read(700) for _ in range(5)]
    assert b"".join(got) == data[1500:4100] and got[-1] == b""
    # Pieces of at most 1,000 bytes, none past the range's end, no metadata request.
    assert asked == [(1500, 2499), (2500, 3499), (3500, 4099)]
    asked.clear()
    with blobs.open_read(b, name, 10_000, 20_000) as f:  # the object ends inside the range
        assert f.read() == data[10_000:]
    with blobs.open_read(b, name, 20_000, 20_100) as f:  # it ends before the range
        assert f.read() == b""
    with blobs.open_read(b, name, 5, 5) as f:
        assert f.read() == b""
    assert asked == [(10_000, 10_999), (20_000, 20_099)]


def test_a_failed_stream_leaves_no_object(live: LiveDeps) -> None:
    b, name = live.settings.results_bucket, f"t/{uuid.uuid4()}.jsonl"
    with pytest.raises(RuntimeError), live.blobs.open_write(b, name) as w:
        w.write(b"partial\n")
        raise RuntimeError("worker died")
    assert not live.blobs.exists(b, name)


def test_publish_keeps_order_beyond_one_compose_request_and_leaves_no_temporaries(live: LiveDeps) -> None:
    b, prefix = live.settings.results_bucket, f"t/{uuid.uuid4()}"
    names = [f"{prefix}/{i:04d}" for i in range(1100)]  # more than 32 x 32 sources: three levels
    for i, n in enumerate(names):
        live.blobs.write(b, n, b"%d\n" % i)
    expected = b"".join(b"%d\n" % i for i in range(1100))
    assert publish(live.blobs, b, names, f"{prefix}/all", len(expected), f"{prefix}/scratch") == len(expected)
    with live.blobs.open_read(b, f"{prefix}/all") as f:
        assert f.read() == expected
    client = storage.Client(project=live.settings.project, credentials=AnonymousCredentials())
    assert [x.name for x in client.list_blobs(b, prefix=f"{prefix}/scratch")] == []
    publish(live.blobs, b, [], f"{prefix}/empty", 0, f"{prefix}/scratch")
    with live.blobs.open_read(b, f"{prefix}/empty") as f:
        assert f.read() == b""


def test_publish_refuses_an_object_short_of_its_recorded_size(live: LiveDeps) -> None:
    b, prefix = live.settings.results_bucket, f"t/{uuid.uuid4()}"
    live.blobs.write(b, f"{prefix}/a", b"a\n")
    with pytest.raises(IncompleteObject):
        publish(live.blobs, b, [f"{prefix}/a"], f"{prefix}/all", 4, f"{prefix}/scratch")


def test_stat_compose_and_delete(live: LiveDeps) -> None:
    b, prefix = live.settings.results_bucket, f"t/{uuid.uuid4()}"
    assert live.blobs.stat(b, f"{prefix}/a") is None
    live.blobs.write(b, f"{prefix}/a", b"12345")
    info = live.blobs.stat(b, f"{prefix}/a")
    assert info is not None and info.size == 5 and info.created.tzinfo is not None
    assert live.blobs.compose(b, [f"{prefix}/a", f"{prefix}/a"], f"{prefix}/b") == 10
    assert live.blobs.compose(b, [f"{prefix}/a", f"{prefix}/a"], f"{prefix}/b") == 10  # a repeat is the same object
    with pytest.raises(ValueError):
        live.blobs.compose(b, [f"{prefix}/b"], f"{prefix}/b")
    with pytest.raises(ValueError):
        live.blobs.compose(b, [f"{prefix}/a"] * 33, f"{prefix}/c")
    live.blobs.delete(b, f"{prefix}/b")
    live.blobs.delete(b, f"{prefix}/b")  # already gone: no error
    assert live.blobs.stat(b, f"{prefix}/b") is None


def _verify_v4(url: str, method: str, sent: dict[str, str], key_file: str) -> bool:
    """Check a V4 signature the way Cloud Storage does (fake-gcs-server does not), for a
    request sending the headers ``sent``: every signed header must be among them, with
    the value that was signed."""
    u = urlparse(url)
    query = [(k, v) for k, v in parse_qsl(u.query, keep_blank_values=True) if k != "X-Goog-Signature"]
    signature = dict(parse_qsl(u.query))["X-Goog-Signature"]
    canonical_query = u.query.split("&X-Goog-Signature=")[0]
    params = dict(query)
    headers = {"host": u.netloc, **{k.lower(): v.strip() for k, v in sent.items()}}
    signed = params["X-Goog-SignedHeaders"].split(";")
    if any(h not in headers for h in signed):
        return False
    canonical_headers = "".join(f"{h}:{headers[h]}\n" for h in signed)
    request = "\n".join([method, u.path, canonical_query, canonical_headers, ";".join(signed), "UNSIGNED-PAYLOAD"])
    scope = params["X-Goog-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["GOOG4-RSA-SHA256", params["X-Goog-Date"], scope, hashlib.sha256(request.encode()).hexdigest()])
    with open(key_file) as f:
        key = load_pem_private_key(json.load(f)["private_key"].encode(), None)
    try:
        key.public_key().verify(bytes.fromhex(signature), to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg,arg-type]
        return True
    except Exception:
        return False


def test_signed_upload_urls_bind_method_headers_size_range_object_and_expiry(live: LiveDeps) -> None:
    b, name = live.settings.upload_bucket, f"uploads/c/{uuid.uuid4()}.jsonl"
    headers = upload_headers(1000)
    assert headers == {"Content-Type": "application/x-ndjson", "x-goog-content-length-range": "0,1000"}
    url = live.blobs.signed_upload_url(b, name, headers, timedelta(minutes=60))
    params = dict(parse_qsl(urlparse(url).query))
    assert params["X-Goog-Expires"] == "3600"
    # The size range is in the canonical request, so Cloud Storage holds the PUT to it.
    assert params["X-Goog-SignedHeaders"] == "content-type;host;x-goog-content-length-range"
    assert params["X-Goog-Credential"].endswith("/auto/storage/goog4_request")
    key_file = live.settings.signing_key_file
    assert _verify_v4(url, "PUT", headers, key_file)
    assert not _verify_v4(url, "GET", headers, key_file)
    assert not _verify_v4(url, "PUT", {**headers, "Content-Type": "text/plain"}, key_file)
    assert not _verify_v4(url, "PUT", {"Content-Type": "application/x-ndjson"}, key_file)  # the range left out
    assert not _verify_v4(url, "PUT", {**headers, "x-goog-content-length-range": "0,2000"}, key_file)  # or widened
    assert not _verify_v4(url.replace(name, name.replace("uploads/c/", "uploads/d/")), "PUT", headers, key_file)
    # and the emulator takes the upload through it, sent with those headers
    put = requests.put(url, data=b'{"prompt_id":"a","prompt":"b"}\n', headers=headers, timeout=10)
    assert put.status_code == 200 and live.blobs.exists(b, name)


def test_signed_download_urls_name_the_file(live: LiveDeps) -> None:
    b, name = live.settings.results_bucket, f"results/c/{uuid.uuid4()}/results_part_001.jsonl"
    live.blobs.write(b, name, b'{"x": 1}\n')
    url = live.blobs.signed_download_url(b, name, "results_part_001.jsonl", timedelta(minutes=60))
    params = dict(parse_qsl(urlparse(url).query))
    assert params["response-content-disposition"] == 'attachment; filename="results_part_001.jsonl"'
    assert _verify_v4(url, "GET", {}, live.settings.signing_key_file)
    assert requests.get(url, timeout=10).content == b'{"x": 1}\n'


# --- Cloud Tasks -----------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    got: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    event = threading.Event()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        # Header names are case-insensitive; the emulator's urllib re-cases them.
        headers = {k.lower(): v for k, v in self.headers.items()}
        headers["received-at"] = str(time.monotonic())
        self.got.append((self.path, body, headers))
        self.event.set()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_tasks_reach_their_worker_with_their_payload(live: LiveDeps) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        settings = dataclasses.replace(live.settings, plan_url=f"{base}/plan", chunk_url=f"{base}/chunk")
        from promptforge.adapters.cloud_tasks import CloudTasksQueue, make_client

        queue = CloudTasksQueue(make_client(settings), settings)
        job_id = str(uuid.uuid4())
        queue.enqueue_plan(job_id)
        queue.enqueue_chunk(job_id, 5)
        deadline = datetime.now() + timedelta(seconds=20)
        while len(_Receiver.got) < 2 and datetime.now() < deadline:
            _Receiver.event.wait(0.2)
        paths = sorted((p, b.get("chunk")) for p, b, _ in _Receiver.got if b["job_id"] == job_id)
        assert paths == [("/chunk", 5), ("/plan", None)]
        names = {h.get("x-cloudtasks-taskname") for _, b, h in _Receiver.got if b["job_id"] == job_id}
        assert names == {f"plan-{job_id}", f"chunk-{job_id}-00005"}
    finally:
        server.shutdown()


def test_a_poll_task_waits_for_its_time_and_carries_its_number(live: LiveDeps) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        settings = dataclasses.replace(live.settings, chunk_url=f"{base}/chunk")
        from promptforge.adapters.cloud_tasks import CloudTasksQueue, make_client

        queue = CloudTasksQueue(make_client(settings), settings)
        job_id = str(uuid.uuid4())
        enqueued = time.monotonic()
        queue.enqueue_chunk(job_id, 7, "p3", delay_s=4, poll=3)

        def mine() -> list[tuple[str, dict[str, Any], dict[str, str]]]:
            return [g for g in _Receiver.got if g[1]["job_id"] == job_id]

        deadline = time.monotonic() + 30
        while not mine() and time.monotonic() < deadline:
            _Receiver.event.wait(0.2)
        [(path, body, headers)] = mine()
        assert (path, body) == ("/chunk", {"job_id": job_id, "chunk": 7, "poll": 3})
        assert headers["x-cloudtasks-taskname"] == f"chunk-{job_id}-00007-p3"
        # Not before its schedule (a lower bound: a busy machine only makes it later).
        assert float(headers["received-at"]) - enqueued >= 3.0
    finally:
        server.shutdown()


def test_a_transaction_that_cannot_commit_under_contention_is_store_contention(live: LiveDeps) -> None:
    from google.api_core import exceptions as gexc

    from promptforge.service.ports import StoreContention

    tries = 0

    def always_contended(tx: Any) -> None:
        nonlocal tries
        tries += 1
        tx.get_job("nobody")
        raise gexc.Aborted("another writer holds the document")

    with pytest.raises(StoreContention):
        live.store.run_transaction(always_contended)
    assert tries >= 6  # retried before giving up


def test_free_form_maps_keep_any_keys_and_depth(live: LiveDeps) -> None:
    deep: dict[str, object] = {"": 1}
    for _ in range(30):
        deep = {"x": deep}
    j = job("c-maps", metadata={"": True, "a.b": deep}, params={"response_format": {"": {"type": "json"}}})
    live.store.create_job(j)
    assert live.store.get_job(j.job_id) == j
