"""The client's single processing slot: taking it, and handing it to the next PENDING job.

Used inside transactions by every path that ends an active job (completion, failure,
cancel), so the hand-over happens exactly once and in upload order.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..domain.job import Job, JobStatus
from ..domain.records import ClientState
from .deps import Deps
from .ports import Tx


def read_successor(tx: Tx, job: Job) -> tuple[ClientState, Job | None]:
    """Read what ending ``job`` needs (reads come before writes): the client, and the job
    at the head of its queue when ``job`` holds the slot."""
    client = tx.get_client(job.client_id)
    if client.active_job_id != job.job_id or not client.pending:
        return client, None
    return client, tx.get_job(client.pending[0].job_id)


def ended(job: Job, retention_days: int) -> Job:
    """A job that just reached a terminal state, with the time its records may go (its
    chunk and counter documents get the same time from the watchdog)."""
    assert job.completed_at is not None
    return job.replace(expire_at=job.completed_at + timedelta(days=retention_days), records_unstamped=True)


def hand_over(tx: Tx, client: ClientState, ended_job_id: str, successor: Job | None, now: datetime) -> Job | None:
    """After ``ended_job_id`` ends: give its slot to the queue's head (now QUEUED), or free
    it; a job that ended while waiting just leaves the queue. Returns the promoted job."""
    if client.active_job_id != ended_job_id:
        if any(w.job_id == ended_job_id for w in client.pending):
            tx.put_client(client.without(ended_job_id))
        return None
    updated = client.promote()
    tx.put_client(updated)
    if successor is None or updated.active_job_id != successor.job_id:
        return None
    promoted = successor.transition(JobStatus.QUEUED, now)
    tx.put_job(promoted)
    return promoted


def start_active(deps: Deps, client_id: str) -> None:
    """Enqueue planning for the client's active job if it is QUEUED.

    Called after every transaction that may have handed the slot over. It acts on the
    stored state rather than on the transaction's return value, which a retried commit
    can lose; planning tasks are named and planning is idempotent, so a repeat is harmless.
    """
    client = deps.store.run_transaction(lambda tx: tx.get_client(client_id))
    if client.active_job_id is None:
        return
    job = deps.store.get_job(client.active_job_id)
    if job is not None and job.status is JobStatus.QUEUED:
        deps.tasks.enqueue_plan(job.job_id)


def announce_end(deps: Deps, job_id: str) -> None:
    """Enqueue the callback of a job that just ended, if it asked for one."""
    job = deps.store.get_job(job_id)
    if job is not None and job.callback_url and job.status.terminal:
        deps.tasks.enqueue_notify(job_id)
