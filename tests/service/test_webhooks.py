"""Callbacks at terminal states: signed with the client's secret, retried on failure."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from promptforge.domain import paths
from promptforge.domain.job import JobStatus
from promptforge.service import keys, lifecycle, quotas, webhooks
from promptforge.service.deps import StaticDeps
from tests.service.test_lifecycle import SPEC, drain, prompts_file


class Receiver(BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]] = []
    answer = 200

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(type(self).answer)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver(deps: StaticDeps) -> Any:
    # The receiver is on loopback over plain http: the exemption a local stack has.
    deps.settings = dataclasses.replace(deps.settings, allow_loopback_http_callbacks=True)
    Receiver.got, Receiver.answer = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_a_finished_job_calls_back_once_signed_with_the_clients_secret(deps: StaticDeps, receiver: str) -> None:
    _, key = keys.create_key(deps)
    new = lifecycle.create_job(deps, key.client_id, {**SPEC, "callback_url": receiver})
    name = paths.upload_object(key.client_id, new.job.job_id)
    deps.blobs.write(deps.settings.upload_bucket, name, prompts_file(3))
    lifecycle.accept_upload(deps, deps.settings.upload_bucket, name, 10, deps.now())
    drain(deps)
    assert deps.tasks.notifies == [new.job.job_id]  # type: ignore[attr-defined]

    job = deps.store.get_job(new.job.job_id)
    assert job is not None and job.status is JobStatus.COMPLETED
    body = json.dumps({"job_id": job.job_id, "status": job.status.value}).encode()
    webhooks.deliver(deps, job, body)
    headers, got = Receiver.got[-1]
    secret = webhooks.webhook_secret(deps, key.client_id)
    assert got == body and headers["x-promptforge-event"] == "job.completed"
    assert headers["x-promptforge-delivery"] == job.job_id
    assert webhooks.verify(secret, got, headers["x-promptforge-signature"])
    assert not webhooks.verify(secret, got + b" ", headers["x-promptforge-signature"])
    assert not webhooks.verify("whsec_other", got, headers["x-promptforge-signature"])
    # rotation: the old signature no longer verifies with the new secret
    rotated = webhooks.webhook_secret(deps, key.client_id, rotate=True)
    assert rotated != secret and not webhooks.verify(rotated, got, headers["x-promptforge-signature"])


def test_a_refusing_receiver_makes_the_delivery_fail_so_it_is_retried(deps: StaticDeps, receiver: str) -> None:
    _, key = keys.create_key(deps)
    new = lifecycle.create_job(deps, key.client_id, {**SPEC, "callback_url": receiver})
    lifecycle.cancel_job(deps, new.job)
    assert deps.tasks.notifies == [new.job.job_id]  # type: ignore[attr-defined]
    job = deps.store.get_job(new.job.job_id)
    assert job is not None
    Receiver.answer = 500
    with pytest.raises(webhooks.CallbackFailed):
        webhooks.deliver(deps, job, b"{}")
    assert Receiver.got[-1][0]["x-promptforge-event"] == "job.cancelled"


def test_signatures_older_than_the_window_are_refused() -> None:
    header = webhooks.sign("s", b"{}", 1_000)
    assert webhooks.verify("s", b"{}", header, now=1_100)
    assert not webhooks.verify("s", b"{}", header, now=2_000)
    assert not webhooks.verify("s", b"{}", "garbage")


def test_a_client_has_at_most_its_cap_of_callbacks_in_flight(deps: StaticDeps, receiver: str) -> None:
    deps.settings = dataclasses.replace(deps.settings, max_callbacks_in_flight=2, allow_loopback_http_callbacks=True)
    _, key = keys.create_key(deps)
    jobs = []
    for _ in range(3):
        new = lifecycle.create_job(deps, key.client_id, {**SPEC, "callback_url": receiver})
        jobs.append(lifecycle.cancel_job(deps, new.job))
    hold = timedelta(seconds=60)
    # Two callbacks of this client are being sent (their receivers hang): the third waits.
    assert quotas.start_callback(deps, key.client_id, jobs[0].job_id, hold)
    assert quotas.start_callback(deps, key.client_id, jobs[1].job_id, hold)
    with pytest.raises(webhooks.CallbackDeferred):
        webhooks.send(deps, jobs[2], b"{}")
    assert Receiver.got == []
    # Another client is not held back by them.
    _, other = keys.create_key(deps)
    theirs = lifecycle.cancel_job(deps, lifecycle.create_job(deps, other.client_id, {**SPEC, "callback_url": receiver}).job)
    assert webhooks.send(deps, theirs, b"{}") == 200
    # A sender that finished frees its place at once; one that died, when its time passes.
    quotas.end_callback(deps, key.client_id, jobs[0].job_id)
    assert webhooks.send(deps, jobs[2], b"{}") == 200
    assert quotas.start_callback(deps, key.client_id, "another", hold)  # jobs[2] released its place
    assert not quotas.start_callback(deps, key.client_id, "late", hold)
    started = deps.clock
    deps.clock = lambda: started() + hold + timedelta(seconds=1)
    assert quotas.start_callback(deps, key.client_id, "late", hold)


def test_a_blocked_callback_url_is_given_up_without_a_request(deps: StaticDeps, receiver: str) -> None:
    _, key = keys.create_key(deps)
    new = lifecycle.create_job(deps, key.client_id, {**SPEC, "callback_url": receiver.replace("http://", "https://")})
    job = lifecycle.cancel_job(deps, new.job)
    with pytest.raises(webhooks.CallbackBlocked):
        webhooks.send(deps, job, b"{}")
    assert Receiver.got == []
