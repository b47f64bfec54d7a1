"""What a prompt's run ends as: the error codes and the rows of the output files.

Codes are public: they are written into errors.jsonl, job status and Firestore, so
``ErrorCode`` is a ``StrEnum`` whose values are the documented strings (a test compares
them with docs/). Rows are built here only, so every writer emits the same keys in the
same order and the output files stay byte-identical for the same input.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    # Row codes: one prompt failed (errors.jsonl, error_counts).
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    TIMEOUT = "timeout"
    PROVIDER_ERROR = "provider_error"
    INVALID_REQUEST = "invalid_request"
    CONTENT_FILTERED = "content_filtered"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    PROVIDER_EXPIRED = "provider_expired"  # economy: the provider's batch window ended first
    BUDGET_EXCEEDED = "budget_exceeded"
    INVALID_LINE = "invalid_line"
    # Job codes: the whole job failed (``error.code`` of a FAILED job).
    FILE_TOO_LARGE = "file_too_large"
    EMPTY_FILE = "empty_file"
    NOT_JSONL = "not_jsonl"
    TOO_MANY_PROMPTS = "too_many_prompts"
    PLANNING_FAILED = "planning_failed"
    UPLOAD_EXPIRED = "upload_expired"
    STUCK = "stuck"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    INCONSISTENT_RESULTS = "inconsistent_results"


# The codes an error row can carry (invalid_line rows come from planning). The one list
# both stores count by: Firestore sums exactly these fields, so a row with any other code
# is refused where it is recorded (``Chunk``) rather than missing from live totals.
ROW_ERROR_CODES: tuple[ErrorCode, ...] = (
    ErrorCode.RATE_LIMIT_EXCEEDED,
    ErrorCode.TIMEOUT,
    ErrorCode.PROVIDER_ERROR,
    ErrorCode.INVALID_REQUEST,
    ErrorCode.CONTENT_FILTERED,
    ErrorCode.CONTEXT_LENGTH_EXCEEDED,
    ErrorCode.PROVIDER_EXPIRED,
    ErrorCode.BUDGET_EXCEEDED,
    ErrorCode.INVALID_LINE,
)

# Codes a provider call (or one request of a provider batch) can fail with (ProviderError).
PROVIDER_ERROR_CODES: frozenset[ErrorCode] = frozenset(ROW_ERROR_CODES) - {ErrorCode.BUDGET_EXCEEDED, ErrorCode.INVALID_LINE}

# The codes a FAILED job's ``error.code`` can carry: every code but the row codes.
JOB_ERROR_CODES: frozenset[ErrorCode] = frozenset(ErrorCode) - frozenset(ROW_ERROR_CODES)


class UnknownErrorCode(ValueError):
    """A row, count or job error carries a code that is not one of its ``ErrorCode`` set."""


def row_error_code(code: str) -> ErrorCode:
    """``code`` as a row code, or :class:`UnknownErrorCode`."""
    return _one_of(code, frozenset(ROW_ERROR_CODES), "a row")


def job_error_code(code: str) -> ErrorCode:
    """``code`` as a job error code, or :class:`UnknownErrorCode`."""
    return _one_of(code, JOB_ERROR_CODES, "a job")


def _one_of(code: str, allowed: frozenset[ErrorCode], what: str) -> ErrorCode:
    try:
        parsed = ErrorCode(code)
    except ValueError:
        parsed = None
    if parsed is None or parsed not in allowed:
        raise UnknownErrorCode(f"{code!r} is not {what} error code")
    return parsed


@dataclass(frozen=True)
class ResultRow:
    """A prompt that got an answer: one line of a results part."""

    prompt_id: str
    result: str
    model: str
    input_tokens: int
    output_tokens: int
    finish_reason: str | None
    attempts: int

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_id": self.prompt_id,
            "result": self.result,
            "model": self.model,
            "tokens_used": self.input_tokens + self.output_tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "finish_reason": self.finish_reason,
            "attempts": self.attempts,
        }


@dataclass(frozen=True)
class ErrorRow:
    """A prompt or line without an answer: one line of errors.jsonl.

    ``line`` is set for invalid lines, ``attempts`` for prompts that were (or were not)
    sent; fields left ``None`` are not written.
    """

    prompt_id: str | None
    error: ErrorCode
    line: int | None = None
    attempts: int | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        row_error_code(self.error)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"prompt_id": self.prompt_id, "error": self.error.value}
        if self.line is not None:
            row["line"] = self.line
        if self.attempts is not None:
            row["attempts"] = self.attempts
        if self.detail is not None:
            row["detail"] = self.detail
        return row
