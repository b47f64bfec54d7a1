"""Property tests of the job state machine and of a client's PENDING queue.

The legal moves are written out here again, from the lifecycle in the API contract, rather
than read from ``promptforge.domain.job``: the test checks the code against the contract,
not against itself.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from promptforge.domain.errors import IllegalTransition
from promptforge.domain.job import Job, JobError, JobStatus, allowed_targets
from promptforge.domain.outcomes import ErrorCode
from promptforge.domain.records import ClientState

T0 = datetime(2026, 1, 1, tzinfo=UTC)

S = JobStatus
# api-contract.md, "Job lifecycle":
#   AWAITING_UPLOAD --upload finalized--> QUEUED or PENDING
#   PENDING  --the client's active job ends--> QUEUED
#   QUEUED   --a worker starts--> PROCESSING
#   PROCESSING --all prompts done--> COMPLETED
#   any non-terminal --cancel--> CANCELLED
#   any non-terminal --unrecoverable error--> FAILED
#   Terminal: COMPLETED, FAILED, CANCELLED. Nothing leaves a terminal state.
CONTRACT_TERMINAL = {S.COMPLETED, S.FAILED, S.CANCELLED}
CONTRACT_MOVES = {
    (S.AWAITING_UPLOAD, S.QUEUED),
    (S.AWAITING_UPLOAD, S.PENDING),
    (S.PENDING, S.QUEUED),
    (S.QUEUED, S.PROCESSING),
    (S.PROCESSING, S.COMPLETED),
} | {(s, end) for s in S if s not in CONTRACT_TERMINAL for end in (S.CANCELLED, S.FAILED)}

# One attempted move: a target status, whether an error is passed, and seconds later.
attempts = st.lists(st.tuples(st.sampled_from(list(S)), st.booleans(), st.integers(1, 3600)), max_size=25)


def new_job() -> Job:
    return Job("00000000-0000-0000-0000-000000000001", "c1", S.AWAITING_UPLOAD, "fake", "m", T0, T0 + timedelta(hours=1))


def test_the_code_allows_exactly_the_contracts_moves() -> None:
    allowed = {(s, t) for s in S for t in allowed_targets(s)}
    assert allowed == CONTRACT_MOVES
    assert {s for s in S if s.terminal} == CONTRACT_TERMINAL


@settings(max_examples=300, deadline=None)
@given(attempts)
def test_random_attempts_never_take_an_illegal_move_and_stamp_the_contract_times(
    moves: list[tuple[JobStatus, bool, int]],
) -> None:
    job = new_job()
    now = T0
    entered_processing_at: datetime | None = None
    for target, with_error, later in moves:
        now += timedelta(seconds=later)
        error = JobError(ErrorCode.STUCK, "why") if with_error else None
        legal = (job.status, target) in CONTRACT_MOVES
        valid = legal and (target is S.FAILED) == with_error
        before = job
        try:
            job = job.transition(target, now, error)
        except IllegalTransition:
            assert not legal, f"{before.status.value} -> {target.value} is in the contract but was refused"
            continue
        except ValueError:
            # A legal move with a missing or needless error; refused, and the job unchanged.
            assert legal and not valid
            continue
        assert valid, f"{before.status.value} -> {target.value} (error={with_error}) was accepted"
        assert before.status not in CONTRACT_TERMINAL  # terminal states are absorbing
        assert job.status is target
        # started_processing_at: set exactly when the job enters PROCESSING, then kept.
        if target is S.PROCESSING:
            entered_processing_at = now
        assert job.started_processing_at == entered_processing_at
        # completed_at: set exactly at the terminal move, and only then.
        assert job.completed_at == (now if target in CONTRACT_TERMINAL else None)
        # FAILED always says why; nothing else carries an error.
        assert (job.error is not None) == (job.status is S.FAILED)
        # Nothing but the status, its stamps and the error changes in a transition.
        stamps = ("status", "status_at", "started_processing_at", "completed_at", "error")
        assert dataclasses.replace(job, **{k: getattr(before, k) for k in stamps}) == before


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(CONTRACT_TERMINAL)), attempts)
def test_a_terminal_job_refuses_every_move(terminal: JobStatus, moves: list[tuple[JobStatus, bool, int]]) -> None:
    start = new_job()
    path = {S.COMPLETED: [S.QUEUED, S.PROCESSING, S.COMPLETED], S.FAILED: [S.FAILED], S.CANCELLED: [S.CANCELLED]}[terminal]
    for target in path:
        start = start.transition(target, T0, JobError(ErrorCode.STUCK, "why") if target is S.FAILED else None)
    for target, with_error, _ in moves:
        with pytest.raises((IllegalTransition, ValueError)):
            start.transition(target, T0, JobError(ErrorCode.STUCK, "y") if with_error else None)
    assert start.status is terminal


# --- a client's queue ----------------------------------------------------------------

queue_ops = st.lists(
    st.one_of(
        # seconds after T0 (ties are common) and a tag that puts ids out of upload order
        st.tuples(st.just("enqueue"), st.integers(0, 5), st.integers(0, 99)),
        st.tuples(st.just("promote"), st.just(0), st.just(0)),
        st.tuples(st.just("without"), st.integers(0, 30), st.just(0)),  # an index into the jobs made so far
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(queue_ops)
def test_the_queue_stays_in_upload_order_and_never_loses_or_duplicates_a_job(ops: list[tuple[str, int, int]]) -> None:
    state = ClientState("c", active_job_id="first")
    waiting: dict[str, datetime] = {}  # the model: jobs that should be in the queue
    finished: set[str] = set()  # jobs that held the slot and gave it up
    made: list[str] = []
    for op, arg, tag in ops:
        if op == "enqueue":
            # Ids are unique but not in upload order, so ties on uploaded_at sort by id.
            job_id = f"j{tag:02d}-{len(made)}"
            made.append(job_id)
            at = T0 + timedelta(seconds=arg)
            state = state.enqueue(job_id, at)
            waiting[job_id] = at
        elif op == "promote":
            expected = min(waiting.items(), key=lambda kv: (kv[1], kv[0]))[0] if waiting else None
            if state.active_job_id is not None:
                finished.add(state.active_job_id)
            state = state.promote()
            assert state.active_job_id == expected
            waiting.pop(expected, None)  # type: ignore[arg-type]
        else:
            target = made[arg % len(made)] if made else "nobody"
            state = state.without(target)
            waiting.pop(target, None)
        keys = [(w.uploaded_at, w.job_id) for w in state.pending]
        assert keys == sorted(keys)
        ids = [w.job_id for w in state.pending]
        assert len(ids) == len(set(ids)), "a job is queued twice"
        assert set(ids) == set(waiting), "a job was lost from, or added to, the queue"
        assert {w.job_id: w.uploaded_at for w in state.pending} == waiting
        # At most one active job, and it is not also waiting or already done.
        assert state.active_job_id not in ids
        assert state.active_job_id is None or state.active_job_id not in finished
