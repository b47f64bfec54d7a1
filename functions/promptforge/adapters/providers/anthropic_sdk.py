"""Anthropic's messages API through the official ``anthropic`` SDK.

Imported only by :func:`open_provider`'s ``anthropic`` branch (the SDK takes about 2.5 s
to import). ``max_retries=0``: one attempt per call, retries are the worker's policy.

The SDK runs on its aiohttp transport (``DefaultAioHttpClient``), for the reason
:mod:`.openai_sdk` gives; the client is the running loop's shared one (:mod:`._shared`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import anthropic

from ...domain.outcomes import ErrorCode
from . import _http, _messages, _sdk_transport, _shared
from ._opening import Secret, Settings, deployment_key
from .base import ChatRequest, ChatResult, ProviderError, RateLimitInfo

NAME = "anthropic"
# The messages API requires max_tokens; this is what a job that does not set it gets.
DEFAULT_MAX_TOKENS = 1024

# Anthropic's stop reasons in OpenAI's words where there is one (ChatResult's convention).
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}
_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}


def request_body(request: ChatRequest) -> dict[str, Any]:
    """The ``messages.create`` arguments for a chat request (raises ``invalid_request``
    for what Anthropic cannot express)."""
    conversation = _messages.split(NAME, request.messages)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [_turn(t) for t in conversation.turns],
    }
    if conversation.system is not None:
        body["system"] = conversation.system
    output: dict[str, Any] = {}
    sampling: dict[str, Any] = {}
    for key, value in request.params.items():
        if key == "max_tokens":
            body[key] = value
        elif key in ("temperature", "top_p", "top_k"):
            # The SDK no longer lists sampling parameters; they go as extra body fields and
            # the API decides (a model that refuses them answers 400: invalid_request).
            sampling[key] = value
        elif key == "stop":
            body["stop_sequences"] = [value] if isinstance(value, str) else list(value)
        elif key == "reasoning_effort":
            output["effort"] = _EFFORT.get(value, value)
        elif key == "response_format":
            fmt = _output_format(value)
            if fmt is not None:
                output["format"] = fmt
        else:  # presence_penalty, frequency_penalty, seed: Anthropic has no equivalent
            raise _http.unsupported_param(NAME, key)
    if output:
        body["output_config"] = output
    if sampling:
        body["extra_body"] = sampling
    return body


def _output_format(value: Any) -> dict[str, Any] | None:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    schema = value.get("json_schema", {}).get("schema") if kind == "json_schema" and isinstance(value, dict) else None
    if not isinstance(schema, dict):
        # Anthropic's structured output needs a schema; json_object has no equivalent.
        raise ProviderError(
            ErrorCode.INVALID_REQUEST, "response_format needs a json_schema with a schema for provider anthropic", False
        )
    return {"type": "json_schema", "schema": schema}


def _turn(turn: _messages.Turn) -> dict[str, Any]:
    plain = turn.plain_text
    if plain is not None:
        return {"role": turn.role, "content": plain}
    blocks: list[dict[str, Any]] = []
    for part in turn.parts:
        if isinstance(part, _messages.Text):
            blocks.append({"type": "text", "text": part.text})
        elif part.url:
            blocks.append({"type": "image", "source": {"type": "url", "url": part.url}})
        else:
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": part.mime_type, "data": part.data}})
    return {"role": turn.role, "content": blocks}


class AnthropicProvider:
    """``POST {base_url}/v1/messages`` with the SDK's ``AsyncAnthropic``."""

    def __init__(self, *, api_key: str, base_url: str | None = None, timeout_s: float = 120.0) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._key = (NAME, base_url, _shared.fingerprint(api_key), timeout_s)

    def _new_client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=self._base_url,
            max_retries=0,
            timeout=anthropic.Timeout(self._timeout_s, connect=10.0),
            http_client=anthropic.DefaultAioHttpClient(limits=_sdk_transport.LIMITS),
        )

    def client(self) -> _shared.Lease[anthropic.AsyncAnthropic]:
        """The running loop's shared SDK client of this configuration, for one call."""
        return _shared.Lease(self._key, self._new_client, anthropic.AsyncAnthropic.close)

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One message; raises :class:`ProviderError` with a stable code."""
        body = request_body(request)
        with sdk_errors(), self.client() as client:
            raw = await client.messages.with_raw_response.create(**body)
        limits = _http.rate_limits_from_headers(raw.headers)
        try:
            message = await raw.parse()
        except (ValueError, TypeError, AttributeError, anthropic.APIResponseValidationError):
            raise _http.malformed_response() from None
        return message_result(message, request.model, limits)

    async def aclose(self) -> None:
        """Nothing to release: the client is shared (``close_shared_clients`` closes it)."""


def message_result(message: Any, model: str, limits: RateLimitInfo | None = None) -> ChatResult:
    """A Message as a result (``model`` when it names none): the fast path's answers and
    a message batch's succeeded results are read alike. One that cannot be read is
    ``provider_error`` (retryable), a refusal ``content_filtered``."""
    try:
        text = "".join(block.text for block in message.content if block.type == "text")
        usage = message.usage
        input_tokens = usage.input_tokens + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
        output_tokens = usage.output_tokens
        stop = message.stop_reason
        named = message.model
    except (ValueError, TypeError, AttributeError):
        raise _http.malformed_response() from None
    if stop == "refusal":
        raise _http.content_filtered("stop_reason refusal")
    return ChatResult(
        text=text,
        model=named or model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        finish_reason=_FINISH.get(stop, stop) if stop else None,
        rate_limits=limits,
    )


def sdk_errors() -> contextlib.AbstractContextManager[None]:
    """Turns the SDK's errors for a call into :class:`ProviderError` with a stable code."""
    return _sdk_transport.sdk_errors(
        anthropic.APITimeoutError, anthropic.APIConnectionError, anthropic.APIStatusError, _status_error
    )


def _status_error(exc: anthropic.APIStatusError) -> ProviderError:
    return error_for(exc.status_code, exc.response.headers, exc.type, exc.api_message)


def error_for(status: int, headers: Mapping[str, str], kind: object, message: object) -> ProviderError:
    """The stable error for Anthropic's error ``kind`` (its ``type``) answered with HTTP
    ``status``: a failed call, or an errored request of a message batch."""
    code = kind if isinstance(kind, str) else ""
    # Anthropic says "prompt is too long: N tokens > M maximum" in an invalid_request_error;
    # the message is read here to classify it and is never passed on.
    said = message.lower() if isinstance(message, str) else ""
    too_long = code == "invalid_request_error" and ("prompt is too long" in said or "context window" in said)
    return _http.status_error(status, headers, code=code, context_length=too_long)


def open_anthropic(
    settings: Settings, endpoint: str | None, base_url: str | None, secret: Secret, timeout_s: float
) -> AnthropicProvider:
    """The registry's opener for ``anthropic``."""
    return AnthropicProvider(
        api_key=deployment_key("anthropic", secret),
        base_url=settings.anthropic_base_url or None,
        timeout_s=timeout_s,
    )
