"""The SDK's core alone: its flows are sent canned answers, with no socket, no file and no
clock (a fake one), and the tests read what they asked for and what they made of the answers."""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from promptforge_client import (
    APIError,
    AuthenticationError,
    InvalidRequest,
    Job,
    JobNotCompleted,
    JobPage,
    JobStatus,
    JobTerminal,
    NetworkError,
    NotFoundError,
    PayloadTooLarge,
    Results,
    StorageError,
    Upload,
    WaitTimeout,
)
from promptforge_client._core import (
    Core,
    Emit,
    LineSplitter,
    Local,
    Machine,
    NextText,
    OpenLines,
    Put,
    Request,
    Save,
    Scratch,
    Send,
    Sleep,
)
from promptforge_client._http import EVENTS_TIMEOUT, JobOptions

API = "http://api.test"
SIGNED = "http://storage.test/b/o?X-Goog-Signature=s"
Answer = httpx.Response | Exception


def job(status: str = "QUEUED", completed_at: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": "j1",
        "status": status,
        "provider": "fake",
        "model": "m",
        "created_at": "2026-01-01T00:00:00Z",
        "completed_at": completed_at,
        **extra,
    }


def ok(body: Any, status: int = 200, retry_after: str | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers={"Retry-After": retry_after} if retry_after else {})


def err(status: int, code: str, details: dict[str, Any] | None = None, retry_after: str | None = None) -> httpx.Response:
    body = {"error": {"code": code, "message": "m", "details": details or {}}}
    return httpx.Response(status, json=body, headers={"Retry-After": retry_after} if retry_after else {})


def lines(*text: str) -> httpx.Response:
    return httpx.Response(200, text="\n".join(text) + "\n")


@dataclass
class Run:
    """A flow stepped to its end against ``answers`` (in order, one per request), with a fake
    clock that moves only when the flow sleeps."""

    answers: list[Answer]
    local: dict[str, Any] = field(default_factory=dict)
    effects: list[Any] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    now: float = 0.0

    def core(self) -> Core:
        return Core(API, clock=lambda: self.now)

    def __call__(self, flow: Generator[Any, Any, Any]) -> Any:
        machine = Machine(flow)
        while (effect := machine.effect()) is not None:
            self.effects.append(effect)
            reply = self.reply(effect)
            if isinstance(reply, Exception):
                machine.fail(reply)
            else:
                machine.reply(reply)
        return machine.result

    def reply(self, effect: Any) -> Any:
        if isinstance(effect, Emit):
            self.items.extend(effect.items)
            return None
        if isinstance(effect, Send | Put | Save | OpenLines):
            answer = self.answers.pop(0)
            if isinstance(answer, httpx.Response):
                url = effect.request.url if effect.request.storage else API + effect.request.url
                answer.request = httpx.Request(effect.request.method, url)
                if isinstance(effect, OpenLines):
                    # The body in awkward pieces, as a network hands it over.
                    text = answer.text
                    return answer, iter([text[i : i + 7] for i in range(0, len(text), 7)])
            return answer
        if isinstance(effect, NextText):
            return next(effect.chunks, None)
        if isinstance(effect, Sleep):
            self.now += effect.seconds
            return None
        if isinstance(effect, Local):
            return self.local[effect.work.__name__]
        if isinstance(effect, Scratch):
            return Path("/scratch") / effect.name
        raise AssertionError(effect)

    def requests(self) -> list[Request]:
        return [e.request for e in self.effects if isinstance(e, Send | Put | Save | OpenLines)]

    def sleeps(self) -> list[float]:
        return [e.seconds for e in self.effects if isinstance(e, Sleep)]


UPLOAD = {
    "job_id": "j1",
    "status": "AWAITING_UPLOAD",
    "upload_url": SIGNED,
    "upload_headers": {"Content-Type": "application/x-ndjson"},
    "upload_expires_at": "2026-01-01T01:00:00Z",
    "max_upload_bytes": 10,
}
RESULTS = {
    "job_id": "j1",
    "status": "COMPLETED",
    "files": [
        {"filename": "results_part_001.jsonl", "url": SIGNED + "1", "expires_at": "2026-01-01T01:00:00Z"},
        {"filename": "errors.jsonl", "url": SIGNED + "e", "expires_at": "2026-01-01T01:00:00Z"},
    ],
}


# --- one request, one model ---------------------------------------------------------------------

ONE_CALL: list[tuple[str, Callable[[Core], Generator[Any, Any, Any]], Request, Any, type]] = [
    ("get", lambda c: c.get("j1"), Request("GET", "/v1/jobs/j1/status"), job(), Job),
    ("an id cannot change the path", lambda c: c.get("../x?y"), Request("GET", "/v1/jobs/..%2Fx%3Fy/status"), job(), Job),
    ("cancel", lambda c: c.cancel("j1"), Request("POST", "/v1/jobs/j1/cancel"), job("CANCELLED"), Job),
    ("results", lambda c: c.results("j1"), Request("GET", "/v1/jobs/j1/results", params={}), RESULTS, Results),
    (
        "partial results",
        lambda c: c.results("j1", partial=True),
        Request("GET", "/v1/jobs/j1/results", params={"partial": "true"}),
        RESULTS,
        Results,
    ),
    (
        "inline results",
        lambda c: c.inline_results("j1", True),
        Request("GET", "/v1/jobs/j1/results", params={"inline": "true", "partial": "true"}),
        {"job_id": "j1", "status": "FAILED", "results": [], "errors": []},
        object,
    ),
    ("first page", lambda c: c.page(), Request("GET", "/v1/jobs", params={"limit": 20}), {"jobs": []}, JobPage),
    (
        "next page",
        lambda c: c.page(5, "t"),
        Request("GET", "/v1/jobs", params={"limit": 5, "page_token": "t"}),
        {"jobs": [job()], "next_page_token": "u"},
        JobPage,
    ),
    (
        "init sends only the options set",
        lambda c: c.init("fake", "m", params={"temperature": 0.2}, metadata={"a": 1}),
        Request(
            "POST", "/v1/jobs/init", json={"provider": "fake", "model": "m", "params": {"temperature": 0.2}, "metadata": {"a": 1}}
        ),
        UPLOAD,
        Upload,
    ),
    (
        "init in economy mode",
        lambda c: c.init("fake", "m", mode="economy"),
        Request("POST", "/v1/jobs/init", json={"provider": "fake", "model": "m", "mode": "economy"}),
        UPLOAD,
        Upload,
    ),
    (
        "inline submit",
        lambda c: c.submit([{"prompt_id": "a", "prompt": "x"}], "fake", "m", system_prompt="s"),
        Request(
            "POST",
            "/v1/jobs",
            json={"provider": "fake", "model": "m", "system_prompt": "s", "prompts": [{"prompt_id": "a", "prompt": "x"}]},
        ),
        job(),
        Job,
    ),
]


@pytest.mark.parametrize(("name", "call", "request_", "body", "model"), ONE_CALL, ids=[c[0] for c in ONE_CALL])
def test_a_call_builds_its_request_and_reads_its_answer(
    name: str, call: Callable[[Core], Generator[Any, Any, Any]], request_: Request, body: Any, model: type
) -> None:
    run = Run([ok(body)])
    value = run(call(run.core()))
    assert run.requests() == [request_]
    assert isinstance(value, model) and not run.answers


ERRORS: list[tuple[str, Answer, type[Exception], str, float | None]] = [
    ("400 names its field", err(400, "invalid_request", {"field": "params"}), InvalidRequest, "invalid_request", None),
    ("401", err(401, "unauthenticated"), AuthenticationError, "unauthenticated", None),
    ("404", err(404, "not_found"), NotFoundError, "not_found", None),
    (
        "409 too early",
        err(409, "job_not_completed", {"current_status": "QUEUED"}, retry_after="5"),
        JobNotCompleted,
        "job_not_completed",
        5.0,
    ),
    ("409 ended", err(409, "job_terminal", {"current_status": "FAILED"}), JobTerminal, "job_terminal", None),
    ("413", err(413, "payload_too_large"), PayloadTooLarge, "payload_too_large", None),
    ("a proxy's page", httpx.Response(502, text="<html>bad gateway</html>"), APIError, "http_502", None),
    ("an answer that is not the model", ok({"job_id": "j1"}), APIError, "invalid_response", None),
    ("an unreadable status", ok(job(status="")), APIError, "invalid_response", None),
]


@pytest.mark.parametrize(("name", "answer", "raised", "code", "retry_after"), ERRORS, ids=[e[0] for e in ERRORS])
def test_an_error_answer_becomes_its_exception(
    name: str, answer: Answer, raised: type[Exception], code: str, retry_after: float | None
) -> None:
    run = Run([answer])
    with pytest.raises(raised) as caught:
        run(run.core().get("j1"))
    assert isinstance(caught.value, APIError)
    assert (caught.value.code, caught.value.retry_after) == (code, retry_after)


def test_a_transport_failure_names_the_service_or_only_the_storage_host() -> None:
    run = Run([httpx.ConnectError("refused")])
    with pytest.raises(NetworkError, match=r"^cannot reach http://api.test: refused$"):
        run(run.core().get("j1"))

    run = Run([ok(UPLOAD), httpx.ReadTimeout("timed out")])
    with pytest.raises(NetworkError) as caught:
        run(run.core().submit(b"12345", "fake", "m"))
    assert str(caught.value) == "cannot reach http://storage.test: timed out"  # not the signature

    run = Run([ok(UPLOAD), httpx.Response(403, text="<Error/>")])
    with pytest.raises(StorageError) as refused:
        run(run.core().submit(b"12345", "fake", "m"))
    assert refused.value.code == "upload_failed" and "HTTP 403" in str(refused.value)


# --- the steps of a submit ------------------------------------------------------------------------


def test_a_file_submit_inits_puts_to_the_signed_url_and_reads_the_status() -> None:
    run = Run([ok(UPLOAD, 201), httpx.Response(200), ok(job())], local={"file_size": 7})
    assert run(run.core().submit("in.jsonl", "fake", "m", on_upload=print)).status is JobStatus.QUEUED
    size, init, put, status = run.effects
    assert size == Local(size.work, (Path("in.jsonl"),))
    assert isinstance(put, Put) and put.body == Path("in.jsonl") and put.meter.total == 7
    assert (put.request.method, put.request.url, put.request.storage) == ("PUT", SIGNED, True)
    headers = dict(put.request.headers or {})
    assert "X-API-Key" not in headers
    assert {k: headers[k] for k in ("Content-Type", "Content-Length")} == {
        "Content-Type": "application/x-ndjson",  # every header the service signed
        "Content-Length": "7",  # a fixed length, never chunked
    }
    assert [r.url for r in run.requests()] == ["/v1/jobs/init", SIGNED, "/v1/jobs/j1/status"]


def test_a_file_over_the_limit_is_refused_before_the_upload_and_its_job_cancelled() -> None:
    run = Run([ok(UPLOAD, 201), ok(job("CANCELLED"))])
    with pytest.raises(PayloadTooLarge, match="over this service's limit of 10 bytes"):
        run(run.core().submit(b"x" * 11, "fake", "m"))
    assert [(r.method, r.url) for r in run.requests()] == [("POST", "/v1/jobs/init"), ("POST", "/v1/jobs/j1/cancel")]


def test_rows_sent_as_a_file_are_jsonl() -> None:
    run = Run([ok({**UPLOAD, "max_upload_bytes": 1000}, 201), httpx.Response(200), ok(job())])
    run(run.core().submit([{"prompt_id": "a", "prompt": "é"}], "fake", "m", inline=False))
    put = next(e for e in run.effects if isinstance(e, Put))
    assert put.body == '{"prompt_id": "a", "prompt": "é"}\n'.encode()


# --- wait: when to poll again, when to give up -----------------------------------------------------

WAITS: list[tuple[str, list[Answer], list[float], str | type[Exception]]] = [
    (
        "Retry-After, then the body's retry_after",
        [ok(job(), retry_after="3"), ok(job("PROCESSING", retry_after=4)), ok(job("COMPLETED", "2026-01-01T00:01:00Z"))],
        [3.0, 4.0],
        "COMPLETED",
    ),
    ("the poll interval when no hint", [ok(job()), ok(job("FAILED", "2026-01-01T00:01:00Z"))], [0.5], "FAILED"),
    ("never faster than 0.2 s", [ok(job(), retry_after="0"), ok(job("CANCELLED"))], [0.2], "CANCELLED"),
    (
        "backoff over brief outages",
        [httpx.ConnectError("x"), err(503, "internal"), ok(job(), retry_after="3"), ok(job("COMPLETED"))],
        [1.0, 2.0, 3.0],
        "COMPLETED",
    ),
    ("a 429's Retry-After", [err(429, "rate_limited", retry_after="7"), ok(job("COMPLETED"))], [7.0], "COMPLETED"),
    ("a bad key at once", [err(401, "unauthenticated")], [], AuthenticationError),
    ("not a sixth outage in a row", [err(502, "internal")] * 6, [1.0, 2.0, 4.0, 8.0, 16.0], APIError),
    (
        "an unknown state is polled through",
        [ok(job("VALIDATING"), retry_after="3"), ok(job("COMPLETED"))],
        [3.0],
        "COMPLETED",
    ),
    ("an unknown state that has ended", [ok(job("EXPIRED", "2026-01-01T00:01:00Z"))], [], "EXPIRED"),
    ("the timeout, on the fake clock", [ok(job(), retry_after="3")] * 3, [3.0, 2.0], WaitTimeout),
]


@pytest.mark.parametrize(("name", "answers", "sleeps", "outcome"), WAITS, ids=[w[0] for w in WAITS])
def test_wait(name: str, answers: list[Answer], sleeps: list[float], outcome: str | type[Exception]) -> None:
    run = Run(list(answers))
    flow = run.core().wait("j1", timeout=5.0 if outcome is WaitTimeout else 600.0, poll_interval=0.5)
    if isinstance(outcome, str):
        assert run(flow).status == outcome
    else:
        with pytest.raises(outcome):
            run(flow)
    assert run.sleeps() == sleeps and not run.answers


# --- the iterating calls -------------------------------------------------------------------------


def test_events_emit_each_change_reconnect_at_the_servers_delay_and_end_at_done() -> None:
    def event(name: str, body: dict[str, Any]) -> list[str]:
        return [f"event: {name}", f"data: {json.dumps(body)}", ""]

    where = "https://events.test/j1"
    first = lines(
        "retry: 10000", "", ": keep-alive", "", *event("status", job(events_url=where)), *event("status", job("VALIDATING"))
    )
    second = lines(*event("status", job("PROCESSING")), "event: other", "data: {}", "", *event("done", job("COMPLETED")))
    run = Run([ok(job(events_url=where)), first, second])
    run(run.core().events("j1"))
    assert [j.status for j in run.items] == ["QUEUED", "VALIDATING", "PROCESSING", "COMPLETED"]
    assert run.sleeps() == [10.0]
    stream = Request("GET", "https://events.test/j1", headers={"Accept": "text/event-stream"}, timeout=EVENTS_TIMEOUT)
    assert run.requests() == [Request("GET", "/v1/jobs/j1/status"), stream, stream]


def test_events_of_an_ended_job_are_its_status_alone() -> None:
    run = Run([ok(job("FAILED", "2026-01-01T00:01:00Z"))])
    run(run.core().events("j1"))
    assert [j.status for j in run.items] == ["FAILED"] and len(run.effects) == 2


def test_list_pages_never_asking_for_more_than_it_returns() -> None:
    page1 = {"jobs": [job(), job(), job()], "next_page_token": "3"}
    page2 = {"jobs": [job(), job()], "next_page_token": "5"}
    run = Run([ok(page1), ok(page2)])
    run(run.core().list(5, page_size=3))
    assert len(run.items) == 5
    assert [r.params for r in run.requests()] == [{"limit": 3}, {"limit": 2, "page_token": "3"}]


@pytest.mark.parametrize(("rows", "url", "count"), [("iter_results", SIGNED + "1", 2), ("iter_errors", SIGNED + "e", 1)])
def test_rows_stream_only_their_files_skipping_blank_lines(rows: str, url: str, count: int) -> None:
    part = lines('{"prompt_id": "a", "result": "x"}', "", '{"prompt_id": "b"}')
    errors = lines('{"prompt_id": "c", "error": "rate_limit_exceeded"}')
    run = Run([ok(RESULTS), part if rows == "iter_results" else errors])
    run(getattr(run.core(), rows)("j1"))
    assert len(run.items) == count
    assert run.requests()[1] == Request("GET", url, storage=True)


def test_download_saves_each_file_under_a_part_name_and_refuses_a_path() -> None:
    done: list[Path] = []
    run = Run([ok(RESULTS), httpx.Response(200), httpx.Response(200)], local={"make_dirs": None})
    assert (
        run(run.core().download("j1", "out", on_file=done.append))
        == done
        == [Path("out/results_part_001.jsonl"), Path("out/errors.jsonl")]
    )
    saves = [e for e in run.effects if isinstance(e, Save)]
    assert [(s.part, s.target) for s in saves] == [
        (Path("out/results_part_001.jsonl.part"), done[0]),
        (Path("out/errors.jsonl.part"), done[1]),
    ]

    bad = {**RESULTS, "files": [{"filename": "../x", "url": SIGNED, "expires_at": "2026-01-01T01:00:00Z"}]}
    run = Run([ok(bad)], local={"make_dirs": None})
    with pytest.raises(APIError, match="not a plain file name"):
        run(run.core().download("j1", "out"))
    assert not any(isinstance(e, Save) for e in run.effects)


def test_resubmit_reads_the_partial_errors_and_submits_the_chosen_lines_from_scratch() -> None:
    failed = {**RESULTS, "status": "FAILED"}
    errors = lines('{"prompt_id": "b", "error": "rate_limit_exceeded"}')
    answers: list[Answer] = [ok(job("FAILED", "2026-01-01T00:01:00Z", metadata={"run": 1})), ok(failed), errors]
    answers += [ok({**UPLOAD, "max_upload_bytes": 100}, 201), httpx.Response(200), ok(job())]
    run = Run(answers, local={"copy_failed": 1, "file_size": 20})
    done = run(run.core().resubmit("j1", "in.jsonl", model="m2"))
    assert (done.lines, done.failed_rows) == (1, 1)
    requests = run.requests()
    assert requests[1].params == {"partial": "true"}
    assert requests[3].json == {"provider": "fake", "model": "m2", "metadata": {"run": 1, "resubmit_of": "j1"}}
    copy = next(e for e in run.effects if isinstance(e, Local) and e.work.__name__ == "copy_failed")
    assert copy.args[1:] == (Path("in.jsonl"), Path("/scratch/resubmit.jsonl"))


@pytest.mark.parametrize(
    ("earlier", "chosen", "sent"),
    [
        ({"mode": "economy"}, None, "economy"),  # the earlier job's mode, as its provider and model
        ({"mode": "economy"}, "fast", "fast"),  # e.g. its provider_expired rows, at once
        ({"mode": "fast"}, "economy", "economy"),
        ({"mode": "fast"}, None, None),
        ({}, None, None),  # a service from before modes: it would refuse the field
    ],
)
def test_resubmit_keeps_the_earlier_mode_unless_told_and_sends_none_to_a_service_without_modes(
    earlier: dict[str, Any], chosen: str | None, sent: str | None
) -> None:
    failed = {**RESULTS, "status": "FAILED"}
    errors = lines('{"prompt_id": "b", "error": "provider_expired"}')
    answers: list[Answer] = [ok(job("FAILED", "2026-01-01T00:01:00Z", **earlier)), ok(failed), errors]
    answers += [ok({**UPLOAD, "max_upload_bytes": 100}, 201), httpx.Response(200), ok(job(mode=sent or "fast"))]
    run = Run(answers, local={"copy_failed": 1, "file_size": 20})
    options = JobOptions() if chosen is None else JobOptions(mode=chosen)
    done = run(run.core().resubmit("j1", "in.jsonl", **options))
    body = run.requests()[3].json
    assert body.get("mode") == sent and ("mode" in body) == (sent is not None)
    assert done.job.mode == (sent or "fast")


def test_a_status_without_a_mode_is_fast_and_provider_batches_are_read() -> None:
    old = Job.model_validate(job("PROCESSING"))
    assert (old.mode, old.provider_batches) == ("fast", None)
    counts = {"batches": 2, "ended": 1, "requests": 20, "requests_done": 15, "requests_failed": 3}
    new = Job.model_validate(job("PROCESSING", mode="economy", provider_batches=counts))
    assert new.mode == "economy" and new.provider_batches is not None
    assert new.provider_batches.model_dump() == counts


@pytest.mark.parametrize(
    "pieces",
    [
        ["a\nb", "c\n", "\n"],
        ["a\r", "\nb\r", "c"],  # a CRLF cut in two is one line end; a lone CR is one too
        ["event: status\r\ndata: {}\r\n\r\n"],
        ["no end at all"],
        ["x\u2028y\x0c", "", "z\r"],
        ["", "\n\n", "\r\n"],
    ],
)
def test_lines_split_from_pieces_as_from_the_whole(pieces: list[str]) -> None:
    splitter = LineSplitter()
    got = [line for piece in pieces for line in splitter.feed(piece)] + splitter.flush()
    assert got == "".join(pieces).splitlines()


# --- the status type ------------------------------------------------------------------------------

STATUSES = [
    ("AWAITING_UPLOAD", True, False),
    ("QUEUED", True, False),
    ("PENDING", True, False),
    ("PROCESSING", True, False),
    ("COMPLETED", True, True),
    ("FAILED", True, True),
    ("CANCELLED", True, True),
    ("VALIDATING", False, False),
    ("completed", False, False),
]


@pytest.mark.parametrize(("value", "known", "terminal"), STATUSES)
def test_a_status_is_kept_as_sent_and_says_safely_whether_it_has_ended(value: str, known: bool, terminal: bool) -> None:
    status = JobStatus(value)
    assert (status == value, str(status), status.value, status.known, status.terminal) == (True, value, value, known, terminal)
    assert (status is getattr(JobStatus, value, None)) is known
    assert (value in [s.value for s in JobStatus]) is known
    parsed = Job.model_validate(job(value))
    assert parsed.status == value and (parsed.status is status) is known
    assert json.loads(parsed.model_dump_json())["status"] == value


@pytest.mark.parametrize(
    ("value", "completed_at", "ended"),
    [
        ("PROCESSING", None, False),
        ("COMPLETED", "2026-01-01T00:01:00Z", True),
        ("FAILED", None, True),  # a known status says it itself
        ("QUEUED", "2026-01-01T00:01:00Z", False),
        ("VALIDATING", None, False),  # unknown, not ended: polled through
        ("EXPIRED", "2026-01-01T00:01:00Z", True),  # unknown, ended: the contract's completed_at
    ],
)
def test_job_is_terminal(value: str, completed_at: str | None, ended: bool) -> None:
    assert Job.model_validate(job(value, completed_at)).is_terminal is ended


def test_the_known_statuses_still_behave_as_the_enum_did() -> None:
    assert list(JobStatus) == [
        JobStatus[name] for name in ("AWAITING_UPLOAD", "QUEUED", "PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED")
    ]
    assert JobStatus.COMPLETED.name == "COMPLETED" and f"{JobStatus.FAILED}" == "FAILED"
    assert repr(JobStatus.QUEUED) == "<JobStatus.QUEUED: 'QUEUED'>" and repr(JobStatus("NEW")) == "JobStatus('NEW')"
    assert {JobStatus.COMPLETED: "green"}.get(JobStatus("COMPLETED")) == "green"
    with pytest.raises(ValueError):
        JobStatus("")
