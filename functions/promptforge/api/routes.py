"""The public paths of the API and the function that serves each.

One table, read by the local gateway (``infra/gateway.py``) and, later, by the
OpenAPI document and the Terraform checks, so a path is declared once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with ``{job_id}`` placeholders, as in the contract
    function: str  # the entry point in functions/main.py
    api: bool = True  # part of the API (and of its OpenAPI document); False for the web page

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


ROUTES: tuple[Route, ...] = (
    Route("POST", "/v1/jobs/init", "jobs_init"),
    Route("POST", "/v1/jobs", "jobs_create"),
    Route("GET", "/v1/jobs", "jobs_list"),
    Route("GET", "/v1/jobs/{job_id}/status", "job_status"),
    Route("GET", "/v1/jobs/{job_id}/results", "job_results"),
    Route("POST", "/v1/jobs/{job_id}/cancel", "job_cancel"),
    Route("GET", "/v1/jobs/{job_id}/events", "job_events"),
    Route("GET", "/v1/openapi.json", "openapi"),
    # The jobs page (static files, no key needed to fetch them); not part of the API.
    Route("GET", "/ui", "web", api=False),
    Route("GET", "/ui/{path}", "web", api=False),
)


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route serving ``method path`` and its path parameters, or None."""
    for route in ROUTES:
        m = route.pattern().match(path)
        if m and route.method == method.upper():
            return route, m.groupdict()
    return None
