"""Finding repeated prompt_ids in bounded memory, whatever the size of the file.

Planning reads the file a slice at a time. Each slice writes one record per line that
names a prompt_id (a keyed 16-byte digest of the id, the line number and byte range,
whether the line is a valid prompt), grouped into ``BUCKETS`` buckets by the digest's first byte, behind a
header of the records per bucket. Once every slice is written, dedupe steps each take a
run of buckets holding at most a set number of records and read those buckets of every
slice, in file order: an id lives in one bucket, so a step sees every line naming the ids
it holds. A step keeps the records it read packed, as read (bytes of the run's size), and
looks for repeats one bucket at a time: its only per-id objects are those of one bucket,
1/256 of the file's ids, not those of the run or of the file.

The rule is the one-pass rule: the first line naming an id claims it (valid or not); a
later valid line naming it is a duplicate; a later invalid line keeps its own error.

The digest is keyed with a salt chosen per job, so no one can choose ids that all land
in one bucket. Two distinct ids collide with probability about n^2 / 2^129 (n ids).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass

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


def digest(salt: bytes, prompt_id: str) -> bytes:
    return hashlib.blake2b(prompt_id.encode("utf-8"), digest_size=16, key=salt).digest()


class SliceIds:
    """The id records of one slice, grouped by bucket, kept packed (RECORD.size, 37 bytes, each)."""

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

    def take_bytes(self) -> bytes:
        """The slice's ids object; the records are dropped, so that while it is uploaded
        they are held once, not twice (``counts`` stay)."""
        data = b"".join([HEADER.pack(*self.counts), *self._buckets])
        self._buckets = []
        return data


def bucket_span(counts: list[int] | tuple[int, ...], first: int, stop: int) -> tuple[int, int]:
    """Byte range of buckets ``[first, stop)`` in a slice's ids object with these counts."""
    start = HEADER.size + RECORD.size * sum(counts[:first])
    return start, start + RECORD.size * sum(counts[first:stop])


def read_header(data: bytes) -> list[int]:
    if len(data) != HEADER.size:
        raise ValueError(f"an ids header is {HEADER.size} bytes, got {len(data)}")
    return list(HEADER.unpack(data))


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


def find_duplicates(sections: list[tuple[list[int], bytes]], first: int, stop: int) -> list[bytes]:
    """The duplicates among the records of buckets ``[first, stop)``, packed by slice.

    ``sections`` are the slices in file order: each one's bucket counts (its header) and
    the bytes of those buckets in its ids object. Each bucket's records are read from
    every slice in turn, which is file order for each of its ids.
    """
    for counts, data in sections:
        if len(data) != RECORD.size * sum(counts[first:stop]):
            raise ValueError(f"an ids section holds {len(data)} bytes, its header says {sum(counts[first:stop])} records")
    found = [bytearray() for _ in sections]
    at = [0] * len(sections)
    for bucket in range(first, stop):
        claimed: dict[bytes, int] = {}  # the line that claimed each id of this bucket
        for i, (counts, data) in enumerate(sections):
            size = RECORD.size * counts[bucket]
            if not size:
                continue
            view = memoryview(data)[at[i] : at[i] + size]
            at[i] += size
            for d, line, start, length, valid in RECORD.iter_unpack(view):
                # The first line naming an id claims it; a later valid line repeats it.
                by = claimed.setdefault(d, line)
                if by != line and valid == 1:
                    found[i] += PAIR.pack(line, by, start, length)
    return [bytes(f) for f in found]


def pack_pairs(per_slice: list[bytes]) -> bytes:
    """A dedupe step's duplicates: a header of counts per slice, then the pairs by slice."""
    head = struct.pack(f">{len(per_slice)}I", *(len(p) // PAIR.size for p in per_slice))
    return b"".join([head, *per_slice])


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
