"""Property: for generated files of valid, invalid, blank and duplicate lines, planning and
processing on in-memory adapters (and the fake LLM) account for every line exactly once
across the result parts and errors.jsonl, and a duplicate prompt_id keeps its first line.

The expected outcome is worked out here from how each line was generated, not by the
parser under test.
"""

from __future__ import annotations

import json
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from promptforge.domain.job import JobStatus
from promptforge.service.deps import StaticDeps
from promptforge.service.plan import plan_job
from tests.conftest import make_settings
from tests.fakes import MemoryBlobs, MemoryProviders, MemoryStore, RecordingTasks
from tests.service.test_lifecycle import all_rows, drain, submit

MAX_LINE = 512  # above the longest valid line generated (20 astral characters, 12 bytes each escaped)


def memory_deps(**overrides: object) -> StaticDeps:
    settings_ = make_settings(**{"chunk_max_lines": 3, "max_line_bytes": MAX_LINE, **overrides})
    return StaticDeps(settings_, MemoryStore(), MemoryBlobs(), RecordingTasks(), providers=MemoryProviders())


# Each generated line: (kind, bytes, prompt_id or None). Kinds: "valid", "blank", and bad
# lines that are JSON objects ("bad_object") or not ("bad_text").
def _obj(o: object) -> bytes:
    return json.dumps(o).encode()


valid_lines = st.tuples(st.integers(0, 6), st.booleans(), st.text(max_size=20)).map(
    lambda t: (
        "valid",
        _obj({"prompt_id": f"p{t[0]}", "prompt": f"q {t[2]}"})
        if t[1]
        else _obj({"prompt_id": f"p{t[0]}", "messages": [{"role": "user", "content": f"q {t[2]}"}]}),
        f"p{t[0]}",
    )
)
blank_lines = st.sampled_from([b"", b" ", b"\t", b"  \t ", b"\r"]).map(lambda b: ("blank", b, None))
bad_text_lines = st.sampled_from(
    [
        b"not json at all",
        b'{"prompt_id": "x", "prompt": ',  # cut off
        b"[1, 2, 3]",
        b'"a string"',
        b"null",
        b"\xff\xfe{}",
        b'{"prompt_id": "x\xc3", "prompt": "y"}',  # invalid UTF-8 inside a string
        b"\x00\x00",
        _obj({"prompt_id": "long", "prompt": "y" * (MAX_LINE + 50)}),  # over the line limit
    ]
).map(lambda b: ("bad_text", b, None))
# JSON objects that are not valid prompts. Their prompt_ids never collide with the valid
# lines' ids: which line a duplicate of an invalid line's id should keep is a question of
# its own (tests/corpus/duplicate_of_invalid_line.jsonl).
_BAD_OBJECTS: list[dict[str, object]] = [
    {"prompt": "no id"},
    {"prompt_id": "", "prompt": "empty id"},
    {"prompt_id": 7, "prompt": "number id"},
    {"prompt_id": "ID", "prompt": "x", "messages": [{"role": "user", "content": "x"}]},
    {"prompt_id": "ID"},
    {"prompt_id": "ID", "prompt": 5},
    {"prompt_id": "ID", "messages": []},
    {"prompt_id": "ID", "prompt": "x", "params": {"max_token": 5}},
    {"prompt_id": "ID", "prompt": "x", "params": {"temperature": 7}},
]
bad_object_lines = st.tuples(
    st.sampled_from(_BAD_OBJECTS),
    st.integers(0, 10**6),
).map(lambda t: ("bad_object", _obj({k: (f"bad{t[1]}" if v == "ID" else v) for k, v in t[0].items()}), None))

files = st.tuples(
    st.lists(st.one_of(valid_lines, valid_lines, blank_lines, bad_text_lines, bad_object_lines), max_size=14),
    st.sampled_from([b"\n", b"\r\n"]),
    st.booleans(),  # BOM
    st.booleans(),  # final line ending
)


def build(lines: list[tuple[str, bytes, str | None]], eol: bytes, bom: bool, final_eol: bool) -> bytes:
    data = eol.join(b for _, b, _ in lines) + (eol if final_eol and lines else b"")
    return (b"\xef\xbb\xbf" if bom else b"") + data


@settings(max_examples=30, deadline=None)
@given(files)
def test_every_line_ends_in_exactly_one_row(file: tuple[list[tuple[str, bytes, str | None]], bytes, bool, bool]) -> None:
    lines, eol, bom, final_eol = file
    assert all(len(b) <= MAX_LINE for kind, b, _ in lines if kind == "valid")  # the oracle relies on it
    data = build(lines, eol, bom, final_eol)
    deps = memory_deps()
    client_id, job_id = submit(deps, data)
    drain(deps)
    job = deps.store.get_job(job_id)
    assert job is not None

    records = [(n, kind, pid) for n, (kind, _, pid) in enumerate(lines, start=1) if kind != "blank"]
    if not records:
        assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "empty_file"
        return
    if all(kind == "bad_text" for _, kind, _ in records):
        assert job.status is JobStatus.FAILED and job.error is not None and job.error.code == "not_jsonl"
        return

    first: dict[str, int] = {}
    for n, kind, pid in records:
        if kind == "valid":
            first.setdefault(pid, n)  # type: ignore[arg-type]
    expected_results = sorted(first)
    expected_errors = sorted(n for n, kind, pid in records if kind != "valid" or first[pid] != n)  # type: ignore[index]

    assert job.status is JobStatus.COMPLETED
    results, errors = all_rows(deps, client_id, job_id)
    assert sorted(r["prompt_id"] for r in results) == expected_results  # each once
    assert sorted(e["line"] for e in errors) == expected_errors  # each once
    assert all(e["error"] == "invalid_line" and e["detail"] for e in errors)
    for e in errors:
        pid = lines[e["line"] - 1][2]
        if pid is not None and first.get(pid) != e["line"]:
            assert e["prompt_id"] == pid and f"first on line {first[pid]}" in e["detail"]
    assert job.prompt_count == len(records)
    assert (job.completed_count, job.failed_count) == (len(expected_results), len(expected_errors))


# --- lines nested just deep enough to parse -------------------------------------------


def _deep_line(pid: str, depth: int) -> bytes:
    inner = b'{"a":' * depth + b"1" + b"}" * depth
    return b'{"prompt_id": "' + pid.encode() + b'", "prompt": "x", "params": {"response_format": ' + inner + b"}}"


def _deep_file(depth: int) -> bytes:
    return _deep_line("deep", depth) + b'\n{"prompt_id": "ok", "prompt": "y"}\n'


def _planning_accepts(depth: int) -> bool:
    deps = memory_deps(max_line_bytes=10**6)
    _, job_id = submit(deps, _deep_file(depth))
    plan_job(deps, deps.tasks.plans.pop(0))  # type: ignore[attr-defined]
    job = deps.store.get_job(job_id)
    return job is not None and job.invalid_count == 0


def test_a_line_that_planning_accepts_is_never_lost_and_never_crashes_the_worker() -> None:
    lo, hi = 1, sys.getrecursionlimit()  # the deepest nesting planning accepts, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if _planning_accepts(mid) else (lo, mid - 1)
    problems = []
    for depth in range(lo - 20, lo + 1):
        deps = memory_deps(max_line_bytes=10**6)
        client_id, job_id = submit(deps, _deep_file(depth))
        try:
            drain(deps)
        except RecursionError:
            problems.append((depth, "worker RecursionError"))
            continue
        job = deps.store.get_job(job_id)
        assert job is not None and job.status is JobStatus.COMPLETED
        results, errors = all_rows(deps, client_id, job_id)
        if sorted(r["prompt_id"] for r in results) + [e["line"] for e in errors] != ["deep", "ok"]:
            problems.append((depth, f"rows {[r['prompt_id'] for r in results]} + lines {[e['line'] for e in errors]}"))
    assert not problems, f"planning accepts nesting up to {lo}; the worker fails at: {problems}"
