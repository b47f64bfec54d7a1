"""Callbacks: a signed POST of the job's final status to its ``callback_url``.

The body is the status object (as ``GET /status`` returns it). Headers:

- ``X-PromptForge-Event``: ``job.completed``, ``job.failed`` or ``job.cancelled``
- ``X-PromptForge-Delivery``: the job id (a receiver can drop repeats by it)
- ``X-PromptForge-Signature``: ``t=<unix seconds>,v1=<hex HMAC-SHA256>`` over
  ``"<t>.<body>"`` with the client's webhook secret; the receiver recomputes it and
  rejects old timestamps, so a captured delivery cannot be replayed later.

A non-2xx answer or a network error raises, and the task is retried by Cloud Tasks with
backoff (the queue's retry settings bound it).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import urllib.error
import urllib.request

from .. import logs
from ..domain.job import Job
from ..domain.records import ClientState
from .deps import Deps
from .ports import Tx


class CallbackFailed(Exception):
    """The receiver did not take the callback; the task will be retried."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-PromptForge-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, tolerance_s: int = 300, now: float | None = None) -> bool:
    """Check a signature header as a receiver would (constant-time, with a replay window)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


def webhook_secret(deps: Deps, client_id: str, rotate: bool = False) -> str:
    """The client's webhook secret, made on first use (or anew with ``rotate``)."""

    def get_or_make(tx: Tx) -> str:
        client = tx.get_client(client_id)
        if client.webhook_secret and not rotate:
            return client.webhook_secret
        secret = "whsec_" + secrets.token_urlsafe(32)
        tx.put_client(ClientState(client.client_id, client.active_job_id, client.pending, secret))
        return secret

    deps.store.run_transaction(get_or_make)
    # Read back: a retried commit may have kept another attempt's secret.
    stored = deps.store.run_transaction(lambda tx: tx.get_client(client_id)).webhook_secret
    assert stored is not None
    return stored


def deliver(deps: Deps, job: Job, body: bytes, timeout_s: float = 10.0) -> int:
    """POST the signed callback; returns the receiver's status, raises when it failed."""
    assert job.callback_url
    secret = webhook_secret(deps, job.client_id)
    request = urllib.request.Request(
        job.callback_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "PromptForge-Webhooks/1",
            "X-PromptForge-Event": f"job.{job.status.value.lower()}",
            "X-PromptForge-Delivery": job.job_id,
            "X-PromptForge-Signature": sign(secret, body, int(time.time())),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (validated URL)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        logs.warning("callback failed", job_id=job.job_id, error_type=type(exc).__name__)
        raise CallbackFailed(type(exc).__name__) from None
    if not 200 <= status < 300:
        logs.warning("callback refused", job_id=job.job_id, status=status)
        raise CallbackFailed(f"receiver answered {status}")
    logs.info("callback delivered", job_id=job.job_id, status=status)
    return status
