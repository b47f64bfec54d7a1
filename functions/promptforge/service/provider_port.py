"""The provider port: what a use case sends to an LLM and what comes back.

The adapters in ``promptforge.adapters.providers`` implement it over each provider's SDK
or wire format; the tests' in-memory provider (``tests/fakes.py``) implements it too, so
a use case's behaviour under latency, errors and 429s is tested without a server.
Use cases get providers only through :attr:`Deps.providers <promptforge.service.deps.Deps>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..domain.outcomes import PROVIDER_ERROR_CODES, ErrorCode

if TYPE_CHECKING:
    from ..config import Settings


@dataclass(frozen=True)
class ChatRequest:
    """One prompt, ready for a provider: messages in the chat format, merged params."""

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RateLimitInfo:
    """What a provider said about its rate limits in one answer's headers.

    Read from OpenAI-style ``x-ratelimit-*`` or Anthropic's ``anthropic-ratelimit-*``
    headers. Every field is None when the provider did not send it. Limits are per
    minute; ``reset_*_s`` is how many seconds until that budget is full again, as the
    provider counts it (OpenAI sends a duration such as ``6m0s``, Anthropic a timestamp;
    both are turned into seconds from the moment the answer was read).
    """

    limit_requests: int | None = None
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_s: float | None = None
    reset_tokens_s: float | None = None


@dataclass(frozen=True)
class ChatResult:
    """A successful answer.

    ``finish_reason`` uses OpenAI's words where the provider has an equivalent (``stop``,
    ``length``, ``tool_calls``); other reasons are the provider's own, lower-cased.
    """

    text: str
    model: str
    input_tokens: int
    output_tokens: int
    finish_reason: str | None = None
    rate_limits: RateLimitInfo | None = None


class ProviderError(Exception):
    """A failed call, with the stable error code that lands in errors.jsonl.

    ``detail`` is written by PromptForge (status codes and our own words, never the
    provider's text, which can quote the prompt). ``retry_after`` is the provider's
    ``retry-after`` in seconds when it sent one; ``rate_limits`` what its headers said
    (sent with 429s, so the rate limiter can learn from a refusal too).
    """

    def __init__(
        self,
        code: ErrorCode,
        detail: str,
        retryable: bool,
        retry_after: float | None = None,
        rate_limits: RateLimitInfo | None = None,
    ) -> None:
        super().__init__(detail)
        if code not in PROVIDER_ERROR_CODES:
            raise ValueError(f"{code!r} is not a provider error code")
        self.code = ErrorCode(code)
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after
        self.rate_limits = rate_limits


class Provider(Protocol):
    """Sends one chat request; raises :class:`ProviderError` on failure.

    One attempt per call: retries are the worker's single retry policy.
    """

    async def complete(self, request: ChatRequest) -> ChatResult: ...

    async def aclose(self) -> None: ...


class ProviderUnavailable(Exception):
    """The deployment cannot serve this provider (not enabled, or not configured)."""


class ProviderFactory(Protocol):
    """Opens a provider for one chunk run: a light object, cheap to open once per chunk.

    ``endpoint`` (an operator-configured server) or ``base_url`` (the client's own URL,
    where the operator allows it) are the job's, used only by ``openai_compatible``.
    Raises :class:`ProviderUnavailable` when the deployment cannot serve it.
    """

    def __call__(self, name: str, settings: Settings, endpoint: str | None = None, base_url: str | None = None) -> Provider: ...
