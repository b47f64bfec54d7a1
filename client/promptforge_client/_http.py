"""What the sync and async clients share and that does no I/O of its own: URLs, headers,
request bodies, parsing answers into models, and the bytes of an upload."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypedDict, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from . import __version__
from .errors import APIError, NetworkError, PayloadTooLarge, StorageError

USER_AGENT = f"promptforge-python/{__version__}"
ERRORS_FILENAME = "errors.jsonl"
CHUNK_BYTES = 256 * 1024
# Signed URLs are long-lived transfers: generous timeouts, a short connect timeout.
STORAGE_TIMEOUT = httpx.Timeout(300.0, connect=15.0)
# The events stream sends a keep-alive comment at least every 15 s.
EVENTS_TIMEOUT = httpx.Timeout(60.0, connect=15.0)

M = TypeVar("M", bound=BaseModel)
UploadProgress = Callable[[int, int], None]
"""Called as ``on_upload(bytes_sent, total_bytes)`` while a file is uploaded."""

Source = str | os.PathLike[str] | bytes | Iterable[Mapping[str, Any]]
"""What ``jobs.submit`` takes: a path to a JSONL file, its bytes, or the rows themselves."""


class JobOptions(TypedDict, total=False):
    """The optional fields of a new job, as in ``POST /v1/jobs/init``."""

    params: Mapping[str, Any]
    system_prompt: str
    mode: str
    """``fast`` (the service's default) or ``economy``: through the provider's batch API at
    its batch price, results within its window (24 h); see ``MODES``."""
    max_attempts: int
    budget_tokens: int
    callback_url: str
    metadata: Mapping[str, Any]
    endpoint: str
    base_url: str


MODES = ("fast", "economy")
"""The job modes of the API contract."""


def normalize_url(url: str) -> str:
    """The service's base URL without a trailing slash or ``/v1`` (paths add it)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the service URL must start with http:// or https:// (got {url!r})")
    return url.removesuffix("/v1")


def api_headers(api_key: str) -> dict[str, str]:
    if not api_key:
        raise ValueError("an API key is required")
    return {"X-API-Key": api_key, "User-Agent": USER_AGENT, "Accept": "application/json"}


def job_body(provider: str, model: str, options: JobOptions) -> dict[str, Any]:
    """The JSON body of a new job: only the fields the caller set (the service applies its
    defaults and refuses unknown ones)."""
    body: dict[str, Any] = {"provider": provider, "model": model}
    for name, value in options.items():
        if value is not None:
            body[name] = dict(value) if isinstance(value, Mapping) else value
    return body


def job_path(job_id: str, action: str) -> str:
    # Quoted, so that an id (a UUID from the service) can never change the path.
    return f"/v1/jobs/{quote(job_id, safe='')}/{action}"


def parse(model: type[M], response: httpx.Response) -> M:
    """The body of a successful answer as ``model``."""
    return parse_json(model, response.content, response.status_code)


def parse_json(model: type[M], data: bytes | str, status: int = 200) -> M:
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise APIError(status, "invalid_response", f"unexpected answer from the service ({where}: {first['msg']})") from None


def network_error(where: str, exc: httpx.TransportError) -> NetworkError:
    """A transport failure, naming the host only (a signed URL's query is a credential)."""
    parts = urlsplit(where)
    place = f"{parts.scheme}://{parts.netloc}" if parts.netloc else where
    reason = str(exc) or type(exc).__name__
    return NetworkError(f"cannot reach {place}: {reason}")


def storage_error(action: str, response: httpx.Response) -> StorageError:
    """A signed URL answered with an error; cloud storage answers in XML, not our envelope."""
    host = response.request.url.host
    message = f"{action} via the signed URL on {host} failed: HTTP {response.status_code} {response.reason_phrase}".rstrip()
    return StorageError(response.status_code, f"{action}_failed", message)


_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def safe_filename(name: str) -> str:
    """A result file's name, checked before it becomes a path on the caller's disk."""
    if not _SAFE_NAME.match(name) or ".." in name:
        raise APIError(200, "invalid_response", f"the service named a result file {name!r}, which is not a plain file name")
    return name


def classify(source: Source) -> Path | bytes | list[dict[str, Any]]:
    """A submit source as a file path, bytes to upload, or rows for an inline job (a path is
    checked when its size is read)."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, str | os.PathLike):
        return Path(source)
    rows = [dict(row) for row in source]
    if not rows:
        raise ValueError("no rows to submit")
    return rows


def rows_to_jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row, ensure_ascii=False).encode() + b"\n" for row in rows)


def upload_headers(headers: Mapping[str, str], size: int) -> dict[str, str]:
    # A fixed length, never chunked transfer encoding: signed PUT URLs want the size.
    return {**headers, "Content-Length": str(size), "User-Agent": USER_AGENT}


def too_large(size: int, limit: int) -> PayloadTooLarge:
    """The file is over the service's upload limit: said before uploading it in vain."""
    message = f"the file is {size:,} bytes, over this service's limit of {limit:,} bytes (the job was cancelled)"
    return PayloadTooLarge(413, "payload_too_large", message, {"limit_bytes": limit})
