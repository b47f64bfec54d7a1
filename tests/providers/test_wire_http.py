"""The wire providers' HTTP/1.1 client against a real TCP (and TLS) server that answers
each request with scripted bytes: every way HTTP/1.1 frames an answer, answers split
anywhere, connections reused only when they may be, and every broken answer an error.

The client against the fake LLM server (faults, timeouts, resets, 429s) is in
``test_providers.py`` and ``test_shared_clients.py``, through the providers."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvloop

from infra.bench.tls_front import make_certificate
from promptforge.adapters.providers import _wire_http
from promptforge.adapters.providers._wire_http import BadResponse, WireClient

OK_BODY = b'{"ok":true}'


def ok(body: bytes = OK_BODY, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body)


@dataclass
class Answer:
    pieces: list[bytes]  # sent one by one (with a pause, so the client sees them apart)
    close: bool = False  # close the connection after the pieces
    hang: bool = False  # send nothing, hold the connection until the server stops


class ScriptedServer:
    """Answers the requests it reads, on whatever connection, with the next Answer."""

    def __init__(self, script: list[Answer], tls: ssl.SSLContext | None = None) -> None:
        self.script = list(script)
        self.requests: list[bytes] = []
        self.accepted = 0
        self.closed_by_client = 0
        self._closed_changed = threading.Condition()
        self._tls = tls
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_side=True)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        with self._closed_changed:
                            self.closed_by_client += 1
                            self._closed_changed.notify_all()
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
                )
                while len(buf) < length:
                    buf += sock.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buf[:length])
                buf = buf[length:]
                answer = self.script.pop(0)
                if answer.hang:
                    self._stop.wait(30)
                    return
                for piece in answer.pieces:
                    sock.sendall(piece)
                    time.sleep(0.005)
                if answer.close:
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            sock.close()

    def wait_closed_by_client(self, count: int, timeout_s: float = 10.0) -> int:
        """Wait until the server has seen ``count`` connections closed by the client (its
        serving thread sees the close some time after the client made it); return how many."""
        with self._closed_changed:
            self._closed_changed.wait_for(lambda: self.closed_by_client >= count, timeout_s)
            return self.closed_by_client

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(*script: Answer, tls: ssl.SSLContext | None = None) -> ScriptedServer:
        servers.append(ScriptedServer(list(script), tls))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(params=["uvloop", "asyncio"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Runs a coroutine on the chunk worker's loop (uvloop) or asyncio's own."""
    return uvloop.run if request.param == "uvloop" else asyncio.run


def client(server: ScriptedServer, scheme: str = "http", host: str = "127.0.0.1", **kw: Any) -> WireClient:
    return WireClient(
        f"{scheme}://{host}:{server.port}/v1/chat/completions?x=1", {"Authorization": "Bearer k"}, **{"timeout_s": 5, **kw}
    )


async def posts(wire: WireClient, *bodies: bytes) -> list[tuple[int, Any, bytes]]:
    try:
        return [await wire.post(body) for body in bodies]
    finally:
        await wire.close()


def test_a_request_is_one_well_formed_post_and_the_connection_is_reused(serve: Any, run: Any) -> None:
    server = serve(
        Answer([ok(extra=b"X-RateLimit-Remaining-Requests: 7\r\nx-ratelimit-remaining-requests: 9\r\n")]), Answer([ok()])
    )
    answers = run(posts(client(server), b'{"a":1}', b'{"b":2}'))
    assert [(a[0], a[2]) for a in answers] == [(200, OK_BODY)] * 2
    assert answers[0][1]["x-ratelimit-remaining-requests"] == "7"  # lower-case names, the first of a repeat
    assert server.accepted == 1
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions?x=1 HTTP/1.1" and body == b'{"a":1}'
    assert {f"Host: 127.0.0.1:{server.port}".encode(), b"Authorization: Bearer k", b"Content-Length: 7"} <= set(lines)
    assert b"Content-Type: application/json" in lines and b"Accept-Encoding: identity" in lines


def test_answers_split_anywhere_chunked_or_not_are_read_whole(serve: Any, run: Any) -> None:
    chunked = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{"ok\r\n7\r\n":true}\r\n0\r\nX-Trailer: t\r\n\r\n'
    server = serve(
        Answer([bytes([b]) for b in ok()]),  # a byte at a time
        Answer([chunked[:30], chunked[30:47], chunked[47:]]),
        Answer([b"HTTP/1.1 100 Continue\r\n\r\n", ok()]),  # an interim answer first
        Answer([b"HTTP/1.1 204 No Content\r\n\r\n"]),
    )
    answers = run(posts(client(server), b"1", b"2", b"3", b"4"))
    assert [(a[0], a[2]) for a in answers] == [(200, OK_BODY), (200, OK_BODY), (200, OK_BODY), (204, b"")]
    assert server.accepted == 1  # every one of them leaves the connection reusable


def test_an_answer_ended_by_the_close_or_saying_close_is_not_followed_on_its_connection(serve: Any, run: Any) -> None:
    server = serve(
        Answer([b"HTTP/1.1 200 OK\r\n\r\n", OK_BODY], close=True),  # no length: the body ends with the connection
        Answer([ok(extra=b"Connection: close\r\n")]),
        Answer([b"HTTP/1.0 200 OK\r\nContent-Length: 11\r\n\r\n" + OK_BODY]),
        Answer([ok()]),
    )
    answers = run(posts(client(server), b"1", b"2", b"3", b"4"))
    assert [a[2] for a in answers] == [OK_BODY] * 4
    assert server.accepted == 4


def test_a_connection_the_server_closed_while_idle_or_kept_too_long_is_not_used(serve: Any, run: Any) -> None:
    server = serve(Answer([ok()], close=True), Answer([ok()]), Answer([ok()]))

    async def go() -> list[bytes]:
        wire = client(server, keepalive_s=0.3)
        try:
            first = await wire.post(b"1")
            await asyncio.sleep(0.1)  # the server's close reaches the client
            second = await wire.post(b"2")
            await asyncio.sleep(0.4)  # past the keep-alive: closed by the client
            third = await wire.post(b"3")
            # Counted while the client is still open, so it is the connection kept too long
            # that the client closed, not the one its own close() ends below.
            closed = await asyncio.to_thread(server.wait_closed_by_client, 1)
            return [first[2], second[2], third[2], closed]
        finally:
            await wire.close()

    *bodies, closed_while_open = run(go())
    assert bodies == [OK_BODY] * 3
    assert server.accepted == 3
    assert closed_while_open == 1  # the connection kept too long was closed, not left open


@pytest.mark.parametrize(
    "answer",
    [
        Answer([b"SMTP ready\r\n\r\n"]),
        Answer([b"HTTP/1.1 2000 OK\r\n\r\n"]),
        Answer([b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n"]),
        Answer([b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"]),
        Answer([b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"]),
        Answer([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]),
        Answer([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n"]),
        Answer([b"HTTP/1.1 200 OK\r\nX: " + b"a" * (_wire_http.MAX_HEAD_BYTES + 10)]),
        Answer([ok() + b"HTTP/1.1 200 OK\r\n"]),  # bytes beyond the answer: read, then the connection dropped
    ],
    ids=[
        "not-http",
        "bad-status",
        "bad-header",
        "bad-length",
        "huge-length",
        "bad-chunk-size",
        "bad-chunk-end",
        "huge-head",
        "extra",
    ],
)
def test_an_unreadable_answer_is_an_error_and_its_connection_is_dropped(serve: Any, run: Any, answer: Answer) -> None:
    server = serve(answer, Answer([ok()]))

    async def go() -> tuple[BaseException | None, bytes]:
        wire = client(server)
        try:
            try:
                await wire.post(b"1")
                error = None
            except OSError as exc:
                error = exc
            return error, (await wire.post(b"2"))[2]
        finally:
            await wire.close()

    error, after = run(go())
    if answer.pieces[0].startswith(ok()):
        assert error is None
    else:
        assert isinstance(error, BadResponse), error
    assert after == OK_BODY and server.accepted == 2


def test_a_connection_closed_before_the_answer_ends_is_a_connection_error(serve: Any, run: Any) -> None:
    server = serve(Answer([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"], close=True), Answer([], close=True))
    wire = client(server)

    async def go() -> list[type[BaseException]]:
        raised: list[type[BaseException]] = []
        for body in (b"1", b"2"):
            with pytest.raises(OSError) as caught:
                await wire.post(body)
            raised.append(type(caught.value))
        await wire.close()
        return raised

    assert all(issubclass(t, ConnectionError) for t in run(go()))


def test_no_answer_in_time_is_a_timeout_and_the_connection_is_closed(serve: Any, run: Any) -> None:
    server = serve(Answer([], hang=True))

    async def go() -> float:
        wire = client(server, timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await wire.post(b"1")
        await wire.close()
        return time.monotonic() - started

    assert run(go()) < 5
    assert server.accepted == 1


def test_a_connection_that_cannot_be_made_is_an_os_error(run: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens on it once closed
    wire = WireClient(f"http://127.0.0.1:{port}/v1", {}, timeout_s=5)
    with pytest.raises(OSError):
        run(posts(wire, b"1"))


def test_a_cancelled_request_leaves_no_connection_for_reuse(serve: Any, run: Any) -> None:
    server = serve(Answer([], hang=True), Answer([ok()]))

    async def go() -> bytes:
        wire = client(server)
        task = asyncio.ensure_future(wire.post(b"1"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return (await posts(wire, b"2"))[0][2]

    assert run(go()) == OK_BODY
    assert server.accepted == 2


def test_tls_verifies_the_certificate_and_the_host_name(
    serve: Any, run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = make_certificate(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = serve(Answer([ok()]), Answer([ok()]), tls=tls)
    # Untrusted: the handshake fails, nothing is sent.
    with pytest.raises(ssl.SSLCertVerificationError):
        run(posts(client(server, scheme="https"), b"1"))
    assert server.requests == []
    # Trusted (the certificate is its own CA), for 127.0.0.1 and localhost.
    trusting = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda: trusting(cafile=str(cert)))
    assert run(posts(client(server, scheme="https"), b"1"))[0][2] == OK_BODY
    assert run(posts(client(server, scheme="https", host="localhost"), b"2"))[0][2] == OK_BODY


@pytest.mark.parametrize("url", ["ftp://h/v1", "http:///v1"])
def test_a_url_or_header_that_cannot_be_sent_is_refused_up_front(url: str) -> None:
    with pytest.raises(ValueError):
        WireClient(url, {}, timeout_s=1)
    with pytest.raises(ValueError):
        WireClient("http://h/v1", {"Authorization": "Bearer k\r\nX: y"}, timeout_s=1)


def test_a_path_is_sent_percent_encoded(serve: Any, run: Any) -> None:
    server = serve(Answer([ok()]))
    run(posts(WireClient(f"http://127.0.0.1:{server.port}/v1/ä b", {}, timeout_s=5), b"1"))
    assert server.requests[0].startswith(b"POST /v1/%C3%A4%20b HTTP/1.1\r\n")
