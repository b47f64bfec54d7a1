"""The API functions stay light: no provider SDK or Cloud Tasks client at import, nor
while serving their requests. Module lists, not timings (the machines are shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from infra import import_probe
from tests.conftest import ROOT
from tests.e2e.test_lifecycle_http import new_key

NEVER_FOR_THE_API = ("google.cloud.tasks_v2", "openai", "anthropic", "google.genai", "httpx", "infra")

_SERVE = """
import json, sys
import flask
import main
app = flask.Flask("probe")
key = sys.argv[1]
codes = []
with app.test_request_context("/v1/jobs/init", method="POST", json={"provider": "fake", "model": "m"},
                              headers={"X-API-Key": key}):
    res = main.jobs_init(flask.request)
    codes.append(res.status_code)
    job_id = res.get_json()["job_id"]
for what in ("status", "results"):
    with app.test_request_context(f"/v1/jobs/{job_id}/{what}", headers={"X-API-Key": key}):
        codes.append(getattr(main, "job_" + what)(flask.request).status_code)
loaded = sorted(h for h in __NAMES__ if any(m == h or m.startswith(h + ".") for m in sys.modules))
print(json.dumps({"codes": codes, "loaded": loaded}))
""".replace("__NAMES__", repr(NEVER_FOR_THE_API))


def test_importing_main_loads_no_heavy_client() -> None:
    assert import_probe.probe()["heavy_modules_loaded"] == []


def test_serving_the_api_loads_no_provider_or_tasks_code(stack: Any) -> None:
    env = {**stack.env(), "PROMPTFORGE_PROVIDERS": "fake"}
    out = subprocess.run(
        [sys.executable, "-c", _SERVE, new_key(stack)],
        cwd=ROOT / "functions",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["codes"] == [201, 200, 409]
    assert report["loaded"] == []
