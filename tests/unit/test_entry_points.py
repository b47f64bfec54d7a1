"""functions/main.py makes one entry point per function of the route table, each a
module-level callable named as the function, registered with functions-framework under
that name with its trigger's signature type: what ``--target <name>`` and Cloud
Functions' entry point look up."""

from __future__ import annotations

import json
import subprocess
import sys

from promptforge.api.routes import ENTRY_POINTS, INTERNAL, ROUTES
from tests.conftest import ROOT

_PROBE = """
import json, types
import main
from functions_framework import _function_registry as registry
out = {}
for name in main.__all__:
    fn = registry.get_user_function(main.__file__, main, name)
    out[name] = [isinstance(fn, types.FunctionType), fn.__name__, registry.get_func_signature_type(name, None)]
print(json.dumps(out))
"""


def test_main_serves_every_entry_point_under_its_name_with_its_signature() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        cwd=ROOT / "functions",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    served = json.loads(out.stdout.splitlines()[-1])
    expected = {ep.name: [True, ep.name, "cloudevent" if ep.trigger == "event" else "http"] for ep in ENTRY_POINTS}
    assert served == expected


def test_entry_points_are_the_internal_functions_and_those_behind_a_route_once_each() -> None:
    names = [ep.name for ep in ENTRY_POINTS]
    assert len(names) == len(set(names))
    assert set(names) == {ep.name for ep in INTERNAL} | {route.function for route in ROUTES}
    # Each handler names a function of the API layer's modules.
    assert all(ep.handler.split(".")[0] in {"public", "internal", "web"} for ep in ENTRY_POINTS)
