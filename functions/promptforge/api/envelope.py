"""The one error envelope: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the API answers with; ``code`` is a stable snake_case string."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def unauthenticated() -> ApiError:
    return ApiError(401, "unauthenticated", "Missing or invalid X-API-Key")


def not_found() -> ApiError:
    # The same answer for a missing job and for another client's job.
    return ApiError(404, "not_found", "Job not found")


def invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", f"{field}: {message}" if field else message, {"field": field})


def payload_too_large(limit_bytes: int, advice: str = "") -> ApiError:
    """A body over its endpoint's limit; ``details.limit_bytes`` says the limit."""
    message = f"The body is over the limit of {limit_bytes} bytes" + (f"; {advice}" if advice else "")
    return ApiError(413, "payload_too_large", message, {"limit_bytes": limit_bytes})


def busy(retry_after_s: int = 2) -> ApiError:
    """The store was too contended to commit: nothing changed, the request can be retried."""
    return ApiError(503, "busy", "Busy; nothing changed, retry shortly", headers={"Retry-After": str(retry_after_s)})


def internal() -> ApiError:
    return ApiError(500, "internal", "Internal error; the request can be retried")
