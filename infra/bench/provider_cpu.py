"""CPU per request of each provider, the old way against the new, side by side in one run.

    .venv/bin/python -m infra.bench.provider_cpu [--requests 2000] [--chunk 500]
        [--in-flight 32 128] [--rounds 3] [--providers openai anthropic gemini openai_compatible]
        [--loop uvloop|asyncio]

Starts the fake LLM server (no latency) in a subprocess and sends the same requests from
this process through each provider, counting this process's CPU time (every thread) per
request. Requests come in chunks of ``--chunk``, a chunk worker's view: each chunk opens
its provider, keeps ``--in-flight`` requests going until the chunk is done, and closes it.

* ``old``: every chunk's provider has a client of its own, made for the chunk and closed
  at its end (a fresh aiohttp session per chunk, 256 connections at most, for
  openai_compatible; the openai and anthropic SDKs on their default httpx2 transport; a
  fresh google-genai client).
* ``new``: ``open_provider`` as a worker calls it; every chunk uses the event loop's shared
  client (the SDKs on aiohttp, openai_compatible on its own small HTTP/1.1 client), which
  outlives the chunks.

Each (provider, in flight, way) runs on its own event loop (``--loop``: uvloop, as the
chunk worker runs, or asyncio's own), after a warm-up on another,
and the two ways alternate for ``--rounds`` rounds; the table gives the medians and the
ratio new/old. ``openai`` and ``openai_compatible`` send the same wire format, so their
``new`` figures side by side are the SDK's own cost.

This is a measurement, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "functions"))

from infra.fake_llm.process import fake_llm_process  # noqa: E402
from promptforge import config  # noqa: E402
from promptforge.adapters.providers import (  # noqa: E402
    PROVIDER_TIMEOUT_S,
    ChatRequest,
    Provider,
    ProviderError,
    close_shared_clients,
    open_provider,
)

PROVIDERS = ("openai", "anthropic", "gemini", "openai_compatible")
KEY = "bench-key"
REQUEST = ChatRequest(
    model="bench-model",
    messages=[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say something about CPU."}],
    params={"max_tokens": 16},
)
WARM_UP = 100
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


def _old_provider(name: str, base_url: str) -> Provider:
    """The provider as it was before clients were shared: its own client, closed by aclose."""
    import aiohttp

    if name == "openai":
        import openai

        from promptforge.adapters.providers.openai_sdk import OpenAIProvider

        class OldOpenAI(OpenAIProvider):
            def _new_client(self) -> openai.AsyncOpenAI:
                timeout = openai.Timeout(PROVIDER_TIMEOUT_S, connect=10.0)
                return openai.AsyncOpenAI(api_key=KEY, base_url=f"{base_url}/v1", max_retries=0, timeout=timeout)

        return _own_client(OldOpenAI(name=name, api_key=KEY, base_url=f"{base_url}/v1"), "close")
    if name == "anthropic":
        import anthropic

        from promptforge.adapters.providers.anthropic_sdk import AnthropicProvider

        class OldAnthropic(AnthropicProvider):
            def _new_client(self) -> anthropic.AsyncAnthropic:
                return anthropic.AsyncAnthropic(
                    api_key=KEY, base_url=base_url, max_retries=0, timeout=anthropic.Timeout(PROVIDER_TIMEOUT_S, connect=10.0)
                )

        return _own_client(OldAnthropic(api_key=KEY, base_url=base_url), "close")
    if name == "gemini":
        from promptforge.adapters.providers.gemini_sdk import GeminiProvider

        # google-genai already went through aiohttp; what was per chunk is the client.
        return _own_client(GeminiProvider(api_key=KEY, base_url=base_url, timeout_s=PROVIDER_TIMEOUT_S), "aclose")
    from promptforge.adapters.providers.openai_wire import OpenAIWireProvider

    class AiohttpPost:
        """The wire provider's request as it was: an aiohttp session of the chunk's own."""

        def __init__(self, url: str) -> None:
            self.url = url
            self.session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=aiohttp.ClientTimeout(total=PROVIDER_TIMEOUT_S, connect=10.0),
                connector=aiohttp.TCPConnector(limit=256),
            )

        async def post(self, body: bytes) -> tuple[int, Any, bytes]:
            headers = {"Content-Type": "application/json"}
            async with self.session.post(self.url, data=body, headers=headers, allow_redirects=False) as response:
                return response.status, response.headers, await response.read()

        async def close(self) -> None:
            await self.session.close()

    class OldWire(OpenAIWireProvider):
        def _new_client(self) -> AiohttpPost:  # type: ignore[override]
            return AiohttpPost(self._url)

    return _own_client(OldWire(f"{base_url}/v1", api_key=KEY, timeout_s=PROVIDER_TIMEOUT_S), "close")


def _own_client(provider: Any, close: str) -> Provider:
    """Give ``provider`` a client of its own, made on first use and closed by ``aclose``
    (the per-chunk life the shared cache replaced)."""
    own: list[Any] = []

    def client() -> contextlib.nullcontext[Any]:
        if not own:
            own.append(provider._new_client())
        return contextlib.nullcontext(own[0])

    async def aclose() -> None:
        if own:
            await getattr(own.pop(), close)()

    provider._client = client
    provider.aclose = aclose
    return provider  # type: ignore[no-any-return]


def _new_opener(base_url: str) -> Callable[[str], Provider]:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "BENCH_COMPATIBLE_KEY"):
        os.environ[var] = KEY
    os.environ["OPENAI_BASE_URL"] = f"{base_url}/v1"
    os.environ["ANTHROPIC_BASE_URL"] = base_url
    os.environ["GEMINI_BASE_URL"] = base_url
    os.environ.pop("PROMPTFORGE_GEMINI_VERTEX", None)
    endpoint = config.Endpoint("bench", f"{base_url}/v1", key_env="BENCH_COMPATIBLE_KEY")
    settings = dataclasses.replace(config.load(), providers=PROVIDERS, endpoints={"bench": endpoint})
    return lambda name: open_provider(name, settings, "bench" if name == "openai_compatible" else None)


async def _lane(provider: Provider, todo: Iterator[int], failures: list[ProviderError]) -> None:
    for _ in todo:
        try:
            await provider.complete(REQUEST)
        except ProviderError as exc:
            failures.append(exc)


async def _chunks(
    open_one: Callable[[str], Provider], name: str, requests: int, chunk: int, in_flight: int
) -> list[ProviderError]:
    """``requests`` in chunks of ``chunk``, one after the other, each on a provider opened
    for it and closed at its end, ``in_flight`` at a time within a chunk; the failures."""
    failures: list[ProviderError] = []
    for start in range(0, requests, chunk):
        provider = open_one(name)
        todo = iter(range(min(chunk, requests - start)))
        try:
            await asyncio.gather(*(_lane(provider, todo, failures) for _ in range(in_flight)))
        finally:
            await provider.aclose()
    return failures


def measure(
    open_one: Callable[[str], Provider], name: str, requests: int, chunk: int, in_flight: int, loop: str = "uvloop"
) -> tuple[float, float, int]:
    """(CPU ms per request, requests per second, failed requests) of ``requests`` on a
    fresh event loop. A failure is reported on stderr with what lay under it."""

    async def run() -> tuple[float, float, int]:
        cpu, wall = time.process_time(), time.perf_counter()
        failures = await _chunks(open_one, name, requests, chunk, in_flight)
        await close_shared_clients()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if failures:
            first = failures[0]
            print(f"{len(failures)} failed, the first: {first.code} {first.detail} ({first.__context__!r})", file=sys.stderr)
        return 1000 * cpu / requests, requests / wall, len(failures)

    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        return runner.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement")
    parser.add_argument("--chunk", type=int, default=500, help="requests per chunk (one provider opened per chunk)")
    parser.add_argument("--in-flight", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--providers", nargs="+", default=list(PROVIDERS), choices=PROVIDERS)
    parser.add_argument("--loop", choices=list(LOOPS), default="uvloop", help="the event loop (the chunk worker's is uvloop)")
    parser.add_argument("--port", type=int, default=0, help="the fake LLM server's port (default: a free one)")
    args = parser.parse_args()
    with fake_llm_process("--latency-ms", "0", port=args.port) as base_url:
        new = _new_opener(base_url)
        ways: dict[str, Callable[[str], Provider]] = {"old": lambda name: _old_provider(name, base_url), "new": new}
        figures: dict[tuple[str, int, str], list[tuple[float, float, int]]] = {}
        for name in args.providers:
            for way in ways.values():  # imports and first connections, outside the figures
                measure(way, name, WARM_UP, WARM_UP, 8, args.loop)
        for _ in range(args.rounds):
            for name in args.providers:
                for in_flight in args.in_flight:
                    for label, way in ways.items():
                        result = measure(way, name, args.requests, args.chunk, in_flight, args.loop)
                        figures.setdefault((name, in_flight, label), []).append(result)
        print(
            f"{args.requests} requests per measurement in chunks of {args.chunk}, median of {args.rounds} rounds, "
            f"{args.loop} loop, CPU of this process only (the fake server is another process)"
        )
        print(
            f"{'provider':<18} {'in flight':>9} {'old ms/req':>10} {'new ms/req':>10} {'new/old':>8} "
            f"{'old req/s':>9} {'new req/s':>9} {'failed':>6}"
        )
        for name in args.providers:
            for in_flight in args.in_flight:
                old, new_ = figures[(name, in_flight, "old")], figures[(name, in_flight, "new")]
                old_cpu, old_rate = statistics.median(r[0] for r in old), statistics.median(r[1] for r in old)
                new_cpu, new_rate = statistics.median(r[0] for r in new_), statistics.median(r[1] for r in new_)
                failed = sum(r[2] for r in old + new_)
                print(
                    f"{name:<18} {in_flight:>9} {old_cpu:>10.3f} {new_cpu:>10.3f} {new_cpu / old_cpu:>8.2f} "
                    f"{old_rate:>9.0f} {new_rate:>9.0f} {failed:>6}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
