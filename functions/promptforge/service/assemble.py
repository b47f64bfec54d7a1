"""Publishing an object assembled from many: whole under its final name, or not at all.

Cloud Storage composes at most 32 sources a request. Assembling more in steps under the
final name would show a reader (or a later delivery) a prefix of the rows: a worker that
dies, or one compose call that fails, between two steps leaves a short object that looks
finished. So the steps build a tree of temporary objects under a name of this attempt's
own, and the final name is written by one last request. Each request composes objects
that never change into an object no one else writes, so repeating one after an unknown
outcome gives the same object.

The published size is checked against the size the caller recorded for the sources; a
mismatch raises :class:`IncompleteObject` and nothing is reported done over it.
"""

from __future__ import annotations

import uuid

from .. import logs
from .ports import COMPOSE_MAX_SOURCES, BlobStore


class IncompleteObject(Exception):
    """An assembled object is not the size its recorded sources add up to."""

    def __init__(self, name: str, size: int | None, expected: int) -> None:
        super().__init__(f"{name}: {size} bytes, expected {expected}")
        self.name = name
        self.size = size
        self.expected = expected


def publish(blobs: BlobStore, bucket: str, sources: list[str], target: str, expected_bytes: int, scratch: str) -> int:
    """Write ``target`` as ``sources`` joined in order, in one final request, and check
    that it holds ``expected_bytes``. ``scratch`` is a prefix for temporary objects;
    returns the published size."""
    if not sources:
        blobs.write(bucket, target, b"")
        size = 0
    else:
        temporaries: list[str] = []
        attempt = uuid.uuid4().hex[:12]
        level = list(sources)
        depth = 0
        while len(level) > COMPOSE_MAX_SOURCES:
            folded: list[str] = []
            for i in range(0, len(level), COMPOSE_MAX_SOURCES):
                group = level[i : i + COMPOSE_MAX_SOURCES]
                if len(group) == 1:
                    folded.append(group[0])
                    continue
                name = f"{scratch}/{attempt}-{depth}-{i // COMPOSE_MAX_SOURCES:05d}"
                blobs.compose(bucket, group, name)
                temporaries.append(name)
                folded.append(name)
            level = folded
            depth += 1
        size = blobs.compose(bucket, level, target)
        for name in temporaries:
            _forget(blobs, bucket, name)
    if size != expected_bytes:
        raise IncompleteObject(target, size, expected_bytes)
    return size


def verify(blobs: BlobStore, bucket: str, name: str, expected_bytes: int) -> bool:
    """True when ``name`` exists and holds ``expected_bytes``."""
    info = blobs.stat(bucket, name)
    return info is not None and info.size == expected_bytes


def _forget(blobs: BlobStore, bucket: str, name: str) -> None:
    # A temporary left behind costs a little storage until the results bucket's lifecycle
    # rule removes it; it is never read.
    try:
        blobs.delete(bucket, name)
    except Exception as exc:
        logs.warning("could not delete a temporary object", error_type=type(exc).__name__)
