"""Generation parameters: one validator for the job body and for per-line overrides."""

from __future__ import annotations

import json
from typing import Any


def _number(lo: float, hi: float) -> Any:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if not lo <= value <= hi:
            return f"must be between {lo:g} and {hi:g}"
        return None

    return check


def _integer(lo: int, hi: int) -> Any:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        if not lo <= value <= hi:
            return f"must be between {lo} and {hi}"
        return None

    return check


def _stop(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    if isinstance(value, list) and len(value) <= 4 and all(isinstance(v, str) for v in value):
        return None
    return "must be a string or a list of at most 4 strings"


def _object(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be an object"
    return None if len(json.dumps(value)) <= 65_536 else "must be at most 64 KB as JSON"


def _choice(*options: str) -> Any:
    def check(value: Any) -> str | None:
        return None if value in options else f"must be one of {', '.join(options)}"

    return check


# The parameters PromptForge passes on to providers. Unknown names are refused rather than
# silently dropped, so a typo such as ``max_token`` is reported instead of ignored.
_CHECKS = {
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "top_k": _integer(1, 1000),
    "max_tokens": _integer(1, 1_000_000),
    "stop": _stop,
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "seed": _integer(-(2**63), 2**63 - 1),
    "response_format": _object,
    "reasoning_effort": _choice("minimal", "low", "medium", "high"),
}

KNOWN_PARAMS = frozenset(_CHECKS)


def params_problem(params: Any) -> tuple[str, str] | None:
    """The first problem with ``params`` as ``(field, message)``, or None when valid.

    ``field`` is the parameter's name, or ``""`` when ``params`` is not an object.
    """
    if not isinstance(params, dict):
        return "", "must be an object"
    for name, value in params.items():
        check = _CHECKS.get(name)
        if check is None:
            return name, f"is not a known parameter (known: {', '.join(sorted(_CHECKS))})"
        problem = check(value)
        if problem:
            return name, problem
    return None
