"""The fake LLM server in a subprocess, for scripts that measure a client against it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fake_llm_process(*flags: str, port: int = 0) -> Iterator[str]:
    """``with fake_llm_process("--latency-ms", "0") as base_url:`` the server on 127.0.0.1
    (``port``, or a free one), answering ``/healthz``; stopped when the block ends."""
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "infra.fake_llm.server", "--port", str(port), "--log-level", "warning", *flags], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{base_url}/healthz", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=10)
