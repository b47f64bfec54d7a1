"""Measure how many requests per second the fake LLM server sustains, and its CPU cost.

    .venv/bin/python -m infra.fake_llm.loadgen [--requests 4000] [--connections 64]
        [--route openai|anthropic|gemini] [--rpm N --tpm N] [--url http://127.0.0.1:PORT]

Without ``--url`` it starts the server itself (as a subprocess on a free port, latency
0) and stops it afterwards. The client is raw asyncio streams over keep-alive
connections (not httpx, whose pool costs more CPU than the server being measured), and
the server's CPU time is read from /proc, so the figures separate the two:
``server_cpu_ms_per_request`` is what one core spends per request, and
``one_core_capacity`` (1000 / that) is the request rate one core can serve.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_ROUTES = {
    "openai": ("/v1/chat/completions", {"Authorization": "Bearer k"}),
    "anthropic": ("/v1/messages", {"x-api-key": "k", "anthropic-version": "2023-06-01"}),
    "gemini": ("/v1beta/models/m:generateContent", {"x-goog-api-key": "k"}),
}


def _body(route: str, i: int) -> bytes:
    text = f"Prompt number {i}: describe the Eiffel Tower in one sentence."
    if route == "openai":
        body: dict[str, object] = {"model": "m", "messages": [{"role": "user", "content": text}], "max_tokens": 16}
    elif route == "anthropic":
        body = {"model": "m", "messages": [{"role": "user", "content": text}], "max_tokens": 16}
    else:
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}], "generationConfig": {"maxOutputTokens": 16}}
    return json.dumps(body).encode()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _worker(host: str, port: int, route: str, todo: list[int], statuses: dict[int, int]) -> None:
    path, headers = _ROUTES[route]
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while todo:
            i = todo.pop()
            payload = _body(route, i)
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            )
            writer.write(head.encode() + payload)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            status = int(status_line.split(b" ")[1])
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _run(host: str, port: int, route: str, requests: int, connections: int) -> tuple[float, dict[int, int]]:
    todo = list(range(requests))
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(_worker(host, port, route, todo, statuses) for _ in range(connections))), timeout=300)
    return time.perf_counter() - start, statuses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--route", choices=sorted(_ROUTES), default="openai")
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--server-args", default="", help="extra flags for the server it starts, e.g. '--rpm 6000'")
    args = parser.parse_args(argv)

    proc = None
    if args.url:
        host, _, port_text = args.url.removeprefix("http://").rstrip("/").partition(":")
        port = int(port_text)
        pid = None
    else:
        host, port = "127.0.0.1", _free_port()
        cmd = [sys.executable, "-m", "infra.fake_llm.server", "--port", str(port), "--log-level", "warning"]
        proc = subprocess.Popen(cmd + args.server_args.split(), cwd=ROOT)
        pid = proc.pid
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    try:
        asyncio.run(_run(host, port, args.route, min(200, args.requests), args.connections))  # warm-up
        cpu_before = _cpu_seconds(pid) if pid else 0.0
        elapsed, statuses = asyncio.run(_run(host, port, args.route, args.requests, args.connections))
        cpu = (_cpu_seconds(pid) - cpu_before) if pid else None
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    report: dict[str, object] = {
        "route": args.route,
        "requests": args.requests,
        "connections": args.connections,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(args.requests / elapsed, 1),
        "statuses": statuses,
    }
    if cpu is not None:
        per = cpu / args.requests * 1000
        report["server_cpu_ms_per_request"] = round(per, 3)
        report["one_core_capacity"] = round(1000 / per, 1) if per else None
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
