"""Client-chosen URLs on real sockets: a listener on 127.0.0.1 must receive nothing from
a refused callback, a redirect is never followed (and never carries a credential), a
name whose DNS answer turns private is refused at send time, and a provider credential
goes only to the endpoint it was configured for."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from promptforge import config
from promptforge.adapters import outbound
from promptforge.adapters.providers import ChatRequest, ProviderError, ProviderUnavailable, close_shared_clients, open_provider
from promptforge.adapters.providers.openai_wire import OpenAIWireProvider


class Listener:
    """An HTTP server on 127.0.0.1 that records every request it gets."""

    def __init__(self, status: int = 200, location: str | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                listener.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    one = Listener()
    yield one
    one.close()


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:{port}/cb",
        "https://localhost:{port}/cb",
        "https://[::ffff:127.0.0.1]:{port}/cb",
        "http://127.0.0.1:{port}/cb",  # plain http without the local stack's exemption
        "https://169.254.169.254/computeMetadata/v1/",
        "https://10.0.0.1/",
        "https://[::1]:{port}/",
    ],
)
def test_a_refused_callback_url_never_reaches_the_listener(url: str, listener: Listener) -> None:
    with pytest.raises(outbound.BlockedAddress):
        outbound.post(url.format(port=listener.port), b"{}", {}, timeout_s=2)
    assert listener.requests == []


def test_a_name_that_resolves_to_a_private_address_is_refused_at_send_time(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.example.com":  # the DNS answer changed since init: now loopback
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", listener.port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(outbound.BlockedAddress, match="loopback"):
        outbound.post(f"https://hooks.example.com:{listener.port}/cb", b"{}", {}, timeout_s=2)
    assert listener.requests == []


def test_a_redirect_is_answered_not_followed(listener: Listener) -> None:
    bouncer = Listener(status=302, location=f"http://127.0.0.1:{listener.port}/internal")
    try:
        status = outbound.post(
            f"http://127.0.0.1:{bouncer.port}/cb", b"{}", {"X-Sig": "s"}, timeout_s=2, allow_loopback_http=True
        )
    finally:
        bouncer.close()
    assert status == 302 and len(bouncer.requests) == 1
    assert listener.requests == []


def test_the_sender_connects_to_the_address_it_checked(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    # Resolve once to a checked address: a second lookup would be a chance to rebind.
    lookups: list[str] = []
    real = socket.getaddrinfo

    def counting(host: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    status = outbound.post(f"http://localhost:{listener.port}/cb", b"{}", {}, timeout_s=2, allow_loopback_http=True)
    assert status == 200 and len(listener.requests) == 1
    assert lookups.count("localhost") == 1


def _settings(**changes: Any) -> config.Settings:
    return dataclasses.replace(config.load(), providers=("openai_compatible",), **changes)


def test_an_endpoint_credential_is_not_carried_through_a_redirect(listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    bouncer = Listener(status=307, location=f"http://127.0.0.1:{listener.port}/steal")
    monkeypatch.setenv("PROMPTFORGE_ENDPOINT_KEY_TEST", "sk-deployment-secret")
    endpoint = config.Endpoint("test", f"http://127.0.0.1:{bouncer.port}/v1", key_env="PROMPTFORGE_ENDPOINT_KEY_TEST")
    provider = open_provider("openai_compatible", _settings(endpoints={"test": endpoint}), "test")

    async def call() -> None:
        try:
            await provider.complete(ChatRequest("m", [{"role": "user", "content": "hi"}]))
        finally:
            await provider.aclose()

    try:
        with pytest.raises(ProviderError, match="redirect"):
            asyncio.run(call())
    finally:
        bouncer.close()
    assert bouncer.requests[0]["headers"]["Authorization"] == "Bearer sk-deployment-secret"
    assert listener.requests == []


def test_a_client_base_url_is_refused_unless_the_operator_allows_it_and_then_gets_no_key(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "sk-deployment-secret")
    url = f"http://127.0.0.1:{listener.port}/v1"
    with pytest.raises(ProviderUnavailable):
        open_provider("openai_compatible", _settings(), None, url)
    for private in (url, "https://127.0.0.1/v1", "https://169.254.169.254/v1", "https://10.0.0.1/v1", "https://[::1]/v1"):
        with pytest.raises(ProviderUnavailable, match="refused"):
            open_provider("openai_compatible", _settings(allow_client_base_urls=True), None, private)
    assert listener.requests == []


def test_a_guarded_wire_provider_refuses_a_name_with_a_private_address_before_connecting(listener: Listener) -> None:
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], params={})
    url = f"http://localhost:{listener.port}/v1"  # the name resolves to loopback

    async def call(guarded: bool) -> ProviderError:
        try:
            with pytest.raises(ProviderError) as caught:
                await OpenAIWireProvider(url, api_key=None, timeout_s=5, guarded=guarded).complete(request)
            return caught.value
        finally:
            await close_shared_clients()

    refused = asyncio.run(call(guarded=True))
    assert (refused.code, refused.retryable) == ("provider_error", True) and "connection failed" in refused.detail
    assert listener.requests == []
    # Unguarded, the same URL reaches the listener (whose empty answer is unreadable).
    reached = asyncio.run(call(guarded=False))
    assert "malformed" in reached.detail and len(listener.requests) == 1
