"""Gemini through the ``google-genai`` SDK: the Gemini API with a key, or Vertex AI.

Imported only by :func:`open_provider`'s ``gemini`` branch (the SDK takes about 1.25 s
to import). The SDK is given retry options of one attempt: one attempt per call, retries
are the worker's policy.

With aiohttp installed (it is pinned, and named by the ``aiohttp`` extra) the SDK's async
calls go through aiohttp, with one session per client and event loop and no connection
limit. The client is the running loop's shared one for this configuration
(:mod:`._shared`), so a process keeps one pool per configuration, not one per chunk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import httpx2
from google import genai
from google.genai import errors, types
from google.genai.client import AsyncClient

from ...domain.outcomes import ErrorCode
from . import _http, _messages, _shared
from ._opening import Secret, Settings, deployment_key
from .base import ChatRequest, ChatResult, ProviderError, RateLimitInfo

# google-genai sends async requests through aiohttp when aiohttp is installed, else
# through httpx2; a broken connection surfaces as either library's error.
_TIMEOUTS: tuple[type[BaseException], ...] = (httpx2.TimeoutException, TimeoutError)
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (httpx2.TransportError,)
try:
    import aiohttp
except ImportError:  # pragma: no cover - depends on what is installed
    pass
else:
    _CONNECTION_ERRORS += (aiohttp.ClientError,)

NAME = "gemini"
# Gemini's finish reasons that mean its safety system stopped the reply.
_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length"}
# Job parameters with a direct equivalent in GenerateContentConfig.
_SAME = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "max_tokens": "max_output_tokens",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
}
_THINKING_LEVEL = {"minimal": "MINIMAL", "low": "LOW", "medium": "MEDIUM", "high": "HIGH"}


def request_config(request: ChatRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(contents, config)`` for ``generate_content``: assistant turns become ``model``
    turns, system messages the ``system_instruction``, job params the config's fields."""
    conversation = _messages.split(NAME, request.messages)
    config: dict[str, Any] = {}
    if conversation.system is not None:
        config["system_instruction"] = conversation.system
    for key, value in request.params.items():
        if key in _SAME:
            config[_SAME[key]] = value
        elif key == "stop":
            config["stop_sequences"] = [value] if isinstance(value, str) else list(value)
        elif key == "reasoning_effort":
            config["thinking_config"] = {"thinking_level": _THINKING_LEVEL.get(value, str(value).upper())}
        elif key == "response_format":
            config.update(_response_format(value))
        else:
            raise _http.unsupported_param(NAME, key)
    contents = [
        {"role": "model" if t.role == "assistant" else "user", "parts": [_part(p) for p in t.parts]} for t in conversation.turns
    ]
    return contents, config


def _response_format(value: Any) -> dict[str, Any]:
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "json_object":
        return {"response_mime_type": "application/json"}
    if kind == "json_schema":
        schema = value.get("json_schema", {}).get("schema")
        if isinstance(schema, dict):
            return {"response_mime_type": "application/json", "response_json_schema": schema}
    if kind == "text":
        return {}
    raise ProviderError(ErrorCode.INVALID_REQUEST, "response_format is not one gemini can express", False)


def _part(part: _messages.Part) -> dict[str, Any]:
    if isinstance(part, _messages.Text):
        return {"text": part.text}
    if part.url:
        # Gemini fetches only files it knows (uploaded or gs://), so the URL goes as a file.
        return {"file_data": {"file_uri": part.url, "mime_type": part.mime_type or "image/jpeg"}}
    return {"inline_data": {"mime_type": part.mime_type, "data": part.data}}


class GeminiProvider:
    """``models.generate_content`` on the SDK's async client."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        vertex_project: str | None = None,
        vertex_location: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        api_version: str | None = None,
    ) -> None:
        self._api_key = api_key
        self._vertex = (vertex_project, vertex_location) if vertex_project else None
        # One attempt: without retry options the SDK retries a refused or dropped connection
        # itself after a 1-10 s sleep; with them, tenacity stops after ``attempts``.
        retry = types.HttpRetryOptions(attempts=1)
        self._options = types.HttpOptions(
            timeout=int(timeout_s * 1000), base_url=base_url, retry_options=retry, api_version=api_version
        )
        self._key = (NAME, base_url, _shared.fingerprint(api_key), timeout_s, self._vertex, api_version)

    def _new_client(self) -> AsyncClient:
        if self._vertex:
            # Vertex AI: the function's service account (ADC), no key.
            project, location = self._vertex
            return genai.Client(vertexai=True, project=project, location=location, http_options=self._options).aio
        return genai.Client(api_key=self._api_key, http_options=self._options).aio

    def client(self) -> _shared.Lease[AsyncClient]:
        """The running loop's shared SDK client of this configuration, for one call."""
        return _shared.Lease(self._key, self._new_client, AsyncClient.aclose)

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One generation; raises :class:`ProviderError` with a stable code."""
        contents, config = request_config(request)
        with sdk_errors(), self.client() as client:
            response = await client.models.generate_content(
                model=request.model,
                contents=contents,
                config=types.GenerateContentConfig(**config),
            )
        headers = response.sdk_http_response.headers if response.sdk_http_response else None
        limits = _http.rate_limits_from_headers(_http.lower_keys(headers)) if headers else None
        return response_result(response, request.model, limits)

    async def aclose(self) -> None:
        """Nothing to release: the client is shared (``close_shared_clients`` closes it)."""


def response_result(response: types.GenerateContentResponse, model: str, limits: RateLimitInfo | None = None) -> ChatResult:
    """A GenerateContentResponse as a result (``model`` when it names none): the fast
    path's answers and a batch's inlined responses are read alike. One that cannot be
    read is ``provider_error`` (retryable), a blocked prompt or reply ``content_filtered``."""
    try:
        blocked = response.prompt_feedback.block_reason if response.prompt_feedback else None
        if blocked and blocked != "BLOCKED_REASON_UNSPECIFIED":
            raise _http.content_filtered(f"prompt blocked: {_http.safe_code(str(_enum(blocked)))}")
        candidate = response.candidates[0] if response.candidates else None
        if candidate is None:
            raise _http.malformed_response()
        finish = _enum(candidate.finish_reason) if candidate.finish_reason else None
        if finish in _FILTERED:
            raise _http.content_filtered(f"finish_reason {finish}")
        parts = candidate.content.parts if candidate.content and candidate.content.parts else []
        text = "".join(p.text for p in parts if p.text and not p.thought)
        usage = response.usage_metadata
        input_tokens = (usage.prompt_token_count or 0) if usage else 0
        # Thinking tokens are billed as output.
        output_tokens = ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
    except (TypeError, AttributeError, IndexError):
        raise _http.malformed_response() from None
    return ChatResult(
        text=text,
        model=response.model_version or model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        finish_reason=_FINISH.get(finish, finish.lower()) if finish else None,
        rate_limits=limits,
    )


@contextlib.contextmanager
def sdk_errors() -> Iterator[None]:
    """Turns the SDK's errors for a call into :class:`ProviderError` with a stable code."""
    try:
        yield
    except _TIMEOUTS as exc:
        raise _http.timeout_error(exc) from None
    except _CONNECTION_ERRORS as exc:
        raise _http.connection_error(exc) from None
    except errors.APIError as exc:
        headers = _http.lower_keys(exc.response.headers) if exc.response is not None else {}
        raise error_for(int(exc.code or 0), headers, exc.status, exc.message, exc.details) from None
    except ValueError:
        raise _http.malformed_response() from None


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value))


def _retry_delay(details: Any) -> float | None:
    """Google's RetryInfo ``retryDelay`` ("27s") from an error body's ``details``."""
    error = details.get("error", details) if isinstance(details, Mapping) else None
    items = error.get("details") if isinstance(error, Mapping) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = item.get("retryDelay")
            if isinstance(delay, str):
                return _http.parse_duration(delay)
    return None


def error_for(status: int, headers: Mapping[str, str], name: object, message: object, details: Any = None) -> ProviderError:
    """The stable error for a Google error answered with HTTP ``status`` (``name`` its
    status name, ``details`` its body for a RetryInfo): a failed call, or a failed request
    of a batch (its google.rpc code given as the HTTP status it stands for)."""
    # Gemini says "The input token count (N) exceeds the maximum number of tokens allowed
    # (M)"; the message is read here to classify it and is never passed on.
    said = message.lower() if isinstance(message, str) else ""
    too_long = status == 400 and "token count" in said and "exceeds" in said
    return _http.status_error(
        status,
        headers,
        code=name if isinstance(name, str) else "",
        context_length=too_long,
        retry_after=_retry_delay(details),
    )


def open_gemini(
    settings: Settings, endpoint: str | None, base_url: str | None, secret: Secret, timeout_s: float
) -> GeminiProvider:
    """The registry's opener for ``gemini``: the Gemini API with a key, or Vertex AI with
    the function's service account."""
    if settings.gemini_vertex:
        return GeminiProvider(
            vertex_project=settings.project,
            vertex_location=settings.gemini_location,
            base_url=settings.gemini_base_url or None,
            timeout_s=timeout_s,
        )
    return GeminiProvider(
        api_key=deployment_key("gemini", secret),
        base_url=settings.gemini_base_url or None,
        timeout_s=timeout_s,
    )
