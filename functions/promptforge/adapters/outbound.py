"""Requests to URLs a client chose: resolved, checked, pinned, never redirected.

The name is resolved at the moment of use (a DNS answer can change between init and
send), every address it resolves to must pass :func:`~promptforge.domain.netguard.
address_problem`, and the connection goes to the address that was checked, not to a
second lookup of the name. TLS still verifies the certificate for the name. Redirects
are not followed: a 3xx is the receiver's answer.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from ..domain.netguard import IPAddress, address_problem, parse_address, url_problem
from ..service.ports import BlockedAddress

__all__ = ["BlockedAddress", "HttpOutbound", "check_url", "check_url_form", "post", "resolve_checked"]


def resolve_checked(host: str, port: int, allow_loopback: bool = False) -> list[IPAddress]:
    """Every address ``host`` resolves to, when all of them may be reached."""
    literal = parse_address(host)
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise BlockedAddress("the host name does not resolve") from None
        found = []
        for info in infos:
            address = parse_address(str(info[4][0]))
            if address is not None and address not in found:
                found.append(address)
    if not found:
        raise BlockedAddress("the host name does not resolve")
    for address in found:
        problem = address_problem(address, allow_loopback)
        if problem:
            raise BlockedAddress(f"the host resolves to {problem}")
    return found


def check_url_form(url: str, allow_loopback_http: bool = False) -> None:
    problem = url_problem(url, allow_loopback_http)
    if problem:
        raise BlockedAddress(f"the URL {problem}")


def check_url(url: str, allow_loopback_http: bool = False) -> None:
    """Raise :class:`BlockedAddress` unless ``url`` may be sent to now (resolving it)."""
    check_url_form(url, allow_loopback_http)
    _target(url, allow_loopback_http)


def _target(url: str, allow_loopback_http: bool) -> tuple[str, int, IPAddress]:
    """The URL's host and port, and the checked address to connect to."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # Loopback only for the plain-http URLs a local stack allows; https never reaches it.
    loopback = allow_loopback_http and parts.scheme == "http"
    return host, port, resolve_checked(host, port, loopback)[0]


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address, verifying the certificate for the URL's name."""

    def __init__(self, host: str, address: IPAddress, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((str(self._address), self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, address: IPAddress, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float, allow_loopback_http: bool = False) -> int:
    """POST ``body`` to a client's URL; returns the status (a 3xx is not followed).

    Raises :class:`BlockedAddress` for a URL that may not be reached and ``OSError`` for
    network failures."""
    check_url_form(url, allow_loopback_http)
    parts = urlsplit(url)
    host, port, address = _target(url, allow_loopback_http)
    conn_type: Any = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    conn = conn_type(host, address, port, timeout_s)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", path, body=body, headers={**headers, "Content-Length": str(len(body))})
        response = conn.getresponse()
        response.read(64 * 1024)  # the receiver's answer is not ours to keep
        return int(response.status)
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {type(exc).__name__}") from None
    finally:
        conn.close()


class HttpOutbound:
    """The :class:`~promptforge.service.ports.Outbound` port over this module."""

    def check_url(self, url: str, allow_loopback_http: bool = False) -> None:
        check_url(url, allow_loopback_http)

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float, allow_loopback_http: bool = False) -> int:
        return post(url, body, headers, timeout_s, allow_loopback_http)
