"""The seed documents' own examples, unchanged but for the base URL and the key, against
the local stack: clients written against the original API documents keep working."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from tests.e2e.test_lifecycle_http import init, new_key, upload

SEED_STATUS_EXAMPLE = """
import requests, time

def wait_for_completion(job_id, api_key, poll_interval=5):
    while True:
        res = requests.get(
            f"https://api.promptforge.dev/v1/jobs/{job_id}/status",
            headers={"X-API-Key": api_key}
        )
        data = res.json()
        print(f"Status: {data['status']}{data.get('completed_count', 0)}/{data.get('prompt_count', '?')}")
        if data["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return data
        time.sleep(poll_interval)
"""

SEED_RESULTS_EXAMPLE = """
import requests

res = requests.get(
    f"https://api.promptforge.dev/v1/jobs/{job_id}/results",
    headers={"X-API-Key": "your-api-key"}
)
data = res.json()

for file in data["files"]:
    print(file["filename"], file["url"])
"""

SEED_DOWNLOAD_LOOP = """
for url in $(curl -s https://api.promptforge.dev/v1/jobs/$JOB_ID/results \\
  -H "X-API-Key: $PROMPTFORGE_API_KEY" | jq -r '.files[].url'); do
  curl -O -J "$url"
done
"""


def localize(code: str, base_url: str, api_key: str | None = None) -> str:
    """The only edits a user makes: the base URL, and the key where it is written in."""
    code = code.replace("https://api.promptforge.dev", base_url)
    return code.replace('"your-api-key"', json.dumps(api_key)) if api_key else code


def test_seed_examples_work_unchanged(stack: Any, tmp_path: Path, capsys: Any) -> None:
    base = stack.base_url
    key = new_key(stack)
    job = init(base, key).json()
    upload(job, b"".join(json.dumps({"prompt_id": f"p{i:03d}", "prompt": f"Q{i}"}).encode() + b"\n" for i in range(40)))

    ns: dict[str, Any] = {}
    exec(localize(SEED_STATUS_EXAMPLE, base), ns)  # noqa: S102 (the seed's own code)
    started = time.monotonic()
    final = ns["wait_for_completion"](job["job_id"], key, poll_interval=1)
    assert final["status"] == "COMPLETED" and time.monotonic() - started < 120
    assert "Status: COMPLETED40/40" in capsys.readouterr().out

    ns = {"job_id": job["job_id"]}
    exec(localize(SEED_RESULTS_EXAMPLE, base, key), ns)  # noqa: S102
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == ["results_part_001.jsonl", "errors.jsonl"]

    run = subprocess.run(
        ["bash", "-c", localize(SEED_DOWNLOAD_LOOP, base)],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "JOB_ID": job["job_id"], "PROMPTFORGE_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["errors.jsonl", "results_part_001.jsonl"]
    rows = [json.loads(line) for line in (tmp_path / "results_part_001.jsonl").read_text().splitlines()]
    assert sorted(r["prompt_id"] for r in rows) == [f"p{i:03d}" for i in range(40)]
    assert (tmp_path / "errors.jsonl").read_text() == ""
    assert requests.get(f"{base}/v1/jobs/{job['job_id']}/status", headers={"X-API-Key": key}, timeout=10).ok
