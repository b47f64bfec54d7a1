"""Callbacks: a signed POST of the job's final status to its ``callback_url``.

The body is the status object (as ``GET /status`` returns it). Headers:

- ``X-PromptForge-Event``: ``job.completed``, ``job.failed`` or ``job.cancelled``
- ``X-PromptForge-Delivery``: the job id (a receiver can drop repeats by it)
- ``X-PromptForge-Signature``: ``t=<unix seconds>,v1=<hex HMAC-SHA256>`` over
  ``"<t>.<body>"`` with the client's webhook secret; the receiver recomputes it and
  rejects old timestamps, so a captured delivery cannot be replayed later.

A non-2xx answer or a network error raises, and the task is retried by Cloud Tasks with
backoff (the callback queue's retry settings bound it). The URL is the client's: it is
resolved and checked at every send (``deps.outbound``, the outbound port), the
connection goes to the checked address, and a redirect is not followed. A URL that leads
to a refused address is given up at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import timedelta

from .. import logs
from ..domain.job import Job
from ..domain.records import ClientState
from . import quotas
from .deps import Deps
from .ports import BlockedAddress, Tx


class CallbackFailed(Exception):
    """The receiver did not take the callback; the task will be retried."""


class CallbackDeferred(Exception):
    """The client already has its cap of callbacks in flight; try again later."""


class CallbackBlocked(Exception):
    """The callback URL leads to an address the deployment must not reach: not retried."""


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


def send(deps: Deps, job: Job, body: bytes, timeout_s: float = 10.0) -> int:
    """Deliver a callback within the client's cap of callbacks in flight (one place per
    job, held at most a little past the send timeout, so a killed sender frees it)."""
    if not quotas.start_callback(deps, job.client_id, job.job_id, timedelta(seconds=timeout_s + 20)):
        logs.info("callback deferred: client at its cap", job_id=job.job_id)
        raise CallbackDeferred(f"at most {deps.settings.max_callbacks_in_flight} callbacks per client at once")
    try:
        return deliver(deps, job, body, timeout_s)
    finally:
        quotas.end_callback(deps, job.client_id, job.job_id)


def deliver(deps: Deps, job: Job, body: bytes, timeout_s: float = 10.0) -> int:
    """POST the signed callback; returns the receiver's status, raises when it failed."""
    assert job.callback_url
    secret = webhook_secret(deps, job.client_id)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "PromptForge-Webhooks/1",
        "X-PromptForge-Event": f"job.{job.status.value.lower()}",
        "X-PromptForge-Delivery": job.job_id,
        "X-PromptForge-Signature": sign(secret, body, int(time.time())),
    }
    try:
        status = deps.outbound.post(job.callback_url, body, headers, timeout_s, deps.settings.allow_loopback_http_callbacks)
    except BlockedAddress as exc:
        logs.warning("callback blocked", job_id=job.job_id, reason=str(exc))
        raise CallbackBlocked(str(exc)) from None
    except (TimeoutError, OSError) as exc:
        logs.warning("callback failed", job_id=job.job_id, error_type=type(exc).__name__)
        raise CallbackFailed(type(exc).__name__) from None
    if 300 <= status < 400:
        logs.warning("callback redirected; not followed", job_id=job.job_id, status=status)
        raise CallbackBlocked(f"receiver answered {status}; redirects are not followed")
    if not 200 <= status < 300:
        logs.warning("callback refused", job_id=job.job_id, status=status)
        raise CallbackFailed(f"receiver answered {status}")
    logs.info("callback delivered", job_id=job.job_id, status=status)
    return status
