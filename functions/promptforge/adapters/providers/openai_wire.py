"""A client of the OpenAI chat-completions wire format over httpx.

Serves the local fake server and any OpenAI-compatible server (vLLM, llama.cpp, Ollama).
It makes one attempt per call: retries are the worker's single retry policy.
"""

from __future__ import annotations

from typing import Any

import httpx

from .base import ChatRequest, ChatResult, ProviderError


def _retry_after(response: httpx.Response) -> float | None:
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = response.headers.get(header)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def error_for_status(response: httpx.Response) -> ProviderError:
    """Map an HTTP error response to a stable PromptForge error."""
    status = response.status_code
    code = ""
    try:
        body = response.json()
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            code = str(err.get("code") or err.get("type") or "")
    except ValueError:
        pass
    detail = f"provider answered HTTP {status}" + (f" ({code})" if code else "")
    if status == 429:
        return ProviderError("rate_limit_exceeded", detail, True, _retry_after(response))
    if status in (408, 409) or status >= 500:
        return ProviderError("provider_error", detail, True, _retry_after(response))
    if "context_length" in code:
        return ProviderError("context_length_exceeded", detail, False)
    if "content_filter" in code or "content_policy" in code:
        return ProviderError("content_filtered", detail, False)
    return ProviderError("invalid_request", detail, False)


class OpenAIWireProvider:
    """POSTs to ``{base_url}/chat/completions``."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float = 120.0, max_connections: int = 256) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def complete(self, request: ChatRequest) -> ChatResult:
        body: dict[str, Any] = {**request.params, "model": request.model, "messages": request.messages}
        try:
            response = await self._client.post("/chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise ProviderError("timeout", f"no answer in time ({type(exc).__name__})", True) from None
        except httpx.TransportError as exc:
            raise ProviderError("provider_error", f"connection failed ({type(exc).__name__})", True) from None
        if response.status_code >= 400:
            raise error_for_status(response)
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
            finish = choice.get("finish_reason")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError("provider_error", "provider sent a malformed response", True) from None
        if finish == "content_filter":
            raise ProviderError("content_filtered", "the provider's content filter stopped the reply", False)
        return ChatResult(
            text=text,
            model=str(data.get("model") or request.model),
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=finish,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
