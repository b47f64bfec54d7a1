"""What can go wrong, as a small hierarchy built from the API's one error envelope.

::

    PromptForgeError
    ├── NetworkError              the service (or a signed URL) could not be reached
    ├── WaitTimeout               jobs.wait gave up before the job ended
    ├── NothingToResubmit         jobs.resubmit found no failed line to send again
    └── APIError                  the service answered with an error envelope
        ├── InvalidRequest        400, .field names the offending field
        ├── AuthenticationError   401
        ├── NotFoundError         404 (also another client's job)
        ├── ConflictError         409
        │   ├── JobNotCompleted   results asked for too early (.current_status, .retry_after)
        │   └── JobTerminal       cancel of a job that has already ended
        ├── PayloadTooLarge       413
        └── StorageError          a signed upload or download URL answered with an error

No message or repr ever carries the API key or a signed URL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .models import ErrorDetail


class PromptForgeError(Exception):
    """The base of every error this package raises."""


class NetworkError(PromptForgeError):
    """The request never got an answer: connection refused, DNS, timeout, reset."""


class WaitTimeout(PromptForgeError):
    """``jobs.wait`` reached its ``timeout``; the job itself goes on."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id} did not end within {timeout:g}s")
        self.job_id = job_id
        self.timeout = timeout


class NothingToResubmit(PromptForgeError):
    """``jobs.resubmit`` has nothing to send: the job had no failed rows, or none of their
    prompt_ids are in the given file (``failed_rows`` tells which)."""

    def __init__(self, message: str, failed_rows: int) -> None:
        super().__init__(message)
        self.failed_rows = failed_rows


class APIError(PromptForgeError):
    """The service answered with an HTTP error and the error envelope."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"


class InvalidRequest(APIError):
    """400: the request was refused; ``field`` names the field at fault ("" for the body)."""

    @property
    def field(self) -> str:
        return str(self.details.get("field", ""))


class AuthenticationError(APIError):
    """401: the API key is missing, unknown or revoked."""


class NotFoundError(APIError):
    """404: no such job for this key (another client's job looks the same), or no such route."""


class ConflictError(APIError):
    """409: the job is not in a state that allows this."""

    @property
    def current_status(self) -> str | None:
        value = self.details.get("current_status")
        return str(value) if value is not None else None


class JobNotCompleted(ConflictError):
    """409 ``job_not_completed``: results were asked for before the job completed."""


class JobTerminal(ConflictError):
    """409 ``job_terminal``: the job has already ended (cancel)."""


class PayloadTooLarge(APIError):
    """413: too much for one request (inline jobs and inline results have limits)."""


class StorageError(APIError):
    """A signed upload or download URL answered with an error (expired, refused)."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLarge,
}
_BY_CODE: dict[str, type[APIError]] = {"job_not_completed": JobNotCompleted, "job_terminal": JobTerminal}


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """The ``Retry-After`` header in seconds (a number of seconds or an HTTP date)."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(response: httpx.Response) -> APIError:
    """The exception for an error answer of the API, from its error envelope."""
    status = response.status_code
    detail = _envelope(response)
    if detail is None:
        # Not our envelope (a proxy, a load balancer): say what we know, not its body.
        code, message, details = f"http_{status}", f"HTTP {status} {response.reason_phrase}".strip(), {}
    else:
        code, message, details = detail.code, detail.message, detail.details
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or APIError
    return cls(status, code, message, details, retry_after_seconds(response.headers))


def _envelope(response: httpx.Response) -> ErrorDetail | None:
    try:
        body = json.loads(response.content)
        return ErrorDetail.model_validate(body["error"])
    except (ValueError, KeyError, TypeError):
        return None
