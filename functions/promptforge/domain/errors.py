"""Domain errors: a small hierarchy, each with a stable code."""

from __future__ import annotations


class DomainError(Exception):
    """Base of the errors the domain raises on purpose."""

    code = "domain_error"


class IllegalTransition(DomainError):
    """A status change the job state machine does not allow."""

    code = "illegal_transition"

    def __init__(self, job_id: str, current: str, target: str) -> None:
        super().__init__(f"job {job_id}: {current} -> {target} is not allowed")
        self.job_id = job_id
        self.current = current
        self.target = target
