"""The provider interface every LLM provider implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChatRequest:
    """One prompt, ready for a provider: messages in the chat format, merged params."""

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    finish_reason: str | None = None


class ProviderError(Exception):
    """A failed call, with the stable error code that lands in errors.jsonl.

    ``detail`` is written by PromptForge (status codes, never the provider's text, which
    can quote the prompt).
    """

    def __init__(self, code: str, detail: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after


class Provider(Protocol):
    """Sends one chat request; raises :class:`ProviderError` on failure."""

    async def complete(self, request: ChatRequest) -> ChatResult: ...

    async def aclose(self) -> None: ...
