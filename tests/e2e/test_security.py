"""A tenant with an ordinary API key, as an attacker: on the local stack, every attack
on the deployment's credential, network and callback queue is refused or goes nowhere."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from tests.e2e.test_lifecycle_http import init, new_key, upload, wait
from tests.integration.test_outbound import Listener


@pytest.fixture
def listener() -> Any:
    one = Listener()
    yield one
    one.close()


def _refused(res: requests.Response, field: str) -> None:
    assert res.status_code == 400, res.text
    err = res.json()["error"]
    assert err["code"] == "invalid_request" and err["details"]["field"] == field, err


def test_a_callback_that_redirects_inward_is_not_followed(stack: Any, listener: Listener) -> None:
    key = new_key(stack)
    bouncer = Listener(status=302, location=f"http://127.0.0.1:{listener.port}/internal")
    try:
        job = init(stack.base_url, key, callback_url=f"http://127.0.0.1:{bouncer.port}/hook").json()
        upload(job, b'{"prompt_id": "a", "prompt": "hi"}\n')
        assert wait(stack.base_url, key, job["job_id"])["status"] == "COMPLETED"
        deadline = time.monotonic() + 30
        while not bouncer.requests and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # a followed redirect would arrive now
    finally:
        bouncer.close()
    assert len(bouncer.requests) == 1 and bouncer.requests[0]["headers"].get("X-PromptForge-Signature")
    assert listener.requests == []


class Hang(BaseHTTPRequestHandler):
    """Accepts a callback and never answers."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        time.sleep(60)

    def log_message(self, *args: Any) -> None:
        return None


def _job_start_seconds(stack: Any, key: str) -> float:
    """From init to the job leaving QUEUED (planning ran)."""
    started = time.monotonic()
    job = init(stack.base_url, key).json()
    upload(job, b"".join(json.dumps({"prompt_id": f"p{i}", "prompt": "hi"}).encode() + b"\n" for i in range(5)))
    while True:
        status = requests.get(f"{stack.base_url}/v1/jobs/{job['job_id']}/status", headers={"X-API-Key": key}, timeout=30).json()[
            "status"
        ]
        if status not in ("AWAITING_UPLOAD", "QUEUED", "PENDING"):
            return time.monotonic() - started
        assert time.monotonic() - started < 120
        time.sleep(0.05)


def test_a_hanging_callback_receiver_does_not_delay_another_clients_job_start(stack: Any) -> None:
    quiet = new_key(stack)
    before = sorted(_job_start_seconds(stack, quiet) for _ in range(3))[1]
    hang = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    hang.daemon_threads = True
    threading.Thread(target=hang.serve_forever, daemon=True).start()
    noisy = new_key(stack)
    try:
        # Jobs that end at once (cancelled) each send a callback into the hanging receiver.
        hook = f"http://127.0.0.1:{hang.server_address[1]}/hook"
        for _ in range(8):
            job = init(stack.base_url, noisy, callback_url=hook).json()
            res = requests.post(f"{stack.base_url}/v1/jobs/{job['job_id']}/cancel", headers={"X-API-Key": noisy}, timeout=30)
            assert res.status_code == 200
        time.sleep(1.0)  # the callbacks are being sent now
        during = sorted(_job_start_seconds(stack, quiet) for _ in range(3))[1]
    finally:
        hang.shutdown()
        hang.server_close()
    print(f"\njob start, median of 3: {before:.2f}s quiet, {during:.2f}s with 8 hanging callbacks")
    assert during - before < 1.0


def test_the_hanging_receiver_fixture_really_hangs() -> None:
    hang = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    hang.daemon_threads = True
    threading.Thread(target=hang.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", hang.server_address[1]), timeout=1) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            with pytest.raises(TimeoutError):
                s.recv(1)
    finally:
        hang.shutdown()
        hang.server_close()
