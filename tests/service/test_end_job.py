"""The one end-of-job path (``lifecycle.end_job``): failing and cancelling a job that holds
the client's slot hand it to the next PENDING job, announce the end once and start the
next job; a second ending changes nothing; on memory and on the emulators."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from promptforge.domain import paths
from promptforge.domain.job import Job, JobError, JobStatus
from promptforge.domain.outcomes import ErrorCode
from promptforge.service import lifecycle
from promptforge.service.deps import StaticDeps


def uploaded(deps: StaticDeps, client_id: str) -> Job:
    new = lifecycle.create_job(deps, client_id, {"provider": "fake", "model": "m", "callback_url": "https://hooks.example/x"})
    name = paths.upload_object(client_id, new.job.job_id)
    lifecycle.accept_upload(deps, deps.settings.upload_bucket, name, 10, deps.now())
    job = deps.store.get_job(new.job.job_id)
    assert job is not None
    return job


def fail(deps: StaticDeps, job: Job) -> None:
    lifecycle.fail_job(deps, job.job_id, JobError(ErrorCode.PLANNING_FAILED, "it broke"))


def cancel(deps: StaticDeps, job: Job) -> None:
    lifecycle.cancel_job(deps, job)


@pytest.mark.parametrize(("end", "outcome"), [(fail, JobStatus.FAILED), (cancel, JobStatus.CANCELLED)])
def test_ending_the_active_job_hands_the_slot_on_announces_once_and_starts_the_next(
    deps: StaticDeps, end: Callable[[StaticDeps, Job], None], outcome: JobStatus
) -> None:
    client_id = f"client-{uuid.uuid4().hex[:12]}"
    first, second = uploaded(deps, client_id), uploaded(deps, client_id)
    assert (first.status, second.status) == (JobStatus.QUEUED, JobStatus.PENDING)
    deps.tasks.plans.clear()  # type: ignore[attr-defined]

    end(deps, first)

    ended, promoted = deps.store.get_job(first.job_id), deps.store.get_job(second.job_id)
    assert ended is not None and promoted is not None
    assert ended.status is outcome and ended.expire_at is not None and ended.records_unstamped
    assert promoted.status is JobStatus.QUEUED
    client = deps.store.run_transaction(lambda tx: tx.get_client(client_id))
    assert client.active_job_id == second.job_id and client.pending == ()
    assert deps.tasks.notifies == [first.job_id]  # type: ignore[attr-defined]
    assert deps.tasks.plans == [second.job_id]  # type: ignore[attr-defined]

    # Ending it again, either way, changes nothing and is refused or reported as lost.
    assert lifecycle.fail_job(deps, first.job_id, JobError(ErrorCode.STUCK, "again")) is False
    with pytest.raises(lifecycle.JobTerminal):
        lifecycle.cancel_job(deps, ended)
    assert deps.store.get_job(first.job_id) == ended
    assert deps.store.get_job(second.job_id) == promoted


def test_ending_a_pending_job_takes_it_out_of_the_queue_and_leaves_the_active_one(deps: StaticDeps) -> None:
    client_id = f"client-{uuid.uuid4().hex[:12]}"
    first, second = uploaded(deps, client_id), uploaded(deps, client_id)
    lifecycle.cancel_job(deps, second)
    client = deps.store.run_transaction(lambda tx: tx.get_client(client_id))
    assert client.active_job_id == first.job_id and client.pending == ()
    assert deps.store.get_job(first.job_id) == first
    assert deps.tasks.notifies == [second.job_id]  # type: ignore[attr-defined]
