"""What every wire format of the fake LLM provides to the shared request pipeline.

A :class:`Dialect` knows one provider's format: how a request authenticates, how its
body is validated and read into a format-neutral :class:`Prompt`, and how answers and
errors look. The pipeline in :mod:`infra.fake_llm.server` (rate limits, faults,
latency, statistics) is the same for every format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from starlette.requests import Request
from starlette.responses import Response

from .limits import LimitView
from .replies import Completion


@dataclass(frozen=True)
class Prompt:
    """A validated request in neutral form.

    ``messages`` is the conversation as OpenAI chat messages (a system prompt first, as
    a ``system`` message): what :func:`~infra.fake_llm.replies.reply_for` hashes, so the
    same conversation gets the same reply in every format.
    """

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None
    stop: str | list[str] | None
    n: int = 1


# The errors the shared pipeline asks a dialect to render, with what the message may use:
# rate_limit_requests/rate_limit_tokens: limit, retry_after_s; request_too_large: limit,
# requested; context_length: window, prompt_tokens, max_tokens; server_error; timeout.
ErrorKind = Literal["rate_limit_requests", "rate_limit_tokens", "request_too_large", "context_length", "server_error", "timeout"]


class WireError(Exception):
    """An answer other than success, in its format's shape: raise it, or call ``response()``."""

    def response(self) -> Response:
        raise NotImplementedError


class Dialect(Protocol):
    """One provider wire format."""

    endpoint: str  # the counter in /_stats: "chat_completions", "messages", "generate_content"
    processing_ms_header: str | None  # a header reporting the server's processing time, if the provider sends one

    def authenticate(self, request: Request) -> WireError | None:
        """An error if the request lacks what the provider requires before reading the body."""
        ...

    def unparseable(self) -> WireError:
        """The 400 for a body that is not JSON."""
        ...

    def validate(self, request: Request, body: Any) -> Prompt:
        """Validate the decoded body; raise :class:`WireError` (400) if the provider would refuse it."""
        ...

    def model_hint(self, request: Request, body: Any) -> str | None:
        """The model named by a request, for the statistics, even if the body is then refused."""
        ...

    def render(self, prompt: Prompt, completion: Completion, headers: Mapping[str, str]) -> Response:
        """The success answer."""
        ...

    def content_filtered(self, prompt: Prompt, prompt_tokens: int, headers: Mapping[str, str]) -> Response:
        """A 200 answer whose reply the provider's safety system stopped."""
        ...

    def error(self, kind: ErrorKind, info: Mapping[str, Any], headers: Mapping[str, str]) -> Response:
        """An error answer of the given kind."""
        ...

    def rate_headers(self, view: LimitView, retry_after_s: float | None) -> dict[str, str]:
        """The rate-limit headers this provider sends (and ``retry-after`` on a 429)."""
        ...


def json_type(value: Any) -> str:
    """The JSON type of ``value`` with an article, in OpenAI's wording ("an integer")."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def reject_constant(name: str) -> Any:
    """``parse_constant`` for json.loads: Python accepts NaN and Infinity, JSON does not."""
    raise ValueError(f"invalid JSON constant {name}")


def retry_after_headers(retry_after_s: float | None) -> dict[str, str]:
    """``retry-after`` (whole seconds, rounded up, as HTTP wants) and ``retry-after-ms``."""
    if retry_after_s is None:
        return {}
    ms = max(1, -(-retry_after_s * 1000 // 1))
    return {"retry-after": str(max(1, int(-(-retry_after_s // 1)))), "retry-after-ms": str(int(ms))}
