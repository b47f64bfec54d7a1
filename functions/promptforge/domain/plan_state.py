"""Where a job's planning stands: one small record, advanced one step at a time.

Planning runs as a chain of steps (see service/plan.py). Each step reads this record,
does a bounded piece of work whose objects carry names of their own, and moves the
record from ``step`` to ``step + 1`` only if nobody moved it first: a repeated or
concurrent delivery of the same step loses that race and changes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any


class PlanPhase(str, Enum):
    SCAN = "SCAN"  # read the file a slice at a time
    DEDUPE = "DEDUPE"  # find repeated prompt_ids, a run of buckets at a time
    MERGE = "MERGE"  # per slice: its error rows and chunk documents, duplicates included
    START = "START"  # publish the planning errors, move the job to PROCESSING
    ENQUEUE = "ENQUEUE"  # per slice: the tasks of its chunks
    DONE = "DONE"


@dataclass(frozen=True)
class PlanSlice:
    """What one scan step found in its byte range of the file.

    Its objects in the results bucket are named after ``tag`` (its step and an attempt
    nonce), so the record points at the objects of the delivery that won the step.
    """

    tag: str
    start: int
    end: int
    first_line: int
    next_line: int
    first_chunk: int
    chunks: int
    records: int = 0
    ids: int = 0  # lines that name a prompt_id
    bad: int = 0  # lines the scan found invalid (duplicates are found later)
    bad_bytes: int = 0
    # Set by the merge step: duplicates found in this slice, and the object of its error
    # rows (bad lines and duplicates, in line order) under the merge step's own tag.
    dups: int = 0
    errors_tag: str = ""
    errors_bytes: int = 0

    def replace(self, **changes: Any) -> PlanSlice:
        return dataclasses.replace(self, **changes)

    @property
    def invalid(self) -> int:
        return self.bad + self.dups


@dataclass(frozen=True)
class PlanState:
    job_id: str
    salt: str  # hex key of the id digests, fixed for the job's planning
    expire_at: datetime  # Firestore TTL
    step: int = 0
    phase: PlanPhase = PlanPhase.SCAN
    cursor: int = 0  # the slice or bucket run the phase works on next
    attempts: int = 0  # deliveries that started the current step
    committed_by: str = ""  # the delivery that moved the state to this step
    offset: int = 0  # where the next scan step starts reading
    next_line: int = 1
    next_chunk: int = 0
    records: int = 0
    json_objects: int = 0
    slices: tuple[PlanSlice, ...] = ()
    bucket_totals: tuple[int, ...] = ()  # id records per bucket over all slices
    bounds: tuple[int, ...] = ()  # bucket boundaries of the dedupe steps
    dedupe_tags: tuple[str, ...] = ()  # per dedupe step: its object's tag, "" if it found none

    def replace(self, **changes: Any) -> PlanState:
        return dataclasses.replace(self, **changes)

    @property
    def invalid(self) -> int:
        return sum(s.invalid for s in self.slices)

    @property
    def invalid_bytes(self) -> int:
        return sum(s.errors_bytes for s in self.slices)
