"""CPU per request of the worker's HTTP client, httpx against aiohttp, side by side.

    .venv/bin/python infra/client_cpu.py [--requests 2000] [--concurrency 128]

Starts the fake LLM server (40 ms latency) in a subprocess, sends the same requests
through each client from this process, and prints wall time and this process's CPU time
per request. The worker is one process per chunk, so its CPU per request bounds its
requests per second.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra.fake_llm.process import fake_llm_process  # noqa: E402

BODY = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


async def with_httpx(url: str, n: int, concurrency: int) -> None:
    import httpx

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, headers={"Authorization": "Bearer k"}) as client:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                (await client.post(url, json=BODY)).json()

        await asyncio.gather(*(one() for _ in range(n)))


async def with_aiohttp(url: str, n: int, concurrency: int) -> None:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256), headers={"Authorization": "Bearer k"}) as s:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem, s.post(url, json=BODY) as response:
                await response.json()

        await asyncio.gather(*(one() for _ in range(n)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--port", type=int, default=8799)
    args = parser.parse_args()
    with fake_llm_process("--latency-ms", "40", port=args.port) as base_url:
        url = f"{base_url}/v1/chat/completions"
        clients: list[tuple[str, Callable[[str, int, int], Coroutine[Any, Any, None]]]] = [
            ("httpx", with_httpx),
            ("aiohttp", with_aiohttp),
        ]
        print(f"{'client':<8} {'wall s':>7} {'req/s':>7} {'cpu ms/req':>11}")
        for name, run in clients:
            wall, cpu = time.perf_counter(), time.process_time()
            asyncio.run(run(url, args.requests, args.concurrency))
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"{name:<8} {wall:>7.2f} {args.requests / wall:>7.0f} {1000 * cpu / args.requests:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
