"""What every provider shares about HTTP answers: rate-limit headers, retry-after, and
the mapping of a failed answer to a stable :class:`ProviderError`.

Pure functions over a status code and a header mapping, so each provider (whatever
client it uses) reads its answers the same way, and the tests can pin the parsing down
without a server.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from datetime import datetime

from ...domain.outcomes import ErrorCode
from .base import ProviderError, RateLimitInfo

# "6m0s", "1h2m3.5s", "20ms", "0.5s", "1.2us": Go's duration syntax, which OpenAI uses.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
# An error code from a provider's body is quoted in a detail only if it looks like one
# (an identifier), so a server that puts free text there cannot leak a prompt through it.
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")


def parse_duration(text: str) -> float | None:
    """Seconds in a Go-style duration (``"6m0s"``, ``"20ms"``) or a bare number of seconds."""
    text = text.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    total, end = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != end:
            return None
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        end = match.end()
    return total if end == len(text) else None


def _seconds_until(text: str, now: float) -> float | None:
    """A reset given as a duration or as an RFC 3339 timestamp (Anthropic), in seconds from ``now``."""
    duration = parse_duration(text)
    if duration is not None:
        return duration
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now)


def _int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _first_int(headers: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = _int(headers, name)
        if value is not None:
            return value
    return None


def _first_reset(headers: Mapping[str, str], now: float, *names: str) -> float | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            seconds = _seconds_until(value, now)
            if seconds is not None:
                return seconds
    return None


def lower_keys(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` with lower-case names, for clients that hand back a plain dict."""
    return {k.lower(): v for k, v in headers.items()}


def rate_limits_from_headers(headers: Mapping[str, str], now: float | None = None) -> RateLimitInfo | None:
    """The rate-limit figures in ``headers`` (lower-case names), or None if there are none.

    Understands OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` and
    Anthropic's ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``; for
    Anthropic's tokens, the combined ``tokens`` figures (the most restrictive limit in
    effect) are used, else its ``input-tokens`` ones.
    """
    now = time.time() if now is None else now
    info = RateLimitInfo(
        limit_requests=_first_int(headers, "x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit"),
        limit_tokens=_first_int(
            headers, "x-ratelimit-limit-tokens", "anthropic-ratelimit-tokens-limit", "anthropic-ratelimit-input-tokens-limit"
        ),
        remaining_requests=_first_int(headers, "x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"),
        remaining_tokens=_first_int(
            headers,
            "x-ratelimit-remaining-tokens",
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-input-tokens-remaining",
        ),
        reset_requests_s=_first_reset(headers, now, "x-ratelimit-reset-requests", "anthropic-ratelimit-requests-reset"),
        reset_tokens_s=_first_reset(
            headers, now, "x-ratelimit-reset-tokens", "anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-input-tokens-reset"
        ),
    )
    return None if info == RateLimitInfo() else info


def retry_after_from_headers(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (preferred: finer) or ``retry-after``
    (seconds or an HTTP date), or None when neither is usable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def safe_code(value: object) -> str:
    """A provider's error code if it is a plain identifier, else ``""``."""
    return value if isinstance(value, str) and _CODE.fullmatch(value) else ""


def status_error(
    status: int,
    headers: Mapping[str, str],
    *,
    code: str = "",
    context_length: bool = False,
    content_filter: bool = False,
    retry_after: float | None = None,
) -> ProviderError:
    """The stable error for an HTTP error answer.

    ``code`` is the provider's error code or type (quoted in the detail when it is an
    identifier); ``context_length`` and ``content_filter`` are what the provider's body
    said, as each provider reads it; ``retry_after`` overrides the headers (Gemini puts
    it in the body).
    """
    shown = safe_code(code)
    detail = f"provider answered HTTP {status}" + (f" ({shown})" if shown else "")
    wait = retry_after if retry_after is not None else retry_after_from_headers(headers)
    if status == 429:
        limits = rate_limits_from_headers(headers)
        if shown == "insufficient_quota":
            # OpenAI's "out of credit": waiting will not help within this job.
            return ProviderError(ErrorCode.RATE_LIMIT_EXCEEDED, detail, False, None, limits)
        return ProviderError(ErrorCode.RATE_LIMIT_EXCEEDED, detail, True, wait, limits)
    if status in (408, 504):
        return ProviderError(ErrorCode.TIMEOUT, detail, True, wait)
    if status == 409 or status >= 500:
        return ProviderError(ErrorCode.PROVIDER_ERROR, detail, True, wait)
    if context_length:
        return ProviderError(ErrorCode.CONTEXT_LENGTH_EXCEEDED, detail, False)
    if content_filter:
        return ProviderError(ErrorCode.CONTENT_FILTERED, detail, False)
    return ProviderError(ErrorCode.INVALID_REQUEST, detail, False)


def timeout_error(exc: BaseException) -> ProviderError:
    """The error for a call that got no answer in time."""
    return ProviderError(ErrorCode.TIMEOUT, f"no answer in time ({type(exc).__name__})", True)


def connection_error(exc: BaseException) -> ProviderError:
    """The error for a call whose connection failed or broke off."""
    return ProviderError(ErrorCode.PROVIDER_ERROR, f"connection failed ({type(exc).__name__})", True)


def malformed_response() -> ProviderError:
    """The error for a 2xx answer that cannot be read."""
    return ProviderError(ErrorCode.PROVIDER_ERROR, "provider sent a malformed response", True)


def content_filtered(reason: str) -> ProviderError:
    """The error for an answer the provider's safety system stopped (``reason`` is ours or an enum)."""
    return ProviderError(ErrorCode.CONTENT_FILTERED, f"the provider's content filter stopped the reply ({reason})", False)


def unsupported_param(provider: str, name: str) -> ProviderError:
    """The error for a job parameter this provider has no equivalent for (no call is made)."""
    return ProviderError(ErrorCode.INVALID_REQUEST, f"parameter {name!r} is not supported by provider {provider}", False)
