"""A fake LLM server for tests and dev stacks: OpenAI's chat-completions wire format.

The reply functions are pure and import nothing heavy, so any test can compute what a
prompt will come back as::

    from infra.fake_llm import reply_for, complete, estimate_tokens

The server side (``create_app``, ``FakeLLMConfig``, ``main``) is loaded on first use, so
that ``python -m infra.fake_llm.server`` does not find its module already imported by the
package (which makes runpy warn) and importing the replies does not pull in Starlette.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .replies import (
    CHARS_PER_TOKEN,
    REPLY_PREFIX,
    Completion,
    apply_stop,
    canonical_json,
    complete,
    estimate_tokens,
    message_text,
    prompt_tokens,
    reply_for,
    truncate_to_tokens,
)

if TYPE_CHECKING:
    from .server import FakeLLM, FakeLLMConfig, create_app, main

_SERVER_NAMES = frozenset({"FakeLLM", "FakeLLMConfig", "create_app", "main"})

__all__ = [
    "CHARS_PER_TOKEN",
    "REPLY_PREFIX",
    "Completion",
    "FakeLLM",
    "FakeLLMConfig",
    "apply_stop",
    "canonical_json",
    "complete",
    "create_app",
    "estimate_tokens",
    "main",
    "message_text",
    "prompt_tokens",
    "reply_for",
    "truncate_to_tokens",
]


def __getattr__(name: str) -> Any:
    """Load the server-side names lazily (PEP 562)."""
    if name in _SERVER_NAMES:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
