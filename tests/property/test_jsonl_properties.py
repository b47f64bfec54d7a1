"""Property tests of the input reader: raw lines, the line parser and the chunk cutter.

``iter_raw_lines`` is compared with a few lines of obvious reference code; the parser must
be total (any bytes give a PromptLine, a LineError or None for a blank line); the cutter's
chunks must cover every record exactly once, in order, on line boundaries.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from promptforge.domain.chunking import ChunkCutter, ChunkSpec
from promptforge.domain.jsonl import BOM, LineError, PromptLine, RawLine, is_blank, iter_raw_lines, parse_line

# Pieces that make the interesting cases likely: line ends, a BOM, bytes that are not
# UTF-8, NUL, bits of JSON and whole valid lines.
PIECES = [
    b"\n",
    b"\r",
    b"\r\n",
    b"\n\n",
    b" ",
    b"\t",
    BOM,
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\xed\xa0\x80",  # a UTF-8-encoded surrogate: not valid UTF-8
    b"\x00",
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b":",
    b",",
    b'"prompt_id"',
    b'"prompt"',
    b'"messages"',
    b"null",
    b"1e999",
    b"NaN",
    b'"\\ud800"',
    b"x" * 40,
    b'{"prompt_id": "a", "prompt": "hi"}',
    b'{"prompt_id": "b", "messages": [{"role": "user", "content": "hi"}]}',
    b'{"prompt_id": "c", "prompt": "x", "params": {"temperature": 3}}',
]

data_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join),
    st.tuples(st.just(BOM), st.lists(st.sampled_from(PIECES), max_size=30)).map(lambda t: t[0] + b"".join(t[1])),
)
limits = st.integers(min_value=1, max_value=80)


class ShortReads(io.RawIOBase):
    """A stream whose reads return fewer bytes than asked, as a network stream may."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self._data, self._pos, self._sizes = data, 0, sizes or [1]
        self._n = 0

    def read(self, size: int = -1) -> bytes:
        want = self._sizes[self._n % len(self._sizes)]
        self._n += 1
        # The first read is never shorter than a BOM: the reader looks for one there.
        if self._pos == 0:
            want = max(want, len(BOM))
        out = self._data[self._pos : self._pos + min(want, size if size >= 0 else want)]
        self._pos += len(out)
        return out


def reference_lines(data: bytes, limit: int) -> list[tuple[int, int, int, bytes, bool]]:
    """(number, start, end, data, oversize) for each line, the obvious way."""
    pos = len(BOM) if data.startswith(BOM) else 0
    out = []
    number = 1
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        text = data[pos:end].removesuffix(b"\n").removesuffix(b"\r")
        oversize = len(text) > limit
        out.append((number, pos, end, b"" if oversize else text, oversize))
        number += 1
        pos = end
    return out


def as_tuples(lines: list[RawLine]) -> list[tuple[int, int, int, bytes, bool]]:
    return [(r.number, r.start, r.end, r.data, r.oversize) for r in lines]


@settings(max_examples=400, deadline=None)
@given(data_bytes, limits)
def test_raw_lines_match_the_reference_and_tile_the_file(data: bytes, limit: int) -> None:
    got = list(iter_raw_lines(io.BytesIO(data), limit))
    assert as_tuples(got) == reference_lines(data, limit)
    # The lines tile the file: from 0 (3 after a BOM) to its end, with no gap or overlap.
    if got:
        assert got[0].start == (len(BOM) if data.startswith(BOM) else 0)
        assert got[-1].end == len(data)
        assert all(a.end == b.start for a, b in zip(got, got[1:], strict=False))
    # Oversize lines keep none of their bytes in memory.
    assert all(len(r.data) <= limit for r in got)


@settings(max_examples=150, deadline=None)
@given(data_bytes, limits, st.lists(st.integers(1, 9), min_size=1, max_size=5))
def test_short_reads_give_the_same_lines(data: bytes, limit: int, sizes: list[int]) -> None:
    whole = list(iter_raw_lines(io.BytesIO(data), limit))
    assert list(iter_raw_lines(ShortReads(data, sizes), limit)) == whole  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(data_bytes, limits, st.data())
def test_a_byte_range_read_alone_gives_the_same_lines(data: bytes, limit: int, draw: st.DataObject) -> None:
    """A worker reads its chunk by byte range: it must see the lines planning saw."""
    whole = list(iter_raw_lines(io.BytesIO(data), limit))
    if not whole:
        return
    i = draw.draw(st.integers(0, len(whole) - 1))
    j = draw.draw(st.integers(i, len(whole) - 1))
    start, end = whole[i].start, whole[j].end
    part = list(iter_raw_lines(io.BytesIO(data[start:end]), limit, offset=start, first_number=whole[i].number))
    assert part == whole[i : j + 1]


@settings(max_examples=400, deadline=None)
@given(data_bytes, limits)
def test_every_non_blank_line_gives_exactly_one_prompt_or_error_with_its_line_number(data: bytes, limit: int) -> None:
    numbers = []
    for raw in iter_raw_lines(io.BytesIO(data), limit):
        parsed = parse_line(raw, limit)  # never raises
        numbers.append(raw.number)
        if is_blank(raw):
            assert parsed is None
            continue
        assert isinstance(parsed, (PromptLine, LineError))
        assert parsed.line == raw.number
        if isinstance(parsed, LineError):
            row = parsed.to_row()
            assert row["error"] == "invalid_line" and row["line"] == raw.number and row["detail"]
            json.dumps(row)  # the row can always be written
    assert numbers == list(range(1, len(numbers) + 1))


# --- the parser on JSON values that look like prompts ----------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=8))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
KEYS = ["prompt_id", "prompt", "messages", "params", "system_prompt", "extra"]
# A message's role. Only hashable values here: an unhashable role (a list or an object)
# crashes the parser today; see test_an_unhashable_role_is_a_bad_line_not_a_crash.
roles = st.one_of(st.sampled_from(["user", "system", "assistant", "developer", "robot"]), json_scalars)
messages = st.lists(st.fixed_dictionaries({}, optional={"role": roles, "content": json_values, "name": json_values}), max_size=3)
params = st.dictionaries(
    st.sampled_from(["temperature", "max_tokens", "top_p", "stop", "seed", "response_format", "reasoning_effort", "max_token"]),
    json_values,
    max_size=3,
)
near_valid_extras = {
    "params": st.fixed_dictionaries(
        {}, optional={"temperature": st.floats(-1, 3), "max_tokens": st.integers(-1, 10), "stop": st.text(max_size=3)}
    ),
    "system_prompt": st.one_of(st.none(), st.text(max_size=3)),
}
chat = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "robot"]), "content": st.text(max_size=4)}),
    max_size=2,
)
mostly_valid = st.one_of(
    st.fixed_dictionaries(
        {"prompt_id": st.text(min_size=1, max_size=8), "prompt": st.text(max_size=8)}, optional=near_valid_extras
    ),
    st.fixed_dictionaries({"prompt_id": st.text(min_size=1, max_size=8), "messages": chat}, optional=near_valid_extras),
)
any_prompt_like = st.fixed_dictionaries(
    {},
    optional={
        "prompt_id": st.one_of(st.text(max_size=300), json_values),
        "prompt": st.one_of(st.text(max_size=10), json_values),
        "messages": st.one_of(messages, json_values),
        "params": st.one_of(params, json_values),
        "system_prompt": st.one_of(st.text(max_size=5), json_values),
        "extra": json_values,
    },
)
prompt_like = st.one_of(any_prompt_like, mostly_valid)


@settings(max_examples=200, deadline=None)
@given(prompt_like)
def test_the_parser_is_total_on_prompt_like_objects(obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode()
    parsed = parse_line(RawLine(9, 0, len(data), data), 10**6)
    assert isinstance(parsed, (PromptLine, LineError)) and parsed.line == 9
    event(type(parsed).__name__)
    try:
        json.dumps(obj, allow_nan=False)
    except ValueError:
        # NaN and Infinity are Python's extension, not JSON (RFC 8259): a bad line.
        assert isinstance(parsed, LineError) and parsed.detail.startswith("not valid JSON")
        return
    if isinstance(parsed, PromptLine):
        # Only what the contract calls valid gets through.
        assert isinstance(obj["prompt_id"], str) and obj["prompt_id"]
        assert ("prompt" in obj) != ("messages" in obj)
        assert parsed.prompt_id == obj["prompt_id"]
    else:
        assert parsed.json_object and parsed.detail


@pytest.mark.parametrize("role", [["user"], {"r": 1}])
def test_an_unhashable_role_is_a_bad_line_not_a_crash(role: Any) -> None:
    data = json.dumps({"prompt_id": "a", "messages": [{"role": role, "content": "hi"}]}).encode()
    parsed = parse_line(RawLine(1, 0, len(data), data), 10**6)
    assert isinstance(parsed, LineError)


def test_an_integer_too_long_to_convert_is_a_bad_line_not_a_crash() -> None:
    data = b'{"prompt_id": "a", "prompt": "x", "params": {"seed": ' + b"1" * 5000 + b"}}"
    parsed = parse_line(RawLine(1, 0, len(data), data), 10**6)
    assert isinstance(parsed, LineError) and "too long" in parsed.detail


# --- the chunk cutter ----------------------------------------------------------------

# A line: (length in bytes, is a record (not blank), is skipped (invalid)).
cut_lines = st.lists(st.tuples(st.integers(1, 60), st.booleans(), st.booleans()), max_size=60)


@settings(max_examples=400, deadline=None)
@given(cut_lines, st.integers(1, 8), st.integers(1, 200), st.integers(0, 3))
def test_chunks_cover_every_record_once_in_order_on_line_boundaries(
    lines: list[tuple[int, bool, bool]], max_records: int, max_bytes: int, offset: int
) -> None:
    cutter = ChunkCutter(max_records, max_bytes)
    chunks: list[ChunkSpec] = []
    spans = []  # (number, start, end, record, skip)
    pos = offset  # 3 when the file starts with a BOM
    for number, (length, record, skip) in enumerate(lines, start=1):
        spans.append((number, pos, pos + length, record, record and skip))
        spec = cutter.add(number, pos, pos + length, record, record and skip)
        pos += length
        if spec is not None:
            chunks.append(spec)
    last = cutter.finish()
    if last is not None:
        chunks.append(last)

    starts = {s[1] for s in spans}
    ends = {s[2] for s in spans}
    assert [c.index for c in chunks] == list(range(len(chunks)))
    covered: list[int] = []
    for c in chunks:
        assert c.start in starts and c.end in ends and c.start < c.end  # on line boundaries
        inside = [s for s in spans if c.start <= s[1] and s[2] <= c.end]
        records = [s for s in inside if s[3]]
        assert records and records[0][1] == c.start and records[0][0] == c.first_line  # starts at a record
        assert c.record_count == len(records) <= max_records
        assert c.skip_lines == tuple(s[0] for s in records if s[4])
        # The byte limit closes a chunk at the first line that reaches it.
        assert c.end - c.start - (inside[-1][2] - inside[-1][1]) < max_bytes
        covered += [s[0] for s in records]
    # Every record in exactly one chunk, in file order; chunks do not overlap.
    assert covered == [s[0] for s in spans if s[3]]
    assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:], strict=False))
