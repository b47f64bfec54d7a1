"""A fake LLM server speaking OpenAI's chat-completions wire format, for tests and dev stacks.

Run from the repository root::

    python -m infra.fake_llm.server --host 127.0.0.1 --port 8405 [--latency-ms 300]
        [--jitter-ms 0] [--seed N] [--access-log] [--log-level info] [--graceful-timeout-s 5]

API (what real clients such as the ``openai`` SDK and PromptForge's OpenAIWireProvider call):

* ``POST /v1/chat/completions`` validates the body the way OpenAI does for the fields that
  matter and answers with a deterministic reply (see :mod:`infra.fake_llm.replies`) after a
  simulated, non-blocking latency.

Control endpoints (not part of OpenAI; an underscore prefix keeps them out of its namespace,
and they need no key and are not counted in the statistics):

* ``GET /healthz`` — liveness.
* ``GET /_stats`` — counters since start or the last reset: ``requests_total``,
  ``by_status`` (``{"200": n, ...}``), ``by_model``, ``chat_completions`` (requests to that
  endpoint, any outcome), ``usage`` (tokens of the completions served), ``in_flight`` and
  ``max_in_flight``.
* ``POST /_reset`` — zero the counters.
* ``GET|POST /_config`` — read or change ``latency_ms``, ``jitter_ms`` and ``seed`` at run time.

Every API request runs through a pipeline of stages (:data:`Stage`); each may answer early
(an auth failure, a validation error) or let the request go on. Rate-limit windows and
fault injection are meant to be added as further stages, another wire format (Anthropic
messages) as another route with its own pipeline and error shape.

Privacy: nothing here logs a request body, a prompt or the Authorization header. The
only per-request log line is uvicorn's access log (method, path, status), off by default.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import secrets
import signal
import string
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
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

from .replies import complete

__all__ = [
    "ChatCall",
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
# test can assert on it without a .get(). The Anthropic route will add "messages".
ENDPOINTS: tuple[str, ...] = ("chat_completions",)

# Roles OpenAI accepts today, in the order its own error message lists them.
_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
# Which content-part types each role may send as an array.
_PART_TYPES: dict[str, tuple[str, ...]] = {
    "system": ("text",),
    "developer": ("text",),
    "tool": ("text",),
    "function": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
}
_N_MAX = 128  # OpenAI's upper bound for n
_STOP_MAX = 4  # and for the number of stop sequences
_ID_ALPHABET = string.ascii_letters + string.digits


# --------------------------------------------------------------------------------------
# Configuration and statistics
# --------------------------------------------------------------------------------------


@dataclass
class FakeLLMConfig:
    """Behaviour that tests may change at run time through ``POST /_config``.

    ``latency_ms`` is slept before each successful completion, plus a uniform jitter in
    ``[-jitter_ms, +jitter_ms]`` drawn from a ``random.Random(seed)``; the total never goes
    below zero.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int | None = 0

    def as_dict(self) -> dict[str, Any]:
        """The configuration as the JSON object ``/_config`` returns."""
        return asdict(self)


@dataclass
class RequestRecord:
    """What one API request contributes to the statistics, filled in as it is handled."""

    endpoint: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Stats:
    """Counters over API requests (control endpoints excluded).

    A request is counted once, when it finishes, so a snapshot never shows a request in
    ``by_status`` whose model or endpoint is not counted yet.
    """

    requests_total: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_model: Counter[str] = field(default_factory=Counter)
    by_endpoint: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    def begin(self) -> None:
        """Note a request that has started."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def finish(self, record: RequestRecord, status: int) -> None:
        """Count a request that has finished with HTTP ``status``."""
        self.in_flight -= 1
        self.requests_total += 1
        self.by_status[status] += 1
        if record.model is not None:
            self.by_model[record.model] += 1
        if record.endpoint is not None:
            self.by_endpoint[record.endpoint] += 1
        self.prompt_tokens += record.prompt_tokens
        self.completion_tokens += record.completion_tokens

    def reset(self) -> None:
        """Zero the counters. ``in_flight`` is a gauge of live requests, so it is kept,
        and the high-water mark restarts from it."""
        self.requests_total = 0
        self.by_status.clear()
        self.by_model.clear()
        self.by_endpoint.clear()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.max_in_flight = self.in_flight

    def snapshot(self) -> dict[str, Any]:
        """The JSON object ``GET /_stats`` returns (status codes as string keys, as JSON needs)."""
        snap: dict[str, Any] = {
            "requests_total": self.requests_total,
            "by_status": {str(code): n for code, n in sorted(self.by_status.items())},
            "by_model": dict(sorted(self.by_model.items())),
        }
        for endpoint in ENDPOINTS:
            snap[endpoint] = self.by_endpoint[endpoint]
        snap["usage"] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}
        snap["in_flight"] = self.in_flight
        snap["max_in_flight"] = self.max_in_flight
        return snap


def _is_control_path(path: str) -> bool:
    return path == "/healthz" or path.startswith("/_")


class AccountingMiddleware:
    """Counts every API request in :class:`Stats` and stamps an ``x-request-id`` on it.

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
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        self.stats.begin()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.stats.finish(record, status)


def _record(request: Request) -> RequestRecord:
    # Requests that bypass the middleware (none today) still get a throwaway record.
    return request.scope.get(_RECORD_KEY) or RequestRecord()


# --------------------------------------------------------------------------------------
# OpenAI errors and request validation
# --------------------------------------------------------------------------------------


class OpenAIError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        """The HTTP response carrying this error."""
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _json_type(value: Any) -> str:
    """The JSON type of ``value`` with an article, in OpenAI's wording ("an integer")."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _quoted_list(values: Sequence[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1] if len(quoted) > 2 else " and ".join(quoted)


def _missing(param: str) -> OpenAIError:
    return OpenAIError(400, f"Missing required parameter: '{param}'.", param, "missing_required_parameter")


def _invalid_type(param: str, expected: str, value: Any) -> OpenAIError:
    return OpenAIError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {_json_type(value)} instead.",
        param,
        "invalid_type",
    )


def _invalid_value(param: str, value: str, supported: Sequence[str]) -> OpenAIError:
    # Only ever called with short enum-like values (roles, part types), never prompt text.
    return OpenAIError(400, f"Invalid value: '{value}'. Supported values are: {_quoted_list(supported)}.", param, "invalid_value")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(body: Mapping[str, Any], name: str, lo: int, hi: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_int(value):
        raise _invalid_type(name, "an integer", value)
    if value < lo:
        raise OpenAIError(
            400,
            f"Invalid '{name}': integer below minimum value. Expected a value >= {lo}, but got {value} instead.",
            name,
            "integer_below_min_value",
        )
    if hi is not None and value > hi:
        raise OpenAIError(
            400,
            f"Invalid '{name}': integer above maximum value. Expected a value <= {hi}, but got {value} instead.",
            name,
            "integer_above_max_value",
        )
    return int(value)


def _check_number(body: Mapping[str, Any], name: str, lo: float, hi: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not _is_number(value):
        raise _invalid_type(name, "a number", value)
    if value < lo:
        raise OpenAIError(
            400,
            f"Invalid '{name}': decimal below minimum value. Expected a value >= {lo:g}, but got {value} instead.",
            name,
            "decimal_below_min_value",
        )
    if value > hi:
        raise OpenAIError(
            400,
            f"Invalid '{name}': decimal above maximum value. Expected a value <= {hi:g}, but got {value} instead.",
            name,
            "decimal_above_max_value",
        )


def _check_content(param: str, role: str, content: Any) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid_type(param, "one of a string or array of objects", content)
    if not content:
        raise OpenAIError(
            400,
            f"Invalid '{param}': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            param,
            "empty_array",
        )
    allowed = _PART_TYPES[role]
    for j, part in enumerate(content):
        part_param = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise _invalid_type(part_param, "an object", part)
        if "type" not in part:
            raise _missing(f"{part_param}.type")
        kind = part["type"]
        if not isinstance(kind, str):
            raise _invalid_type(f"{part_param}.type", "a string", kind)
        if kind not in allowed:
            raise _invalid_value(f"{part_param}.type", kind, allowed)
        if kind == "text":
            if "text" not in part:
                raise _missing(f"{part_param}.text")
            if not isinstance(part["text"], str):
                raise _invalid_type(f"{part_param}.text", "a string", part["text"])


def _check_message(i: int, message: Any) -> None:
    param = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _invalid_type(param, "an object", message)
    if "role" not in message:
        raise _missing(f"{param}.role")
    role = message["role"]
    if not isinstance(role, str):
        raise _invalid_type(f"{param}.role", "a string", role)
    if role not in _ROLES:
        raise _invalid_value(f"{param}.role", role, _ROLES)
    if "name" in message and not isinstance(message["name"], str):
        raise _invalid_type(f"{param}.name", "a string", message["name"])
    if role == "tool":
        if "tool_call_id" not in message:
            raise _missing(f"{param}.tool_call_id")
        if not isinstance(message["tool_call_id"], str):
            raise _invalid_type(f"{param}.tool_call_id", "a string", message["tool_call_id"])
    if role == "function" and "name" not in message:
        raise _missing(f"{param}.name")
    content = message.get("content")
    if content is None:
        # An assistant turn that only called tools has no content; every other message must.
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return
        raise _missing(f"{param}.content")
    _check_content(f"{param}.content", role, content)


@dataclass(frozen=True)
class ChatCompletionRequest:
    """The fields of a validated chat-completions body that shape the answer."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None  # the tighter of max_tokens and max_completion_tokens
    stop: str | list[str] | None
    n: int


def parse_chat_request(body: Any) -> ChatCompletionRequest:
    """Validate a decoded chat-completions body as OpenAI does; raise :class:`OpenAIError` (400).

    Checks the fields that matter to the answer (model, messages, max_tokens,
    max_completion_tokens, n, stop, stream) and the ranges of temperature and top_p.
    Other fields are accepted unchecked: PromptForge forwards parameters some
    OpenAI-compatible servers take (top_k, for one), and a test double should not be
    stricter about them than those servers.
    """
    if not isinstance(body, dict):
        raise OpenAIError(
            400,
            f"Invalid type for request body: expected an object, but got {_json_type(body)} instead.",
            None,
            "invalid_type",
        )
    model = body.get("model")
    if model is None or model == "":
        # OpenAI's own wording for this case, with neither param nor code set.
        raise OpenAIError(400, "you must provide a model parameter")
    if not isinstance(model, str):
        raise _invalid_type("model", "a string", model)

    if "messages" not in body:
        raise _missing("messages")
    messages = body["messages"]
    if not isinstance(messages, list):
        raise _invalid_type("messages", "an array", messages)
    if not messages:
        raise OpenAIError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "messages",
            "empty_array",
        )
    for i, message in enumerate(messages):
        _check_message(i, message)

    limits = [v for v in (_check_int(body, "max_tokens", 1), _check_int(body, "max_completion_tokens", 1)) if v is not None]
    n = _check_int(body, "n", 1, _N_MAX) or 1
    _check_number(body, "temperature", 0, 2)
    _check_number(body, "top_p", 0, 1)

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _invalid_type("stream", "a boolean", stream)
    if stream:
        # Answering a stream request with a plain JSON body would look like success to a
        # lenient client and hide the mismatch; refuse it loudly instead.
        raise OpenAIError(
            400, "The fake LLM server does not implement streaming; send stream=false.", "stream", "unsupported_value"
        )

    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, list):
            raise _invalid_type("stop", "one of a string or array of strings", stop)
        if len(stop) > _STOP_MAX:
            raise OpenAIError(
                400,
                f"Invalid 'stop': array too long. Expected an array with maximum length {_STOP_MAX}, "
                f"but got an array with length {len(stop)} instead.",
                "stop",
                "array_above_max_length",
            )
        for j, item in enumerate(stop):
            if not isinstance(item, str):
                raise _invalid_type(f"stop[{j}]", "a string", item)

    return ChatCompletionRequest(model=model, messages=messages, max_tokens=min(limits) if limits else None, stop=stop, n=n)


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and OpenAI) does not.
    raise ValueError(f"invalid JSON constant {name}")


_UNPARSEABLE_BODY = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. "
    "If you have trouble figuring out how to fix this, please visit "
    "https://platform.openai.com/docs/guides/text-generation.)"
)

_NO_API_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if "
    "you're accessing the API from your browser and are prompted for a username. You can obtain an API key "
    "from https://platform.openai.com/account/api-keys."
)


# --------------------------------------------------------------------------------------
# The request pipeline
# --------------------------------------------------------------------------------------


@dataclass
class ChatCall:
    """One chat-completions request as it moves through the pipeline."""

    request: Request
    record: RequestRecord
    started: float  # time.monotonic() at arrival, for openai-processing-ms
    chat: ChatCompletionRequest | None = None  # set by the parsing stage


# A stage either answers the request (returns a Response, which ends the pipeline) or
# returns None to pass it on. Stages run in order; the last step renders the completion.
Stage = Callable[[ChatCall], Awaitable[Response | None]]


def _completion_id() -> str:
    # Same look as OpenAI's ids; secrets rather than the seeded RNG so that ids never
    # shift the jitter sequence that a seed is meant to pin down.
    return "chatcmpl-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(29))


class FakeLLM:
    """The server's state (config, statistics, jitter RNG) and its request handlers."""

    def __init__(self, config: FakeLLMConfig | None = None) -> None:
        self.config = config or FakeLLMConfig()
        self.stats = Stats()
        self.rng = random.Random(self.config.seed)
        # The order is the contract: auth before the body is even read (as OpenAI does),
        # the latency only for requests that would succeed (real errors come back fast).
        self.chat_pipeline: list[Stage] = [self.require_bearer, self.parse_chat_body, self.simulate_latency]

    # ---- settings ------------------------------------------------------------------

    def configure(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update of :class:`FakeLLMConfig`; raise ValueError if invalid.

        All fields are checked before any is applied, so a bad update changes nothing.
        A ``seed`` key (even an unchanged one) re-seeds the jitter RNG.
        """
        known = {"latency_ms", "jitter_ms", "seed"}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for name in ("latency_ms", "jitter_ms"):
            if name in changes:
                value = changes[name]
                if not _is_number(value) or not math.isfinite(value) or value < 0:
                    raise ValueError(f"{name} must be a finite number >= 0")
        if "seed" in changes and changes["seed"] is not None and not _is_int(changes["seed"]):
            raise ValueError("seed must be an integer or null")
        for name in ("latency_ms", "jitter_ms"):
            if name in changes:
                setattr(self.config, name, float(changes[name]))
        if "seed" in changes:
            self.config.seed = changes["seed"]
            self.rng.seed(self.config.seed)

    def delay_seconds(self) -> float:
        """The latency to simulate for the next request: latency ± uniform jitter, >= 0."""
        latency = self.config.latency_ms
        if self.config.jitter_ms > 0:
            latency += self.rng.uniform(-self.config.jitter_ms, self.config.jitter_ms)
        return max(0.0, latency) / 1000.0

    # ---- pipeline stages -----------------------------------------------------------

    async def require_bearer(self, call: ChatCall) -> Response | None:
        """401 unless the request carries ``Authorization: Bearer <non-empty key>``.

        Any key is accepted; the value is never stored or logged.
        """
        scheme, _, key = call.request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return OpenAIError(401, _NO_API_KEY).response()
        return None

    async def parse_chat_body(self, call: ChatCall) -> Response | None:
        """Decode and validate the JSON body; 400 in OpenAI's shape if it is not acceptable."""
        raw = await call.request.body()
        try:
            body = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
            return OpenAIError(400, _UNPARSEABLE_BODY).response()
        if isinstance(body, dict) and isinstance(body.get("model"), str) and body["model"]:
            # Counted per model even when the rest of the body is refused, like a
            # provider's dashboard would.
            call.record.model = body["model"]
        try:
            call.chat = parse_chat_request(body)
        except OpenAIError as exc:
            return exc.response()
        return None

    async def simulate_latency(self, call: ChatCall) -> Response | None:
        """Sleep the configured latency without blocking the event loop."""
        delay = self.delay_seconds()
        if delay > 0:
            await anyio.sleep(delay)
        return None

    def render_chat_completion(self, call: ChatCall) -> Response:
        """The 200 answer, in the exact shape of OpenAI's chat.completion object."""
        chat = call.chat
        assert chat is not None, "render_chat_completion runs only after parse_chat_body"
        result = complete(chat.messages, chat.model, chat.max_tokens, chat.stop)
        # n choices of one deterministic reply: identical, but shaped like the real thing.
        choices: list[dict[str, Any]] = [
            {
                "index": i,
                "message": {"role": "assistant", "content": result.text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
            for i in range(chat.n)
        ]
        completion_tokens = result.completion_tokens * chat.n
        call.record.prompt_tokens = result.prompt_tokens
        call.record.completion_tokens = completion_tokens
        body = {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": result.prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fake_llm",
        }
        elapsed_ms = int((time.monotonic() - call.started) * 1000)
        return JSONResponse(body, headers={"openai-processing-ms": str(elapsed_ms)})

    # ---- routes --------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``: run the pipeline, then render the completion."""
        record = _record(request)
        record.endpoint = "chat_completions"
        call = ChatCall(request=request, record=record, started=time.monotonic())
        for stage in self.chat_pipeline:
            response = await stage(call)
            if response is not None:
                return response
        return self.render_chat_completion(call)

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``: the server is up and serving."""
        return JSONResponse({"status": "ok"})

    async def get_stats(self, request: Request) -> Response:
        """``GET /_stats``: counters since start or the last ``/_reset``."""
        return JSONResponse(self.stats.snapshot())

    async def reset(self, request: Request) -> Response:
        """``POST /_reset``: zero the counters (the config and the RNG are left alone)."""
        self.stats.reset()
        return JSONResponse(self.stats.snapshot())

    async def config_endpoint(self, request: Request) -> Response:
        """``GET /_config`` returns the settings; ``POST`` applies a partial update and returns them."""
        if request.method == "POST":
            try:
                changes = json.loads(await request.body(), parse_constant=_reject_constant)
            except (ValueError, RecursionError):
                return OpenAIError(400, "the body must be a JSON object").response()
            if not isinstance(changes, dict):
                return OpenAIError(400, "the body must be a JSON object").response()
            try:
                self.configure(changes)
            except ValueError as exc:
                return OpenAIError(400, str(exc)).response()
        return JSONResponse(self.config.as_dict())


async def _http_error(request: Request, exc: Exception) -> Response:
    """404/405 (and any other HTTPException) in OpenAI's error shape, as OpenAI answers them."""
    assert isinstance(exc, HTTPException)
    target = f"{request.method} {request.url.path}"
    message = f"Invalid method for URL ({target})" if exc.status_code == 405 else f"Invalid URL ({target})"
    if exc.status_code not in (404, 405):
        message = exc.detail
    return OpenAIError(exc.status_code, message, headers=exc.headers).response()


def create_app(config: FakeLLMConfig | None = None) -> Starlette:
    """The ASGI app; its :class:`FakeLLM` (config, stats) is at ``app.state.fake_llm``.

    ``config`` is used live, not copied: ``POST /_config`` changes that very object.
    """
    fake = FakeLLM(config)
    routes = [
        Route("/v1/chat/completions", fake.chat_completions, methods=["POST"]),
        Route("/healthz", fake.healthz, methods=["GET"]),
        Route("/_stats", fake.get_stats, methods=["GET"]),
        Route("/_reset", fake.reset, methods=["POST"]),
        Route("/_config", fake.config_endpoint, methods=["GET", "POST"]),
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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.fake_llm.server",
        description="Fake LLM server speaking OpenAI's chat-completions wire format.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8405, help="TCP port (default: %(default)s)")
    parser.add_argument("--latency-ms", type=_non_negative, default=0.0, help="simulated latency per completion (default: 0)")
    parser.add_argument("--jitter-ms", type=_non_negative, default=0.0, help="uniform jitter of +/- this many ms (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the jitter RNG (default: %(default)s)")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT, then shut down gracefully; returns 0."""
    import uvicorn  # here, so that importing the app (tests, create_app) does not need it

    args = parse_args(argv)
    app = create_app(FakeLLMConfig(latency_ms=args.latency_ms, jitter_ms=args.jitter_ms, seed=args.seed))
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

    # uvicorn handles SIGTERM/SIGINT itself while serving, then restores the handlers it
    # found and re-raises the signal. Installing ours first makes that re-raise a no-op,
    # so a requested stop exits 0 instead of dying by the signal; it also covers a
    # signal that arrives before uvicorn has installed its own.
    def _request_exit(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    signal.signal(signal.SIGTERM, _request_exit)
    signal.signal(signal.SIGINT, _request_exit)

    print(
        f"fake_llm: serving on http://{args.host}:{args.port}/v1 "
        f"(latency {args.latency_ms:g} ms, jitter {args.jitter_ms:g} ms, seed {args.seed})",
        file=sys.stderr,
        flush=True,
    )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
