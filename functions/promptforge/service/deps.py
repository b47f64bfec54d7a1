"""What a use case needs, as one object: settings, the three adapters and a clock.

Production builds them lazily (``promptforge.wiring``), so a function pays only for the
clients it uses; the HTTP API never imports the Cloud Tasks client. Tests pass in-memory
adapters or emulator-backed ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from ..config import Settings
from .ports import BlobStore, JobStore, TaskQueue


def utc_now() -> datetime:
    return datetime.now(UTC)


class Deps(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def store(self) -> JobStore: ...
    @property
    def blobs(self) -> BlobStore: ...
    @property
    def tasks(self) -> TaskQueue: ...
    def now(self) -> datetime: ...


@dataclass
class StaticDeps:
    """Deps given up front (tests, tools)."""

    settings: Settings
    store: JobStore
    blobs: BlobStore
    tasks: TaskQueue
    clock: Callable[[], datetime] = field(default=utc_now)

    def now(self) -> datetime:
        return self.clock()
