"""Cutting the file into chunks on line boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ChunkSpec:
    """A byte range of the input file that one worker task processes.

    ``skip_lines`` are the lines planning already reported as invalid (bad syntax or a
    duplicate prompt_id), so the worker leaves them alone. Its length is bounded by the
    chunk's line count, which keeps the chunk document small.
    """

    index: int  # 0-based; the results part is index + 1
    start: int
    end: int
    first_line: int
    record_count: int
    skip_lines: tuple[int, ...] = ()


@dataclass
class ChunkCutter:
    """Feeds on lines in file order and closes a chunk when it reaches a limit.

    Planning cuts the file a slice at a time, each slice ending where a chunk closes, so a
    cutter starts at ``first_index`` (the chunks of earlier slices) with nothing open.
    """

    max_records: int
    max_bytes: int
    first_index: int = 0
    _chunks: list[ChunkSpec] = field(default_factory=list)
    _start: int | None = None
    _end: int = 0
    _first_line: int = 0
    _records: int = 0
    _skips: list[int] = field(default_factory=list)

    def add(self, line: int, start: int, end: int, record: bool, skip: bool) -> ChunkSpec | None:
        """Add a line; return the chunk it closed, if any.

        ``record`` is false for blank lines: they travel inside a range but count for nothing.
        """
        if self._start is None:
            if not record:
                return None  # leading blank lines belong to no chunk
            self._start, self._first_line = start, line
        self._end = end
        if record:
            self._records += 1
            if skip:
                self._skips.append(line)
        if self._records >= self.max_records or self._end - self._start >= self.max_bytes:
            return self._close()
        return None

    def finish(self) -> ChunkSpec | None:
        """Close the last, partly filled chunk."""
        return self._close() if self._records else None

    def _close(self) -> ChunkSpec:
        assert self._start is not None
        index = self.first_index + len(self._chunks)
        spec = ChunkSpec(index, self._start, self._end, self._first_line, self._records, tuple(self._skips))
        self._chunks.append(spec)
        self._start, self._records, self._skips = None, 0, []
        return spec
