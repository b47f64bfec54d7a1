"""Blocking calls run side by side on a few threads, for use cases that wait on several
independent requests (Cloud Storage, IAM, Firestore aggregations)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def concurrently(fn: Callable[[T], R], items: list[T], threads: int) -> list[R]:
    """``fn`` over ``items`` on at most ``threads`` threads, results in order; the first
    error is raised. One item or none runs on the caller's thread."""
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(fn, items))
