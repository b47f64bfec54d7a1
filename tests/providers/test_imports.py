"""Provider SDKs are imported only by the branch that uses them: module lists in fresh
interpreters, not timings (the machines are shared)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from promptforge.domain.provider_registry import CREDENTIAL_ENVS, PROVIDERS, SDKS
from tests.conftest import ROOT

CLIENTS = (*SDKS, "httpx", "httpx2")

_PROBE = """
import json, os, sys
import promptforge.adapters.providers as providers
from promptforge import config
import dataclasses

def loaded():
    return sorted(h for h in __NAMES__ if any(m == h or m.startswith(h + ".") for m in sys.modules))

report = {"package": loaded()}
name = sys.argv[1]
if name != "-":
    for var in __KEYS__:
        os.environ[var] = "k"
    settings = dataclasses.replace(config.load(), providers=(name,), endpoints={"probe": config.Endpoint("probe", "http://127.0.0.1:9/v1")})
    providers.open_provider(name, settings, "probe")
    report["opened"] = loaded()
print(json.dumps(report))
""".replace("__NAMES__", repr(CLIENTS)).replace("__KEYS__", repr(CREDENTIAL_ENVS))


def _probe(name: str) -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, name], cwd=ROOT / "functions", capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_providers_package_imports_no_sdk_and_no_http_client() -> None:
    assert _probe("-") == {"package": []}


# Every provider of the registry, and the one SDK its entry says it imports.
@pytest.mark.parametrize(("name", "expected"), [(p.name, [p.sdk] if p.sdk else []) for p in PROVIDERS])
def test_opening_a_provider_imports_its_sdk_only(name: str, expected: list[str]) -> None:
    report = _probe(name)
    assert report["package"] == []
    assert [m for m in report["opened"] if m in SDKS] == expected
