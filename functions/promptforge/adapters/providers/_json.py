"""JSON for provider request bodies and answers, through orjson.

A chunk worker encodes one request body and decodes one answer per prompt; with the
standard json module that was ~6% of the worker's CPU at an instant provider, orjson
does the same in a fraction of it. orjson refuses a few things json accepts: integers
beyond 64 bits, and (in a dict) keys that are not strings. A job's params are parsed
from the client's JSON, so a huge integer can reach a request body: such a body is
encoded by the json module instead, with the same meaning, rather than failing the call.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Both raise a ValueError for text that is not JSON (orjson.JSONDecodeError is one).
loads = orjson.loads


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: what orjson refuses and json accepts
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
