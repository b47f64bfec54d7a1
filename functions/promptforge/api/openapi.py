"""The OpenAPI 3.1 document of the public API, generated from the route table and the
same pydantic models the functions validate and answer with."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import schemas
from .routes import ROUTES

_REF = "#/components/schemas/{model}"
# Bounds of query parameters, by name (the routes give name and type).
_QUERY_BOUNDS: dict[str, dict[str, Any]] = {"limit": {"minimum": 1, "maximum": 100}}

_ERROR_TEXT = {
    400: (
        "Invalid request (not one JSON object, nested too deep, NaN or Infinity, mode economy for a provider "
        "without a batch API or with budget_tokens, ...); details.field names the field"
    ),
    401: "Missing or invalid X-API-Key",
    404: "Job not found, or it belongs to another client",
    409: "The job is not in a state that allows this; details.current_status says which",
    413: "Too large; the message and details.limit_bytes say the limit",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


# Fair use (service/quotas.py): every keyed call counts against its client's requests per
# minute (rate_limited); these also against a cap of their own.
_CAP_CODES: dict[str, tuple[str, ...]] = {
    "jobs_init": ("too_many_awaiting_uploads", "too_many_open_jobs"),
    "jobs_create": ("too_many_awaiting_uploads", "too_many_open_jobs"),
    "job_events": ("too_many_event_streams",),
}


def _over_cap(function: str, error: dict[str, Any]) -> dict[str, Any]:
    """The 429 answer of a keyed operation: which codes it may carry, and Retry-After."""
    codes = ", ".join(("rate_limited", *_CAP_CODES.get(function, ())))
    return {
        "description": (
            f"Over a fair-use cap of the client (error.code: {codes}); details.limit is the cap and "
            "details.current the client's count. Retry after Retry-After seconds."
        ),
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before trying again",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        },
        "content": _json(error),
    }


@functools.cache
def document(providers: tuple[str, ...] = (), inline_max_prompts: int = 0) -> dict[str, Any]:
    """The whole document (built once per process), narrowed to what this deployment
    serves: its enabled providers and its inline limit."""
    api = [route for route in ROUTES if route.api]
    names = [n for r in api for n in (r.body, r.ok[1], r.alt_ok) if n] + ["ErrorEnvelope"]
    models: list[type[BaseModel]] = [getattr(schemas, name) for name in dict.fromkeys(names)]
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    error = {"$ref": _REF.format(model="ErrorEnvelope")}
    paths: dict[str, dict[str, Any]] = {}
    for route in api:
        status, model = route.ok
        ok_schema: dict[str, Any] = {"$ref": _REF.format(model=model)} if model else {}
        if route.alt_ok:
            ok_schema = {"oneOf": [ok_schema, {"$ref": _REF.format(model=route.alt_ok)}]}
        ok_content = _json(ok_schema) if model else {route.media: {}}
        op: dict[str, Any] = {
            "operationId": route.function,
            "summary": route.summary,
            "responses": {str(status): {"description": "OK", "content": ok_content}},
        }
        for code in route.errors:
            op["responses"][str(code)] = {"description": _ERROR_TEXT[code], "content": _json(error)}
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
            for name in ("job_id",)
            if "{job_id}" in route.path
        ]
        params += [
            {"name": n, "in": "query", "required": False, "schema": {"type": t, **_QUERY_BOUNDS.get(n, {})}}
            for n, t in route.query
        ]
        if params:
            op["parameters"] = params
        if route.body:
            op["requestBody"] = {"required": True, "content": _json({"$ref": _REF.format(model=route.body)})}
        if not route.public:
            op["security"] = [{"ApiKey": []}]
            op["responses"]["429"] = _over_cap(route.function, error)
        paths.setdefault(route.path, {})[route.method.lower()] = op
    for name in ("InitRequest", "CreateRequest"):
        props = defs["$defs"][name]["properties"]
        if providers:
            props["provider"] = {"type": "string", "enum": list(providers)}
        if name == "CreateRequest" and inline_max_prompts:
            props["prompts"]["maxItems"] = inline_max_prompts
    return {
        "openapi": "3.1.0",
        "info": {"title": "PromptForge", "version": "1.0.0", "description": "Batch LLM jobs: upload prompts, download results."},
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
        },
    }
