"""The results read model: which files a job exposes, their download links, and its rows
in the body within the inline limits; on in-memory adapters and on the emulators."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from promptforge.domain import paths
from promptforge.domain.job import JobStatus
from promptforge.service import lifecycle, results
from promptforge.service.chunks import process_chunk
from promptforge.service.deps import StaticDeps
from tests.service.test_reliability import planned


def test_a_completed_job_exposes_its_files_and_a_running_one_none(deps: StaticDeps) -> None:
    _, job_id = planned(deps, 8)  # two chunks
    running = deps.store.get_job(job_id)
    assert running is not None
    for partial in (False, True):
        with pytest.raises(results.NotReady):
            results.files(deps, running, partial)
    process_chunk(deps, job_id, 0)
    process_chunk(deps, job_id, 1)
    done = deps.store.get_job(job_id)
    assert done is not None and done.status is JobStatus.COMPLETED
    assert results.files(deps, done, False) == results.files(deps, done, True) == done.result_files
    assert done.result_files[-1] == paths.ERRORS_FILENAME

    now = deps.now()
    deps.clock = lambda: now
    links = results.downloads(deps, done, done.result_files)
    assert [d.filename for d in links] == list(done.result_files) and all(d.url for d in links)
    assert {d.expires_at for d in links} == {now + timedelta(seconds=deps.settings.download_url_ttl_seconds)}

    rows = results.inline_rows(deps, done, done.result_files)
    assert sorted(r["prompt_id"] for r in rows.results) == [f"p{i:04d}" for i in range(8)] and rows.errors == []
    deps.settings = dataclasses.replace(deps.settings, inline_max_prompts=7)
    with pytest.raises(results.TooLargeInline) as too_many:
        results.inline_rows(deps, done, done.result_files)
    assert (too_many.value.limit_rows, too_many.value.limit_bytes) == (7, deps.settings.inline_max_bytes)


def test_a_cancelled_job_exposes_what_it_produced_only_when_asked_for_partial_results(deps: StaticDeps) -> None:
    _, job_id = planned(deps, 8)
    process_chunk(deps, job_id, 0)
    job = deps.store.get_job(job_id)
    assert job is not None
    cancelled = lifecycle.cancel_job(deps, job)
    with pytest.raises(results.NotReady):
        results.files(deps, cancelled, False)
    names = results.files(deps, cancelled, True)
    assert names[-1] == paths.ERRORS_FILENAME
    rows = results.inline_rows(deps, cancelled, names)
    assert sorted(r["prompt_id"] for r in rows.results) == [f"p{i:04d}" for i in range(4)]
    # Past the byte limit even though a cancelled job's rows are not counted beforehand.
    deps.settings = dataclasses.replace(deps.settings, inline_max_bytes=10)
    with pytest.raises(results.TooLargeInline):
        results.inline_rows(deps, cancelled, names)
