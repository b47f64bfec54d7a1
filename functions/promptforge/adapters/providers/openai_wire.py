"""A client of the OpenAI chat-completions wire format over a small HTTP/1.1 client.

Serves ``openai_compatible`` (vLLM, llama.cpp, Ollama, any server by ``base_url``) and
the local ``fake`` provider. It makes one attempt per call: retries are the worker's
single retry policy. The official ``openai`` provider uses the SDK instead
(:mod:`.openai_sdk`); both read answers through :mod:`._http`.

Not httpx, not aiohttp: a chunk worker's CPU per prompt is mostly this request, and with
a hundred in flight httpx's pool cost 7.4 ms of CPU per request, aiohttp's ~0.13 ms, the
client of :mod:`._wire_http` (one URL, one kind of request) ~0.04 ms
(``infra/bench/provider_cpu.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...config import Endpoint
from ...domain.netguard import address_problem, parse_address
from ...domain.outcomes import ErrorCode
from . import _http, _json, _shared
from ._opening import Secret, Settings
from ._wire_http import WireClient
from .base import ChatRequest, ChatResult, ProviderError, ProviderUnavailable, RateLimitInfo

# How the OpenAI-compatible servers say a prompt does not fit the model's context, all
# with HTTP 400: OpenAI and llama-cpp-python's server the code ``context_length_exceeded``;
# llama.cpp's own server (llama-server) the type ``exceed_context_size_error`` and a numeric
# code; vLLM a numeric code and OpenAI's sentence "This model's maximum context length is".
_CONTEXT_MARKERS = ("context_length", "exceed_context_size")
_CONTEXT_MESSAGE = "maximum context length"
# What the local fake LLM server is sent as a key (it wants one, any one).
FAKE_KEY = "fake-key"


def error_for_status(status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    """Map an HTTP error answer to a stable PromptForge error."""
    try:
        parsed = _json.loads(body)
    except ValueError:
        parsed = None
    return error_for_body(status, headers, parsed)


def error_for_body(status: int, headers: Mapping[str, str], parsed: Any) -> ProviderError:
    """Map an HTTP error answer whose body is already decoded (``parsed``, any JSON value
    or None) to a stable PromptForge error: the fast path's answers and the error lines
    of an OpenAI batch's output are read alike."""
    fields: dict[str, str] = {}
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(err, dict):
        fields = {k: err[k] for k in ("code", "type", "message") if isinstance(err.get(k), str)}
    said = f"{fields.get('code', '')} {fields.get('type', '')}"
    # The message is only searched, never quoted: it can repeat the prompt.
    too_long = any(marker in said for marker in _CONTEXT_MARKERS) or _CONTEXT_MESSAGE in fields.get("message", "")
    return _http.status_error(
        status,
        headers,
        # A server that puts a number in `code` (llama-server, vLLM) names the error by its type.
        code=fields.get("code") or fields.get("type", ""),
        context_length=too_long,
        content_filter="content_filter" in said or "content_policy" in said,
    )


def guard_address(host: str) -> str | None:
    """Why a client's URL may not reach ``host`` (a resolved address), or None."""
    address = parse_address(host)
    return "an unreadable address" if address is None else address_problem(address)


class OpenAIWireProvider:
    """POSTs to ``{base_url}/chat/completions``; job params are sent as they are.

    ``api_key`` None sends no credential (a URL the client chose). ``guarded`` checks
    every address the host resolves to before connecting. Redirects are never followed:
    a credential goes only to the URL it was configured for.

    The object is light: its HTTP client is the running loop's shared one for this URL,
    credential, timeout and guard (:mod:`._shared`).
    """

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float = 120.0, guarded: bool = False) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._guarded = guarded
        self._key = ("openai_wire", self._url, _shared.fingerprint(api_key), timeout_s, guarded)

    def _new_client(self) -> WireClient:
        return WireClient(
            self._url,
            {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {},
            timeout_s=self._timeout_s,
            connect_s=10.0,
            keepalive_s=_shared.KEEPALIVE_S,
            check_address=guard_address if self._guarded else None,
        )

    def _client(self) -> _shared.Lease[WireClient]:
        return _shared.Lease(self._key, self._new_client, WireClient.close)

    async def complete(self, request: ChatRequest) -> ChatResult:
        """One chat completion; raises :class:`ProviderError` with a stable code."""
        body: dict[str, Any] = {**request.params, "model": request.model, "messages": request.messages}
        try:
            with self._client() as client:
                status, headers, raw = await client.post(_json.dumps(body))
        except TimeoutError as exc:
            raise _http.timeout_error(exc) from None
        except OSError as exc:  # connecting, a broken connection, an unreadable answer
            raise _http.connection_error(exc) from None
        if status >= 400:
            raise error_for_status(status, headers, raw)
        if status >= 300:
            raise ProviderError(ErrorCode.PROVIDER_ERROR, f"HTTP {status}: redirects are not followed", retryable=False)
        try:
            data = _json.loads(raw)
        except ValueError:
            raise _http.malformed_response() from None
        return completion_result(data, request.model, _http.rate_limits_from_headers(headers))

    async def aclose(self) -> None:
        """Nothing to release: the session is shared (``close_shared_clients`` closes it)."""


def completion_result(data: Any, model: str, limits: RateLimitInfo | None = None) -> ChatResult:
    """A decoded chat completion as a result (``model`` when it names none): the fast
    path's answers and the output lines of an OpenAI batch are read alike. A completion
    that cannot be read is ``provider_error`` (retryable), one the content filter stopped
    ``content_filtered``."""
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        usage = data.get("usage") or {}
        finish = choice.get("finish_reason")
        input_tokens = int(usage.get("prompt_tokens") or 0)
        output_tokens = int(usage.get("completion_tokens") or 0)
        named = data.get("model")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise _http.malformed_response() from None
    if finish == "content_filter":
        raise _http.content_filtered("finish_reason content_filter")
    return ChatResult(
        text=text,
        model=str(named or model),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        finish_reason=finish,
        rate_limits=limits,
    )


def open_fake(
    settings: Settings, endpoint: str | None, base_url: str | None, secret: Secret, timeout_s: float
) -> OpenAIWireProvider:
    """The registry's opener for ``fake``: the local fake LLM server."""
    return OpenAIWireProvider(settings.fake_llm_url, api_key=FAKE_KEY, timeout_s=timeout_s)


def configured_endpoint(settings: Settings, endpoint: str, secret: Secret) -> tuple[Endpoint, str | None]:
    """The operator's endpoint ``endpoint`` and its key (None when it names none)."""
    configured = settings.endpoints.get(endpoint)
    if configured is None:
        raise ProviderUnavailable(f"endpoint {endpoint!r} is not configured on this deployment")
    key = secret(configured.key_env, f"openai_compatible/{endpoint}") if configured.key_env else None
    return configured, key


def open_compatible(
    settings: Settings, endpoint: str | None, base_url: str | None, secret: Secret, timeout_s: float
) -> OpenAIWireProvider:
    """The registry's opener for ``openai_compatible``: an endpoint the operator
    configured (with its key, if it names one), or the client's own URL where the operator
    allows it, checked now and at every connection, and sent no credential."""
    if endpoint is not None:
        configured, key = configured_endpoint(settings, endpoint, secret)
        return OpenAIWireProvider(configured.base_url, api_key=key, timeout_s=timeout_s)
    if base_url and settings.allow_client_base_urls:
        from ..outbound import BlockedAddress, check_url

        try:
            check_url(base_url)
        except BlockedAddress as exc:
            raise ProviderUnavailable(f"the job's base_url is refused: {exc}") from None
        return OpenAIWireProvider(base_url, api_key=None, timeout_s=timeout_s, guarded=True)
    raise ProviderUnavailable("openai_compatible needs an endpoint configured by the operator")
