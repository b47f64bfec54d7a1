"""Reading the input file: raw lines in bounded memory, and one parser for a line.

The parser is pure and total: any bytes give either a :class:`PromptLine`, a
:class:`LineError`, or ``None`` for a blank line. Details never quote the line's text.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .outcomes import ErrorCode, ErrorRow
from .params import params_problem

BOM = b"\xef\xbb\xbf"
_ROLES = frozenset({"system", "user", "assistant", "developer"})
MAX_PROMPT_ID_CHARS = 256
# Deeper lines are bad lines everywhere: a fixed limit, well under Python's recursion
# limit, so planning and the worker can never disagree about a line.
MAX_NESTING = 64
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class RawLine:
    """One line of the file: where it lies and its bytes without the line terminator.

    ``data`` is empty and ``oversize`` is true when the line is longer than the limit,
    so an enormous line never sits in memory.
    """

    number: int  # 1-based
    start: int  # byte offset of the line's first byte
    end: int  # byte offset just past its terminator
    data: bytes
    oversize: bool = False


@dataclass(frozen=True)
class PromptLine:
    """A valid input line."""

    line: int
    prompt_id: str
    prompt: str | None
    messages: list[dict[str, Any]] | None
    params: dict[str, Any] = field(default_factory=dict)
    system_prompt: str | None = None


@dataclass(frozen=True)
class LineError:
    """A line that cannot be run; it becomes an ``invalid_line`` row in errors.jsonl."""

    line: int
    detail: str
    prompt_id: str | None = None
    json_object: bool = False  # the line was a JSON object, just not a valid prompt

    def to_row(self) -> dict[str, Any]:
        return ErrorRow(self.prompt_id, ErrorCode.INVALID_LINE, line=self.line, detail=self.detail).to_json()


def iter_raw_lines(stream: BinaryIO, max_line_bytes: int, offset: int = 0, first_number: int = 1) -> Iterator[RawLine]:
    """Split a byte stream into lines (LF or CRLF), holding at most one line in memory.

    ``offset`` and ``first_number`` say where the stream starts in the whole file, so a
    chunk read by byte range reports the file's own offsets and line numbers. A BOM is
    dropped only at offset 0.
    """
    number = first_number
    pos = offset
    buf = bytearray()
    line_start = pos
    size = 0  # bytes of the current line seen, including those dropped for being oversize
    oversize = False
    at_file_start = offset == 0
    while True:
        block = stream.read(_READ_SIZE)
        if not block:
            break
        if at_file_start:
            at_file_start = False
            if block.startswith(BOM):
                block = block[len(BOM) :]
                pos += len(BOM)
                line_start = pos
        view_start = 0
        while True:
            nl = block.find(b"\n", view_start)
            piece = block[view_start:] if nl < 0 else block[view_start:nl]
            size += len(piece)
            if not oversize:
                if size > max_line_bytes + 1:  # +1 leaves room for a CR before LF
                    oversize = True
                    buf.clear()
                else:
                    buf += piece
            if nl < 0:
                pos += len(block) - view_start
                break
            pos += nl + 1 - view_start
            yield _finish(number, line_start, pos, buf, oversize, max_line_bytes)
            number += 1
            line_start = pos
            buf.clear()
            size = 0
            oversize = False
            view_start = nl + 1
    if size or buf:
        yield _finish(number, line_start, pos, buf, oversize, max_line_bytes)


def _finish(number: int, start: int, end: int, buf: bytearray, oversize: bool, limit: int) -> RawLine:
    data = bytes(buf)
    if data.endswith(b"\r"):
        data = data[:-1]
    if not oversize and len(data) > limit:
        oversize = True
    return RawLine(number, start, end, b"" if oversize else data, oversize)


def is_blank(raw: RawLine) -> bool:
    return not raw.oversize and not raw.data.strip()


def parse_line(raw: RawLine, max_line_bytes: int) -> PromptLine | LineError | None:
    """Parse one raw line; ``None`` for a blank line."""
    n = raw.number
    if raw.oversize:
        return LineError(n, f"line is over the limit of {max_line_bytes} bytes")
    if not raw.data.strip():
        return None
    try:
        text = raw.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return LineError(n, f"not valid UTF-8 (byte {exc.start + 1} of the line)")
    try:
        obj = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        return LineError(n, f"not valid JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        return LineError(n, "not valid JSON: nested too deeply")
    except _NotJson as exc:
        return LineError(n, f"not valid JSON: {exc}")
    except ValueError:
        # e.g. an integer of more digits than Python converts (int_max_str_digits)
        return LineError(n, "not valid JSON: a number is too long")
    if not isinstance(obj, dict):
        return LineError(n, "not a JSON object")
    if _depth_over(obj, MAX_NESTING):
        return LineError(n, f"nested deeper than {MAX_NESTING} levels", None, True)
    # A \\uD800-\\uDFFF escape alone decodes to a lone surrogate: not Unicode text. Only an
    # escape can make one (the line decoded as UTF-8), so only such lines are checked.
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return LineError(n, "holds a lone surrogate escape (\\ud800-\\udfff), which is not valid Unicode text", None, True)
    result = _validate(n, obj)
    return dataclasses.replace(result, json_object=True) if isinstance(result, LineError) else result


def _depth_over(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` deep (without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return False


class _NotJson(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; RFC 8259 JSON (and every provider) does not.
    raise _NotJson(f"{name} is not a JSON value")


# One decoder for every line: json.loads with an argument builds a new decoder (and its
# scanner) on every call, which showed in a chunk worker's profile.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _validate(n: int, obj: dict[str, Any]) -> PromptLine | LineError:
    pid = obj.get("prompt_id")
    if pid is None:
        return LineError(n, "prompt_id is missing")
    if not isinstance(pid, str) or not pid:
        return LineError(n, "prompt_id must be a non-empty string")
    if len(pid) > MAX_PROMPT_ID_CHARS:
        return LineError(n, f"prompt_id is longer than {MAX_PROMPT_ID_CHARS} characters")
    has_prompt, has_messages = "prompt" in obj, "messages" in obj
    if has_prompt and has_messages:
        return LineError(n, "has both prompt and messages; give exactly one", pid)
    if not has_prompt and not has_messages:
        return LineError(n, "has neither prompt nor messages; give exactly one", pid)
    prompt = obj.get("prompt")
    messages = obj.get("messages")
    if has_prompt and (not isinstance(prompt, str) or not prompt.strip()):
        return LineError(n, "prompt must be a non-empty string", pid)
    if has_messages:
        problem = _messages_problem(messages)
        if problem:
            return LineError(n, problem, pid)
    params = obj.get("params", {})
    if params is None:
        params = {}
    bad = params_problem(params)
    if bad:
        name, message = bad
        return LineError(n, f"params.{name} {message}" if name else f"params {message}", pid)
    system_prompt = obj.get("system_prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        return LineError(n, "system_prompt must be a string", pid)
    return PromptLine(n, pid, prompt, messages, params, system_prompt)


def _messages_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}] must be an object"
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            return f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}"
        content = message.get("content")
        if isinstance(content, str) and content:
            continue
        if (
            not isinstance(content, list)
            or not content
            or not all(isinstance(part, dict) and isinstance(part.get("type"), str) for part in content)
        ):
            return f"messages[{i}].content must be a non-empty string or a non-empty list of parts with a type"
    return None


def dump_line(row: Any) -> bytes:
    """One JSONL line in UTF-8. Text stays readable; a lone surrogate (valid as a JSON
    escape, but not encodable as UTF-8) falls back to ASCII escapes for that line."""
    text = json.dumps(row, ensure_ascii=False)
    try:
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        return json.dumps(row).encode("ascii") + b"\n"
