"""Request bodies, read and parsed within bounds, and answers written as strict JSON.

A body is read only up to its endpoint's limit, whatever ``Content-Length`` says (or
when there is none, as with a chunked body); its nesting is measured before it is
parsed, so no body can make the parser recurse; and ``NaN``/``Infinity``, which
Python's parser takes but JSON does not, are refused with the path where they stood.
Every refusal is an :class:`ApiError` in the one envelope.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Protocol

from .. import logs
from .envelope import invalid, payload_too_large

# Read in blocks of this size, so no single read can be asked for more than this.
_BLOCK = 64 * 1024

# The most bytes left unread by a handler that are read off and thrown away, so the
# client still gets its answer rather than a reset connection: Cloud Run's own cap on an
# HTTP/1 request body, which is what a function can be sent at most.
DRAIN_MAX_BYTES = 32 * 1024 * 1024

# Outside a string, the characters that open or close a container or start a string.
_SIGNIFICANT = re.compile(r'["\[\]{}]')
# The rest of a string after its opening quote: up to the closing quote, or to the end of
# the text when it is unterminated (the parser then says so). Possessive, so it never
# backtracks and always matches: each character is looked at once.
_STRING_REST = re.compile(r'(?:[^"\\]++|\\[\s\S]?)*+(?:"|\Z)')


class Readable(Protocol):
    """A request body stream (the WSGI input, or a file in tests)."""

    def read(self, size: int = -1, /) -> bytes: ...


def read_limited(stream: Readable, limit: int, advice: str = "") -> bytes:
    """The whole body, reading at most ``limit + 1`` bytes: 413 past ``limit`` (with
    ``advice`` on what to do instead)."""
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        try:
            part = stream.read(min(_BLOCK, limit + 1 - size))
        except Exception:  # whatever the server raises for a broken body (a client gone mid-body, a bad chunk)
            raise invalid("", "the body could not be read to its end") from None
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > limit:
        raise payload_too_large(limit, advice)
    return b"".join(parts)


def drain(stream: Readable, cap: int = DRAIN_MAX_BYTES) -> bool:
    """Read and discard what is left of a body, up to ``cap`` bytes; True when it ended."""
    left = cap
    try:
        while left > 0:
            part = stream.read(min(_BLOCK, left))
            if not part:
                return True
            left -= len(part)
        return not stream.read(1)
    except Exception:  # a client that went away: nothing left to answer
        return True


def structure_problem(text: str, max_depth: int, max_containers: int | None = None) -> str | None:
    """Why the JSON ``text`` may not be parsed: objects and arrays nested more than
    ``max_depth`` deep, or more than ``max_containers`` of them (a few megabytes of
    ``[[],[],...]`` would parse into millions of objects and exhaust the instance's
    memory, failing every other request it serves). None when it may.

    A scan, not a parse: it jumps from one bracket or quote to the next and skips whole
    strings, so it neither recurses nor builds anything, and stops at the first excess.
    """
    depth, pos, opened = 0, 0, 0
    while (found := _SIGNIFICANT.search(text, pos)) is not None:
        char = found.group()
        if char == '"':
            rest = _STRING_REST.match(text, found.end())
            assert rest is not None  # the pattern matches anywhere
            pos = rest.end()
            continue
        if char in "[{":
            depth += 1
            opened += 1
            if max_containers is not None and opened > max_containers:
                return f"the body holds more than {max_containers} objects and arrays"
        else:
            depth -= 1
        if depth > max_depth:
            return f"the body nests objects and arrays deeper than {max_depth} levels"
        pos = found.end()
    return None


class NonFinite:
    """Stands in a parsed body where ``NaN``, ``Infinity``, ``-Infinity`` or a number too
    large for a float was, until the path to it is found."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


class _Marker:
    """The parser's hooks for ``NaN``/``Infinity`` and for float literals: each leaves a
    :class:`NonFinite` in place and notes that one was left, so only a body that has one
    is walked to find where."""

    def __init__(self) -> None:
        self.marked = False

    def constant(self, name: str) -> NonFinite:
        self.marked = True
        return NonFinite(f"{name} is not a JSON number")

    def number(self, text: str) -> float | NonFinite:
        value = float(text)
        if math.isfinite(value):
            return value
        self.marked = True
        return NonFinite("is a number too large to represent")


def nonfinite_path(value: Any) -> tuple[str, str] | None:
    """The dotted path (``metadata.scores.2``) and problem of the first :class:`NonFinite`
    in document order, without recursion; None when there is none."""
    stack: list[tuple[tuple[str, ...], Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, NonFinite):
            return ".".join(path), item.problem
        if isinstance(item, dict):
            stack.extend(((*path, str(k)), v) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(((*path, str(i)), v) for i, v in reversed(list(enumerate(item))))
    return None


def parse_object(data: bytes, max_depth: int, max_containers: int | None = None) -> dict[str, Any]:
    """A body that must be one JSON object, in UTF-8, nesting at most ``max_depth`` deep
    and holding at most ``max_containers`` objects and arrays, with finite numbers only;
    400 ``invalid_request`` otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid("", f"the body is not valid UTF-8 (byte {exc.start + 1})") from None
    if not text.strip():
        raise invalid("", "the body must be a JSON object")
    problem = structure_problem(text, max_depth, max_containers)
    if problem is not None:
        raise invalid("", problem)
    marker = _Marker()
    try:
        value = json.loads(text, parse_constant=marker.constant, parse_float=marker.number)
    except json.JSONDecodeError as exc:
        raise invalid("", f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError:  # an integer of more digits than Python converts (int_max_str_digits)
        raise invalid("", "the body is not valid JSON: a number is too long") from None
    except RecursionError:  # kept out by the depth check above; this only makes sure
        raise invalid("", f"the body nests objects and arrays deeper than {max_depth} levels") from None
    if not isinstance(value, dict):
        raise invalid("", "the body must be a JSON object")
    found = nonfinite_path(value) if marker.marked else None
    if found is not None:
        path, problem = found
        raise invalid(path, f"{problem}; send a finite number or null")
    return value


def to_json(value: Any) -> str:
    """Strict JSON (RFC 8259) for an answer: a non-finite number stored before it was
    refused on the way in goes out as null, never as ``NaN`` and never as an error."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        logs.warning("answer held a non-finite number; sent as null")
        return json.dumps(_finite(value), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
