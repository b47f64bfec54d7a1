"""Shared test set-up: import paths, the fake LLM server, the emulator stack, and deps
built either in memory or on the emulators, so service tests run against both."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "functions"))
sys.path.insert(0, str(ROOT))

from promptforge import config  # noqa: E402
from promptforge.adapters.outbound import HttpOutbound  # noqa: E402
from promptforge.service.deps import StaticDeps  # noqa: E402
from tests.fakes import MemoryBlobs, MemoryProviders, MemoryStore, RecordingTasks  # noqa: E402

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(what: str, check: Callable[[], T | None], timeout_s: float = 30.0, interval_s: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy, and return that.

    For waiting on something the test cannot subscribe to (a record arriving, a count
    reaching a mark) instead of sleeping a fixed time: it returns as soon as the thing
    happened, and fails the test naming ``what`` after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def wait_http(url: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout_s}s")


def worker_port_base() -> int:
    """The first of the 1,000 ports this test process may use for the stacks it starts.

    ``PROMPTFORGE_TEST_PORT_BASE`` (default 18400, the test profile's) lets two test runs on
    one machine use separate stacks; under pytest-xdist each worker (``gw0``, ``gw1``, ...)
    adds 1,000 per worker number, so every worker runs its own stack and nothing is shared.
    """
    base = int(os.environ.get("PROMPTFORGE_TEST_PORT_BASE", "18400"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return base + 1000 * int(worker.removeprefix("gw"))


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[str]:
    """A real fake LLM server of our own, for tests that do not need the whole stack."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.fake_llm.server", "--host", "127.0.0.1", "--port", str(port), "--latency-ms", "5"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# The tests hammer one key on purpose (chaos polls, schemathesis, many jobs of one client):
# on the shared stack the fair-use caps stay on, so every call goes through them, but far
# out of reach. tests/e2e/test_fair_use.py restarts the API with small caps to test them.
ROOMY_CAPS = {
    "PROMPTFORGE_MAX_AWAITING_UPLOADS": "1000",
    "PROMPTFORGE_MAX_OPEN_JOBS": "1000",
    "PROMPTFORGE_MAX_EVENT_STREAMS": "100",
    "PROMPTFORGE_REQUESTS_PER_MINUTE": "100000",
}


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    """The whole local stack (emulators, functions, gateway) on the test profile."""
    from infra.stack import Stack

    # A short chunk lease: a killed worker's chunks are free again within seconds. Rows
    # checkpointed and stop signals read every second or two, so tests that act on a
    # job's progress (kill mid-job, cancel mid-job) see it soon.
    extra = {
        "PROMPTFORGE_CHUNK_LEASE_SECONDS": "8",
        "PROMPTFORGE_CHECKPOINT_SECONDS": "1",
        "PROMPTFORGE_HEARTBEAT_SECONDS": "2",
        **ROOMY_CAPS,
    }
    base = worker_port_base()
    s = Stack("test", base_port=base, run_dir=ROOT / ".run" / f"test-{base}", extra_env=extra)
    s.up()
    try:
        yield s
    finally:
        s.down()


def llm_stats(base: str) -> dict[str, Any]:
    return dict(requests.get(f"{base}/_stats", timeout=5).json())


def make_settings(**overrides: Any) -> config.Settings:
    base = config.load()
    return dataclasses.replace(base, providers=("fake", "openai_compatible"), **overrides)


@pytest.fixture(params=["memory", "emulators"])
def deps(request: pytest.FixtureRequest) -> StaticDeps:
    """Deps with in-memory adapters, or the real Firestore and Cloud Storage emulators.

    Tasks are recorded, not sent: the tests deliver them, which is how they repeat a
    delivery or drop one on purpose. Callbacks go out over real HTTP. The LLM is the in-memory provider
    (``deps.providers``, a :class:`~tests.fakes.MemoryProviders`): a use case's tests set
    its latency or errors on it; :func:`http_deps` runs the real provider adapter against
    the fake LLM server instead.
    """
    settings = make_settings(chunk_max_lines=4)
    if request.param == "memory":
        return StaticDeps(
            settings, MemoryStore(), MemoryBlobs(), RecordingTasks(), providers=MemoryProviders(), outbound=HttpOutbound()
        )
    return emulator_deps(request, settings)


@pytest.fixture
def http_deps(deps: StaticDeps, fake_llm: str) -> StaticDeps:
    """``deps`` with the production provider factory, over HTTP to the fake LLM server."""
    from promptforge.adapters.providers import LiveProviders

    settings = dataclasses.replace(deps.settings, fake_llm_url=f"{fake_llm}/v1")
    return dataclasses.replace(deps, settings=settings, providers=LiveProviders())


def emulator_deps(request: pytest.FixtureRequest, settings: config.Settings) -> StaticDeps:
    """Deps on the stack's Firestore and Cloud Storage emulators, tasks recorded."""
    stack = request.getfixturevalue("stack")
    env = stack.env()
    for key in ("FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"):
        os.environ[key] = env[key]
    from promptforge.wiring import LiveDeps

    # Buckets of their own: an upload to the stack's uploads bucket would also wake the
    # stack's own on_upload function, which would then race the test for the same job.
    # A Firestore project of each test's own too: the watchdog tests sweep every unfinished
    # job they can see, and must not find another test's jobs (the end-to-end tests' have
    # their uploads in the stack's bucket; a service test may leave a job whose upload it
    # never wrote).
    live = LiveDeps(
        dataclasses.replace(
            settings,
            project=f"{env['GOOGLE_CLOUD_PROJECT']}-t{uuid.uuid4().hex[:12]}",
            upload_bucket="service-tests-uploads",
            results_bucket="service-tests-results",
            storage_emulator_host=env["STORAGE_EMULATOR_HOST"],
            signing_key_file=env["PROMPTFORGE_SIGNING_KEY_FILE"],
        )
    )
    _ensure_buckets(live, "service-tests-uploads", "service-tests-results")
    return StaticDeps(
        live.settings, live.store, live.blobs, RecordingTasks(), providers=MemoryProviders(), outbound=HttpOutbound()
    )


def _ensure_buckets(live: Any, *names: str) -> None:
    from google.api_core.exceptions import Conflict
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=live.settings.project, credentials=AnonymousCredentials())
    for name in names:
        try:
            client.create_bucket(name)
        except Conflict:
            pass
