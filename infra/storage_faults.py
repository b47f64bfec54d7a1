"""A fault-injecting proxy in front of the storage emulator, for tests on the local stack.

Every request is passed to fake-gcs-server unchanged, except compose requests
(``POST .../o/NAME/compose``), which a :class:`ComposePolicy` may answer with a 503,
before passing them on or after (the compose took effect, the caller is told it did
not), and may hold while the test kills the worker that sent them. Listens on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


@dataclass
class ComposePolicy:
    """Which compose requests fail: every ``fail_every``-th one (0: none), alternately
    before and after it reached the emulator; ``hold`` is set on the first compose into a
    temporary object, and the request waits until ``release`` is set."""

    fail_every: int = 0
    scratch_marker: str = "/scratch/"
    seen: int = 0
    failed_before: int = 0
    failed_after: int = 0
    hold: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    hold_first_scratch: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def decide(self, path: str) -> str:
        """``pass``, ``fail-before``, ``fail-after`` or ``hold``."""
        with self._lock:
            self.seen += 1
            if self.hold_first_scratch and self.scratch_marker in path.replace("%2F", "/") and not self.hold.is_set():
                self.hold.set()
                return "hold"
            if self.fail_every and self.seen % self.fail_every == 0:
                if (self.failed_before + self.failed_after) % 2 == 0:
                    self.failed_before += 1
                    return "fail-before"
                self.failed_after += 1
                return "fail-after"
            return "pass"


class StorageFaultProxy:
    def __init__(self, upstream: str, policy: ComposePolicy) -> None:
        self.policy = policy
        target = urlparse(upstream)
        host, port = target.hostname or "127.0.0.1", target.port or 80
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def _forward(self) -> tuple[int, list[tuple[str, str]], bytes]:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(host, port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    res = conn.getresponse()
                    return res.status, [(k, v) for k, v in res.getheaders() if k.lower() not in _HOP], res.read()
                finally:
                    conn.close()

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                try:
                    self.send_response(status)
                    for k, v in headers:
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller was killed while its request was held

            def _unavailable(self) -> None:
                self._reply(503, [("Content-Type", "application/json")], b'{"error": {"code": 503, "message": "injected"}}')

            def _handle(self) -> None:
                if self.command == "POST" and self.path.split("?")[0].endswith("/compose"):
                    decision = proxy.policy.decide(self.path)
                    if decision == "hold":
                        proxy.policy.release.wait(60)
                    if decision == "fail-before":
                        self.rfile.read(int(self.headers.get("Content-Length") or 0))
                        self._unavailable()
                        return
                    status, headers, body = self._forward()
                    if decision == "fail-after":
                        self._unavailable()
                        return
                    self._reply(status, headers, body)
                    return
                self._reply(*self._forward())

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815 (http.server's names)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StorageFaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.policy.release.set()
        self._server.shutdown()
        self._server.server_close()
