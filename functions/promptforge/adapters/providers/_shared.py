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
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

# Connections per shared client: aiohttp's 0 is "no limit". A pool limit below the number
# of requests in flight would queue requests inside the client, on the clock of their
# timeout; how many are in flight is the worker's decision (its pacing and concurrency).
POOL_LIMIT = 0
# Seconds an idle connection is kept for the next request (aiohttp's default is 15 s; a
# worker between two bursts of its rate limit can be idle longer than that).
KEEPALIVE_S = 60.0


class _LoopClients:
    """The clients of one event loop, and the async generator that closes them when the
    loop shuts its async generators down."""

    def __init__(self) -> None:
        self.clients: dict[Hashable, tuple[Any, Callable[[Any], Awaitable[None]]]] = {}
        self.abandoned = False
        self.closer: AsyncGenerator[None, None] | None = None

    async def close(self) -> None:
        clients, self.clients = self.clients, {}
        for client, close in clients.values():
            # One client failing to close must not keep the others open.
            try:
                await close(client)
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
    """Let go of a closed loop's clients without awaiting anything, and finish its closer
    generator here so that the garbage collector does not try to schedule it on that loop."""
    entry.abandoned = True
    entry.clients = {}
    closer, entry.closer = entry.closer, None
    if closer is not None:
        try:
            closer.aclose().send(None)
        except (StopIteration, RuntimeError):
            pass


def client(key: Hashable, make: Callable[[], T], close: Callable[[T], Awaitable[None]]) -> T:
    """The running loop's client for ``key``, made by ``make`` on first use.

    ``close`` is how it is shut when the loop's clients are closed. Call it only from a
    coroutine on the loop that will use the client.
    """
    loop = asyncio.get_running_loop()
    _drop_closed_loops()
    with _lock:
        entry = _loops.get(loop)
        if entry is None:
            entry = _loops[loop] = _LoopClients()
            fresh = True
        else:
            fresh = False
    if fresh:
        closer = _close_at_shutdown(loop, entry)
        try:
            closer.__anext__().send(None)
        except StopIteration:
            entry.closer = closer
    found = entry.clients.get(key)
    if found is None:
        # No await between the look-up and the store: one loop, one thread, no race.
        made = make()
        entry.clients[key] = (made, close)  # type: ignore[assignment]
        return made
    return found[0]  # type: ignore[no-any-return]


async def close_shared_clients() -> None:
    """Close every shared client of the running loop (shutdown, tests); the next provider
    call on this loop makes new ones."""
    loop = asyncio.get_running_loop()
    _drop_closed_loops()
    with _lock:
        entry = _loops.pop(loop, None)
    if entry is None:
        return
    await entry.close()
    closer, entry.closer = entry.closer, None
    if closer is not None:
        await closer.aclose()


def loop_clients() -> list[Any]:
    """The running loop's shared clients (tests and benchmarks look at them)."""
    with _lock:
        entry = _loops.get(asyncio.get_running_loop())
    return [made for made, _ in entry.clients.values()] if entry is not None else []


def held_loops() -> int:
    """How many event loops have shared clients in the cache (closed ones are dropped on use)."""
    with _lock:
        return len(_loops)
