"""The other things PromptForge keeps: chunks, clients and API keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any


class ChunkStatus(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"


@dataclass(frozen=True)
class Chunk:
    """One worker task's share of a job, and its progress (one writer at a time)."""

    job_id: str
    index: int
    start: int
    end: int
    first_line: int
    record_count: int
    skip_lines: tuple[int, ...] = ()
    status: ChunkStatus = ChunkStatus.PENDING
    lease_until: datetime | None = None
    deliveries: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def replace(self, **changes: Any) -> Chunk:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ClientState:
    """A client's processing slot: at most one active job at a time."""

    client_id: str
    active_job_id: str | None = None


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored: its SHA-256, never the key."""

    key_hash: str
    client_id: str
    prefix: str  # the key's first characters, to tell keys apart in listings
    created_at: datetime
    label: str = ""
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class Totals:
    """Counts summed over a job's chunks."""

    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
