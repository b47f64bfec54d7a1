"""A small HTTP/1.1 client for one endpoint: JSON POSTs over kept-alive connections.

The wire providers send one kind of request to one URL, thousands of times a second from
one process: a POST of a JSON body, answered by a JSON body. aiohttp spent ~130 us of
CPU on each (its request and response objects, timers, tracing hooks, cookie and header
machinery), most of process_chunk's CPU per prompt at an instant provider; this client
spends ~40 us (``infra/bench/provider_cpu.py``). What it does, it does by the RFC 9112
rules: plain TCP or TLS (certificates and host name verified), a ``Content-Length`` or
``chunked`` answer or one ended by the connection closing, interim 1xx answers skipped,
connections reused only when the answer says they may be, and kept idle at most
``keepalive_s`` (less than the 5 s after which common servers close an idle one). What it
does not do: redirects (never followed here), proxies (aiohttp here used none either),
compression (it asks for ``identity``), HTTP/2.

Every failure is an exception the caller maps: ``TimeoutError`` (no answer within
``timeout_s``, or no connection within ``connect_s``), ``OSError`` (connecting, a broken
connection, a refused address), :class:`BadResponse` (an answer that is not HTTP/1.x or
breaks its limits). A connection that failed, or was abandoned mid-request (a timeout, a
cancelled task), is closed, never reused.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable, Mapping

import yarl

# An answer's head (status line and headers) and body may be at most this large: a
# server cannot make the worker hold more than this per request.
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class BadResponse(OSError):
    """The server's answer is not one this client can read."""


# A check of every address a host resolves to, before connecting: the problem, or None.
AddressCheck = Callable[[str], str | None]


class _Response:
    """An answer being read (one per request, fed by the connection)."""

    __slots__ = ("status", "headers", "body", "keep_alive", "_left", "_chunked", "_until_close", "_stage")

    def __init__(self, status: int, headers: dict[str, str], version: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = bytearray()
        connection = headers.get("connection", "").lower()
        self.keep_alive = version == b"HTTP/1.1" and "close" not in connection
        coding = headers.get("transfer-encoding", "").lower()
        self._chunked = False
        self._until_close = False
        self._left = 0
        self._stage = "data"
        if status in (204, 304):
            pass
        elif coding:
            if coding.rsplit(",", 1)[-1].strip() != "chunked":
                # A coding other than chunked last: the body ends with the connection.
                self._until_close = True
                self.keep_alive = False
            else:
                self._chunked = True
                self._stage = "size"
        elif "content-length" in headers:
            try:
                self._left = int(headers["content-length"])
            except ValueError:
                raise BadResponse("unreadable content-length") from None
            if self._left < 0 or self._left > MAX_BODY_BYTES:
                raise BadResponse("content-length out of bounds")
        else:
            self._until_close = True
            self.keep_alive = False

    @property
    def until_close(self) -> bool:
        return self._until_close

    def feed(self, data: bytearray) -> bool:
        """Take what belongs to the body from ``data`` (consumed in place); True once the
        answer is complete."""
        if self._until_close:
            self.body += data
            del data[:]
            if len(self.body) > MAX_BODY_BYTES:
                raise BadResponse("answer too large")
            return False
        if not self._chunked:
            take = min(self._left, len(data))
            self.body += data[:take]
            del data[:take]
            self._left -= take
            return self._left == 0
        return self._feed_chunked(data)

    def _feed_chunked(self, data: bytearray) -> bool:
        while True:
            if self._stage == "data":
                take = min(self._left, len(data))
                self.body += data[:take]
                del data[:take]
                self._left -= take
                if self._left:
                    return False
                self._stage = "crlf"
            end = data.find(b"\r\n")
            if end < 0:
                if len(data) > MAX_HEAD_BYTES:
                    raise BadResponse("chunk framing line too long")
                return False
            line = bytes(data[:end])
            del data[: end + 2]
            if self._stage == "crlf":
                if line:
                    raise BadResponse("chunk not followed by CRLF")
                self._stage = "size"
            elif self._stage == "size":
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadResponse("unreadable chunk size") from None
                if size < 0 or len(self.body) + size > MAX_BODY_BYTES:
                    raise BadResponse("answer too large")
                if size == 0:
                    self._stage = "trailers"
                else:
                    self._left, self._stage = size, "data"
            elif not line:  # the blank line after the trailers (ignored) ends the answer
                return True


class _Connection(asyncio.Protocol):
    """One kept-alive connection, reading at most one answer at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._buffer = bytearray()
        self._response: _Response | None = None
        self._waiter: asyncio.Future[_Response] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def expect(self, waiter: asyncio.Future[_Response]) -> None:
        self._waiter = waiter
        self._response = None

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.abort()  # bytes nobody asked for: the connection cannot be trusted
            return
        self._buffer += data
        try:
            self._parse()
        except BadResponse as exc:
            self._fail(exc)

    def _parse(self) -> None:
        while True:
            if self._response is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_HEAD_BYTES:
                        raise BadResponse("answer head too large")
                    return
                if end > MAX_HEAD_BYTES:
                    raise BadResponse("answer head too large")
                head = bytes(self._buffer[:end])
                del self._buffer[: end + 4]
                response = _head(head)
                if 100 <= response.status < 200:
                    continue  # an interim answer (100 Continue, 103 Early Hints): the real one follows
                self._response = response
            if self._response.feed(self._buffer):
                self._complete()
            return

    def _complete(self) -> None:
        response, waiter = self._response, self._waiter
        self._response = self._waiter = None
        if self._buffer or response is None or not response.keep_alive:
            self.abort()  # bytes beyond the answer, or the server will close: no reuse
        if waiter is not None and not waiter.done() and response is not None:
            waiter.set_result(response)

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        self.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def eof_received(self) -> bool:
        self.closed = True  # the server is done with it: never handed out again
        if self._response is not None and self._response.until_close and self._waiter is not None:
            self._complete()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._response is not None and self._response.until_close and self._waiter is not None:
            self._complete()
        elif self._waiter is not None:
            self._fail(exc or ConnectionResetError("the server closed the connection before answering"))

    @property
    def unusable(self) -> bool:
        return self.closed or self.transport is None or self.transport.is_closing()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _head(head: bytes) -> _Response:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise BadResponse("not an HTTP/1.x answer")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise BadResponse("unreadable header line")
        # The first of a repeated header, as a multidict's get gives it.
        headers.setdefault(name.decode("latin-1").lower(), value.strip().decode("latin-1"))
    return _Response(int(parts[1]), headers, parts[0])


class WireClient:
    """POSTs to one URL, over a pool of kept-alive connections (no limit on how many:
    how many requests are in flight is the worker's decision)."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        timeout_s: float,
        connect_s: float = 10.0,
        keepalive_s: float = 4.0,
        check_address: AddressCheck | None = None,
    ) -> None:
        parsed = yarl.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.raw_host:
            raise ValueError("an http or https URL is needed")
        self._tls = parsed.scheme == "https"
        self._host = parsed.raw_host  # IDNA-encoded, no brackets: what connecting needs
        self._port = parsed.port or (443 if self._tls else 80)
        # Percent-encoded, and the port only when it is not the scheme's (as aiohttp sends).
        target, authority = parsed.raw_path_qs or "/", parsed.host_port_subcomponent or self._host
        if any(c in target + authority for c in " \r\n\t") or any("\r" in v or "\n" in v for v in headers.values()):
            raise ValueError("the URL or a header cannot go in an HTTP/1.1 request as it is")
        fixed = {
            "Host": authority,
            "User-Agent": "PromptForge",
            "Accept": "application/json",
            "Accept-Encoding": "identity",
            "Content-Type": "application/json",
            **headers,
        }
        self._head = (f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fixed.items())).encode("latin-1")
        self._timeout_s = timeout_s
        self._connect_s = connect_s
        self._keepalive_s = keepalive_s
        self._check = check_address
        self._ssl: ssl.SSLContext | None = None
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._closed = False

    async def post(self, body: bytes) -> tuple[int, Mapping[str, str], bytes]:
        """``(status, headers with lower-case names, body)`` of the answer to ``body``."""
        if self._closed:
            raise OSError("the client is closed")
        loop = asyncio.get_running_loop()
        conn: _Connection | None = None
        waiter: asyncio.Future[_Response] = loop.create_future()
        try:
            async with asyncio.timeout(self._timeout_s):
                conn = self._take_idle() or await self._connect(loop)
                self._busy.add(conn)
                conn.expect(waiter)
                assert conn.transport is not None
                conn.transport.write(self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                response = await waiter
        except BaseException:
            waiter.cancel()  # so that the connection's end is not reported to no one
            if conn is not None:
                conn.abort()  # half a request or half an answer on it: never reused
            raise
        finally:
            if conn is not None:
                self._busy.discard(conn)
        if not conn.closed and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        elif not conn.closed:
            conn.abort()
        return response.status, response.headers, bytes(response.body)

    def _take_idle(self) -> _Connection | None:
        # The most recently used first; the ones idle too long (the oldest) are closed.
        now = time.monotonic()
        while self._idle and (self._idle[0].unusable or now - self._idle[0].idle_since >= self._keepalive_s):
            self._idle.pop(0).abort()
        while self._idle:
            conn = self._idle.pop()
            if not conn.unusable:
                return conn
            conn.abort()
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        if self._tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        async with asyncio.timeout(self._connect_s):
            hosts = [self._host] if self._check is None else await self._checked_addresses(loop)
            error: OSError | None = None
            for host in hosts:
                try:
                    _, conn = await loop.create_connection(
                        _Connection,
                        host,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=self._host if self._tls else None,
                    )
                    return conn
                except OSError as exc:
                    error = exc
            raise error or OSError("the endpoint's host has no address")

    async def _checked_addresses(self, loop: asyncio.AbstractEventLoop) -> list[str]:
        """The host's addresses, every one checked: the connection goes to these, with no
        second lookup that could answer otherwise."""
        assert self._check is not None
        found = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        for address in addresses:
            problem = self._check(address)
            if problem:
                raise OSError(f"the endpoint's host resolves to {problem}")
        return addresses

    async def close(self) -> None:
        """Close every connection (one in use fails its request)."""
        self._closed = True
        for conn in [*self._idle, *self._busy]:
            conn.abort()
        self._idle.clear()
