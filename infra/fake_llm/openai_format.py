"""OpenAI's chat-completions wire format for the fake LLM: validation, answers, errors.

``POST /v1/chat/completions`` with ``Authorization: Bearer <key>``; errors are
``{"error": {message, type, param, code}}``; every answer carries OpenAI's
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers when limits are set.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .limits import LimitView, go_duration
from .replies import Completion
from .wire import ErrorKind, Prompt, WireError, is_int, is_number, json_type, retry_after_headers

__all__ = [
    "ChatCompletionRequest",
    "OpenAIDialect",
    "OpenAIError",
    "completion_body",
    "error_for",
    "filtered_body",
    "parse_chat_request",
]

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


class OpenAIError(WireError):
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

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer (a batch's error file carries it too)."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        """The HTTP response carrying this error."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


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
        f"Invalid type for '{param}': expected {expected}, but got {json_type(value)} instead.",
        param,
        "invalid_type",
    )


def _invalid_value(param: str, value: str, supported: Sequence[str]) -> OpenAIError:
    # Only ever called with short enum-like values (roles, part types), never prompt text.
    return OpenAIError(400, f"Invalid value: '{value}'. Supported values are: {_quoted_list(supported)}.", param, "invalid_value")


def _check_int(body: Mapping[str, Any], name: str, lo: int, hi: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not is_int(value):
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
    if not is_number(value):
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


# The OpenAI request in neutral form is exactly a Prompt.
ChatCompletionRequest = Prompt


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
            f"Invalid type for request body: expected an object, but got {json_type(body)} instead.",
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


def _completion_id() -> str:
    # Same look as OpenAI's ids; secrets rather than the seeded RNG so that ids never
    # shift the sequences that a seed is meant to pin down.
    return "chatcmpl-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(29))


_ERRORS: dict[str, tuple[int, str, str | None, str | None, str]] = {
    # kind: (status, type, param, code, message template)
    "rate_limit_requests": (
        429,
        "requests",
        None,
        "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-fake on requests per min (RPM): Limit {limit}, "
        "Used {limit}, Requested 1. Please try again in {wait}.",
    ),
    "rate_limit_tokens": (
        429,
        "tokens",
        None,
        "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-fake on tokens per min (TPM): Limit {limit}, "
        "Requested {requested}. Please try again in {wait}.",
    ),
    "request_too_large": (
        429,
        "tokens",
        None,
        "rate_limit_exceeded",
        "Request too large for {model} in organization org-fake on tokens per min (TPM): Limit {limit}, "
        "Requested {requested}. The input or output tokens must be reduced in order to run successfully.",
    ),
    "context_length": (
        400,
        "invalid_request_error",
        "messages",
        "context_length_exceeded",
        "This model's maximum context length is {window} tokens. However, you requested {total} tokens "
        "({prompt_tokens} in the messages, {max_tokens} in the completion). Please reduce the length of the "
        "messages or completion.",
    ),
    "server_error": (
        500,
        "server_error",
        None,
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    "timeout": (504, "server_error", None, "timeout", "Request timed out."),
}


class OpenAIDialect:
    """``POST /v1/chat/completions`` as OpenAI serves it."""

    endpoint = "chat_completions"
    processing_ms_header: str | None = "openai-processing-ms"

    def authenticate(self, request: Request) -> WireError | None:
        """401 unless the request carries ``Authorization: Bearer <non-empty key>``.

        Any key is accepted; the value is never stored or logged.
        """
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return OpenAIError(401, _NO_API_KEY)
        return None

    def model_hint(self, request: Request, body: Any) -> str | None:
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) and model else None

    def unparseable(self) -> WireError:
        return OpenAIError(400, _UNPARSEABLE_BODY)

    def validate(self, request: Request, body: Any) -> Prompt:
        return parse_chat_request(body)

    def render(self, prompt: Prompt, completion: Completion, headers: Mapping[str, str]) -> Response:
        """The 200 answer, in the exact shape of OpenAI's chat.completion object."""
        return JSONResponse(completion_body(prompt, completion), headers=headers)

    def content_filtered(self, prompt: Prompt, prompt_tokens: int, headers: Mapping[str, str]) -> Response:
        """What OpenAI (Azure's filter) answers when the output was filtered: no content."""
        return JSONResponse(filtered_body(prompt, prompt_tokens), headers=headers)

    def error(self, kind: ErrorKind, info: Mapping[str, Any], headers: Mapping[str, str]) -> Response:
        return error_for(kind, info, headers).response()

    def rate_headers(self, view: LimitView, retry_after_s: float | None) -> dict[str, str]:
        headers = retry_after_headers(retry_after_s)
        if view.limit_requests is not None:
            headers["x-ratelimit-limit-requests"] = str(view.limit_requests)
            # OpenAI reports its limits per minute, whatever shorter period it enforces them over.
            headers["x-ratelimit-remaining-requests"] = str(view.minute_remaining_requests)
            headers["x-ratelimit-reset-requests"] = go_duration(view.reset_requests_s or 0.0)
        if view.limit_tokens is not None:
            headers["x-ratelimit-limit-tokens"] = str(view.limit_tokens)
            headers["x-ratelimit-remaining-tokens"] = str(view.minute_remaining_tokens)
            headers["x-ratelimit-reset-tokens"] = go_duration(view.reset_tokens_s or 0.0)
        return headers


def completion_body(prompt: Prompt, completion: Completion) -> dict[str, Any]:
    """The chat.completion object answering ``prompt`` (a batch's output file carries it too)."""
    # n choices of one deterministic reply: identical, but shaped like the real thing.
    choices = [_choice(i, completion.text, completion.finish_reason) for i in range(prompt.n)]
    return _completion_body(prompt, choices, completion.prompt_tokens, completion.completion_tokens * prompt.n)


def filtered_body(prompt: Prompt, prompt_tokens: int) -> dict[str, Any]:
    """The chat.completion object of an answer the safety system stopped: no content."""
    choices = [_choice(i, None, "content_filter") for i in range(prompt.n)]
    return _completion_body(prompt, choices, prompt_tokens, 0)


def error_for(kind: ErrorKind, info: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> OpenAIError:
    """The error of the given kind in OpenAI's words (see :data:`~.wire.ErrorKind` for ``info``)."""
    status, type_, param, code, template = _ERRORS[kind]
    wait = info.get("retry_after_s")
    message = template.format(**info, wait=go_duration(wait) if wait is not None else "")
    return OpenAIError(status, message, param, code, type=type_, headers=headers)


def _choice(index: int, content: str | None, finish_reason: str) -> dict[str, Any]:
    return {
        "index": index,
        "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
        "logprobs": None,
        "finish_reason": finish_reason,
    }


def _completion_body(prompt: Prompt, choices: list[dict[str, Any]], prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "id": _completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": prompt.model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
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
