"""What a use case needs, as one object: settings, the adapters behind the ports
(store, blobs, tasks, LLM providers and their batch APIs, outbound HTTP) and a clock.

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
from .batch_port import BatchProvider, BatchProviderFactory
from .ports import BlobStore, BlockedAddress, JobStore, Outbound, TaskQueue
from .provider_port import Provider, ProviderFactory, ProviderUnavailable


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
    @property
    def providers(self) -> ProviderFactory: ...
    @property
    def batch_providers(self) -> BatchProviderFactory: ...
    @property
    def outbound(self) -> Outbound: ...
    def now(self) -> datetime: ...


def no_providers(name: str, settings: Settings, endpoint: str | None = None, base_url: str | None = None) -> Provider:
    """The factory of deps given no providers: every provider is unavailable (the job
    fails with ``provider_unavailable``), never a silent default."""
    raise ProviderUnavailable(f"provider {name!r}: these deps were given no provider factory")


def no_batch_providers(name: str, settings: Settings, endpoint: str | None = None) -> BatchProvider:
    """The batch factory of deps given none: economy jobs fail with ``provider_unavailable``."""
    raise ProviderUnavailable(f"provider {name!r}: these deps were given no batch providers")


class NoOutbound:
    """The outbound port of deps given none: every URL is refused."""

    def check_url(self, url: str, allow_loopback_http: bool = False) -> None:
        raise BlockedAddress("these deps were given no outbound HTTP")

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float, allow_loopback_http: bool = False) -> int:
        raise BlockedAddress("these deps were given no outbound HTTP")


@dataclass
class StaticDeps:
    """Deps given up front (tests, tools)."""

    settings: Settings
    store: JobStore
    blobs: BlobStore
    tasks: TaskQueue
    clock: Callable[[], datetime] = field(default=utc_now)
    providers: ProviderFactory = field(default=no_providers)
    batch_providers: BatchProviderFactory = field(default=no_batch_providers)
    outbound: Outbound = field(default_factory=NoOutbound)

    def now(self) -> datetime:
        return self.clock()
