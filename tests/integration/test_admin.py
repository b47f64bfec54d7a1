"""The operator command for API keys, against the stack's Firestore and its API."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import requests

from tests.conftest import ROOT


def admin(stack: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptforge.admin", "keys", *args],
        cwd=ROOT / "functions",
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_list_revoke(stack: Any) -> None:
    made = json.loads(admin(stack, "create", "--label", "ops-test", "--json").stdout)
    key, client = made["api_key"], made["client_id"]
    second = json.loads(admin(stack, "create", "--client-id", client, "--json").stdout)
    assert second["client_id"] == client and second["api_key"] != key

    listing = admin(stack, "list").stdout
    assert made["prefix"] in listing and "ops-test" in listing
    assert key not in listing and second["api_key"] not in listing

    init = f"{stack.base_url}/v1/jobs/init"
    ok = requests.post(init, json={"provider": "fake", "model": "m"}, headers={"X-API-Key": key}, timeout=30)
    assert ok.status_code == 201

    revoked = admin(stack, "revoke", made["prefix"])
    assert revoked.returncode == 0 and client in revoked.stdout
    gone = requests.post(init, json={"provider": "fake", "model": "m"}, headers={"X-API-Key": key}, timeout=30)
    assert gone.status_code == 401
    # the client's other key still works: revocation is per key
    other = requests.post(init, json={"provider": "fake", "model": "m"}, headers={"X-API-Key": second["api_key"]}, timeout=30)
    assert other.status_code == 201
    assert admin(stack, "revoke", "pf_nothing").returncode == 1
