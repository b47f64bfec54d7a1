"""The public paths of the API, the function that serves each, and every entry point.

The one table an endpoint is declared in. Derived from it:
- ``functions/main.py``'s entry points (:data:`ENTRY_POINTS`, made at import);
- the local stack's functions and its gateway's routes (``infra/stack_services.py``,
  ``infra/gateway.py``);
- the OpenAPI document (``api/openapi.py``: paths from here, bodies from ``api/schemas.py``);
- API Gateway's OpenAPI 2.0 template (``terraform/modules/promptforge/openapi.yaml.tftpl``)
  and Terraform's ``local.functions`` (``functions_table.tf``, sizes and grants from
  ``terraform/function_specs.py``), both written by ``terraform/generate.py``; tests fail
  when either is stale.

Kept free of imports beyond the standard library: the local gateway and the checkov
policies read it, and the checkov policy reads each ``Route(...)``'s first three
arguments from the source, so they stay positional.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Query = tuple[tuple[str, str], ...]  # (name, JSON type) of each optional query parameter


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with ``{job_id}`` placeholders, as in the contract
    function: str  # the entry point in functions/main.py
    api: bool = True  # part of the API (and of its OpenAPI document); False for the web page
    summary: str = ""  # one line, in both OpenAPI documents
    # Request and success models, by name in api/schemas.py (None: no body / no JSON model).
    body: str | None = None
    ok: tuple[int, str | None] = (200, None)
    alt_ok: str | None = None  # a second success model (oneOf)
    errors: tuple[int, ...] = (401, 404)
    query: Query = ()
    public: bool = False  # True: no API key (the document itself, the page)
    media: str = "application/json"  # of the success answer
    handler: str | None = None  # "<module>.<function>" in promptforge.api; default public.<function>
    deadline: float = 30.0  # seconds API Gateway waits for the function
    threads: int | None = None  # requests one instance serves at once when held open (see EntryPoint)

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/jobs/init",
        "jobs_init",
        summary="Create a job and get a signed URL to upload its JSONL file",
        body="InitRequest",
        ok=(201, "InitResponse"),
        errors=(400, 401, 413),
        deadline=60.0,
    ),
    Route(
        "POST",
        "/v1/jobs",
        "jobs_create",
        summary="Create an inline job with its prompts in the body",
        body="CreateRequest",
        ok=(201, "StatusResponse"),
        errors=(400, 401, 413),
        deadline=60.0,
    ),
    Route(
        "GET",
        "/v1/jobs",
        "jobs_list",
        summary="The client's jobs, newest first",
        ok=(200, "JobList"),
        errors=(400, 401),
        query=(("limit", "integer"), ("page_token", "string")),
    ),
    Route("GET", "/v1/jobs/{job_id}/status", "job_status", summary="A job's status and counts", ok=(200, "StatusResponse")),
    Route(
        "GET",
        "/v1/jobs/{job_id}/results",
        "job_results",
        summary="Signed download URLs of a job's files (or its rows, inline)",
        ok=(200, "ResultsResponse"),
        alt_ok="InlineResults",
        errors=(401, 404, 409, 413),
        query=(("partial", "boolean"), ("inline", "boolean")),
    ),
    Route(
        "POST",
        "/v1/jobs/{job_id}/cancel",
        "job_cancel",
        summary="Cancel a job",
        ok=(200, "StatusResponse"),
        errors=(401, 404, 409, 413),
    ),
    # Held open for minutes: as many at once as its Cloud Run concurrency (terraform), so
    # held streams never take every thread from the next request; API Gateway waits a
    # little longer than a stream lasts (PROMPTFORGE_EVENTS_MAX_SECONDS, 300).
    Route(
        "GET",
        "/v1/jobs/{job_id}/events",
        "job_events",
        summary="Server-Sent Events: status changes until the job ends",
        media="text/event-stream",
        deadline=330.0,
        threads=80,
    ),
    Route("GET", "/v1/openapi.json", "openapi", summary="This document", errors=(), public=True),
    # The jobs page (static files, no key needed to fetch them); not part of the API.
    Route("GET", "/ui", "web", api=False, summary="The jobs page", media="text/html", handler="web.serve", public=True),
    Route(
        "GET",
        "/ui/{path}",
        "web",
        api=False,
        summary="One of the page's files (script, style sheet, icon)",
        media="text/javascript",
        handler="web.serve",
        public=True,
    ),
)


@dataclass(frozen=True)
class EntryPoint:
    """A function entry point: a module-level callable of functions/main.py of this name."""

    name: str
    handler: str  # "<module>.<function>" in promptforge.api (public, internal or web)
    trigger: Literal["http", "event"] = "http"
    # Requests one instance serves at once (gunicorn's THREADS locally); None: its default.
    threads: int | None = None


# The functions no public path reaches: Cloud Tasks, Cloud Scheduler and Eventarc targets.
INTERNAL: tuple[EntryPoint, ...] = (
    EntryPoint("on_upload", "internal.on_upload", "event"),
    EntryPoint("plan_job", "internal.plan_job"),
    EntryPoint("process_chunk", "internal.process_chunk"),
    EntryPoint("watchdog", "internal.watchdog"),
    EntryPoint("notify_callback", "internal.notify_callback"),
)


def _entry_points() -> tuple[EntryPoint, ...]:
    """The internal functions, then each function behind a route once, in route order
    (the local stack numbers its ports in this order)."""
    found: dict[str, EntryPoint] = {ep.name: ep for ep in INTERNAL}
    for route in ROUTES:
        ep = EntryPoint(route.function, route.handler or f"public.{route.function}", threads=route.threads)
        if found.setdefault(route.function, ep) != ep:
            raise ValueError(f"routes of {route.function} disagree on its handler or threads, or it is also internal")
    return tuple(found.values())


ENTRY_POINTS: tuple[EntryPoint, ...] = _entry_points()


def match(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route serving ``method path`` and its path parameters, or None."""
    for route in ROUTES:
        m = route.pattern().match(path)
        if m and route.method == method.upper():
            return route, m.groupdict()
    return None
