"""Structured logs in Cloud Logging's JSON format: one JSON object a line on stdout.

Fields are ids, counts and codes; never prompt text, keys or secrets.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any


def log(severity: str, message: str, **fields: Any) -> None:
    """Write one log entry; ``fields`` land as jsonPayload fields (job_id, chunk, ...)."""
    entry = {"severity": severity, "message": message, "time": datetime.now(UTC).isoformat(), **fields}
    sys.stdout.write(json.dumps(entry, default=str) + "\n")
    sys.stdout.flush()


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields: Any) -> None:
    log("ERROR", message, **fields)
