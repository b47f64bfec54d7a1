"""The pieces of bounded-memory dedupe (domain/dedupe.py) on their own."""

from __future__ import annotations

import random

import pytest

from promptforge.domain.dedupe import (
    BUCKETS,
    HEADER,
    PAIR,
    RECORD,
    Duplicate,
    SliceIds,
    bucket_span,
    find_duplicates,
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
    data = ids.take_bytes()
    counts = read_header(data[: HEADER.size])
    assert sum(counts) == len(ids) == 399
    assert len(data) == HEADER.size + 399 * RECORD.size
    seen = []
    for first, stop in ((0, 100), (100, 101), (101, BUCKETS)):
        start, end = bucket_span(counts, first, stop)
        records = list(RECORD.iter_unpack(data[start:end]))
        assert all(first <= r[0][0] < stop for r in records)
        seen += records
    assert sorted(r[1] for r in seen) == list(range(1, 400))
    by_id: dict[bytes, list[int]] = {}
    for r in seen:
        by_id.setdefault(r[0], []).append(r[1])
    assert len(by_id) == 37 and all(lines == sorted(lines) for lines in by_id.values())


def test_a_short_or_ragged_section_is_refused() -> None:
    one = RECORD.pack(b"d" * 16, 1, 0, 5, 1)
    counts = [0] * BUCKETS
    counts[ord("d")] = 2
    with pytest.raises(ValueError):
        find_duplicates([(counts, one + one[:3])], 0, BUCKETS)
    with pytest.raises(ValueError):
        find_duplicates([(counts, one)], 0, BUCKETS)
    with pytest.raises(ValueError):
        read_header(b"\0" * 3)


def _sections(objects: list[bytes], first: int, stop: int) -> list[tuple[list[int], bytes]]:
    """What a dedupe step of buckets ``[first, stop)`` reads of these slices' ids objects."""
    out = []
    for data in objects:
        counts = read_header(data[: HEADER.size])
        start, end = bucket_span(counts, first, stop)
        out.append((counts, data[start:end]))
    return out


def _pairs(packed: bytes) -> list[Duplicate]:
    return [Duplicate(*fields) for fields in PAIR.iter_unpack(packed)]


def test_the_first_line_claims_an_id_and_only_later_valid_lines_repeat_it() -> None:
    ids = SliceIds(b"s" * 16)
    ids.add("a", 3, 0, 1, valid=False)  # an invalid line claims "a"
    ids.add("a", 5, 0, 1, valid=True)  # a valid repeat: duplicate of line 3
    ids.add("a", 8, 0, 1, valid=False)  # an invalid repeat keeps its own error
    ids.add("b", 9, 0, 1, valid=True)
    (found,) = find_duplicates(_sections([ids.take_bytes()], 0, BUCKETS), 0, BUCKETS)
    assert _pairs(found) == [Duplicate(5, 3, 0, 1)]


def test_duplicates_across_slices_and_bucket_runs_are_those_of_one_pass() -> None:
    rng = random.Random(12)
    salt = b"r" * 16
    slices = [SliceIds(salt) for _ in range(4)]
    claimed: dict[str, int] = {}
    expected: list[list[Duplicate]] = [[] for _ in slices]
    line = 0
    for n, ids in enumerate(slices):
        for _ in range(500):
            line += 1
            pid, valid = f"p{rng.randrange(300)}", rng.random() < 0.9
            ids.add(pid, line, line * 100, line * 100 + 60, valid)
            first = claimed.setdefault(pid, line)
            if first != line and valid:
                expected[n].append(Duplicate(line, first, line * 100, 60))
    blobs = [ids.take_bytes() for ids in slices]
    found: list[list[Duplicate]] = [[] for _ in slices]
    for first, stop in ((0, 1), (1, 90), (90, 91), (91, BUCKETS)):
        for n, packed in enumerate(find_duplicates(_sections(blobs, first, stop), first, stop)):
            found[n] += _pairs(packed)
    assert [sorted(f) for f in found] == expected
    assert sum(map(len, expected)) > 500  # the ids repeat across slices, not only within one


def test_duplicates_pack_by_slice_and_read_back() -> None:
    per_slice = [[Duplicate(5, 1, 50, 10)], [], [Duplicate(20, 2, 200, 11), Duplicate(22, 5, 220, 12)]]
    data = pack_pairs([b"".join(PAIR.pack(d.line, d.first, d.start, d.length) for d in dups) for dups in per_slice])
    counts = read_pairs_header(data[: pairs_header_size(3)], 3)
    assert counts == [1, 0, 2]
    for index, expected in enumerate(per_slice):
        start, end = pairs_span(counts, index, 3)
        assert unpack_pairs(data[start:end]) == expected
