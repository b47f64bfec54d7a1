from datetime import UTC, datetime, timedelta

import pytest

from promptforge.domain.errors import IllegalTransition
from promptforge.domain.job import TERMINAL, Job, JobError, JobStatus, allowed_targets
from promptforge.domain.outcomes import ErrorCode

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def new_job(status: JobStatus = JobStatus.AWAITING_UPLOAD) -> Job:
    return Job("00000000-0000-0000-0000-000000000001", "c1", status, "fake", "m", T0, T0 + timedelta(hours=1))


def test_happy_path_stamps_the_contract_times() -> None:
    job = new_job()
    job = job.transition(JobStatus.QUEUED, T0)
    assert job.started_processing_at is None
    job = job.transition(JobStatus.PROCESSING, T0 + timedelta(seconds=5))
    assert job.started_processing_at == T0 + timedelta(seconds=5)
    assert job.completed_at is None
    job = job.transition(JobStatus.COMPLETED, T0 + timedelta(seconds=9))
    assert job.completed_at == T0 + timedelta(seconds=9)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_nothing_leaves_a_terminal_state(terminal: JobStatus) -> None:
    assert allowed_targets(terminal) == frozenset()
    job = new_job(terminal)
    for target in JobStatus:
        with pytest.raises(IllegalTransition):
            job.transition(target, T0, JobError(ErrorCode.STUCK, "y") if target is JobStatus.FAILED else None)


@pytest.mark.parametrize(
    "source,target",
    [
        (JobStatus.AWAITING_UPLOAD, JobStatus.PROCESSING),
        (JobStatus.AWAITING_UPLOAD, JobStatus.COMPLETED),
        (JobStatus.PENDING, JobStatus.PROCESSING),
        (JobStatus.QUEUED, JobStatus.COMPLETED),
        (JobStatus.QUEUED, JobStatus.PENDING),
        (JobStatus.PROCESSING, JobStatus.QUEUED),
    ],
)
def test_skipping_a_step_is_refused(source: JobStatus, target: JobStatus) -> None:
    with pytest.raises(IllegalTransition):
        new_job(source).transition(target, T0)


@pytest.mark.parametrize("source", [s for s in JobStatus if s not in TERMINAL])
def test_cancel_and_fail_reach_every_live_state(source: JobStatus) -> None:
    assert new_job(source).transition(JobStatus.CANCELLED, T0).completed_at == T0
    failed = new_job(source).transition(JobStatus.FAILED, T0, JobError(ErrorCode.STUCK, "why"))
    assert failed.error == JobError(ErrorCode.STUCK, "why")


def test_failed_needs_a_reason_and_only_failed_has_one() -> None:
    with pytest.raises(ValueError):
        new_job().transition(JobStatus.FAILED, T0)
    with pytest.raises(ValueError):
        new_job().transition(JobStatus.QUEUED, T0, JobError(ErrorCode.STUCK, "y"))


def test_status_cannot_be_changed_around_the_state_machine() -> None:
    with pytest.raises(ValueError):
        new_job().replace(status=JobStatus.COMPLETED)
