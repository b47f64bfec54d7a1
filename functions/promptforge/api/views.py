"""Read models rendered as the API's JSON: the status object, shared by the status, list,
cancel, create and events endpoints and by the callback a job sends when it ends."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from ..service.progress import JobView
from .schemas import ProviderBatches, StatusResponse


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as the seed documents show."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_body(view: JobView) -> dict[str, Any]:
    """The status object of ``view``'s job."""
    job, totals, batches = view.job, view.totals, view.provider_batches
    return StatusResponse(
        job_id=job.job_id,
        status=job.status.value,
        provider=job.provider,
        model=job.model,
        mode=job.mode.value,
        prompt_count=job.prompt_count,
        completed_count=totals.completed,
        failed_count=totals.failed,
        created_at=iso(job.created_at) or "",
        started_processing_at=iso(job.started_processing_at),
        completed_at=iso(job.completed_at),
        tokens_used=view.tokens_used,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        estimated_cost_usd=view.estimated_cost_usd,
        error_counts=dict(totals.error_counts),
        budget_tokens=job.budget_tokens,
        provider_batches=ProviderBatches(**dataclasses.asdict(batches)) if batches is not None else None,
        metadata=job.metadata,
        events_url=view.events_url,
        error=job.error.to_dict() if job.error else None,  # type: ignore[arg-type]
        retry_after=view.retry_after,
    ).model_dump()


def poll_headers(view: JobView) -> dict[str, str]:
    """``Retry-After`` while the job runs: the suggested poll interval."""
    return {} if view.retry_after is None else {"Retry-After": str(view.retry_after)}
