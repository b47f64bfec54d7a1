"""The pieces of bounded-memory dedupe (domain/dedupe.py) on their own."""

from __future__ import annotations

import io

import pytest

from promptforge.domain.dedupe import (
    BUCKETS,
    HEADER,
    RECORD,
    Duplicate,
    FirstSeen,
    SliceIds,
    bucket_span,
    iter_records,
    pack_pairs,
    pairs_header_size,
    pairs_span,
    read_header,
    read_pairs_header,
    split_buckets,
    unpack_pairs,
)


def test_bucket_runs_hold_at_most_the_limit_unless_one_bucket_alone_is_larger() -> None:
    assert split_buckets([0] * BUCKETS, 10) == []
    totals = [(i * 7) % 5 for i in range(BUCKETS)]
    totals[100] = 50  # over the limit on its own
    bounds = split_buckets(totals, 10)
    assert bounds[0] == 0 and bounds[-1] == BUCKETS and bounds == sorted(set(bounds))
    for a, b in zip(bounds, bounds[1:], strict=False):
        held = sum(totals[a:b])
        assert held <= 10 or b - a == 1, (a, b, held)
    assert split_buckets(totals, 10**9) == [0, BUCKETS]


def test_a_slice_object_reads_back_by_bucket_in_line_order() -> None:
    ids = SliceIds(b"k" * 16)
    for line in range(1, 400):
        ids.add(f"id{line % 37}", line, line * 10, line * 10 + 9, valid=line % 5 != 0)
    data = ids.to_bytes()
    counts = read_header(data[: HEADER.size])
    assert sum(counts) == len(ids) == 399
    seen = []
    for first, stop in ((0, 100), (100, 101), (101, BUCKETS)):
        start, end = bucket_span(counts, first, stop)
        records = list(iter_records(io.BytesIO(data[start:end]), (end - start) // RECORD.size))
        assert all(first <= r.digest[0] < stop for r in records)
        seen += records
    assert sorted(r.line for r in seen) == list(range(1, 400))
    by_id: dict[bytes, list[int]] = {}
    for r in seen:
        by_id.setdefault(r.digest, []).append(r.line)
    assert len(by_id) == 37 and all(lines == sorted(lines) for lines in by_id.values())


def test_a_short_or_ragged_section_is_refused() -> None:
    one = RECORD.pack(b"d" * 16, 1, 0, 5, 1)
    with pytest.raises(ValueError):
        list(iter_records(io.BytesIO(one + one[:3]), 1))
    with pytest.raises(ValueError):
        list(iter_records(io.BytesIO(one), 2))
    with pytest.raises(ValueError):
        read_header(b"\0" * 3)


def test_the_first_line_claims_an_id_and_only_later_valid_lines_repeat_it() -> None:
    seen = FirstSeen()
    ids = SliceIds(b"s" * 16)
    ids.add("a", 3, 0, 1, valid=False)  # an invalid line claims "a"
    ids.add("a", 5, 0, 1, valid=True)  # a valid repeat: duplicate of line 3
    ids.add("a", 8, 0, 1, valid=False)  # an invalid repeat keeps its own error
    ids.add("b", 9, 0, 1, valid=True)
    data = ids.to_bytes()
    records = list(iter_records(io.BytesIO(data[HEADER.size :]), 4))
    found = [d for d in (seen.duplicate(r) for r in sorted(records, key=lambda r: r.line)) if d]
    assert found == [Duplicate(5, 3, 0, 1)]


def test_duplicates_pack_by_slice_and_read_back() -> None:
    per_slice = [[Duplicate(5, 1, 50, 10)], [], [Duplicate(20, 2, 200, 11), Duplicate(22, 5, 220, 12)]]
    data = pack_pairs(per_slice)
    counts = read_pairs_header(data[: pairs_header_size(3)], 3)
    assert counts == [1, 0, 2]
    for index, expected in enumerate(per_slice):
        start, end = pairs_span(counts, index, 3)
        assert unpack_pairs(data[start:end]) == expected
