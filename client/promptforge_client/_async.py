"""The asynchronous client: ``AsyncClient(url, api_key).jobs``, the same methods as
:class:`~promptforge_client.Client` awaited (and iterated with ``async for``). Runs on
asyncio or trio (through anyio, as httpx does); file I/O happens in worker threads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, closing
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.to_thread
import httpx

from . import _core, _http
from ._http import CHUNK_BYTES

T = TypeVar("T")
Item = TypeVar("Item")
P = ParamSpec("P")


class AsyncClient:
    """A PromptForge service, reached with one API key, from async code.

    ::

        async with AsyncClient(url, api_key) as client:
            job = await client.jobs.submit(rows, "fake", "fake-small")
            job = await client.jobs.wait(job.job_id)
            async for row in client.jobs.iter_results(job.job_id):
                ...
    """

    def __init__(
        self, url: str, api_key: str, *, timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = _http.normalize_url(url)
        self._api = httpx.AsyncClient(base_url=self.url, headers=_http.api_headers(api_key), timeout=timeout, transport=transport)
        self._storage = httpx.AsyncClient(timeout=_http.STORAGE_TIMEOUT, transport=transport, follow_redirects=True)
        self.jobs = AsyncJobs(self)

    def __repr__(self) -> str:
        return f"AsyncClient(url={self.url!r})"

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._storage.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    async def _run(self, flow: Generator[Any, Any, T]) -> T:
        """Perform a flow of the core to its end: its value."""
        machine = _core.Machine(flow)
        async for _ in self._drive(machine):
            raise RuntimeError("an iterating flow was run as a single call")
        return machine.result

    def _iterate(self, flow: _core.Items[Item]) -> AsyncIterator[Item]:
        """Perform an iterating flow: the items it emits, as they come."""
        return self._drive(_core.Machine(flow))

    async def _drive(self, machine: _core.Machine[Any]) -> AsyncIterator[Any]:
        # Scratch directories last as long as the call; at most one streamed answer is open
        # at a time, the one whose lines the flow reads.
        with ExitStack() as call, closing(machine):
            async with AsyncExitStack() as stream:
                while (effect := machine.effect()) is not None:
                    if isinstance(effect, _core.Emit):
                        for item in effect.items:
                            yield item
                        continue
                    try:
                        machine.reply(await self._perform(effect, call, stream))
                    except httpx.TransportError as exc:
                        machine.fail(exc)

    async def _perform(self, effect: _core.Effect, call: ExitStack, stream: AsyncExitStack) -> Any:
        if isinstance(effect, _core.Send):
            return await self._client(effect.request).request(**effect.request.options())
        if isinstance(effect, _core.Put):
            return await self._storage.request(**effect.request.options(), content=_chunks(effect.body, effect.meter))
        if isinstance(effect, _core.OpenLines):
            await stream.aclose()
            response = await stream.enter_async_context(self._open(effect.request))
            return response, response.aiter_text()
        if isinstance(effect, _core.NextText):
            text = await anext(effect.chunks, None)
            if text is None:
                await stream.aclose()
            return text
        if isinstance(effect, _core.Save):
            return await self._save(effect)
        if isinstance(effect, _core.Sleep):
            await anyio.sleep(effect.seconds)
            return None
        if isinstance(effect, _core.Local):
            return await anyio.to_thread.run_sync(effect.work, *effect.args)
        if isinstance(effect, _core.Scratch):
            return _core.scratch(call, effect)
        raise TypeError(f"not an effect this client performs: {effect!r}")

    def _client(self, request: _core.Request) -> httpx.AsyncClient:
        # The key goes only to the service, never to a signed storage URL.
        return self._storage if request.storage else self._api

    @asynccontextmanager
    async def _open(self, request: _core.Request) -> AsyncIterator[httpx.Response]:
        """A streamed answer; an error's body is read whole, for the core to build the error."""
        async with self._client(request).stream(**request.options()) as response:
            if response.is_error:
                await response.aread()
            yield response

    async def _save(self, effect: _core.Save) -> httpx.Response:
        try:
            async with self._open(effect.request) as response:
                if response.is_error:
                    return response
                f = await anyio.open_file(effect.part, "wb")
                async with f:
                    async for chunk in response.aiter_bytes(CHUNK_BYTES):
                        await f.write(chunk)
        except BaseException:
            effect.part.unlink(missing_ok=True)
            raise
        effect.part.replace(effect.target)
        return response


class AsyncJobs(_core.Calls):
    """The jobs of this key's client: ``client.jobs``, the calls of
    :class:`~promptforge_client.Jobs` awaited (``async for`` for the iterating ones)."""

    def __init__(self, client: AsyncClient) -> None:
        self._c = client
        self._core = _core.Core(client.url)

    async def _run(self, flow: Generator[Any, Any, T]) -> T:
        return await self._c._run(flow)

    def _iterate(self, flow: _core.Items[Item]) -> AsyncIterator[Item]:
        return self._c._iterate(flow)


async def _chunks(body: Path | bytes, meter: _core.UploadMeter) -> AsyncIterator[bytes]:
    """The upload's bytes, counted as they go; a file is read in a worker thread chunk by chunk."""
    meter.start()
    if isinstance(body, bytes):
        for chunk in _core.slices(body):
            yield meter.add(chunk)
        return
    f = await anyio.open_file(body, "rb")
    async with f:
        while chunk := await f.read(CHUNK_BYTES):
            yield meter.add(chunk)
