"""A fake LLM server speaking OpenAI's, Anthropic's and (minimally) Gemini's wire formats,
with rate limits, latency and faults, for tests, dev stacks and benchmarks.

Run from the repository root::

    python -m infra.fake_llm.server --host 127.0.0.1 --port 8405 [--latency-ms 300]
        [--jitter-ms 0] [--latency-dist uniform|lognormal|exponential] [--latency-sigma 0.596]
        [--seed N] [--rpm N] [--tpm N] [--burst-s 60] [--charge-rejected]
        [--default-max-tokens 16] [--context-window N] [--fault KIND=RATE ...] [--hang-ms 60000]
        [--batch-completion-s 0] [--batch-failure-rate 0] [--batch-window-s 86400]
        [--batch-cancel-s 0] [--access-log] [--log-level info] [--graceful-timeout-s 5]

API routes (what real clients, the providers' SDKs and PromptForge's providers, call):

* ``POST /v1/chat/completions``: OpenAI chat completions (:mod:`.openai_format`).
* ``POST /v1/messages``: Anthropic messages (:mod:`.anthropic_format`).
* ``POST /v1beta/models/{model}:generateContent``: Gemini (:mod:`.gemini_format`).
* OpenAI's Batch API (:mod:`.openai_batches`): ``POST /v1/files``, ``GET|DELETE
  /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``POST|GET /v1/batches``,
  ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``. Each request of a batch is
  answered as the fast route answers it; progress, expiry and cancel follow the batch
  clock (:mod:`.batches`), set through ``batch_completion_s``, ``batch_window_s``,
  ``batch_cancel_s`` and ``batch_failure_rate``. Batch requests take no rate limit.
* Anthropic's Message Batches (:mod:`.anthropic_batches`): ``POST|GET
  /v1/messages/batches``, ``GET|DELETE /v1/messages/batches/{id}``, ``GET
  /v1/messages/batches/{id}/results``, ``POST /v1/messages/batches/{id}/cancel``, on the
  same batch clock and knobs.
* Gemini's batch mode (:mod:`.gemini_batches`): ``POST
  /v1beta/models/{model}:batchGenerateContent`` (inline requests), ``GET|DELETE
  /v1beta/batches/{id}`` (a long-running Operation), ``GET /v1beta/batches``, ``POST
  /v1beta/batches/{id}:cancel``, on the same batch clock and knobs.

Each validates its body the way its provider does for the fields that matter and answers
with a deterministic reply (:mod:`.replies`: the same conversation gets the same reply on
every route) after a simulated, non-blocking latency.

Every API request runs through one pipeline of stages (:data:`Stage`), whatever its
format; each stage may answer early or let the request go on:

1. ``authenticate``: the format's key header (before the body is read, as providers do);
2. ``parse_body``: JSON and the format's validation (400 in its error shape);
3. ``check_context``: prompt tokens + max_tokens over ``context_window`` is a 400;
4. ``rate_limit``: the requests and tokens buckets of :mod:`.limits` (429 with
   ``retry-after`` and ``retry-after-ms``; every answer after this stage carries the
   format's rate-limit headers). A request's token estimate is its prompt tokens plus
   ``max_tokens`` (or ``default_max_tokens`` when it sets none) times ``n``: what OpenAI's
   cookbook counts, and what Anthropic reserves for output at the start of a request;
5. ``draw_fault``: one draw of the seeded fault RNG picks a fault kind by rate, or none;
6. ``simulate_latency``: sleep a delay drawn from the latency distribution (a
   ``timeout`` fault instead holds the request ``hang_ms``, then answers 504);
7. ``apply_fault``: ``server_error`` (500), ``disconnect`` (the connection is closed
   mid-answer), ``reset`` (the connection is reset, TCP RST, before any byte of the
   answer: the client's ``ECONNRESET``; the request was still charged and processed, so
   a retry is a second request), ``malformed`` (a 200 whose JSON body is cut short) or ``content_filter``
   (a 200 the safety system stopped: OpenAI ``finish_reason`` ``content_filter``,
   Anthropic ``stop_reason`` ``refusal``, Gemini ``finishReason`` ``SAFETY``);
   ``context_length`` is answered at once at step 5, like the real check.

Control endpoints (an underscore prefix keeps them out of the providers' namespaces; they
need no key and are not counted):

* ``GET /healthz``: liveness.
* ``GET /_stats``: counters since start or the last reset: ``requests_total``,
  ``by_status`` (``{"200": n, ...}``), ``by_model``, one counter per route
  (``chat_completions``, ``messages``, ``generate_content``), ``by_fault``,
  ``rate_limited`` (429s from the limits) and ``rate_limited_by`` (``requests``/``tokens``),
  ``usage`` (prompt and completion tokens served, and ``charged_tokens``: token estimates
  the limits took), ``in_flight`` and ``max_in_flight``. A reset connection has no HTTP
  status: it is counted under status ``0``.
* ``GET /_timeline``: the same traffic second by second, from the first request after
  start or the last reset (``first_epoch`` is that moment in Unix time): per second
  ``arrived`` (requests that came in), ``admitted`` and ``charged_tokens`` (what the
  limits let through and took), ``status_<code>`` (answers sent that second, by status)
  and ``in_flight_max``. This is the provider's view a benchmark plots per tool.
* ``POST /_reset``: zero the counters and refill every rate-limit bucket.
* ``GET|POST /_config``: read or change any :class:`FakeLLMConfig` field at run time.
* ``POST /_batches/advance``: ``{"seconds": s}`` moves the batches' clock ``s`` seconds
  forward (never back), so a test sees a batch progress, end or expire without sleeping;
  answers ``{"now": unix_seconds}``.

Privacy: nothing here logs a request body, a prompt or a key. The only per-request log
line is uvicorn's access log (method, path, status), off by default.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import secrets
import signal
import socket
import struct
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from statistics import NormalDist
from types import FrameType
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .anthropic_batches import AnthropicBatches
from .anthropic_format import AnthropicDialect
from .batches import BatchAnswer, BatchTiming, Failed, Filtered
from .gemini_batches import GeminiBatches
from .gemini_format import GeminiDialect
from .limits import RateLimiter
from .openai_batches import OpenAIBatches
from .openai_format import ChatCompletionRequest, OpenAIDialect, OpenAIError, parse_chat_request
from .replies import complete, prompt_tokens
from .wire import Dialect, ErrorKind, Prompt, WireError, is_int, is_number, reject_constant

__all__ = [
    "FAULT_KINDS",
    "Call",
    "ChatCompletionRequest",
    "FakeLLM",
    "FakeLLMConfig",
    "OpenAIError",
    "Stage",
    "Stats",
    "create_app",
    "main",
    "parse_chat_request",
]

# Where the accounting middleware leaves the per-request record for the handlers to fill.
_RECORD_KEY = "fake_llm.record"

# Counted endpoints; each appears in /_stats as a top-level counter, even when zero, so a
# test can assert on it without a .get().
ENDPOINTS: tuple[str, ...] = ("chat_completions", "messages", "generate_content")

# New kinds go at the end: the order maps a seed's draws to kinds, and must not shift.
FAULT_KINDS: tuple[str, ...] = (
    "server_error",
    "timeout",
    "disconnect",
    "malformed",
    "content_filter",
    "context_length",
    "reset",
)
LATENCY_DISTS: tuple[str, ...] = ("uniform", "lognormal", "exponential")
# The lognormal's default shape puts its 99th percentile at 4x its median (300 ms -> 1.2 s),
# the spread of a hosted model's answer times for short completions.
P99_OVER_MEDIAN = 4.0
LOGNORMAL_SIGMA = math.log(P99_OVER_MEDIAN) / NormalDist().inv_cdf(0.99)
# When a context_length fault is injected without a configured window, it reports this one.
_FAULT_WINDOW = 8192


# --------------------------------------------------------------------------------------
# Configuration and statistics
# --------------------------------------------------------------------------------------


@dataclass
class FakeLLMConfig:
    """Behaviour that tests may change at run time through ``POST /_config``.

    Latency: ``latency_ms`` is the typical delay before a successful answer. With
    ``latency_dist`` ``uniform`` it is ``latency_ms`` plus a uniform jitter in
    ``[-jitter_ms, +jitter_ms]`` (fixed when ``jitter_ms`` is 0); ``lognormal`` draws a
    lognormal with that *median* and shape ``latency_sigma`` (the default puts the 99th
    percentile at 4x the median: 300 ms -> 1.2 s, as hosted models answer; the mean is
    ``median * exp(sigma**2 / 2)``, 1.19x); ``exponential`` an exponential with that mean.
    Never below zero. Drawn from ``random.Random(seed)``.

    Limits: ``rpm`` and ``tpm`` (None: no limit), see :mod:`infra.fake_llm.limits` for
    ``burst_s`` and ``charge_rejected``; ``default_max_tokens`` is the output a request
    that sets no max_tokens is assumed to reserve; ``context_window`` (None: unlimited)
    refuses prompt tokens + max_tokens above it.

    Faults: ``faults`` maps kinds of :data:`FAULT_KINDS` to rates in [0, 1] (summing to at
    most 1), drawn from a second ``random.Random(seed)``, so for a given seed the number
    of each fault over N requests is fixed whatever the latency settings. A ``timeout``
    holds its request ``hang_ms`` before answering 504.

    Batches (:mod:`.batches`): a batch's requests are done evenly over
    ``batch_completion_s`` seconds from its creation; one not done ``batch_window_s``
    after it (OpenAI's and Anthropic's 24 hours) expires; a cancelled batch reports
    itself cancelling for ``batch_cancel_s``. Each request fails with a server error at
    rate ``batch_failure_rate``; the ``faults`` that exist inside a provider apply too
    (``server_error``, ``context_length``, ``content_filter``), the transport ones
    (``timeout``, ``disconnect``, ``reset``, ``malformed``) do not. A batch takes the
    timing in force when it is created. ``openai_batch_max_requests`` and
    ``openai_batch_max_bytes`` are OpenAI's limits per batch (50,000 requests, 200 MB
    input file), ``anthropic_batch_max_*`` Anthropic's (100,000 requests, 256 MB
    request), ``gemini_batch_max_bytes`` Google's for inline requests (20 MB); tests may
    lower them.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    latency_dist: str = "uniform"
    latency_sigma: float = LOGNORMAL_SIGMA
    seed: int | None = 0
    rpm: int | None = None
    tpm: int | None = None
    burst_s: float = 60.0
    charge_rejected: bool = False
    default_max_tokens: int = 16
    context_window: int | None = None
    faults: dict[str, float] = field(default_factory=dict)
    hang_ms: float = 60_000.0
    batch_completion_s: float = 0.0
    batch_failure_rate: float = 0.0
    batch_window_s: float = 86_400.0
    batch_cancel_s: float = 0.0
    openai_batch_max_requests: int = 50_000
    # "200 MB" read as the smaller 200 * 10**6: a client that stays under the fake's limit
    # then stays under OpenAI's whichever way OpenAI counts.
    openai_batch_max_bytes: int = 200_000_000
    anthropic_batch_max_requests: int = 100_000
    anthropic_batch_max_bytes: int = 256_000_000
    gemini_batch_max_bytes: int = 20_000_000

    def as_dict(self) -> dict[str, Any]:
        """The configuration as the JSON object ``/_config`` returns."""
        return asdict(self)


_CONFIG_FIELDS = frozenset(f.name for f in fields(FakeLLMConfig))
_LIMIT_FIELDS = frozenset({"rpm", "tpm", "burst_s", "charge_rejected"})


def _check_config(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The validated, normalised changes; ValueError naming the first bad one."""
    unknown = sorted(set(changes) - _CONFIG_FIELDS)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(_CONFIG_FIELDS))}")
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name in ("latency_ms", "jitter_ms", "latency_sigma", "hang_ms", "batch_completion_s", "batch_cancel_s"):
            if not is_number(value) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0")
            out[name] = float(value)
        elif name in ("burst_s", "batch_window_s"):
            if not is_number(value) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0")
            out[name] = float(value)
        elif name == "batch_failure_rate":
            if not is_number(value) or not 0 <= value <= 1:
                raise ValueError("batch_failure_rate must be a number in [0, 1]")
            out[name] = float(value)
        elif name.endswith(("_batch_max_requests", "_batch_max_bytes")):
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1")
            out[name] = value
        elif name in ("rpm", "tpm", "context_window"):
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 or null")
            out[name] = value
        elif name == "default_max_tokens":
            if not is_int(value) or value < 0:
                raise ValueError("default_max_tokens must be an integer >= 0")
            out[name] = value
        elif name == "seed":
            if value is not None and not is_int(value):
                raise ValueError("seed must be an integer or null")
            out[name] = value
        elif name == "charge_rejected":
            if not isinstance(value, bool):
                raise ValueError("charge_rejected must be a boolean")
            out[name] = value
        elif name == "latency_dist":
            if value not in LATENCY_DISTS:
                raise ValueError(f"latency_dist must be one of {', '.join(LATENCY_DISTS)}")
            out[name] = value
        else:  # faults
            out[name] = _check_faults(value)
    return out


def _check_faults(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError("faults must be an object of kind: rate")
    faults: dict[str, float] = {}
    for kind, rate in value.items():
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
        if not is_number(rate) or not 0 <= rate <= 1:
            raise ValueError(f"the rate of fault {kind} must be a number in [0, 1]")
        if rate > 0:
            faults[kind] = float(rate)
    if sum(faults.values()) > 1 + 1e-9:
        raise ValueError("fault rates must add up to at most 1")
    return faults


@dataclass
class RequestRecord:
    """What one API request contributes to the statistics, filled in as it is handled."""

    endpoint: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    charged_tokens: int = 0
    fault: str | None = None
    rate_limited_by: str | None = None


@dataclass
class Stats:
    """Counters over API requests (control endpoints excluded).

    A request is counted once, when it finishes, so a snapshot never shows a request in
    ``by_status`` whose model or endpoint is not counted yet. ``seconds`` keeps the same
    traffic per second since the first request (on ``clock``), for ``/_timeline``.
    """

    requests_total: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_model: Counter[str] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_fault: Counter[str] = field(default_factory=Counter)
    rate_limited_by: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    charged_tokens: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    clock: Callable[[], float] = time.monotonic
    first_at: float | None = None
    first_epoch: float | None = None
    seconds: defaultdict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def second(self) -> Counter[str]:
        """The counters of the current second (the first request starts second 0)."""
        now = self.clock()
        if self.first_at is None:
            self.first_at, self.first_epoch = now, time.time()
        return self.seconds[max(0, math.floor(now - self.first_at))]

    def begin(self) -> None:
        """Note a request that has started."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        second = self.second()
        second["arrived"] += 1
        second["in_flight_max"] = max(second["in_flight_max"], self.in_flight)

    def admit(self, tokens: int) -> None:
        """Note a request the limits let through, and the tokens they took for it."""
        second = self.second()
        second["admitted"] += 1
        second["charged_tokens"] += tokens

    def finish(self, record: RequestRecord, status: int) -> None:
        """Count a request that has finished with HTTP ``status`` (0: its connection was reset)."""
        self.in_flight -= 1
        self.second()[f"status_{status}"] += 1
        self.requests_total += 1
        self.by_status[status] += 1
        if record.model is not None:
            self.by_model[record.model] += 1
        if record.endpoint is not None:
            self.by_endpoint[record.endpoint] += 1
        if record.fault is not None:
            self.by_fault[record.fault] += 1
        if record.rate_limited_by is not None:
            self.rate_limited_by[record.rate_limited_by] += 1
        self.prompt_tokens += record.prompt_tokens
        self.completion_tokens += record.completion_tokens
        self.charged_tokens += record.charged_tokens

    def reset(self) -> None:
        """Zero the counters. ``in_flight`` is a gauge of live requests, so it is kept,
        and the high-water mark restarts from it."""
        self.requests_total = 0
        for counter in (self.by_status, self.by_model, self.by_endpoint, self.by_fault, self.rate_limited_by):
            counter.clear()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.charged_tokens = 0
        self.max_in_flight = self.in_flight
        self.first_at = self.first_epoch = None
        self.seconds.clear()

    def timeline(self) -> dict[str, Any]:
        """The JSON object ``GET /_timeline`` returns: one entry per second, none skipped."""
        last = max(self.seconds, default=-1)
        rows = [{"t": t, **dict(sorted(self.seconds.get(t, Counter()).items()))} for t in range(last + 1)]
        return {"first_epoch": self.first_epoch, "seconds": rows}

    def snapshot(self) -> dict[str, Any]:
        """The JSON object ``GET /_stats`` returns (status codes as string keys, as JSON needs)."""
        snap: dict[str, Any] = {
            "requests_total": self.requests_total,
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "by_model": dict(sorted(self.by_model.items())),
        }
        for endpoint in ENDPOINTS:
            snap[endpoint] = self.by_endpoint[endpoint]
        snap["by_fault"] = dict(sorted(self.by_fault.items()))
        snap["rate_limited"] = sum(self.rate_limited_by.values())
        snap["rate_limited_by"] = {"requests": self.rate_limited_by["requests"], "tokens": self.rate_limited_by["tokens"]}
        snap["usage"] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "charged_tokens": self.charged_tokens,
        }
        snap["in_flight"] = self.in_flight
        snap["max_in_flight"] = self.max_in_flight
        return snap


def _is_control_path(path: str) -> bool:
    return path == "/healthz" or path.startswith("/_")


class AccountingMiddleware:
    """Counts every API request in :class:`Stats` and stamps a request id on it
    (``x-request-id`` as OpenAI names it, ``request-id`` as Anthropic does).

    A pure ASGI middleware rather than a BaseHTTPMiddleware: it sees the real status code
    even of error responses and adds no per-request task, which matters at hundreds of
    concurrent requests on two cores.
    """

    def __init__(self, app: ASGIApp, stats: Stats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_control_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        record = RequestRecord()
        scope[_RECORD_KEY] = record
        # If the app raises before answering, Starlette's ServerErrorMiddleware (outside
        # this one) sends a 500, so that is what gets counted.
        status = 500
        request_id = "req_" + secrets.token_hex(16)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                headers["request-id"] = request_id
            await send(message)

        self.stats.begin()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.stats.finish(record, 0 if record.fault == "reset" else status)


def _record(request: Request) -> RequestRecord:
    # Requests that bypass the middleware (none today) still get a throwaway record.
    return request.scope.get(_RECORD_KEY) or RequestRecord()


class DroppedConnection(Response):
    """Starts a 200 answer, sends part of its body, and stops: the server then closes the
    connection, and the client sees it broken off mid-answer."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"id": "', "more_body": True})


class ResetConnection(Response):
    """Resets the connection (TCP RST) before any byte of an answer: what a client sees
    when a provider's front end drops it, ``ECONNRESET`` or "server disconnected"."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # uvicorn's receive is a method of the request's cycle, which holds the transport.
        transport = getattr(getattr(receive, "__self__", None), "transport", None)
        if transport is None:
            # In process (Starlette's TestClient) there is no socket: fail as a client's would.
            raise ConnectionResetError("the fake LLM server reset the connection")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0 makes the close an RST rather than an orderly FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        # abort() reports the lost connection on the next loop turn; yield to it, so the
        # server knows the cycle is over and does not try to answer a 500 on it.
        await anyio.sleep(0)


class _DroppedConnectionLog(logging.Filter):
    """Keeps uvicorn's notes about unfinished answers out of the log: they are on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "without completing response" not in message and "without starting response" not in message


# --------------------------------------------------------------------------------------
# The request pipeline
# --------------------------------------------------------------------------------------


@dataclass
class Call:
    """One API request as it moves through the pipeline."""

    request: Request
    dialect: Dialect
    record: RequestRecord
    started: float  # time.monotonic() at arrival, for the processing-time header
    prompt: Prompt | None = None  # set by parse_body
    prompt_tokens: int = 0
    headers: dict[str, str] = field(default_factory=dict)  # rate-limit headers for every later answer
    fault: str | None = None

    @property
    def parsed(self) -> Prompt:
        assert self.prompt is not None, "runs only after parse_body"
        return self.prompt


# A stage either answers the request (returns a Response, which ends the pipeline) or
# returns None to pass it on. Stages run in order; the last step renders the answer.
Stage = Callable[[Call], Awaitable[Response | None]]


class FakeLLM:
    """The server's state (config, statistics, limits, RNGs) and its request handlers.

    ``clock`` (monotonic seconds) drives the rate limits and ``sleep`` waits out the
    latency; ``wall_clock`` (Unix seconds) plus ``batch_offset`` (what
    ``/_batches/advance`` added) is the batches' clock; tests pass their own.
    """

    def __init__(
        self,
        config: FakeLLMConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or FakeLLMConfig()
        self.clock = clock
        self.sleep = sleep
        self.wall_clock = wall_clock
        self.batch_offset = 0.0
        self.stats = Stats(clock=clock)
        self.rng = random.Random(self.config.seed)
        self.fault_rng = random.Random(self.config.seed)
        # Batches draw from their own RNG, so that creating one does not shift the faults
        # a seed gives fast requests.
        self.batch_rng = random.Random(self.config.seed)
        self.limiter = self._new_limiter()
        self.openai_batches = OpenAIBatches(self)
        self.anthropic_batches = AnthropicBatches(self)
        self.gemini_batches = GeminiBatches(self)
        # The order is the contract (see the module docstring).
        self.pipeline: list[Stage] = [
            self.authenticate,
            self.parse_body,
            self.check_context,
            self.rate_limit,
            self.draw_fault,
            self.simulate_latency,
            self.apply_fault,
        ]

    # ---- settings ------------------------------------------------------------------

    def _new_limiter(self) -> RateLimiter:
        c = self.config
        return RateLimiter(c.rpm, c.tpm, burst_s=c.burst_s, charge_rejected=c.charge_rejected)

    def configure(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update of :class:`FakeLLMConfig`; raise ValueError if invalid.

        All fields are checked before any is applied, so a bad update changes nothing.
        A ``seed`` key (even an unchanged one) re-seeds the latency and fault RNGs; a
        change to the limits starts every bucket full.
        """
        checked = _check_config(changes)
        for name, value in checked.items():
            setattr(self.config, name, value)
        if "seed" in checked:
            self.rng.seed(self.config.seed)
            self.fault_rng.seed(self.config.seed)
            self.batch_rng.seed(self.config.seed)
        if _LIMIT_FIELDS & set(checked):
            self.limiter = self._new_limiter()

    def reset(self) -> None:
        """Zero the counters and refill the rate-limit buckets (config and RNGs stay)."""
        self.stats.reset()
        self.limiter.reset()

    def delay_seconds(self) -> float:
        """The latency to simulate for the next request, drawn from the configured distribution."""
        c = self.config
        mean = c.latency_ms
        if c.latency_dist == "exponential":
            latency = self.rng.expovariate(1.0 / mean) if mean > 0 else 0.0
        elif c.latency_dist == "lognormal":
            # A lognormal's median is exp(mu): latency_ms is the median.
            latency = self.rng.lognormvariate(math.log(mean), c.latency_sigma) if mean > 0 else 0.0
        else:
            latency = mean + (self.rng.uniform(-c.jitter_ms, c.jitter_ms) if c.jitter_ms > 0 else 0.0)
        return max(0.0, latency) / 1000.0

    def draw_fault_kind(self, rng: random.Random | None = None) -> str | None:
        """One draw of the fault RNG (or ``rng``): a fault kind chosen by its rate, or None."""
        faults = self.config.faults
        if not faults:
            return None
        u = (rng or self.fault_rng).random()
        for kind in FAULT_KINDS:  # a fixed order, so a seed always maps to the same kinds
            u -= faults.get(kind, 0.0)
            if u < 0:
                return kind
        return None

    # ---- batches (the BatchHost of .batches) -----------------------------------------

    def batch_now(self) -> float:
        """The batches' clock: the wall clock plus what ``/_batches/advance`` added."""
        return self.wall_clock() + self.batch_offset

    def batch_timing(self) -> BatchTiming:
        c = self.config
        return BatchTiming(c.batch_completion_s, c.batch_window_s, c.batch_cancel_s)

    def batch_limits(self, api: str) -> tuple[int, int]:
        c = self.config
        if api == "anthropic":
            return c.anthropic_batch_max_requests, c.anthropic_batch_max_bytes
        if api == "openai":
            return c.openai_batch_max_requests, c.openai_batch_max_bytes
        if api == "gemini":
            # Google limits inline requests by size only.
            return sys.maxsize, c.gemini_batch_max_bytes
        raise ValueError(f"no batch limits for {api!r}")

    def batch_answer(self, prompt: Prompt) -> BatchAnswer:
        """One request of a batch: the fast route's reply, or the failure it would meet inside
        the provider (the context window, ``batch_failure_rate``, the provider-side faults)."""
        tokens = prompt_tokens(prompt.messages)
        info = _prompt_info(prompt, tokens, self.config.context_window)
        window = self.config.context_window
        if window is not None and info["total"] > window:
            return Failed("context_length", info)
        # Always drawn, so that a seed gives the same failures whatever the rate.
        if self.batch_rng.random() < self.config.batch_failure_rate:
            return Failed("server_error", info)
        fault = self.draw_fault_kind(self.batch_rng)
        if fault == "server_error":
            return Failed("server_error", info)
        if fault == "context_length":
            window = window or _FAULT_WINDOW
            return Failed("context_length", {**info, "window": window, "total": max(info["total"], window + 1)})
        if fault == "content_filter":
            return Filtered(tokens)
        return complete(prompt.messages, prompt.model, prompt.max_tokens, prompt.stop)

    # ---- pipeline stages -----------------------------------------------------------

    async def authenticate(self, call: Call) -> Response | None:
        """The format's key check, before the body is even read (as providers do)."""
        error = call.dialect.authenticate(call.request)
        return error.response() if error is not None else None

    async def parse_body(self, call: Call) -> Response | None:
        """Decode and validate the JSON body; 400 in the format's shape if it is not acceptable."""
        raw = await call.request.body()
        try:
            body = json.loads(raw, parse_constant=reject_constant)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
            return call.dialect.unparseable().response()
        # Counted per model even when the rest of the body is refused, like a provider's
        # dashboard would.
        call.record.model = call.dialect.model_hint(call.request, body)
        try:
            call.prompt = call.dialect.validate(call.request, body)
        except WireError as exc:
            return exc.response()
        call.prompt_tokens = prompt_tokens(call.prompt.messages)
        return None

    def _info(self, call: Call, **extra: Any) -> dict[str, Any]:
        info = _prompt_info(call.parsed, call.prompt_tokens, self.config.context_window)
        info.update(extra)
        return info

    async def check_context(self, call: Call) -> Response | None:
        """400 when prompt tokens + max_tokens exceed ``context_window``."""
        window = self.config.context_window
        if window is not None and call.prompt_tokens + (call.parsed.max_tokens or 0) > window:
            return call.dialect.error("context_length", self._info(call), {})
        return None

    async def rate_limit(self, call: Call) -> Response | None:
        """429 when the model's requests or tokens bucket cannot cover the request."""
        if not self.limiter.active:
            return None
        prompt = call.parsed
        cost = (
            call.prompt_tokens
            + (prompt.max_tokens if prompt.max_tokens is not None else self.config.default_max_tokens) * prompt.n
        )
        decision = self.limiter.take(prompt.model, cost, self.clock())
        call.headers = call.dialect.rate_headers(decision.view, decision.retry_after_s)
        if decision.allowed:
            # Taken for good: a provider does not give back the max_tokens an answer left unused.
            call.record.charged_tokens = cost
            self.stats.admit(cost)
            return None
        call.record.rate_limited_by = decision.refused_by
        kind: ErrorKind
        if decision.refused_by == "requests":
            kind, limit = "rate_limit_requests", decision.view.limit_requests
        else:
            kind = "rate_limit_tokens" if decision.retry_after_s is not None else "request_too_large"
            limit = decision.view.limit_tokens
        info = self._info(call, limit=limit, requested=cost, retry_after_s=decision.retry_after_s)
        return call.dialect.error(kind, info, call.headers)

    async def draw_fault(self, call: Call) -> Response | None:
        """Pick this request's fault; a ``context_length`` one is answered at once."""
        call.fault = self.draw_fault_kind()
        call.record.fault = call.fault
        if call.fault == "context_length":
            window = self.config.context_window or _FAULT_WINDOW
            info = self._info(call, window=window)
            info["total"] = max(info["total"], window + 1)
            return call.dialect.error("context_length", info, call.headers)
        return None

    async def simulate_latency(self, call: Call) -> Response | None:
        """Sleep the drawn latency without blocking the event loop (a ``timeout`` fault: hang)."""
        if call.fault == "timeout":
            await anyio.sleep(self.config.hang_ms / 1000.0)
            return call.dialect.error("timeout", self._info(call), call.headers)
        delay = self.delay_seconds()
        if delay > 0:
            await self.sleep(delay)
        return None

    async def apply_fault(self, call: Call) -> Response | None:
        """Answer as the drawn fault does; no fault passes the request on."""
        if call.fault == "server_error":
            return call.dialect.error("server_error", self._info(call), call.headers)
        if call.fault == "disconnect":
            return DroppedConnection()
        if call.fault == "reset":
            return ResetConnection()
        if call.fault == "content_filter":
            return call.dialect.content_filtered(call.parsed, call.prompt_tokens, call.headers)
        if call.fault == "malformed":
            whole = self.render(call)
            return Response(bytes(whole.body[: len(whole.body) // 2]), media_type="application/json", headers=call.headers)
        return None

    def render(self, call: Call) -> Response:
        """The success answer in the call's format."""
        prompt = call.parsed
        result = complete(prompt.messages, prompt.model, prompt.max_tokens, prompt.stop)
        call.record.prompt_tokens = result.prompt_tokens
        call.record.completion_tokens = result.completion_tokens * prompt.n
        headers = call.headers
        if call.dialect.processing_ms_header:
            headers = {**headers, call.dialect.processing_ms_header: str(int((time.monotonic() - call.started) * 1000))}
        return call.dialect.render(prompt, result, headers)

    # ---- routes --------------------------------------------------------------------

    def endpoint(self, dialect: Dialect) -> Callable[[Request], Awaitable[Response]]:
        """The route handler for one wire format: run the pipeline, then render."""

        async def handle(request: Request) -> Response:
            record = _record(request)
            record.endpoint = dialect.endpoint
            call = Call(request=request, dialect=dialect, record=record, started=time.monotonic())
            for stage in self.pipeline:
                response = await stage(call)
                if response is not None:
                    return response
            return self.render(call)

        return handle

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``: the server is up and serving."""
        return JSONResponse({"status": "ok"})

    async def get_stats(self, request: Request) -> Response:
        """``GET /_stats``: counters since start or the last ``/_reset``."""
        return JSONResponse(self.stats.snapshot())

    async def get_timeline(self, request: Request) -> Response:
        """``GET /_timeline``: the counters per second since start or the last ``/_reset``."""
        return JSONResponse(self.stats.timeline())

    async def reset_endpoint(self, request: Request) -> Response:
        """``POST /_reset``: zero the counters and refill the buckets (the config and the RNGs are left alone)."""
        self.reset()
        return JSONResponse(self.stats.snapshot())

    async def advance_batches(self, request: Request) -> Response:
        """``POST /_batches/advance``: move the batches' clock forward by ``seconds``."""
        try:
            body = json.loads(await request.body(), parse_constant=reject_constant)
        except (ValueError, RecursionError):
            body = None
        seconds: Any = body.get("seconds") if isinstance(body, dict) else None
        if not is_number(seconds) or not math.isfinite(seconds) or seconds < 0:
            return OpenAIError(400, 'the body must be {"seconds": a finite number >= 0}').response()
        self.batch_offset += float(seconds)
        return JSONResponse({"now": self.batch_now()})

    async def config_endpoint(self, request: Request) -> Response:
        """``GET /_config`` returns the settings; ``POST`` applies a partial update and returns them."""
        if request.method == "POST":
            try:
                changes = json.loads(await request.body(), parse_constant=reject_constant)
            except (ValueError, RecursionError):
                return OpenAIError(400, "the body must be a JSON object").response()
            if not isinstance(changes, dict):
                return OpenAIError(400, "the body must be a JSON object").response()
            try:
                self.configure(changes)
            except ValueError as exc:
                return OpenAIError(400, str(exc)).response()
        return JSONResponse(self.config.as_dict())


def _prompt_info(prompt: Prompt, tokens: int, window: int | None) -> dict[str, Any]:
    """What an error message about ``prompt`` may quote (see :data:`.wire.ErrorKind`)."""
    max_tokens = prompt.max_tokens or 0
    return {
        "model": prompt.model,
        "prompt_tokens": tokens,
        "max_tokens": max_tokens,
        "total": tokens + max_tokens,
        "window": window,
    }


async def _http_error(request: Request, exc: Exception) -> Response:
    """404/405 (and any other HTTPException) in OpenAI's error shape, as OpenAI answers them."""
    assert isinstance(exc, HTTPException)
    target = f"{request.method} {request.url.path}"
    message = f"Invalid method for URL ({target})" if exc.status_code == 405 else f"Invalid URL ({target})"
    if exc.status_code not in (404, 405):
        message = exc.detail
    return OpenAIError(exc.status_code, message, headers=exc.headers).response()


def create_app(
    config: FakeLLMConfig | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    wall_clock: Callable[[], float] = time.time,
) -> Starlette:
    """The ASGI app; its :class:`FakeLLM` (config, stats) is at ``app.state.fake_llm``.

    ``config`` is used live, not copied: ``POST /_config`` changes that very object.
    """
    fake = FakeLLM(config, clock, sleep, wall_clock)
    gemini = fake.endpoint(GeminiDialect())
    routes = [
        Route("/v1/chat/completions", fake.endpoint(OpenAIDialect()), methods=["POST"]),
        Route("/v1/messages", fake.endpoint(AnthropicDialect()), methods=["POST"]),
        Route("/v1beta/models/{model}:generateContent", gemini, methods=["POST"]),
        Route("/v1/models/{model}:generateContent", gemini, methods=["POST"]),
        *(Route(path, handler, methods=methods) for path, handler, methods in fake.openai_batches.routes()),
        *(Route(path, handler, methods=methods) for path, handler, methods in fake.anthropic_batches.routes()),
        *(Route(path, handler, methods=methods) for path, handler, methods in fake.gemini_batches.routes()),
        Route("/healthz", fake.healthz, methods=["GET"]),
        Route("/_stats", fake.get_stats, methods=["GET"]),
        Route("/_timeline", fake.get_timeline, methods=["GET"]),
        Route("/_reset", fake.reset_endpoint, methods=["POST"]),
        Route("/_config", fake.config_endpoint, methods=["GET", "POST"]),
        Route("/_batches/advance", fake.advance_batches, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(AccountingMiddleware, stats=fake.stats)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.fake_llm = fake
    return app


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _non_negative(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _fault(text: str) -> tuple[str, float]:
    kind, _, rate = text.partition("=")
    if kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
    try:
        return kind, float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KIND=RATE, got {text!r}") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.fake_llm.server",
        description="Fake LLM server speaking the OpenAI, Anthropic and Gemini wire formats.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8405, help="TCP port (default: %(default)s)")
    parser.add_argument(
        "--latency-ms", type=_non_negative, default=0.0, help="simulated latency per answer: mean, lognormal median (default: 0)"
    )
    parser.add_argument("--jitter-ms", type=_non_negative, default=0.0, help="uniform jitter of +/- this many ms (default: 0)")
    parser.add_argument(
        "--latency-dist", choices=LATENCY_DISTS, default="uniform", help="latency distribution (default: %(default)s)"
    )
    parser.add_argument(
        "--latency-sigma",
        type=_non_negative,
        default=LOGNORMAL_SIGMA,
        help="shape of the lognormal (default: %(default).3f, p99 = 4x the median)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the latency and fault RNGs (default: %(default)s)")
    parser.add_argument("--rpm", type=int, default=None, help="requests per minute per model (default: no limit)")
    parser.add_argument("--tpm", type=int, default=None, help="tokens per minute per model (default: no limit)")
    parser.add_argument("--burst-s", type=float, default=60.0, help="bucket capacity in seconds of limit (default: %(default)s)")
    parser.add_argument("--charge-rejected", action="store_true", help="refused requests use up the requests limit too")
    parser.add_argument("--default-max-tokens", type=int, default=16, help="token estimate's output part without max_tokens")
    parser.add_argument("--context-window", type=int, default=None, help="prompt + max_tokens above this is a 400")
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"inject a fault ({', '.join(FAULT_KINDS)})",
    )
    parser.add_argument("--hang-ms", type=_non_negative, default=60_000.0, help="how long a timeout fault holds (default: 60000)")
    parser.add_argument(
        "--batch-completion-s", type=_non_negative, default=0.0, help="seconds from a batch's creation to its last answer"
    )
    parser.add_argument("--batch-failure-rate", type=float, default=0.0, help="share of batch requests that fail (default: 0)")
    parser.add_argument(
        "--batch-window-s", type=float, default=86_400.0, help="a batch not done this long after creation expires (default: 24 h)"
    )
    parser.add_argument("--batch-cancel-s", type=_non_negative, default=0.0, help="how long a cancelled batch is cancelling")
    parser.add_argument("--access-log", action="store_true", help="log one line per request (method, path, status; never bodies)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (default: %(default)s)",
    )
    parser.add_argument(
        "--graceful-timeout-s",
        type=int,
        default=5,
        help="on SIGTERM, wait at most this long for in-flight requests (default: %(default)s)",
    )
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> FakeLLMConfig:
    """The :class:`FakeLLMConfig` the command line asks for (checked like ``/_config``)."""
    config = FakeLLMConfig()
    wanted = {name: getattr(args, name) for name in _CONFIG_FIELDS if name != "faults" and hasattr(args, name)}
    wanted["faults"] = dict(args.fault)
    for name, value in _check_config(wanted).items():
        setattr(config, name, value)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT, then shut down gracefully; returns 0."""
    import uvicorn  # here, so that importing the app (tests, create_app) does not need it

    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"fake_llm: {exc}", file=sys.stderr)
        return 2
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            access_log=args.access_log,
            log_level=args.log_level,
            timeout_graceful_shutdown=args.graceful_timeout_s,
            server_header=False,
            lifespan="off",  # the app has no startup or shutdown work
        )
    )
    logging.getLogger("uvicorn.error").addFilter(_DroppedConnectionLog())

    # uvicorn handles SIGTERM/SIGINT itself while serving, then restores the handlers it
    # found and re-raises the signal. Installing ours first makes that re-raise a no-op,
    # so a requested stop exits 0 instead of dying by the signal; it also covers a
    # signal that arrives before uvicorn has installed its own.
    def _request_exit(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, _request_exit)
    signal.signal(signal.SIGINT, _request_exit)

    limits = f", rpm {config.rpm}, tpm {config.tpm}" if config.rpm or config.tpm else ""
    faults = f", faults {config.faults}" if config.faults else ""
    latency = f"latency {config.latency_ms:g} ms {config.latency_dist}, jitter {config.jitter_ms:g} ms"
    print(
        f"fake_llm: serving on http://{args.host}:{args.port}/v1 ({latency}, seed {config.seed}{limits}{faults})",
        file=sys.stderr,
        flush=True,
    )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
