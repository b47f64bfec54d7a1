"""Chat messages (OpenAI's format, the one PromptForge's input uses) split into what
providers with another format need: a system prompt and user/assistant turns.

Pure, and shared by the Anthropic and Gemini providers so they read messages alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...domain.outcomes import ErrorCode
from .base import ProviderError

SYSTEM_ROLES = ("system", "developer")


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Image:
    """An image part: inline base64 ``data`` with its ``mime_type``, or a ``url``."""

    mime_type: str = ""
    data: str = ""
    url: str = ""


Part = Text | Image


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    parts: list[Part] = field(default_factory=list)

    @property
    def plain_text(self) -> str | None:
        """The turn's text when it is a single text part (sent as a plain string)."""
        if len(self.parts) == 1 and isinstance(self.parts[0], Text):
            return self.parts[0].text
        return None


@dataclass(frozen=True)
class Conversation:
    system: str | None
    turns: list[Turn]


def _refuse(provider: str, what: str) -> ProviderError:
    # ``what`` is a role or part type name, never message text.
    return ProviderError(ErrorCode.INVALID_REQUEST, f"{what} is not supported by provider {provider}", False)


def _image(provider: str, part: dict[str, Any]) -> Image:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise _refuse(provider, "an image_url part without a url")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        mime, _, encoding = header[len("data:") :].partition(";")
        if encoding != "base64" or not mime:
            raise _refuse(provider, "an image data URL that is not base64")
        return Image(mime_type=mime, data=data)
    return Image(url=url)


def _parts(provider: str, content: Any) -> list[Part]:
    if isinstance(content, str):
        return [Text(content)]
    if not isinstance(content, list):
        raise _refuse(provider, "a message content that is neither text nor a list of parts")
    parts: list[Part] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(Text(part["text"]))
        elif kind == "image_url" and isinstance(part, dict):
            parts.append(_image(provider, part))
        else:
            raise _refuse(
                provider, f"content part type {kind!r}" if isinstance(kind, str) and kind.isidentifier() else "a content part"
            )
    return parts


def split(provider: str, messages: Sequence[dict[str, Any]]) -> Conversation:
    """System and developer messages become the system prompt (joined by blank lines, in
    order); the rest become user and assistant turns. Tool turns are refused."""
    system: list[str] = []
    turns: list[Turn] = []
    for message in messages:
        role = message.get("role")
        if role in SYSTEM_ROLES:
            system.append("\n".join(p.text for p in _parts(provider, message.get("content")) if isinstance(p, Text)))
        elif role in ("user", "assistant"):
            turns.append(Turn(str(role), _parts(provider, message.get("content"))))
        else:
            raise _refuse(provider, f"role {role!r}" if isinstance(role, str) and role.isidentifier() else "a message role")
    if not turns:
        raise ProviderError(ErrorCode.INVALID_REQUEST, f"provider {provider} needs at least one user message", False)
    return Conversation("\n\n".join(system) if system else None, turns)
