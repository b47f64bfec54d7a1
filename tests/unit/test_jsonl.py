import io
import json

import pytest

from promptforge.domain.jsonl import LineError, PromptLine, RawLine, iter_raw_lines, parse_line

LIMIT = 1000


def lines(data: bytes, limit: int = LIMIT) -> list[RawLine]:
    return list(iter_raw_lines(io.BytesIO(data), limit))


def parse(text: str | bytes) -> PromptLine | LineError | None:
    data = text.encode() if isinstance(text, str) else text
    return parse_line(RawLine(7, 0, len(data), data), LIMIT)


def test_offsets_cover_the_file_and_numbers_count_every_line() -> None:
    data = b'{"a":1}\n\n{"b":2}\r\nlast'
    got = lines(data)
    assert [r.number for r in got] == [1, 2, 3, 4]
    assert [r.data for r in got] == [b'{"a":1}', b"", b'{"b":2}', b"last"]
    assert got[0].start == 0 and got[-1].end == len(data)
    assert all(a.end == b.start for a, b in zip(got, got[1:], strict=False))


def test_bom_is_dropped_only_at_the_start_of_the_file() -> None:
    got = lines(b'\xef\xbb\xbf{"x":1}\n')
    assert got[0].data == b'{"x":1}' and got[0].start == 3


def test_a_range_reports_the_files_own_offsets_and_numbers() -> None:
    got = list(iter_raw_lines(io.BytesIO(b"a\nb\n"), LIMIT, offset=100, first_number=40))
    assert [(r.number, r.start, r.end) for r in got] == [(40, 100, 102), (41, 102, 104)]


def test_an_oversize_line_is_flagged_without_being_kept() -> None:
    big = b"x" * 5000
    got = lines(b"ok\n" + big + b"\nok2\n", limit=100)
    assert [r.oversize for r in got] == [False, True, False]
    assert got[1].data == b"" and got[1].end - got[1].start == len(big) + 1
    err = parse_line(got[1], 100)
    assert isinstance(err, LineError) and "limit" in err.detail


def test_lines_longer_than_a_read_block_are_joined() -> None:
    long_line = json.dumps({"prompt_id": "p", "prompt": "y" * 200_000}).encode()
    got = list(iter_raw_lines(io.BytesIO(long_line + b"\n"), 300_000))
    assert got[0].data == long_line


def test_valid_lines() -> None:
    p = parse('{"prompt_id": "p1", "prompt": "hi", "params": {"max_tokens": 5}, "system_prompt": "s"}')
    assert isinstance(p, PromptLine)
    assert (p.prompt_id, p.prompt, p.params, p.system_prompt, p.line) == ("p1", "hi", {"max_tokens": 5}, "s", 7)
    m = parse('{"prompt_id": "p2", "messages": [{"role": "user", "content": "Hi"}]}')
    assert isinstance(m, PromptLine) and m.messages == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    "text,fragment,json_object",
    [
        ("not json", "not valid JSON", False),
        ("[1, 2]", "not a JSON object", False),
        (b'{"prompt_id": "\xff"}', "UTF-8", False),
        ('{"prompt": "x"}', "prompt_id is missing", True),
        ('{"prompt_id": 5, "prompt": "x"}', "prompt_id must be", True),
        ('{"prompt_id": "a"}', "neither prompt nor messages", True),
        ('{"prompt_id": "a", "prompt": "x", "messages": []}', "both prompt and messages", True),
        ('{"prompt_id": "a", "prompt": 3}', "prompt must be", True),
        ('{"prompt_id": "a", "messages": []}', "messages must be", True),
        ('{"prompt_id": "a", "messages": [{"role": "robot", "content": "x"}]}', "role", True),
        ('{"prompt_id": "a", "prompt": "x", "params": {"temperature": 9}}', "params.temperature", True),
        ('{"prompt_id": "a", "prompt": "x", "params": {"max_token": 9}}', "params.max_token", True),
        ('{"prompt_id": "a", "prompt": "x", "system_prompt": 1}', "system_prompt", True),
    ],
)
def test_bad_lines_say_why_without_quoting_the_line(text: str | bytes, fragment: str, json_object: bool) -> None:
    err = parse(text)
    assert isinstance(err, LineError)
    assert fragment in err.detail and err.line == 7
    assert err.json_object is json_object
    assert "x" * 3 not in err.detail
    row = err.to_row()
    assert row["error"] == "invalid_line" and row["line"] == 7


def test_error_detail_never_contains_the_prompt_text() -> None:
    secret = "SECRET-PROMPT-TEXT"
    for text in [f'{{"prompt_id": "a", "prompt": "{secret}", "messages": []}}', f'{{"prompt_id": "a" "{secret}"}}']:
        err = parse(text)
        assert isinstance(err, LineError) and secret not in err.detail


def test_blank_lines_are_not_records() -> None:
    assert parse("   \t") is None


def test_rows_with_lone_surrogates_still_dump_as_valid_utf8_json() -> None:
    from promptforge.domain.jsonl import dump_line

    row = {"prompt_id": "a\ud800b", "result": "café"}
    line = dump_line(row)
    assert json.loads(line.decode("utf-8")) == row
    assert dump_line({"result": "café"}) == '{"result": "café"}\n'.encode()
