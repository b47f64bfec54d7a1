"""What the openai and anthropic SDK providers share about running their SDK on aiohttp.

Both SDKs ship an httpx2 client whose transport is aiohttp (``DefaultAioHttpClient``, the
``aiohttp`` extra): the SDK keeps building requests and reading answers, aiohttp keeps the
connections. That transport reports every aiohttp connection error, a dropped connection
included, as an httpx2 ``ConnectTimeout``, which the SDK turns into its timeout error; the
aiohttp error it comes from says what happened, so the classification reads that.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar

import aiohttp
import httpx2

from . import _http, _shared
from .base import ProviderError

E = TypeVar("E", bound=BaseException)

# Handed to the SDK's DefaultAioHttpClient, which gives them to aiohttp's connector
# (max_connections 0: aiohttp's "no limit"; see _shared.POOL_LIMIT).
LIMITS = httpx2.Limits(max_connections=_shared.POOL_LIMIT, keepalive_expiry=_shared.KEEPALIVE_S)


def transport_error(exc: BaseException, sdk_timeout: bool) -> ProviderError:
    """The error for an SDK call that got no answer: ``timeout`` when the connection timed
    out, ``provider_error`` when it failed or broke off. ``sdk_timeout`` is what the SDK
    said (its timeout or its connection error), used when no aiohttp error is underneath."""
    cause: BaseException | None = exc
    seen = 0
    while cause is not None and seen < 8:
        if isinstance(cause, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
            return _http.timeout_error(cause)
        if isinstance(cause, aiohttp.ClientError):
            return _http.connection_error(cause)
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return _http.timeout_error(exc) if sdk_timeout else _http.connection_error(exc)


@contextlib.contextmanager
def sdk_errors(
    timeout: type[BaseException], connection: type[BaseException], status: type[E], classify: Callable[[E], ProviderError]
) -> Iterator[None]:
    """Turns an SDK's errors for a call into :class:`ProviderError` with a stable code: its
    ``timeout`` and ``connection`` errors by what happened underneath, its ``status``
    errors (an HTTP error answer) by ``classify``. Both SDKs name the three alike."""
    try:
        yield
    except timeout as exc:
        raise transport_error(exc, sdk_timeout=True) from None
    except connection as exc:
        raise transport_error(exc, sdk_timeout=False) from None
    except status as exc:
        raise classify(exc) from None
