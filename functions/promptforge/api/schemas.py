"""Request and response bodies of the public API, as pydantic models."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..domain.job import JobMode
from ..domain.params import params_problem
from ..domain.provider_registry import NAMES

if TYPE_CHECKING:
    Provider = str
    ModeName = str
else:
    # The registry's names, in its order: the same enum (and the same validation
    # message) as a Literal written out, with no second list to keep in step.
    Provider = Literal[NAMES]
    # The modes as the status shows them: plain strings, from the one enum.
    ModeName = Literal[tuple(m.value for m in JobMode)]


class InitRequest(BaseModel):
    """Body of ``POST /v1/jobs/init``."""

    model_config = ConfigDict(extra="forbid")

    provider: Provider
    model: str = Field(min_length=1, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)
    system_prompt: str | None = Field(default=None, max_length=200_000)
    mode: JobMode = Field(
        default=JobMode.FAST,
        description="fast: each prompt sent on its own, at the provider's rate limit, done in minutes. economy: "
        "each chunk sent as one of the provider's own batches, at its batch price (half), done within the "
        "provider's window (24 h); only for providers with a batch API, and with neither budget_tokens nor "
        "max_attempts above 1 (a batch request is tried once).",
    )
    max_attempts: int = Field(default=3, ge=1, le=20)
    budget_tokens: int | None = Field(default=None, ge=1)
    callback_url: str | None = Field(default=None, max_length=2048)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # openai_compatible: the name of an endpoint the operator configured.
    endpoint: str | None = Field(default=None, min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    # openai_compatible: a URL of the client's own, only where the operator allows it.
    base_url: str | None = Field(default=None, max_length=2048)

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = params_problem(value)
        if problem:
            name, message = problem
            raise ValueError(f"{name} {message}" if name else message)
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value)) > 16_384:
            raise ValueError("must be at most 16 KB as JSON")
        return value

    @field_validator("callback_url", "base_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an https:// URL")
        return value


class InitResponse(BaseModel):
    job_id: str
    status: str
    upload_url: str
    upload_method: Literal["PUT"] = "PUT"
    upload_headers: dict[str, str]
    upload_expires_at: str
    max_upload_bytes: int


class JobErrorBody(BaseModel):
    code: str
    message: str


class ProviderBatches(BaseModel):
    """An economy job's provider batches, summed over its chunks, as the providers count them."""

    batches: int = Field(description="Chunks sent as a provider batch (or being sent)")
    ended: int = Field(description="Of those, batches the provider has ended")
    requests: int = Field(description="Requests in the batches")
    requests_done: int = Field(description="Requests the provider has finished, failed ones included")
    requests_failed: int = Field(description="Requests the provider has failed")


class StatusResponse(BaseModel):
    job_id: str
    status: str
    provider: str
    model: str
    mode: ModeName = JobMode.FAST.value
    prompt_count: int | None
    completed_count: int | None
    failed_count: int | None
    created_at: str
    started_processing_at: str | None
    completed_at: str | None
    tokens_used: int
    input_tokens: int
    output_tokens: int
    estimated_cost_usd: float | None = None
    error_counts: dict[str, int] = Field(default_factory=dict)
    budget_tokens: int | None = None
    # economy, while PROCESSING: the provider batches' own progress (the counts above move
    # only as batches end and their results are mapped back).
    provider_batches: ProviderBatches | None = None
    metadata: dict[str, Any]
    # Where to stream this job's events from (the events function's own URL: the gateway
    # buffers responses); null where the deployment serves them only through the API.
    events_url: str | None = None
    error: JobErrorBody | None = None
    retry_after: int | None = None


class ResultFile(BaseModel):
    filename: str
    url: str
    expires_at: str


class ResultsResponse(BaseModel):
    job_id: str
    status: str
    files: list[ResultFile]


class CreateRequest(InitRequest):
    """Body of ``POST /v1/jobs``: an init body plus the prompts themselves."""

    prompts: list[Any] = Field(min_length=1)


class JobList(BaseModel):
    jobs: list[StatusResponse]
    next_page_token: str | None = None


class InlineResults(BaseModel):
    job_id: str
    status: str
    results: list[dict[str, Any]]
    errors: list[dict[str, Any]]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorEnvelope(BaseModel):
    error: ErrorBody
