"""One HTTP client per event loop and provider configuration, seen from the wire: a TCP
proxy in front of the fake LLM counts the connections the providers open and sees them
closed, so "shared" means one pool of connections, not one Python object."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from promptforge.adapters.providers import ChatRequest, ProviderError, _shared, close_shared_clients
from tests.providers.conftest import PROVIDERS, FakeServer, opener_for

REQUEST = ChatRequest(model="model-x", messages=[{"role": "user", "content": "hello"}], params={"max_tokens": 5})


class CountingProxy:
    """Forwards TCP connections to the fake LLM, counting those accepted and those still
    open. With ``drop`` set, it reads a request and closes the connection unanswered."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepted = 0
        self.open = 0
        self.drop = False
        # Notified on every change of the counts, for wait_until.
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count(accepted=1, open=1)
        try:
            if self.drop:
                await reader.read(65536)
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            writer.close()
            self._count(open=-1)

    def _count(self, accepted: int = 0, open: int = 0) -> None:  # noqa: A002 (the count's name)
        with self._changed:
            self.accepted += accepted
            self.open += open
            self._changed.notify_all()

    def wait_until(self, condition: Callable[[], bool]) -> bool:
        """Whether ``condition`` holds within a few seconds (closes reach the proxy's loop
        a moment after the client makes them): checked at each change of the counts."""
        with self._changed:
            return self._changed.wait_for(condition, timeout=10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
def proxy(fake: FakeServer) -> Iterator[CountingProxy]:
    started = CountingProxy(int(urlsplit(fake.base_url).port or 0))
    yield started
    started.stop()


@pytest.fixture
def via_proxy(proxy: CountingProxy, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``via_proxy(name)``: the provider opened by ``open_provider``, pointed at the proxy."""
    return opener_for(f"http://127.0.0.1:{proxy.port}", monkeypatch)


@pytest.mark.parametrize("name", PROVIDERS)
def test_providers_of_one_configuration_share_one_client_and_its_connection(
    name: str, via_proxy: Any, proxy: CountingProxy
) -> None:
    async def chunks() -> list[Any]:
        first, second = via_proxy(name), via_proxy(name)
        await first.complete(REQUEST)
        await first.aclose()  # a chunk ends: the shared client stays open for the next
        await second.complete(REQUEST)
        await second.complete(REQUEST)
        return _shared.loop_clients()

    clients = asyncio.run(chunks())
    assert len(clients) == 1
    # Three calls from two provider objects, one keep-alive connection.
    assert proxy.accepted == 1


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_new_loop_gets_a_new_client_and_the_old_loop_closes_its_own(name: str, via_proxy: Any, proxy: CountingProxy) -> None:
    async def chunk() -> list[Any]:
        await via_proxy(name).complete(REQUEST)
        return _shared.loop_clients()

    # Loops of the process that outlive a test (the chunk runtime's) keep theirs.
    held = _shared.held_loops()
    first = asyncio.run(chunk())
    # asyncio.run shuts the loop's async generators down before closing it, which closes
    # the loop's clients: their connections end, and the cache lets go of the loop.
    assert proxy.wait_until(lambda: proxy.open == 0)
    assert _shared.held_loops() == held
    second = asyncio.run(chunk())
    assert len(first) == len(second) == 1 and first[0] is not second[0]
    assert proxy.accepted == 2


@pytest.mark.parametrize("name", PROVIDERS)
def test_close_shared_clients_closes_the_loops_clients_and_the_next_call_opens_new_ones(
    name: str, via_proxy: Any, proxy: CountingProxy
) -> None:
    async def run() -> tuple[list[Any], list[Any]]:
        provider = via_proxy(name)
        await provider.complete(REQUEST)
        before = _shared.loop_clients()
        await close_shared_clients()
        assert _shared.loop_clients() == []
        # Closed means closed on the wire, seen while the loop is still running.
        assert await asyncio.to_thread(proxy.wait_until, lambda: proxy.open == 0)
        await provider.complete(REQUEST)
        return before, _shared.loop_clients()

    before, after = asyncio.run(run())
    assert len(before) == len(after) == 1 and before[0] is not after[0]
    assert proxy.accepted == 2


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_loop_closed_without_shutting_down_is_dropped_and_never_reused(via_proxy: Any, proxy: CountingProxy) -> None:
    async def chunk() -> list[Any]:
        await via_proxy("fake").complete(REQUEST)
        return _shared.loop_clients()

    held = _shared.held_loops()  # loops of the process that outlive a test keep theirs
    loop = asyncio.new_event_loop()
    abandoned = loop.run_until_complete(chunk())
    loop.close()  # no shutdown_asyncgens: its clients cannot be closed any more
    assert _shared.held_loops() == held + 1
    fresh = asyncio.run(chunk())
    assert fresh[0] is not abandoned[0]
    assert _shared.held_loops() == held
    assert proxy.accepted == 2


def test_configurations_that_differ_get_their_own_clients(via_proxy: Any, proxy: CountingProxy) -> None:
    async def run() -> int:
        # fake and openai_compatible speak to the same URL with different keys; openai
        # with the SDK; anthropic twice.
        for name in ("fake", "openai_compatible", "openai", "anthropic", "anthropic"):
            await via_proxy(name).complete(REQUEST)
        return len(_shared.loop_clients())

    assert asyncio.run(run()) == 4
    assert proxy.accepted == 4


@pytest.mark.parametrize("name", PROVIDERS)
def test_hundreds_in_flight_on_one_client_are_not_queued_by_a_pool_limit(name: str, via_proxy: Any, fake: FakeServer) -> None:
    # Long enough for every request to be sent while the first are still held, even by
    # the slowest SDK on a busy machine; a pool limit would hold the rest back until then.
    fake.configure(latency_ms=3000)
    in_flight = 300

    async def run() -> None:
        provider = via_proxy(name)
        results = await asyncio.gather(*(provider.complete(REQUEST) for _ in range(in_flight)))
        assert all(r.output_tokens > 0 for r in results)

    asyncio.run(run())
    assert fake.stats()["max_in_flight"] == in_flight


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_connection_dropped_unanswered_is_a_retryable_provider_error_after_one_attempt(
    name: str, via_proxy: Any, proxy: CountingProxy
) -> None:
    proxy.drop = True

    async def run() -> ProviderError:
        with pytest.raises(ProviderError) as caught:
            await asyncio.wait_for(via_proxy(name).complete(REQUEST), timeout=30)
        return caught.value

    error = asyncio.run(run())
    assert (error.code, error.retryable) == ("provider_error", True), error.detail
    assert proxy.accepted == 1


def test_idle_clients_beyond_the_cap_are_closed_and_one_in_flight_is_not(
    proxy: CountingProxy, fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptforge.adapters.providers.openai_wire import OpenAIWireProvider

    monkeypatch.setattr(_shared, "MAX_IDLE_CLIENTS", 2)
    fake.configure(latency_ms=500)
    url = f"http://127.0.0.1:{proxy.port}/v1"

    async def run() -> None:
        # Each credential is a configuration of its own, hence a client of its own.
        slow = asyncio.create_task(OpenAIWireProvider(url, api_key="key-0").complete(REQUEST))
        # key-0's request is on the wire, holding its client, once its connection is in.
        assert await asyncio.to_thread(proxy.wait_until, lambda: proxy.accepted == 1)
        for n in range(1, 4):
            await OpenAIWireProvider(url, api_key=f"key-{n}").complete(REQUEST)
        assert (await slow).output_tokens > 0
        # key-0 (in use when key-2 and key-3 came) and key-3 (the newest) are kept.
        assert len(_shared.loop_clients()) == 2
        assert await asyncio.to_thread(proxy.wait_until, lambda: proxy.open == 2)

    asyncio.run(run())
    assert proxy.accepted == 4
