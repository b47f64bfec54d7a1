"""The in-process fake service behind real sockets: an HTTP/1.1 server on 127.0.0.1 for its
API and another for its signed URLs, so that a client's requests go through httpx's real
transport (connections, streamed bodies, chunked uploads refused, Content-Length) and not
through ``MockTransport``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.client.fake_service import FakeService

# Headers that belong to one hop of the connection, written by the server itself.
_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeService


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host, port = str(self.server.server_address[0]), self.server.server_address[1]
        request = httpx.Request(
            self.command, f"http://{host}:{port}{self.path}", headers=list(self.headers.items()), content=body
        )
        try:
            response = self.server.fake.handle(request)
        except httpx.TransportError:
            # A fault the test asked for: drop the connection without an answer.
            self.close_connection = True
            return
        response.read()
        self.send_response(response.status_code)
        for name, value in response.headers.multi_items():
            if name.lower() not in _HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.content)))
        self.end_headers()
        self.wfile.write(response.content)

    # The names http.server dispatches on.
    do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def serve(fake_factory: type[FakeService] = FakeService) -> Iterator[tuple[str, FakeService]]:
    """A fake service on two real ports: its API base URL, and the fake (whose signed URLs
    point at the second port)."""
    api, storage = _Server(("127.0.0.1", 0), _Handler), _Server(("127.0.0.1", 0), _Handler)
    fake = fake_factory(storage=f"http://127.0.0.1:{storage.server_address[1]}")
    api.fake = storage.fake = fake
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True) for s in (api, storage)]
    for thread in threads:
        thread.start()
    try:
        yield f"http://127.0.0.1:{api.server_address[1]}", fake
    finally:
        for server in (api, storage):
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=5)
