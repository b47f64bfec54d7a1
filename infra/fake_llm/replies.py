"""What the fake LLM answers: pure, deterministic functions with no I/O.

Kept apart from the HTTP server so that any test can import them and compute, without a
running server, exactly what a given prompt will come back as (text, finish reason and
token usage). Nothing here may use the network, the clock or randomness.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHARS_PER_TOKEN",
    "REPLY_PREFIX",
    "Completion",
    "apply_stop",
    "canonical_json",
    "complete",
    "estimate_tokens",
    "find_stop",
    "message_text",
    "prompt_tokens",
    "reply_for",
    "truncate_to_tokens",
]

# The usual rule of thumb for English text with OpenAI's tokenizers. It only has to be
# stable and cheap: callers compare usage figures with estimate_tokens(), never with a
# real tokenizer.
CHARS_PER_TOKEN = 4

REPLY_PREFIX = "fake reply "


def estimate_tokens(text: str) -> int:
    """The token count the fake LLM reports for ``text``: ``max(1, ceil(len(text) / 4))``.

    This is the single place token counts come from (prompt and completion alike), so
    tests can reproduce any ``usage`` block the server returns. Length is in Unicode code
    points, not bytes.
    """
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys and no insignificant whitespace.

    Two requests that differ only in key order or formatting must get the same reply,
    just as they mean the same thing to a real model.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def reply_for(messages: Sequence[Mapping[str, Any]], model: str) -> str:
    """The full (untruncated) reply the fake LLM gives to ``messages`` on ``model``.

    ``"fake reply "`` followed by the first 16 hex digits of the SHA-256 of the canonical
    JSON of ``{"messages": messages, "model": model}``. ``messages`` is the list exactly
    as sent in the request body, extra keys included.
    """
    digest = hashlib.sha256(canonical_json({"messages": list(messages), "model": model}).encode("utf-8"))
    return REPLY_PREFIX + digest.hexdigest()[:16]


def message_text(message: Mapping[str, Any]) -> str:
    """The text of one chat message: its string content, or its text parts joined by newlines.

    Non-text parts (images, audio, files) carry no countable text and are skipped; a
    null or absent content (an assistant message with tool calls) is the empty string.
    """
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: Iterable[str] = (
            part["text"]
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
        return "\n".join(texts)
    return ""


def prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """The ``usage.prompt_tokens`` reported for ``messages``.

    The estimate of all message texts joined by newlines, so a whole prompt is one
    estimate (rounded up once) rather than a sum of per-message round-ups.
    """
    return estimate_tokens("\n".join(message_text(m) for m in messages))


def find_stop(text: str, stop: str | Sequence[str] | None) -> tuple[int, str | None]:
    """Where the earliest stop sequence starts in ``text`` and which one it is, or ``(-1, None)``.

    Empty stop strings are ignored (they would match everywhere); of two sequences at
    the same place, the first listed wins.
    """
    if stop is None:
        return -1, None
    sequences = [stop] if isinstance(stop, str) else list(stop)
    found = [(i, s) for s in sequences if s and (i := text.find(s)) >= 0]
    if not found:
        return -1, None
    cut = min(i for i, _ in found)
    return cut, next(s for i, s in found if i == cut)


def apply_stop(text: str, stop: str | Sequence[str] | None) -> tuple[str, bool]:
    """Cut ``text`` before the earliest occurrence of any stop sequence, as OpenAI does.

    Returns ``(text, stopped)``; the stop sequence itself is not part of the output.
    Empty stop strings are ignored (they would match everywhere).
    """
    cut, _ = find_stop(text, stop)
    if cut < 0:
        return text, False
    return text[:cut], True


def truncate_to_tokens(text: str, max_tokens: int | None) -> tuple[str, bool]:
    """Truncate ``text`` so that ``estimate_tokens`` of it is at most ``max_tokens``.

    Returns ``(text, truncated)``. With the chars/4 estimate, keeping the first
    ``max_tokens * 4`` characters is exactly the longest prefix within the budget.
    """
    if max_tokens is None or estimate_tokens(text) <= max_tokens:
        return text, False
    return text[: max_tokens * CHARS_PER_TOKEN], True


@dataclass(frozen=True)
class Completion:
    """One generated choice with the figures the server reports for it."""

    text: str
    finish_reason: str  # "stop" or "length", as in OpenAI's choices[].finish_reason
    prompt_tokens: int
    completion_tokens: int
    stop_sequence: str | None = None  # the stop sequence that ended the reply, if one did


def complete(
    messages: Sequence[Mapping[str, Any]],
    model: str,
    max_tokens: int | None = None,
    stop: str | Sequence[str] | None = None,
) -> Completion:
    """Everything the server answers for one choice of a chat completion.

    The reply is :func:`reply_for`, cut at the first ``stop`` sequence, then truncated
    to ``max_tokens`` (finish_reason ``"length"`` if that cut anything, else ``"stop"``).
    ``max_tokens`` is the smaller of the request's ``max_tokens`` and
    ``max_completion_tokens`` when both are set.
    """
    text = reply_for(messages, model)
    cut, sequence = find_stop(text, stop)
    if cut >= 0:
        text = text[:cut]
    text, truncated = truncate_to_tokens(text, max_tokens)
    return Completion(
        text=text,
        finish_reason="length" if truncated else "stop",
        prompt_tokens=prompt_tokens(messages),
        completion_tokens=estimate_tokens(text),
        stop_sequence=None if truncated else sequence,
    )
