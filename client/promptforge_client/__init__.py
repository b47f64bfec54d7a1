"""The PromptForge client: a Python SDK (sync and async) and the ``promptforge`` command.

::

    from promptforge_client import Client

    with Client("http://127.0.0.1:8400", api_key) as client:
        job = client.jobs.submit("examples/prompts.jsonl", "fake", "fake-small")
        job = client.jobs.wait(job.job_id, on_progress=print)
        client.jobs.download(job.job_id, "results/")

Every error is a :class:`PromptForgeError`; see :mod:`promptforge_client.errors`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._async import AsyncClient, AsyncJobs  # noqa: E402
from ._http import JobOptions, Source, UploadProgress  # noqa: E402
from ._sync import Client, Jobs  # noqa: E402
from .errors import (  # noqa: E402
    APIError,
    AuthenticationError,
    ConflictError,
    InvalidRequest,
    JobNotCompleted,
    JobTerminal,
    NetworkError,
    NotFoundError,
    NothingToResubmit,
    PayloadTooLarge,
    PromptForgeError,
    StorageError,
    WaitTimeout,
)
from .models import (  # noqa: E402
    ErrorRow,
    InlineResults,
    Job,
    JobError,
    JobPage,
    JobStatus,
    ProviderBatches,
    ResultFile,
    ResultRow,
    Results,
    Upload,
)
from .resubmit import Resubmission  # noqa: E402

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncJobs",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "ErrorRow",
    "InlineResults",
    "InvalidRequest",
    "Job",
    "JobError",
    "JobNotCompleted",
    "JobOptions",
    "JobPage",
    "JobStatus",
    "JobTerminal",
    "Jobs",
    "NetworkError",
    "NotFoundError",
    "NothingToResubmit",
    "PayloadTooLarge",
    "PromptForgeError",
    "ProviderBatches",
    "Resubmission",
    "ResultFile",
    "ResultRow",
    "Results",
    "Source",
    "StorageError",
    "Upload",
    "UploadProgress",
    "WaitTimeout",
    "__version__",
]
