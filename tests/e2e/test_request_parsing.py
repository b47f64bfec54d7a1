"""Hostile request bodies on the local stack: each gets a 4xx in the error envelope, never
a 500 or a trace, both through the gateway and sent straight to the function; and the
upload PUT works with every header init returned, the size range among them.

What a body holds (nesting, NaN, a field's value) is refused the same way in process:
tests/api/test_errors.py. Here are the cases only real servers show: framing, bodies
larger than the limit on the wire, and a client's stated length."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from promptforge import config
from tests.e2e.test_lifecycle_http import init, new_key, upload, wait

SETTINGS = config.load()  # the stack runs on the defaults
INIT_LIMIT = SETTINGS.max_body_bytes
SMALL_LIMIT = SETTINGS.max_small_body_bytes


@pytest.fixture(scope="module")
def api(stack: Any) -> tuple[str, str]:
    return stack.base_url, new_key(stack)


def error_of(status: int, text: bytes | str, code: str) -> dict[str, Any]:
    """The envelope's error, after checking it is a 4xx with ``code`` and no trace."""
    raw = text.decode(errors="replace") if isinstance(text, bytes) else text
    assert 400 <= status < 500, (status, raw[:300])
    assert "Traceback" not in raw and 'File "' not in raw
    error: dict[str, Any] = json.loads(raw)["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == code, error
    return error


def refused(res: requests.Response, code: str) -> dict[str, Any]:
    assert res.headers["Content-Type"].startswith("application/json")
    return error_of(res.status_code, res.content, code)


def post_raw(url: str, body: bytes, key: str) -> requests.Response:
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    return requests.post(url, data=body, headers=headers, timeout=60)


def exchange(base: str, path: str, key: str, headers: dict[str, str], body: Iterable[bytes]) -> tuple[int, bytes]:
    """One POST written by hand: the body is sent on a thread while the answer is read, so
    a server that answers before the body ends (and may close) is still heard."""
    u = urlsplit(base)
    sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=60)
    lines = [f"POST {path} HTTP/1.1", f"Host: {u.netloc}", f"X-API-Key: {key}", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()] + ["Connection: close", "", ""]

    def pump() -> None:
        try:
            sock.sendall("\r\n".join(lines).encode())
            for part in body:
                sock.sendall(part)
        except OSError:
            pass  # answered and closed before the whole body went: what a limit may do

    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    try:
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()
    finally:
        sock.close()
        sender.join(timeout=30)


def chunked(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        part = data[i : i + size]
        yield b"%x\r\n%s\r\n" % (len(part), part)
    yield b"0\r\n\r\n"


def init_body(**fields: Any) -> bytes:
    return json.dumps({"provider": "fake", "model": "fake-small", **fields}).encode()


def targets(stack: Any, function: str) -> list[str]:
    """The gateway, and the function's own server (as a platform would reach it)."""
    return [stack.base_url, stack.function_url(function).rstrip("/")]


# --- size limits on the bytes actually read ---------------------------------------------


def test_a_ten_megabyte_init_body_is_a_413_naming_the_limit(api: tuple[str, str]) -> None:
    base, key = api
    body = init_body(system_prompt="s" * (10 * 1024 * 1024))
    error = refused(post_raw(f"{base}/v1/jobs/init", body, key), "payload_too_large")
    assert error["details"] == {"limit_bytes": INIT_LIMIT} and str(INIT_LIMIT) in error["message"]


def test_a_chunked_body_over_the_limit_with_no_content_length_is_a_413(stack: Any, api: tuple[str, str]) -> None:
    _, key = api
    body = init_body(system_prompt="s" * (INIT_LIMIT + 1024))
    for base in targets(stack, "jobs_init"):
        status, text = exchange(base, "/v1/jobs/init", key, {"Transfer-Encoding": "chunked"}, chunked(body))
        assert error_of(status, text, "payload_too_large")["details"] == {"limit_bytes": INIT_LIMIT}, base


def test_a_lying_small_content_length_gets_a_4xx_envelope(stack: Any, api: tuple[str, str]) -> None:
    _, key = api
    body = init_body(system_prompt="s" * (INIT_LIMIT + 1024))
    for base in targets(stack, "jobs_init"):
        # Only the 40 bytes the header states are the request; they are not a JSON object.
        status, text = exchange(base, "/v1/jobs/init", key, {"Content-Length": "40"}, [body])
        assert "not valid JSON" in error_of(status, text, "invalid_request")["message"], base


def test_a_chunked_inline_job_over_its_limit_is_a_413(stack: Any, api: tuple[str, str]) -> None:
    _, key = api
    limit = SETTINGS.inline_max_bytes
    body = init_body(prompts=[{"prompt_id": "p", "prompt": "x" * (limit + 1024)}])
    for base in targets(stack, "jobs_create"):
        status, text = exchange(base, "/v1/jobs", key, {"Transfer-Encoding": "chunked"}, chunked(body))
        error = error_of(status, text, "payload_too_large")
        assert error["details"] == {"limit_bytes": limit} and "POST /v1/jobs/init" in error["message"], base


def test_the_gateway_bounds_and_checks_framing_itself(api: tuple[str, str]) -> None:
    base, key = api
    from infra.gateway import MAX_BODY_BYTES

    # A stated length over the platform's cap is refused before any of the body is read.
    status, text = exchange(base, "/v1/jobs/init", key, {"Content-Length": str(MAX_BODY_BYTES + 1)}, [b"{}"])
    assert error_of(status, text, "payload_too_large")["details"] == {"limit_bytes": MAX_BODY_BYTES}
    status, text = exchange(base, "/v1/jobs/init", key, {"Transfer-Encoding": "chunked"}, [b"zz\r\n{}\r\n0\r\n\r\n"])
    error_of(status, text, "invalid_request")
    status, text = exchange(base, "/v1/jobs/init", key, {"Content-Length": "-1"}, [b"{}"])
    error_of(status, text, "invalid_request")
    # And what is not HTTP at all gets the envelope too, echoing nothing back.
    u = urlsplit(base)
    with socket.create_connection((u.hostname or "127.0.0.1", u.port or 80), timeout=30) as sock:
        sock.sendall(b"NOT AN HTTP REQUEST\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert "REQUEST" not in error_of(response.status, response.read(), "invalid_request")["message"]


def test_the_functions_still_serve_after_all_that(api: tuple[str, str]) -> None:
    base, key = api
    res = init(base, key, metadata={"score": 0.5, "deep": [[[["ok"]]]]})
    assert res.status_code == 201, res.text
    status = requests.get(f"{base}/v1/jobs/{res.json()['job_id']}/status", headers={"X-API-Key": key}, timeout=30)
    assert status.json()["metadata"] == {"score": 0.5, "deep": [[[["ok"]]]]}


# --- uploads ------------------------------------------------------------------------------


def test_the_upload_url_takes_a_put_with_every_header_init_returned(api: tuple[str, str]) -> None:
    base, key = api
    job = init(base, key).json()
    max_bytes = job["max_upload_bytes"]
    # Signed into the URL: Cloud Storage refuses a PUT without them, or with a body outside
    # the range (fake-gcs-server checks neither; tests/integration checks the signature).
    assert job["upload_headers"] == {"Content-Type": "application/x-ndjson", "x-goog-content-length-range": f"0,{max_bytes}"}
    assert max_bytes == SETTINGS.max_upload_bytes
    rows = b"".join(json.dumps({"prompt_id": f"u{i}", "prompt": f"hello {i}"}).encode() + b"\n" for i in range(5))
    upload(job, rows)
    done = wait(base, key, job["job_id"])
    assert done["status"] == "COMPLETED" and done["completed_count"] == 5
