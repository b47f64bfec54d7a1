"""Finding repeated prompt_ids in bounded memory, whatever the size of the file.

Planning reads the file a slice at a time. Each slice writes one record per line that
names a prompt_id (a keyed 16-byte digest of the id, the line number and byte range,
whether the line is a valid prompt), grouped into ``BUCKETS`` buckets by the digest's first byte, behind a
header of the records per bucket. Once every slice is written, dedupe steps each take a
run of buckets holding at most a set number of records and read those buckets of every
slice, in file order: an id lives in one bucket, so a step sees every line naming the ids
it holds, and its memory is one entry per distinct id of its buckets, not of the file.

The rule is the one-pass rule: the first line naming an id claims it (valid or not); a
later valid line naming it is a duplicate; a later invalid line keeps its own error.

The digest is keyed with a salt chosen per job, so no one can choose ids that all land
in one bucket. Two distinct ids collide with probability about n^2 / 2^129 (n ids).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

BUCKETS = 256
# digest, line, its first byte, its length with the line end, 1 when it is a valid prompt
RECORD = struct.Struct(">16sQQIB")
HEADER = struct.Struct(f">{BUCKETS}I")  # records per bucket
# A duplicate: its line, the line that claimed the id, and where the duplicate lies (so
# its prompt_id is read again from the file without splitting the lines around it).
PAIR = struct.Struct(">QQQI")


@dataclass(frozen=True, order=True, slots=True)
class Duplicate:
    line: int
    first: int  # the line that claimed the id
    start: int
    length: int


@dataclass(frozen=True, slots=True)
class IdRecord:
    digest: bytes
    line: int
    start: int
    length: int
    valid: bool


_READ = RECORD.size * 2048


def digest(salt: bytes, prompt_id: str) -> bytes:
    return hashlib.blake2b(prompt_id.encode("utf-8"), digest_size=16, key=salt).digest()


class SliceIds:
    """The id records of one slice, grouped by bucket, kept packed (25 bytes each)."""

    def __init__(self, salt: bytes) -> None:
        self._salt = salt
        self._buckets = [bytearray() for _ in range(BUCKETS)]
        self.counts = [0] * BUCKETS

    def add(self, prompt_id: str, line: int, start: int, end: int, valid: bool) -> None:
        d = digest(self._salt, prompt_id)
        self._buckets[d[0]] += RECORD.pack(d, line, start, end - start, 1 if valid else 0)
        self.counts[d[0]] += 1

    def __len__(self) -> int:
        return sum(self.counts)

    def to_bytes(self) -> bytes:
        return HEADER.pack(*self.counts) + b"".join(self._buckets)


def bucket_span(counts: list[int] | tuple[int, ...], first: int, stop: int) -> tuple[int, int]:
    """Byte range of buckets ``[first, stop)`` in a slice's ids object with these counts."""
    start = HEADER.size + RECORD.size * sum(counts[:first])
    return start, start + RECORD.size * sum(counts[first:stop])


def read_header(data: bytes) -> list[int]:
    if len(data) != HEADER.size:
        raise ValueError(f"an ids header is {HEADER.size} bytes, got {len(data)}")
    return list(HEADER.unpack(data))


def iter_records(stream: BinaryIO, expected: int) -> Iterator[IdRecord]:
    """The ``expected`` records in ``stream``; a short or ragged stream raises ValueError."""
    seen = 0
    rest = b""
    while True:
        block = stream.read(_READ)
        if not block:
            break
        data = rest + block
        whole = len(data) - len(data) % RECORD.size
        for d, line, start, length, valid in RECORD.iter_unpack(data[:whole]):
            seen += 1
            yield IdRecord(d, line, start, length, valid == 1)
        rest = data[whole:]
    if rest or seen != expected:
        raise ValueError(f"an ids section holds {seen} records and {len(rest)} stray bytes, expected {expected}")


def split_buckets(totals: list[int] | tuple[int, ...], max_records: int) -> list[int]:
    """Bucket boundaries ``[0, b1, ..., BUCKETS]`` of runs holding at most ``max_records``
    records each (a bucket over the limit alone is a run of its own); ``[]`` when no
    slice named an id."""
    if not any(totals):
        return []
    bounds = [0]
    held = 0
    for b, n in enumerate(totals):
        if held and held + n > max_records:
            bounds.append(b)
            held = 0
        held += n
    bounds.append(BUCKETS)
    return bounds


class FirstSeen:
    """The first line naming each id of a dedupe step, fed the step's records in file order."""

    def __init__(self) -> None:
        self._first: dict[bytes, int] = {}

    def duplicate(self, record: IdRecord) -> Duplicate | None:
        """The record as a duplicate if an earlier line claimed its id and it is valid."""
        first = self._first.setdefault(record.digest, record.line)
        if first == record.line or not record.valid:
            return None
        return Duplicate(record.line, first, record.start, record.length)


def pack_pairs(per_slice: list[list[Duplicate]]) -> bytes:
    """A dedupe step's duplicates: a header of counts per slice, then the pairs by slice."""
    head = struct.pack(f">{len(per_slice)}I", *(len(p) for p in per_slice))
    return head + b"".join(PAIR.pack(d.line, d.first, d.start, d.length) for dups in per_slice for d in dups)


def pairs_header_size(slices: int) -> int:
    return 4 * slices


def pairs_span(counts: Iterable[int], index: int, slices: int) -> tuple[int, int]:
    """Byte range of slice ``index``'s pairs in a dedupe step's object."""
    counts = list(counts)
    start = pairs_header_size(slices) + PAIR.size * sum(counts[:index])
    return start, start + PAIR.size * counts[index]


def read_pairs_header(data: bytes, slices: int) -> list[int]:
    if len(data) != pairs_header_size(slices):
        raise ValueError(f"a duplicates header is {pairs_header_size(slices)} bytes, got {len(data)}")
    return list(struct.unpack(f">{slices}I", data))


def unpack_pairs(data: bytes) -> list[Duplicate]:
    if len(data) % PAIR.size:
        raise ValueError("a duplicates section is ragged")
    return [Duplicate(*fields) for fields in PAIR.iter_unpack(data)]
