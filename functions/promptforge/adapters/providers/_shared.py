"""One HTTP client per process, event loop and provider configuration.

A chunk worker opens its provider once per chunk, and a process runs many chunks at once
on one event loop: a connection pool per chunk would pay a TLS handshake per connection
per chunk, and the first requests of every chunk would wait for it. So a provider object
is light, and its client (an aiohttp session, or an SDK client on aiohttp) lives here,
made on first use on the running loop and shared by every provider object with the same
key (provider, base URL, a hash of the credential, timeout).

Clients belong to the loop they were made on (aiohttp binds a session to its loop), so
the cache is per loop. A loop's clients are closed by :func:`close_shared_clients` on that
loop, or when the loop shuts its async generators down (``asyncio.run`` does, before it
closes the loop). A loop closed without that is dropped from the cache on the next use of
any loop: its clients can no longer be awaited shut, and letting go of them lets the
garbage collector release their sockets; they are never handed out again.

Pure asyncio: importing this module loads no HTTP client.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# Connections per shared client: aiohttp's 0 is "no limit". A pool limit below the number
# of requests in flight would queue requests inside the client, on the clock of their
# timeout; how many are in flight is the worker's decision (its pacing and concurrency).
POOL_LIMIT = 0
# Seconds an idle connection is kept for the next request: less than the 5 s after which
# common servers (uvicorn, so vLLM) close an idle one, so that a request is not sent on a
# connection the server is closing at that moment (a POST is not retried: it would fail).
# httpx2, the SDKs' default, also keeps 5 s; aiohttp's default is 15 s.
KEEPALIVE_S = 4.0


# Clients a loop keeps at most while they are idle. Operator-configured providers are a
# handful; a client's own base URL (where allowed) makes one per URL, and a long-lived
# process must not keep a session for every URL it ever served.
MAX_IDLE_CLIENTS = 32


class _Entry:
    __slots__ = ("client", "close", "in_use", "last_used")

    def __init__(self, client: Any, close: Callable[[Any], Awaitable[None]]) -> None:
        self.client = client
        self.close = close
        self.in_use = 0
        self.last_used = 0.0


class _LoopClients:
    """The clients of one event loop, and the async generator that closes them when the
    loop shuts its async generators down."""

    def __init__(self) -> None:
        self.clients: dict[Hashable, _Entry] = {}
        self.abandoned = False
        self.closer: AsyncGenerator[None, None] | None = None
        self.closing: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        entries, self.clients = list(self.clients.values()), {}
        for entry in entries:
            await _close_quietly(entry)
        if self.closing:
            await asyncio.gather(*self.closing, return_exceptions=True)

    def evict_idle(self, loop: asyncio.AbstractEventLoop, keep: int) -> None:
        """Close the least recently used idle clients until ``keep`` are left; a client
        with a request in flight is never closed under it."""
        idle = sorted((e.last_used, i, k) for i, (k, e) in enumerate(self.clients.items()) if e.in_use == 0)
        for _, _, key in idle[: max(0, len(self.clients) - keep)]:
            task = loop.create_task(_close_quietly(self.clients.pop(key)))
            self.closing.add(task)
            task.add_done_callback(self.closing.discard)


async def _close_quietly(entry: _Entry) -> None:
    # One client failing to close must not keep the others open.
    try:
        await entry.close(entry.client)
    except Exception:  # noqa: BLE001 - closing is best effort by nature
        pass


_lock = threading.Lock()
_loops: dict[asyncio.AbstractEventLoop, _LoopClients] = {}


def fingerprint(secret: str | None) -> str:
    """A credential's stand-in in a cache key, so the cache never holds the key itself."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32] if secret else ""


async def _close_at_shutdown(loop: asyncio.AbstractEventLoop, entry: _LoopClients) -> AsyncGenerator[None, None]:
    # The loop registers this generator when it is first advanced (below), and
    # ``shutdown_asyncgens`` runs its ``finally`` on the still-running loop.
    try:
        yield
    finally:
        if not entry.abandoned:
            with _lock:
                if _loops.get(loop) is entry:
                    del _loops[loop]
            await entry.close()


def _drop_closed_loops() -> None:
    with _lock:
        closed = [loop for loop in _loops if loop.is_closed()]
        entries = [_loops.pop(loop) for loop in closed]
    for entry in entries:
        _abandon(entry)


def _abandon(entry: _LoopClients) -> None:
    """Let go of a loop's clients without awaiting anything (they are closed, or their loop
    is), and finish its closer generator here, so that neither the loop's shutdown nor the
    garbage collector runs it (on a closed loop it could not run)."""
    entry.abandoned = True
    entry.clients = {}
    closer, entry.closer = entry.closer, None
    if closer is not None:
        try:
            closer.aclose().send(None)
        except (StopIteration, RuntimeError):
            pass


def _loop_clients(loop: asyncio.AbstractEventLoop) -> _LoopClients:
    entry = _loops.get(loop)
    if entry is not None:
        return entry
    # A new loop: the moment to let go of loops closed since (a process that makes loops
    # one after another holds at most the live ones).
    _drop_closed_loops()
    entry = _LoopClients()
    closer = _close_at_shutdown(loop, entry)
    try:
        closer.__anext__().send(None)
    except StopIteration:
        entry.closer = closer
    with _lock:
        _loops[loop] = entry
    return entry


class Lease(Generic[T]):
    """``with Lease(key, make, close) as client:`` the running loop's client for ``key``,
    made by ``make`` on first use, held for one request.

    ``close`` is how the client is shut when the loop's clients are closed or it is evicted
    (only while no request holds it). Use it only in a coroutine on the loop that will use
    the client, and do not keep the client past the ``with``.
    """

    __slots__ = ("_entry", "_key", "_make", "_close")

    def __init__(self, key: Hashable, make: Callable[[], T], close: Callable[[T], Awaitable[None]]) -> None:
        self._key = key
        self._make = make
        self._close = close

    def __enter__(self) -> T:
        loop = asyncio.get_running_loop()
        clients = _loop_clients(loop)
        entry = clients.clients.get(self._key)
        if entry is None:
            if len(clients.clients) >= MAX_IDLE_CLIENTS:
                clients.evict_idle(loop, keep=MAX_IDLE_CLIENTS - 1)
            # No await between the look-up and the store: one loop, one thread, no race.
            entry = clients.clients[self._key] = _Entry(self._make(), self._close)
        entry.in_use += 1
        self._entry = entry
        return entry.client  # type: ignore[no-any-return]

    def __exit__(self, *exc: object) -> None:
        self._entry.in_use -= 1
        self._entry.last_used = time.monotonic()


async def close_shared_clients() -> None:
    """Close every shared client of the running loop (shutdown, tests); the next provider
    call on this loop makes new ones."""
    loop = asyncio.get_running_loop()
    with _lock:
        entry = _loops.pop(loop, None)
    if entry is None:
        return
    await entry.close()
    _abandon(entry)  # its shutdown closer has nothing left to close


def loop_clients() -> list[Any]:
    """The running loop's shared clients (tests and benchmarks look at them)."""
    entry = _loops.get(asyncio.get_running_loop())
    return [e.client for e in entry.clients.values()] if entry is not None else []


def held_loops() -> int:
    """How many event loops have shared clients in the cache (closed ones are dropped on use)."""
    with _lock:
        return len(_loops)
