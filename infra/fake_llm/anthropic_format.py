"""Anthropic's messages wire format for the fake LLM: validation, answers, errors.

``POST /v1/messages`` with ``x-api-key`` (or ``Authorization: Bearer``) and
``anthropic-version`` headers; errors are
``{"type": "error", "error": {"type", "message"}, "request_id"}``; answers carry
``anthropic-ratelimit-{requests,tokens,input-tokens}-{limit,remaining,reset}`` headers
(reset as an RFC 3339 time) when limits are set.

The reply is the one the OpenAI route gives to the same conversation: the ``system``
prompt becomes a leading ``system`` message, and content blocks become OpenAI content
parts (text blocks ``{"type": "text", "text"}``, other blocks as they are), so a
conversation sent as plain strings gets exactly ``reply_for`` of its chat messages.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .limits import LimitView
from .replies import Completion
from .wire import ErrorKind, Prompt, WireError, is_int, is_number, retry_after_headers

__all__ = ["AnthropicDialect", "AnthropicError", "error_for", "message_body", "parse_messages_request", "refusal_body"]

# Top-level fields the messages API knows; anything else is refused, as Anthropic does.
_KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "output_config",
        "container",
        "mcp_servers",
        "context_management",
    }
)
_BLOCK_TYPES = frozenset({"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"})


class AnthropicError(WireError):
    """An error in Anthropic's shape."""

    def __init__(self, status: int, type: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body of the answer (a batch's errored result carries it too)."""
        return {"type": "error", "error": {"type": self.type, "message": self.message}, "request_id": _id("req_")}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _invalid(message: str) -> AnthropicError:
    return AnthropicError(400, "invalid_request_error", message)


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _check_blocks(where: str, content: Any, allow_string: bool = True) -> None:
    if isinstance(content, str) and allow_string:
        return
    if not isinstance(content, list):
        raise _invalid(f"{where}: Input should be a valid string or a valid list")
    for j, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            raise _invalid(f"{where}.{j}: Input tag does not match any of the expected tags")
        if block["type"] == "text" and not isinstance(block.get("text"), str):
            raise _invalid(f"{where}.{j}.text: Field required")


def _neutral_content(content: Any) -> Any:
    if isinstance(content, str):
        return content
    return [{"type": "text", "text": b["text"]} if b.get("type") == "text" else b for b in content]


def parse_messages_request(body: Any) -> Prompt:
    """Validate a decoded messages body as Anthropic does; raise :class:`AnthropicError` (400)."""
    if not isinstance(body, dict):
        raise _invalid("Input should be a valid dictionary")
    for name in body:
        if name not in _KNOWN_FIELDS:
            raise _invalid(f"{name}: Extra inputs are not permitted")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("model: Field required" if model is None else "model: Input should be a valid string")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _invalid("max_tokens: Field required")
    if not is_int(max_tokens) or max_tokens < 1:
        raise _invalid("max_tokens: Input should be greater than or equal to 1")
    messages = body.get("messages")
    if messages is None:
        raise _invalid("messages: Field required")
    if not isinstance(messages, list):
        raise _invalid("messages: Input should be a valid list")
    if not messages:
        raise _invalid("messages: at least one message is required")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid(f"messages.{i}: Input should be a valid dictionary")
        if message.get("role") not in ("user", "assistant"):
            raise _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in message:
            raise _invalid(f"messages.{i}.content: Field required")
        _check_blocks(f"messages.{i}.content", message["content"])
    system = body.get("system")
    if system is not None:
        _check_blocks("system", system)
    for name, hi in (("temperature", 1.0), ("top_p", 1.0)):
        value = body.get(name)
        if value is not None and (not is_number(value) or not 0 <= value <= hi):
            raise _invalid(f"{name}: Input should be a number between 0 and {hi:g}")
    top_k = body.get("top_k")
    if top_k is not None and (not is_int(top_k) or top_k < 0):
        raise _invalid("top_k: Input should be greater than or equal to 0")
    stop = body.get("stop_sequences")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise _invalid("stop_sequences: Input should be a valid list of strings")
    if body.get("stream"):
        raise _invalid("stream: the fake LLM server does not implement streaming; send stream=false")

    neutral = [{"role": m["role"], "content": _neutral_content(m["content"])} for m in messages]
    if system is not None:
        text = system if isinstance(system, str) else "\n".join(b.get("text", "") for b in system)
        neutral.insert(0, {"role": "system", "content": text})
    return Prompt(model=model, messages=neutral, max_tokens=max_tokens, stop=stop)


def _reset_time(seconds: float) -> str:
    """``now + seconds`` as Anthropic writes resets: RFC 3339, whole seconds (rounded up), UTC."""
    moment = datetime.fromtimestamp(math.ceil(time.time() + seconds), UTC)
    return moment.isoformat().replace("+00:00", "Z")


_ERRORS: dict[str, tuple[int, str, str]] = {
    "rate_limit_requests": (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of {limit} requests per minute. "
        "For details, refer to: https://docs.claude.com/en/api/rate-limits.",
    ),
    "rate_limit_tokens": (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of {limit} input tokens per minute. "
        "For details, refer to: https://docs.claude.com/en/api/rate-limits.",
    ),
    "request_too_large": (
        429,
        "rate_limit_error",
        "This request ({requested} tokens) exceeds your organization's rate limit of {limit} tokens per minute "
        "and can never succeed; reduce the prompt length or max_tokens.",
    ),
    "context_length": (400, "invalid_request_error", "prompt is too long: {total} tokens > {window} maximum"),
    "server_error": (500, "api_error", "Internal server error"),
    "timeout": (504, "timeout_error", "Request timed out"),
}


class AnthropicDialect:
    """``POST /v1/messages`` as Anthropic serves it."""

    endpoint = "messages"
    processing_ms_header: str | None = None

    def authenticate(self, request: Request) -> WireError | None:
        """401 without a key, 400 without ``anthropic-version`` (in that order).

        The key may come as ``x-api-key`` or as ``Authorization: Bearer`` (what the
        ``anthropic`` SDK 2.x sends); any non-empty key is accepted and never kept.
        """
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        has_bearer = scheme.lower() == "bearer" and bearer.strip()
        if not request.headers.get("x-api-key", "").strip() and not has_bearer:
            return AnthropicError(401, "authentication_error", "x-api-key header is required")
        if not request.headers.get("anthropic-version", "").strip():
            return _invalid("anthropic-version: header is required")
        return None

    def model_hint(self, request: Request, body: Any) -> str | None:
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) and model else None

    def unparseable(self) -> WireError:
        return _invalid("There was an error parsing the body of your request as JSON.")

    def validate(self, request: Request, body: Any) -> Prompt:
        return parse_messages_request(body)

    def render(self, prompt: Prompt, completion: Completion, headers: Mapping[str, str]) -> Response:
        return JSONResponse(message_body(prompt, completion), headers=headers)

    def content_filtered(self, prompt: Prompt, prompt_tokens: int, headers: Mapping[str, str]) -> Response:
        """Claude declined: ``stop_reason`` ``refusal`` and no content."""
        return JSONResponse(refusal_body(prompt, prompt_tokens), headers=headers)

    def error(self, kind: ErrorKind, info: Mapping[str, Any], headers: Mapping[str, str]) -> Response:
        return error_for(kind, info, headers).response()

    def rate_headers(self, view: LimitView, retry_after_s: float | None) -> dict[str, str]:
        # Anthropic sends retry-after in seconds; retry-after-ms is added for clients that
        # prefer it (the SDKs read it when present).
        headers = retry_after_headers(retry_after_s)
        if view.limit_requests is not None:
            headers["anthropic-ratelimit-requests-limit"] = str(view.limit_requests)
            headers["anthropic-ratelimit-requests-remaining"] = str(view.remaining_requests)
            headers["anthropic-ratelimit-requests-reset"] = _reset_time(view.reset_requests_s or 0.0)
        if view.limit_tokens is not None:
            for prefix in ("anthropic-ratelimit-tokens", "anthropic-ratelimit-input-tokens"):
                headers[f"{prefix}-limit"] = str(view.limit_tokens)
                headers[f"{prefix}-remaining"] = str(view.remaining_tokens)
                headers[f"{prefix}-reset"] = _reset_time(view.reset_tokens_s or 0.0)
        return headers


def message_body(prompt: Prompt, completion: Completion, service_tier: str = "standard") -> dict[str, Any]:
    """The Message object answering ``prompt`` (``service_tier`` ``batch`` in a batch's results)."""
    if completion.finish_reason == "length":
        stop_reason = "max_tokens"
    else:
        stop_reason = "stop_sequence" if completion.stop_sequence is not None else "end_turn"
    content = [{"type": "text", "text": completion.text}]
    return _message(
        prompt,
        content,
        stop_reason,
        completion.stop_sequence,
        completion.prompt_tokens,
        completion.completion_tokens,
        service_tier,
    )


def refusal_body(prompt: Prompt, prompt_tokens: int, service_tier: str = "standard") -> dict[str, Any]:
    """The Message object of a reply Claude declined: no content."""
    return _message(prompt, [], "refusal", None, prompt_tokens, 0, service_tier)


def error_for(kind: ErrorKind, info: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> AnthropicError:
    """The error of the given kind in Anthropic's words (see :data:`~.wire.ErrorKind` for ``info``)."""
    status, type_, template = _ERRORS[kind]
    return AnthropicError(status, type_, template.format(**info), headers)


def _message(
    prompt: Prompt,
    content: list[dict[str, Any]],
    stop_reason: str,
    stop_sequence: str | None,
    input_tokens: int,
    output_tokens: int,
    service_tier: str,
) -> dict[str, Any]:
    return {
        "id": _id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": prompt.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
            "service_tier": service_tier,
        },
    }
