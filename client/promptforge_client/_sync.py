"""The synchronous client: ``Client(url, api_key).jobs``."""

from __future__ import annotations

import functools
import time
from collections.abc import Generator, Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import httpx

from . import _core, _http
from ._http import CHUNK_BYTES

T = TypeVar("T")
Item = TypeVar("Item")
P = ParamSpec("P")


class Client:
    """A PromptForge service, reached with one API key.

    ::

        with Client("https://promptforge.example.com", api_key) as client:
            job = client.jobs.submit("prompts.jsonl", "openai", "gpt-4o-mini")
            job = client.jobs.wait(job.job_id)
            for row in client.jobs.iter_results(job.job_id):
                print(row.prompt_id, row.result)

    ``transport`` replaces the network (``httpx.MockTransport`` in tests). The key is sent
    only to the service, never to the signed storage URLs, and never appears in a repr.
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = _http.normalize_url(url)
        self._api = httpx.Client(base_url=self.url, headers=_http.api_headers(api_key), timeout=timeout, transport=transport)
        self._storage = httpx.Client(timeout=_http.STORAGE_TIMEOUT, transport=transport, follow_redirects=True)
        self.jobs = Jobs(self)

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def close(self) -> None:
        self._api.close()
        self._storage.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _run(self, flow: Generator[Any, Any, T]) -> T:
        """Perform a flow of the core to its end: its value."""
        machine = _core.Machine(flow)
        for _ in self._drive(machine):
            raise RuntimeError("an iterating flow was run as a single call")
        return machine.result

    def _iterate(self, flow: _core.Items[Item]) -> Iterator[Item]:
        """Perform an iterating flow: the items it emits, as they come."""
        yield from self._drive(_core.Machine(flow))

    def _drive(self, machine: _core.Machine[Any]) -> Iterator[Any]:
        # Scratch directories last as long as the call; at most one streamed answer is open
        # at a time, the one whose lines the flow reads.
        with ExitStack() as call, ExitStack() as stream, closing(machine):
            while (effect := machine.effect()) is not None:
                if isinstance(effect, _core.Emit):
                    yield from effect.items
                    continue
                try:
                    machine.reply(self._perform(effect, call, stream))
                except httpx.TransportError as exc:
                    machine.fail(exc)

    def _perform(self, effect: _core.Effect, call: ExitStack, stream: ExitStack) -> Any:
        if isinstance(effect, _core.Send):
            return self._client(effect.request).request(**effect.request.options())
        if isinstance(effect, _core.Put):
            return self._storage.request(**effect.request.options(), content=_chunks(effect.body, effect.meter))
        if isinstance(effect, _core.OpenLines):
            stream.close()
            response = stream.enter_context(self._open(effect.request))
            return response, response.iter_text()
        if isinstance(effect, _core.NextText):
            text = next(effect.chunks, None)
            if text is None:
                stream.close()
            return text
        if isinstance(effect, _core.Save):
            return self._save(effect)
        if isinstance(effect, _core.Sleep):
            time.sleep(effect.seconds)
            return None
        if isinstance(effect, _core.Local):
            return effect.work(*effect.args)
        if isinstance(effect, _core.Scratch):
            return _core.scratch(call, effect)
        raise TypeError(f"not an effect this client performs: {effect!r}")

    def _client(self, request: _core.Request) -> httpx.Client:
        # The key goes only to the service, never to a signed storage URL.
        return self._storage if request.storage else self._api

    @contextmanager
    def _open(self, request: _core.Request) -> Iterator[httpx.Response]:
        """A streamed answer; an error's body is read whole, for the core to build the error."""
        with self._client(request).stream(**request.options()) as response:
            if response.is_error:
                response.read()
            yield response

    def _save(self, effect: _core.Save) -> httpx.Response:
        try:
            with self._open(effect.request) as response:
                if response.is_error:
                    return response
                with effect.part.open("wb") as f:
                    for chunk in response.iter_bytes(CHUNK_BYTES):
                        f.write(chunk)
        except BaseException:
            effect.part.unlink(missing_ok=True)
            raise
        effect.part.replace(effect.target)
        return response


def _chunks(body: Path | bytes, meter: _core.UploadMeter) -> Iterator[bytes]:
    """The upload's bytes in chunks, counted as they go."""
    meter.start()
    if isinstance(body, bytes):
        yield from map(meter.add, _core.slices(body))
        return
    with body.open("rb") as f:
        yield from map(meter.add, iter(functools.partial(f.read, CHUNK_BYTES), b""))


class Jobs(_core.Calls):
    """The jobs of this key's client: ``client.jobs``. Each call is written once, in the core
    (:mod:`promptforge_client._core`), and performed here with blocking I/O."""

    def __init__(self, client: Client) -> None:
        self._c = client
        self._core = _core.Core(client.url)

    def _run(self, flow: Generator[Any, Any, T]) -> T:
        return self._c._run(flow)

    def _iterate(self, flow: _core.Items[Item]) -> Iterator[Item]:
        return self._c._iterate(flow)
