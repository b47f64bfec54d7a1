"""Cloud Functions entry points, one per function; each only parses and delegates.

The entry points are made here at import from the route table
(``promptforge.api.routes.ENTRY_POINTS``): one module-level callable per function, named
as the function, which is what ``functions-framework --target <name>`` and Cloud
Functions' entry point look up. A new endpoint is a route, not a line here.

Nothing heavy is imported here: the Google Cloud clients and provider code load on
first use, inside the function that needs them, to keep cold starts short.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import functions_framework

from promptforge.api import internal, public
from promptforge.api import web as web_page
from promptforge.api.routes import ENTRY_POINTS, EntryPoint
from promptforge.wiring import live

live()  # reads and checks every setting now: a bad value stops the instance at start, naming it

_MODULES: dict[str, Any] = {"public": public, "internal": internal, "web": web_page}


def _entry(ep: EntryPoint) -> Callable[..., Any]:
    module, name = ep.handler.split(".")
    handler = getattr(_MODULES[module], name)
    serve: Callable[..., Any]
    if ep.trigger == "event":

        def serve(event: Any) -> None:
            handler(event, live())

    elif module == "web":

        def serve(request: Any) -> Any:  # static files: no key, no deps, its own error answers
            return handler(request)

    else:
        serve = public.endpoint(handler, live)
    # functions-framework registers a function's signature type under its __name__ and
    # looks the target up under the same name: both must be the entry point's.
    serve.__name__ = serve.__qualname__ = ep.name
    registered: Callable[..., Any] = (
        functions_framework.cloud_event(cast(Any, serve)) if ep.trigger == "event" else functions_framework.http(cast(Any, serve))
    )
    return registered


for _ep in ENTRY_POINTS:
    globals()[_ep.name] = _entry(_ep)

__all__ = [ep.name for ep in ENTRY_POINTS]
