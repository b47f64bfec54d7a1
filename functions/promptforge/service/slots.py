"""The client's single processing slot: taking it, and handing it to the next PENDING job.

Used inside transactions by every path that ends an active job (completion, failure,
cancel), so the hand-over happens exactly once and in upload order.
"""

from __future__ import annotations

from datetime import datetime

from ..domain.job import Job, JobStatus
from ..domain.records import ClientState
from .ports import Tx


def read_successor(tx: Tx, job: Job) -> tuple[ClientState, Job | None]:
    """Read what releasing ``job``'s slot needs (reads come before writes)."""
    client = tx.get_client(job.client_id)
    successor = tx.oldest_pending_job(job.client_id) if client.active_job_id == job.job_id else None
    return client, successor


def hand_over(tx: Tx, client: ClientState, finished_job_id: str, successor: Job | None, now: datetime) -> Job | None:
    """Give the slot to ``successor`` (now QUEUED) or free it; returns the promoted job."""
    if client.active_job_id != finished_job_id:
        return None
    if successor is None:
        tx.put_client(ClientState(client.client_id, None))
        return None
    promoted = successor.transition(JobStatus.QUEUED, now)
    tx.put_job(promoted)
    tx.put_client(ClientState(client.client_id, promoted.job_id))
    return promoted
