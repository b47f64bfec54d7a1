from promptforge.domain.chunking import ChunkCutter, ChunkSpec


def cut(records: list[tuple[int, int, bool, bool]], max_records: int, max_bytes: int = 10**9) -> list[ChunkSpec]:
    cutter = ChunkCutter(max_records, max_bytes)
    out: list[ChunkSpec] = []
    for n, (start, end, record, skip) in enumerate(records, start=1):
        spec = cutter.add(n, start, end, record, skip)
        if spec:
            out.append(spec)
    last = cutter.finish()
    return out + ([last] if last else [])


def test_chunks_tile_the_records_on_line_boundaries() -> None:
    lines = [(i * 10, i * 10 + 10, True, False) for i in range(7)]
    chunks = cut(lines, max_records=3)
    assert [(c.index, c.start, c.end, c.first_line, c.record_count) for c in chunks] == [
        (0, 0, 30, 1, 3),
        (1, 30, 60, 4, 3),
        (2, 60, 70, 7, 1),
    ]


def test_blank_lines_ride_along_but_do_not_count() -> None:
    lines = [(0, 1, False, False), (1, 11, True, False), (11, 12, False, False), (12, 22, True, True), (22, 23, False, False)]
    chunks = cut(lines, max_records=5)
    assert len(chunks) == 1
    c = chunks[0]
    assert (c.start, c.first_line, c.record_count, c.skip_lines) == (1, 2, 2, (4,))


def test_the_byte_limit_closes_a_chunk_too() -> None:
    lines = [(i * 100, i * 100 + 100, True, False) for i in range(5)]
    chunks = cut(lines, max_records=100, max_bytes=250)
    assert [c.record_count for c in chunks] == [3, 2]


def test_a_file_of_blank_lines_has_no_chunks() -> None:
    assert cut([(0, 1, False, False), (1, 2, False, False)], max_records=3) == []
