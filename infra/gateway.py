"""Local stand-in for API Gateway: one public port in front of the function servers.

Routes come from the service's own table, ``promptforge.api.routes`` (``match(method,
path)``), so a path is declared once. A matched request is proxied to the function's
functions-framework server with its method, path, query string, headers and body; the
answer comes back as is. Like API Gateway with ``path_translation: APPEND_PATH_TO_ADDRESS``,
the function sees the original path and query and parses its own path parameters.

Errors use the API's JSON envelope and never show a stack trace:

* no route for the method and path -> 404 ``not_found``;
* a body over 32 MiB (chunked or not) -> 413 ``payload_too_large``, read no further; a
  malformed request or chunked framing -> 400 ``invalid_request``;
* the function is not listening -> 502 ``internal``; it took too long -> 504 ``internal``.

Requests are served on threads, so a slow function does not hold up the others.

Run from the repository root::

    .venv/bin/python -m infra.gateway --port 8400 --functions-dir functions \
        --function jobs_init=8415 --function jobs_create=8416 --function jobs_list=8417
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import sys
import urllib.parse
from collections.abc import Callable
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger("promptforge.gateway")

HEALTH_PATH = "/healthz"

# The largest request body passed on to a function: Cloud Run's cap on an HTTP/1 request,
# which is what stands in front of every function in production. The functions enforce
# their own, smaller limits; this one keeps the gateway from buffering without end.
MAX_BODY_BYTES = 32 * 1024 * 1024
# Bounds on chunked framing lines, so a client cannot make one line or trailer endless.
_MAX_FRAMING_LINE = 4096
_MAX_TRAILERS = 64

# Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection, not the message:
# a proxy must not forward them. Content-Length is recomputed for the bytes we send.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)

# promptforge.api.routes.match: (method, path) -> (route, path params) | None
Matcher = Callable[[str, str], Any]


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    """The API's JSON error envelope."""
    return json.dumps({"error": {"code": code, "message": message, "details": details or {}}}).encode()


class BodyRefused(Exception):
    """A request body the gateway does not pass on; answered with the envelope."""

    def __init__(self, status: HTTPStatus, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def _too_large(limit: int) -> BodyRefused:
    return BodyRefused(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "payload_too_large",
        f"The body is over the limit of {limit} bytes",
        {"limit_bytes": limit},
    )


def _bad_framing(what: str) -> BodyRefused:
    return BodyRefused(HTTPStatus.BAD_REQUEST, "invalid_request", f"Malformed request: {what}.")


def load_routes(functions_dir: Path) -> ModuleType:
    """Import ``promptforge.api.routes`` from the functions source directory."""
    sys.path.insert(0, str(functions_dir.resolve()))
    from promptforge.api import routes  # the service's own route table

    return routes


def _forward_headers(headers: Message, drop: frozenset[str]) -> list[tuple[str, str]]:
    # Also drop whatever the Connection header itself names as hop-by-hop.
    named = {h.strip().lower() for v in headers.get_all("Connection", []) for h in v.split(",")}
    return [(k, v) for k, v in headers.items() if k.lower() not in drop and k.lower() not in named]


class GatewayHandler(BaseHTTPRequestHandler):
    """Proxies one request to the function that serves its route."""

    server: GatewayServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """Proxy a GET."""
        self._proxy()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET  # noqa: N815

    def _read_body(self) -> bytes:
        """The request body, chunked or not, read to no more than MAX_BODY_BYTES."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(MAX_BODY_BYTES)
        declared = (self.headers.get("Content-Length") or "0").strip()
        if not declared.isdigit():
            raise _bad_framing("Content-Length is not a number")
        if int(declared) > MAX_BODY_BYTES:
            raise _too_large(MAX_BODY_BYTES)
        return self.rfile.read(int(declared))

    def _read_chunked(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(_MAX_FRAMING_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _bad_framing("a chunk size is not a hex number") from None
            if size < 0:
                raise _bad_framing("a chunk size is negative")
            if size == 0:
                # Skip trailers up to the blank line that ends the message.
                for _ in range(_MAX_TRAILERS):
                    if self.rfile.readline(_MAX_FRAMING_LINE) in (b"\r\n", b"\n", b""):
                        return b"".join(chunks)
                raise _bad_framing("too many trailer lines")
            total += size
            if total > limit:
                raise _too_large(limit)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(_MAX_FRAMING_LINE)  # the CRLF after each chunk

    def _proxy(self) -> None:
        try:
            body = self._read_body()
        except BodyRefused as refused:
            # The rest of the body is unread, so this connection cannot carry another request.
            self.close_connection = True
            headers = [("Content-Type", "application/json"), ("Connection", "close")]
            self._send(refused.status, headers, error_body(refused.code, refused.message, refused.details))
            return
        url = urllib.parse.urlsplit(self.path)
        found = self.server.match(self.command, url.path)
        if found is None:
            if self.command == "GET" and url.path == HEALTH_PATH:
                self._send(HTTPStatus.OK, [("Content-Type", "text/plain")], b"ok\n")
                return
            self._send_error(HTTPStatus.NOT_FOUND, "not_found", f"No route for {self.command} {url.path}.")
            return
        route, _params = found
        port = self.server.functions.get(route.function)
        if port is None:
            # The route table names a function this stack does not serve: a wiring bug.
            logger.error("route %s %s -> %s, not served by this stack", route.method, route.path, route.function)
            self._send_error(HTTPStatus.BAD_GATEWAY, "internal", "The service is not available.")
            return

        # Like API Gateway, address the backend by its own host and keep the public one in
        # X-Forwarded-Host; http.client writes the new Host header.
        headers = _forward_headers(self.headers, _HOP_BY_HOP | {"host"})
        if self.headers.get("Host"):
            headers.append(("X-Forwarded-Host", self.headers["Host"]))
        client_ip = self.client_address[0]
        prior = self.headers.get("X-Forwarded-For")
        headers.append(("X-Forwarded-For", f"{prior}, {client_ip}" if prior else client_ip))
        headers.append(("X-Forwarded-Proto", "http"))
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", str(len(body))))

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.server.timeout_seconds)
        try:
            conn.putrequest(self.command, self.path, skip_accept_encoding=True)
            for k, v in headers:
                conn.putheader(k, v)
            conn.endheaders(body or None)
            resp = conn.getresponse()
            if resp.getheader("Content-Type", "").startswith("text/event-stream"):
                self._stream(resp)
                return
            resp_body = resp.read()
        except TimeoutError:
            logger.error(
                "%s %s -> %s:%d timed out after %.0fs",
                self.command,
                self.path,
                route.function,
                port,
                self.server.timeout_seconds,
            )
            self._send_error(HTTPStatus.GATEWAY_TIMEOUT, "internal", "The service did not answer in time.")
            return
        except OSError as exc:
            logger.error("%s %s -> %s:%d failed: %s: %s", self.command, self.path, route.function, port, type(exc).__name__, exc)
            self._send_error(HTTPStatus.BAD_GATEWAY, "internal", "The service is not available.")
            return
        finally:
            conn.close()
        logger.info("%s %s -> %s %d", self.command, self.path, route.function, resp.status)
        self._send(resp.status, _forward_headers(resp.msg, _HOP_BY_HOP), resp_body, reason=resp.reason)

    def _stream(self, resp: http.client.HTTPResponse) -> None:
        """Pass a Server-Sent Events answer through as it comes, event by event, until the
        function ends it or the client goes away. Either way the connection to the function
        closes (``_proxy``), so the function sees its stream end and gives back its lease."""
        self.send_response(resp.status, resp.reason)
        for k, v in _forward_headers(resp.msg, _HOP_BY_HOP | {"content-length"}):
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            while True:
                line = resp.readline()
                if not line:
                    return
                self.wfile.write(line)
                if line in (b"\n", b"\r\n"):
                    self.wfile.flush()
        except ConnectionError:  # the client went away: nothing more to send, or to answer
            logger.info("%s %s: the client closed the event stream", self.command, self.path)

    def _send_error(self, status: HTTPStatus, code: str, message: str) -> None:
        self._send(status, [("Content-Type", "application/json")], error_body(code, message))

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, reason: str | None = None) -> None:
        self.send_response(status, reason)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line or headers) in the envelope,
        without echoing the request; the connection closes after them."""
        self.close_connection = True
        # With a status line even when the request line was too broken to name a version
        # (http.server would then answer in HTTP/0.9: the body alone).
        self.request_version = self.protocol_version
        api_code = "not_found" if code == 404 else "invalid_request" if code < 500 else "internal"
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        headers = [("Content-Type", "application/json"), ("Connection", "close")]
        self._send(code, headers, error_body(api_code, f"{phrase}."))

    def send_response(self, code: int, message: str | None = None) -> None:
        """Send the status line without the Server/Date headers http.server adds.

        The function's own Date and Server headers are forwarded instead.
        """
        self.log_request(code)
        self.send_response_only(code, message)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        """Access log at debug level; proxied requests are logged with their function."""
        logger.debug("%s " + format, self.address_string(), *args)


class GatewayServer(ThreadingHTTPServer):
    """Threading HTTP server carrying the route matcher and the function ports."""

    daemon_threads = True
    # The listen backlog (socketserver's default is 5). A burst of connections (one client
    # opening dozens of event streams and inits at once) must not fill it: the kernel then
    # drops new connections, everyone's, and their clients retry a second or more later.
    request_queue_size = 1024

    def __init__(
        self,
        address: tuple[str, int],
        match: Matcher,
        functions: dict[str, int],
        timeout_seconds: float,
    ) -> None:
        super().__init__(address, GatewayHandler)
        self.match = match
        self.functions = functions
        self.timeout_seconds = timeout_seconds


def _function_arg(value: str) -> tuple[str, int]:
    name, sep, port = value.partition("=")
    if not sep or not name or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=PORT, got {value!r}")
    return name, int(port)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the gateway's command line."""
    p = argparse.ArgumentParser(description="Local API Gateway for PromptForge")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--functions-dir", type=Path, default=Path("functions"), help="directory holding promptforge/")
    p.add_argument("--function", type=_function_arg, action="append", default=[], metavar="NAME=PORT")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a function (default 60)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    routes = load_routes(args.functions_dir)
    functions = dict(args.function)
    unserved = sorted({r.function for r in routes.ROUTES} - functions.keys())
    if unserved:
        # Not fatal (the route answers 502), but say so at start, where it is easy to see.
        logger.warning("routes name functions this gateway has no port for: %s", ", ".join(unserved))
    server = GatewayServer((args.host, args.port), routes.match, functions, args.timeout)
    for r in routes.ROUTES:
        logger.info("route %-6s %-32s -> %s (port %s)", r.method, r.path, r.function, functions.get(r.function, "-"))
    logger.info("listening on http://%s:%d", args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
