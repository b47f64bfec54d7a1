"""OpenAI chat completions through the official ``openai`` SDK.

Imported only by :func:`open_provider`'s branch for a provider that uses it, so the SDK
(about 1.3 s to import) never weighs on the HTTP API's cold start. The SDK's own retries
are off (``max_retries=0``): one attempt per call, retries are the worker's policy.

The SDK runs on its aiohttp transport (``DefaultAioHttpClient``) and its client is the
running loop's shared one for this configuration (:mod:`._shared`): 2.2-2.4 ms of CPU per
request at 32-128 in flight, against 2.9-3.9 ms with a client per chunk on the default
httpx2 pool (``infra/bench/provider_cpu.py``). Most of what remains is the SDK's own
request transform and response models; the same wire format through
:mod:`.openai_wire` costs 0.4 ms.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import openai

from . import _http, _sdk_transport, _shared
from ._opening import Secret, Settings, deployment_key
from .base import ChatRequest, ChatResult, ProviderError


class OpenAIProvider:
    """``POST {base_url}/chat/completions`` with the SDK's ``AsyncOpenAI``.

    ``max_tokens_field`` is where the job's ``max_tokens`` goes: OpenAI's current name
    is ``max_completion_tokens`` (its reasoning models refuse ``max_tokens``).
    ``unsupported`` lists job parameters the server has no equivalent for; a request
    that sets one fails as ``invalid_request`` without a call. ``api_key`` None sends no
    credential (an operator endpoint that names no key; only the batch API, which talks
    to such endpoints through this SDK, opens it so).
    """

    def __init__(
        self,
        *,
        name: str,
        api_key: str | None,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        max_tokens_field: str = "max_completion_tokens",
        unsupported: Iterable[str] = ("top_k",),
    ) -> None:
        self._name = name
        self._max_tokens_field = max_tokens_field
        self._unsupported = frozenset(unsupported)
        self._api_key = api_key
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._key = ("openai", base_url, _shared.fingerprint(api_key), timeout_s)

    def _new_client(self) -> openai.AsyncOpenAI:
        # Without a key the SDK would read OPENAI_API_KEY from the environment and send
        # OpenAI's key to another server: it gets a placeholder, and every call omits the
        # header (``extra_headers``; the SDK honours an omission only per call).
        return openai.AsyncOpenAI(
            api_key=self._api_key or "none",
            base_url=self._base_url,
            max_retries=0,
            timeout=openai.Timeout(self._timeout_s, connect=10.0),
            http_client=openai.DefaultAioHttpClient(limits=_sdk_transport.LIMITS),
        )

    @property
    def extra_headers(self) -> dict[str, Any] | None:
        """What every call passes as ``extra_headers``: no credential when there is no key."""
        return {"Authorization": openai.Omit()} if self._api_key is None else None

    def client(self) -> _shared.Lease[openai.AsyncOpenAI]:
        """The running loop's shared SDK client of this configuration, for one call."""
        return _shared.Lease(self._key, self._new_client, openai.AsyncOpenAI.close)

    def params(self, request: ChatRequest) -> dict[str, Any]:
        """The request's job params under the server's names (``invalid_request`` for one
        it lacks)."""
        body: dict[str, Any] = {}
        for key, value in request.params.items():
            if key in self._unsupported:
                raise _http.unsupported_param(self._name, key)
            body[self._max_tokens_field if key == "max_tokens" else key] = value
        return body

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One chat completion; raises :class:`ProviderError` with a stable code."""
        extra = self.params(request)
        with sdk_errors(), self.client() as client:
            raw = await client.chat.completions.with_raw_response.create(
                model=request.model,
                messages=request.messages,  # type: ignore[arg-type]
                extra_body=extra or None,
                extra_headers=self.extra_headers,
            )
        limits = _http.rate_limits_from_headers(raw.headers)
        try:
            completion = raw.parse()
            choice = completion.choices[0]
            text = choice.message.content or ""
            finish = choice.finish_reason
            usage = completion.usage
        except (ValueError, TypeError, AttributeError, IndexError, openai.APIResponseValidationError):
            raise _http.malformed_response() from None
        if finish == "content_filter":
            raise _http.content_filtered("finish_reason content_filter")
        return ChatResult(
            text=text,
            model=completion.model or request.model,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            finish_reason=finish,
            rate_limits=limits,
        )

    async def aclose(self) -> None:
        """Nothing to release: the client is shared (``close_shared_clients`` closes it)."""


def sdk_errors() -> contextlib.AbstractContextManager[None]:
    """Turns the SDK's errors for a call into :class:`ProviderError` with a stable code."""
    return _sdk_transport.sdk_errors(openai.APITimeoutError, openai.APIConnectionError, openai.APIStatusError, _status_error)


def _status_error(exc: openai.APIStatusError) -> ProviderError:
    code = str(exc.code or exc.type or "") if isinstance(exc.code or exc.type, str) else ""
    return _http.status_error(
        exc.status_code,
        exc.response.headers,
        code=code,
        context_length="context_length" in code,
        content_filter="content_filter" in code or "content_policy" in code,
    )


def open_openai(
    settings: Settings, endpoint: str | None, base_url: str | None, secret: Secret, timeout_s: float
) -> OpenAIProvider:
    """The registry's opener for ``openai`` (see :func:`promptforge.adapters.providers.open_provider`)."""
    return OpenAIProvider(
        name="openai",
        api_key=deployment_key("openai", secret),
        base_url=settings.openai_base_url or None,
        timeout_s=timeout_s,
    )
