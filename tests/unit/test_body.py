"""Request bodies: the bounded read, the nesting scan, NaN/Infinity with their path, and
strict JSON on the way out; plus the endpoint wrapper on a chunked body in memory."""

from __future__ import annotations

import io
import json
from typing import Any

import flask
import pytest
from werkzeug.test import EnvironBuilder

from promptforge.api import body, public
from promptforge.api.envelope import ApiError
from promptforge.service import keys, lifecycle
from promptforge.service.deps import StaticDeps
from tests.conftest import make_settings
from tests.fakes import MemoryBlobs, MemoryStore, RecordingTasks


class Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes a read, and counts what it gave."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self.data, self.step, self.given = data, step, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self.step if size < 0 else min(size, self.step)
        out = self.data[self.given : self.given + n]
        self.given += len(out)
        return out


def refusal(call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


# --- the bounded read -------------------------------------------------------------------


def test_a_body_up_to_the_limit_is_read_whole_even_in_short_reads() -> None:
    assert body.read_limited(Trickle(b"x" * 100), 100) == b"x" * 100
    assert body.read_limited(io.BytesIO(b""), 10) == b""


def test_a_body_over_the_limit_is_refused_after_limit_plus_one_bytes() -> None:
    stream = Trickle(b"y" * 10_000, step=3)
    err = refusal(lambda: body.read_limited(stream, 100, "use the other endpoint"))
    assert (err.status, err.code, err.details) == (413, "payload_too_large", {"limit_bytes": 100})
    assert "100 bytes" in err.message and "use the other endpoint" in err.message
    assert stream.given == 101  # never more than one byte past the limit


def test_a_body_that_breaks_off_is_a_400_not_a_crash() -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise OSError("connection reset")

    err = refusal(lambda: body.read_limited(Broken(), 100))
    assert (err.status, err.code) == (400, "invalid_request")


def test_drain_discards_up_to_its_cap() -> None:
    assert body.drain(io.BytesIO(b"z" * 1000), cap=1000)
    stream = Trickle(b"z" * 1000, step=64)
    assert not body.drain(stream, cap=100)
    assert stream.given <= 101 + 64


# --- nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "deepest"),
    [
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('{"a": "[[[[[[[[[[[[[[[[[["}', 1),  # brackets in a string do not count
        ('{"a": "\\"[[[[[[", "b": ["x\\\\"]}', 2),  # nor after escaped quotes and backslashes
        ('[[[["unterminated [[[[[[[[[[[[[[[', 4),
        ("", 0),
    ],
)
def test_nesting_is_measured_outside_strings(text: str, deepest: int) -> None:
    assert body.structure_problem(text, deepest) is None
    assert (body.structure_problem(text, deepest - 1) is not None) == (deepest > 0)


def test_the_nesting_scan_answers_right_on_pathological_input() -> None:
    # Long runs of brackets, quotes and escapes: what would make a naive scan recurse or
    # backtrack. How fast the scan is belongs in a benchmark, not in a timed assertion.
    cases = [
        "[" * 1_000_000,
        '"' + '\\"' * 500_000,  # one string that never ends, all escaped quotes
        '"\\"' * 300_000 + "\\",  # the same, ending in a lone backslash
        '["' + "a" * 2_000_000 + '"]',
        '{"k": ' * 100 + "1" + "}" * 100,
    ]
    results = [body.structure_problem(text, 64) is not None for text in cases]
    assert results == [True, False, False, False, True]


# --- parsing ------------------------------------------------------------------------------


def test_a_plain_object_parses() -> None:
    data = json.dumps({"model": "m", "metadata": {"score": 1.5, "tags": ["a", 2]}}).encode()
    assert body.parse_object(data, 64) == {"model": "m", "metadata": {"score": 1.5, "tags": ["a", 2]}}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"metadata": {"score": NaN}}', "metadata.score"),
        (b'{"metadata": {"score": Infinity}}', "metadata.score"),
        (b'{"metadata": {"score": -Infinity}}', "metadata.score"),
        (b'{"metadata": {"scores": [1, 2, NaN]}}', "metadata.scores.2"),
        (b'{"params": {"temperature": 1e999}}', "params.temperature"),
        (b'{"a": 1, "metadata": {"x": {"y": [{"z": -1e400}]}}, "b": NaN}', "metadata.x.y.0.z"),  # the first one
    ],
)
def test_non_finite_numbers_are_refused_naming_their_field(raw: bytes, field: str) -> None:
    err = refusal(lambda: body.parse_object(raw, 64))
    assert (err.status, err.code, err.details) == (400, "invalid_request", {"field": field})
    assert err.message.startswith(f"{field}: ")


def test_a_nan_in_a_string_or_a_key_is_just_text() -> None:
    assert body.parse_object(b'{"metadata": {"NaN": "Infinity"}}', 64) == {"metadata": {"NaN": "Infinity"}}


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b'{"metadata": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001,
        b"",
        b"   ",
        b"[]",
        b"42",
        b'"text"',
        b"{",
        b'{"a": 1} {"b": 2}',
        b'{"a": ' + b"9" * 10_000 + b"}",  # more digits than Python converts
        b'\xff{"a": 1}',
        b'\xef\xbb\xbf{"a": 1}',  # a byte order mark
        b'{"a": "\xc3"}',
    ],
)
def test_every_bad_body_is_a_400_with_the_envelope(raw: bytes) -> None:
    err = refusal(lambda: body.parse_object(raw, 64))
    assert (err.status, err.code) == (400, "invalid_request")
    assert set(err.body()["error"]) == {"code", "message", "details"} and "field" in err.details


def test_nesting_at_the_limit_is_allowed_and_one_more_is_not() -> None:
    at_limit = b'{"m": ' * 63 + b"{}" + b"}" * 63
    assert body.parse_object(at_limit, 64)
    err = refusal(lambda: body.parse_object(b'{"m": ' + at_limit + b"}", 64))
    assert "64" in err.message


# --- answers ------------------------------------------------------------------------------


def test_answers_are_strict_json_and_a_stored_nan_goes_out_as_null() -> None:
    assert body.to_json({"a": [1, 2.5]}) == '{"a": [1, 2.5]}'
    text = body.to_json({"metadata": {"x": float("nan"), "y": [float("inf"), 1]}})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"metadata": {"x": None, "y": [None, 1]}}


# --- the endpoint wrapper, in memory ------------------------------------------------------


@pytest.fixture
def deps() -> StaticDeps:
    settings = make_settings(max_body_bytes=4096, max_small_body_bytes=256)
    return StaticDeps(settings, MemoryStore(), MemoryBlobs(), RecordingTasks())


def call(deps: StaticDeps, handler: Any, path: str, data: bytes, key: str) -> flask.Response:
    """One POST through ``public.endpoint`` with a body of no stated length, as a chunked
    body reaches the function (the server de-chunks it, as gunicorn does)."""
    environ = EnvironBuilder(path=path, method="POST", headers=[("X-API-Key", key)]).get_environ()
    environ["wsgi.input"] = Trickle(data, 4096)
    environ["wsgi.input_terminated"] = True
    environ.pop("CONTENT_LENGTH", None)
    with flask.Flask(__name__).request_context(environ):
        response: flask.Response = public.endpoint(handler, lambda: deps)(flask.request)
        return response


def test_a_chunked_init_body_over_the_limit_is_a_413(deps: StaticDeps) -> None:
    key, _ = keys.create_key(deps)
    big = json.dumps({"provider": "fake", "model": "m", "system_prompt": "s" * 10_000}).encode()
    res = call(deps, public.jobs_init, "/v1/jobs/init", big, key)
    assert res.status_code == 413 and res.get_json()["error"]["details"] == {"limit_bytes": 4096}
    ok = call(deps, public.jobs_init, "/v1/jobs/init", b'{"provider": "fake", "model": "m"}', key)
    assert ok.status_code == 201, ok.get_data()


def test_a_stored_nan_never_makes_a_500(deps: StaticDeps) -> None:
    key, record = keys.create_key(deps)
    # A job created before NaN was refused on the way in.
    new = lifecycle.create_job(deps, record.client_id, {"provider": "fake", "model": "m", "metadata": {"score": float("nan")}})
    environ = EnvironBuilder(path=f"/v1/jobs/{new.job.job_id}/status", headers=[("X-API-Key", key)]).get_environ()
    with flask.Flask(__name__).request_context(environ):
        res = public.endpoint(public.job_status, lambda: deps)(flask.request)
    assert res.status_code == 200
    assert json.loads(res.get_data(), parse_constant=lambda c: pytest.fail(c))["metadata"] == {"score": None}


def test_a_body_of_millions_of_tiny_containers_is_refused_before_it_is_parsed() -> None:
    # 10 MB of "[]," would parse into 3.3 million lists: hundreds of MB of one instance.
    hostile = b'{"prompts": [' + b"[]," * 3_400_000 + b"[]]}"
    with pytest.raises(ApiError) as refused:
        body.parse_object(hostile, 64, 200_000)
    assert refused.value.status == 400 and "more than 200000 objects and arrays" in refused.value.message
    ordinary = {"prompts": [{"prompt_id": f"p{i}", "messages": [{"role": "user", "content": "hi"}]} for i in range(1000)]}
    assert body.parse_object(json.dumps(ordinary).encode(), 64, 200_000) == ordinary
