"""The real model server for tests/llm/: installed by the project's own script (or the
install that `make test` started in the background, which this waits for), run on a stack
of its own as the operator's ``openai_compatible`` endpoint ``llama``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOMY_CAPS, ROOT, worker_port_base

HERE = Path(__file__).resolve().parent
# Away from the session stack's ports (base to base + 23) and any dev stack's.
PORT_SHIFT = 100


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """These tests run last in the session (pytest calls this hook of every conftest with
    all the session's items): on a fresh machine the model server compiles for about 10
    minutes, in the background from the start of `make test`, while everything else runs."""
    items.sort(key=lambda item: item.path.is_relative_to(HERE))


@pytest.fixture(scope="session")
def model_stack() -> Iterator[Any]:
    """A stack with the real model server. Installing it is part of the fixture: a machine
    that cannot build it fails these tests with the install's output, never skips them."""
    from infra import model_server
    from infra.stack import Stack

    model_server.install()
    base = worker_port_base() + PORT_SHIFT
    extra = {
        # As on the session stack: a killed worker's chunk is free again within seconds,
        # rows are checkpointed every second (the tests watch progress).
        "PROMPTFORGE_CHUNK_LEASE_SECONDS": "8",
        "PROMPTFORGE_CHECKPOINT_SECONDS": "1",
        "PROMPTFORGE_HEARTBEAT_SECONDS": "2",
        **ROOMY_CAPS,
    }
    stack = Stack("test", base_port=base, run_dir=ROOT / ".run" / f"test-llm-{base}", extra_env=extra, model_server=True)
    stack.up()
    try:
        yield stack
    finally:
        problems = stack.down()
        assert not problems, problems
