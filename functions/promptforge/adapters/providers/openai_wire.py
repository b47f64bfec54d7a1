"""A client of the OpenAI chat-completions wire format over plain httpx.

Serves ``openai_compatible`` (vLLM, llama.cpp, Ollama, any server by ``base_url``) and
the local ``fake`` provider. It makes one attempt per call: retries are the worker's
single retry policy. The official ``openai`` provider uses the SDK instead
(:mod:`.openai_sdk`); both read answers through :mod:`._http`.
"""

from __future__ import annotations

from typing import Any

import httpx

from . import _http
from .base import ChatRequest, ChatResult, ProviderError


def error_for_status(response: httpx.Response) -> ProviderError:
    """Map an HTTP error response to a stable PromptForge error."""
    code = ""
    try:
        body = response.json()
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            code = str(err.get("code") or err.get("type") or "")
    except ValueError:
        pass
    return _http.status_error(
        response.status_code,
        response.headers,
        code=code,
        context_length="context_length" in code,
        content_filter="content_filter" in code or "content_policy" in code,
    )


class OpenAIWireProvider:
    """POSTs to ``{base_url}/chat/completions``; job params are sent as they are."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float = 120.0, max_connections: int = 256) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One chat completion; raises :class:`ProviderError` with a stable code."""
        body: dict[str, Any] = {**request.params, "model": request.model, "messages": request.messages}
        try:
            response = await self._client.post("/chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise _http.timeout_error(exc) from None
        except httpx.TransportError as exc:
            raise _http.connection_error(exc) from None
        if response.status_code >= 400:
            raise error_for_status(response)
        limits = _http.rate_limits_from_headers(response.headers)
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
            finish = choice.get("finish_reason")
            input_tokens = int(usage.get("prompt_tokens") or 0)
            output_tokens = int(usage.get("completion_tokens") or 0)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise _http.malformed_response() from None
        if finish == "content_filter":
            raise _http.content_filtered("finish_reason content_filter")
        return ChatResult(
            text=text,
            model=str(data.get("model") or request.model),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reason=finish,
            rate_limits=limits,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
