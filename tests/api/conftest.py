"""The API served in process: every route of ``promptforge.api.routes`` (and the Cloud
Tasks targets) through ``endpoint(handler, deps_factory)`` in a Flask test client, on
in-memory deps. What only the stack can show (the gateway, real uploads, workers) stays
in tests/e2e."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import flask
import pytest
from flask.testing import FlaskClient

from promptforge.adapters.outbound import HttpOutbound
from promptforge.api import internal, public
from promptforge.api.routes import ROUTES
from promptforge.config import parse_endpoints
from promptforge.service import keys
from promptforge.service.deps import StaticDeps
from tests.conftest import make_settings
from tests.fakes import MemoryBlobs, MemoryProviders, MemoryStore, RecordingTasks

# The Cloud Tasks targets, at paths of their own (each is a function with its own URL).
TASK_TARGETS = {
    "plan_job": internal.plan_job,
    "process_chunk": internal.process_chunk,
    "notify_callback": internal.notify_callback,
}
SMALL_BODY = 256
INIT_BODY = 4096
INLINE_BYTES = 8192
INLINE_PROMPTS = 5


@pytest.fixture
def deps() -> StaticDeps:
    settings = make_settings(
        max_body_bytes=INIT_BODY,
        max_small_body_bytes=SMALL_BODY,
        inline_max_bytes=INLINE_BYTES,
        inline_max_prompts=INLINE_PROMPTS,
        endpoints=parse_endpoints(
            '{"local": {"base_url": "http://127.0.0.1:9/v1"}, "other": {"base_url": "http://127.0.0.1:9/v1"}}'
        ),
    )
    return StaticDeps(
        settings, MemoryStore(), MemoryBlobs(), RecordingTasks(), providers=MemoryProviders(), outbound=HttpOutbound()
    )


def app_for(deps: StaticDeps) -> flask.Flask:
    """Dispatch as the deployment does: by method and path to a route's function; a path
    asked with another method still reaches its function (each function has its own URL
    and takes any method), which answers 405 itself."""
    app = flask.Flask("promptforge-api-tests")

    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
    def dispatch(path: str) -> flask.Response:
        url = "/" + path
        name = path.removeprefix("_tasks/")
        if name in TASK_TARGETS:
            return public.endpoint(TASK_TARGETS[name], lambda: deps)(flask.request)
        by_path = [r for r in ROUTES if r.api and r.pattern().match(url)]
        if not by_path:
            return flask.Response('{"error": {"code": "not_found"}}', status=404, mimetype="application/json")
        route = next((r for r in by_path if r.method == flask.request.method), by_path[0])
        return public.endpoint(getattr(public, route.function), lambda: deps)(flask.request)

    return app


@pytest.fixture
def client(deps: StaticDeps) -> Iterator[FlaskClient]:
    with app_for(deps).test_client() as c:
        yield c


@dataclasses.dataclass
class Caller:
    key: str
    client_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@pytest.fixture
def me(deps: StaticDeps) -> Caller:
    key, record = keys.create_key(deps)
    return Caller(key, record.client_id)


@pytest.fixture
def someone_else(deps: StaticDeps) -> Caller:
    key, record = keys.create_key(deps)
    return Caller(key, record.client_id)


def error(res: Any, status: int, code: str) -> dict[str, Any]:
    """The envelope's error, after checking the status, the code and that no trace leaked."""
    text = res.get_data(as_text=True)
    assert res.status_code == status, (res.status_code, text[:300])
    assert res.mimetype == "application/json"
    assert "Traceback" not in text and 'File "' not in text
    body: dict[str, Any] = res.get_json()["error"]
    assert set(body) == {"code", "message", "details"} and body["code"] == code, body
    return body
