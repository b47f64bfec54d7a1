"""The jobs page (GET /ui) in headless Chromium against the local stack: a user enters a
key and sees their jobs newest first, with statuses, progress bars that move while a job
runs, per-error-code counts, cancel and results; a wrong key gets a clear message.

The screenshot of the page with a job running is saved to tests/e2e/artifacts/ (ignored
by git) and its path printed in the test output.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.e2e.browser import Page, chromium
from tests.e2e.test_lifecycle_http import new_key, wait

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SCREENSHOT = ARTIFACTS / "web_page.png"
FINAL_SCREENSHOT = ARTIFACTS / "web_page_final.png"
KEY_STORAGE = "promptforge.apiKey"

# Every job row as the page shows it, by job id, in the page's order.
ROWS_JS = """(() => [...document.querySelectorAll("tr.job")].map((tr) => {
  const bar = tr.querySelector("[role=progressbar]");
  const num = (sel) => tr.querySelector(sel).dataset.value;
  return {
    id: tr.dataset.jobId,
    status: tr.dataset.status,
    badge: tr.querySelector(".badge").textContent,
    now: bar.getAttribute("aria-valuenow"),
    max: bar.getAttribute("aria-valuemax"),
    valuetext: bar.getAttribute("aria-valuetext"),
    label: bar.getAttribute("aria-label"),
    completed: num(".counts .completed"),
    failed: num(".counts .failed"),
    total: num(".counts .total"),
    tokens: num(".tokens"),
    errors: Object.fromEntries(
      [...tr.querySelectorAll(".error-counts li")].map((li) => [li.dataset.code, Number(li.dataset.count)])
    ),
    cancel: !tr.querySelector("button.cancel").hidden,
    results: !tr.querySelector("button.results").hidden,
    live: !tr.querySelector(".live").hidden,
  };
}))()"""


def headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def create(base: str, key: str, prompts: list[dict[str, Any]], **extra: Any) -> str:
    body = {"provider": "fake", "model": "fake-small", "prompts": prompts, **extra}
    res = requests.post(f"{base}/v1/jobs", json=body, headers=headers(key), timeout=30)
    assert res.status_code == 201, res.text
    return str(res.json()["job_id"])


def status(base: str, key: str, job_id: str) -> dict[str, Any]:
    res = requests.get(f"{base}/v1/jobs/{job_id}/status", headers=headers(key), timeout=30)
    assert res.status_code == 200, res.text
    return dict(res.json())


def wait_for_status(base: str, key: str, job_id: str, wanted: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = status(base, key, job_id)
        if body["status"] == wanted:
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {wanted}")


def rows(page: Page) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in page.evaluate(ROWS_JS)}


def row_js(job_id: str, condition: str) -> str:
    """A JavaScript test on one job's row (``r``), for Page.wait_for."""
    return f"(() => {{ const r = {ROWS_JS}.find((x) => x.id === {json.dumps(job_id)}); return !!r && ({condition}); }})()"


def show(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n{line}")


@pytest.fixture
def slow_llm(stack: Any) -> Iterator[str]:
    """The fake LLM's URL; its configuration is put back as it was after the test."""
    llm = str(stack.env()["PROMPTFORGE_FAKE_LLM_URL"]).removesuffix("/v1")
    before = requests.get(f"{llm}/_config", timeout=5).json()
    try:
        yield llm
    finally:
        requests.post(f"{llm}/_config", json=before, timeout=5).raise_for_status()


def configure(llm: str, **changes: Any) -> None:
    requests.post(f"{llm}/_config", json=changes, timeout=5).raise_for_status()


def test_the_page_is_served_with_a_strict_policy_and_nothing_else_is(stack: Any) -> None:
    base = stack.base_url
    page = requests.get(f"{base}/ui", timeout=30)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'self'; connect-src 'self'" in page.headers["Content-Security-Policy"]
    script = requests.get(f"{base}/ui/app.js", timeout=30)
    assert script.status_code == 200 and script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert requests.get(f"{base}/ui/style.css", timeout=30).headers["Content-Type"] == "text/css; charset=utf-8"
    # Through the gateway and functions-framework: the path reaches the function decoded.
    for path in ("/ui/..%2Fmain.py", "/ui/%2e%2e%2Fpromptforge%2Fconfig.py", "/ui/..%2F..%2Frequirements.txt", "/ui/nope.js"):
        res = requests.get(f"{base}{path}", timeout=30)
        assert res.status_code == 404 and res.json()["error"]["code"] == "not_found", path


def test_a_user_with_a_key_sees_their_jobs_live_progress_and_error_counts(
    stack: Any, slow_llm: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base, key = stack.base_url, new_key(stack)
    llm = slow_llm

    # Two finished jobs: one with errors of two kinds (a line without a prompt, and replies
    # the provider's content filter stopped), one clean.
    configure(llm, faults={"content_filter": 0.4}, seed=7)
    flawed = create(base, key, [{"prompt_id": f"a{i}", "prompt": f"web {i}"} for i in range(12)] + [{"prompt_id": "bad"}])
    flawed_final = wait(base, key, flawed)
    configure(llm, faults={})
    clean = create(base, key, [{"prompt_id": f"b{i}", "prompt": "hi"} for i in range(4)], metadata={"team": "web"})
    clean_final = wait(base, key, clean)
    assert flawed_final["status"] == clean_final["status"] == "COMPLETED"
    assert flawed_final["error_counts"].get("invalid_line") == 1, flawed_final
    assert sum(flawed_final["error_counts"].values()) == flawed_final["failed_count"] >= 2, flawed_final

    # A job that runs for a while, each reply taking 2 to 22 s, so its bar moves on the page;
    # and one waiting behind it (a client runs one job at a time).
    configure(llm, latency_ms=12000, jitter_ms=10000)
    running = create(base, key, [{"prompt_id": f"c{i}", "prompt": "slow"} for i in range(40)])
    wait_for_status(base, key, running, "PROCESSING")
    pending = create(base, key, [{"prompt_id": f"d{i}", "prompt": "later"} for i in range(3)])
    assert status(base, key, pending)["status"] == "PENDING"

    with chromium() as page:
        try:
            _drive(page, base, key, flawed, clean, running, pending, capsys)
        except BaseException:
            shot = page.screenshot(ARTIFACTS / "web_page_failure.png")
            show(capsys, f"web page at the failure: {shot}")
            raise


def _drive(page: Page, base: str, key: str, flawed: str, clean: str, running: str, pending: str, capsys: Any) -> None:
    page.goto(f"{base}/ui")
    assert page.evaluate("document.title") == "PromptForge · jobs"
    label = page.evaluate("document.querySelector('label[for=api-key]').textContent")
    assert label == "API key"

    # A wrong key: a clear message, no table.
    page.type_into("#api-key", "pf_not_a_real_key")
    page.click("#show-jobs")
    error_text = "!document.getElementById('error').hidden && document.getElementById('error').textContent"
    message = page.wait_for(error_text, "the error message")
    assert message.lower().startswith("invalid key"), message
    assert page.evaluate("document.getElementById('error').getAttribute('role')") == "alert"
    assert page.evaluate("document.getElementById('jobs-section').hidden") is True
    assert page.evaluate(f"sessionStorage.getItem({json.dumps(KEY_STORAGE)})") is None

    # The right key, submitted with Enter this time.
    page.type_into("#api-key", key)
    page.press_enter()
    page.wait_for("document.querySelectorAll('tr.job').length === 4", "the four jobs")
    assert page.evaluate("document.getElementById('error').hidden") is True
    assert key not in page.evaluate("location.href")
    assert page.evaluate(f"sessionStorage.getItem({json.dumps(KEY_STORAGE)})") == key
    assert page.evaluate("localStorage.length") == 0 and page.evaluate("document.cookie") == ""

    shown = rows(page)
    assert list(shown) == [pending, running, clean, flawed], "newest first"
    for job_id in (flawed, clean):
        api = status(base, key, job_id)
        r = shown[job_id]
        assert (r["status"], r["badge"]) == ("COMPLETED", "COMPLETED")
        assert r["now"] == r["max"] == str(api["prompt_count"]), r
        assert (r["completed"], r["failed"], r["total"]) == tuple(
            str(api[k]) for k in ("completed_count", "failed_count", "prompt_count")
        )
        assert r["tokens"] == str(api["tokens_used"])
        assert r["errors"] == api["error_counts"], (r["errors"], api["error_counts"])
        assert r["results"] and not r["cancel"]
        assert r["label"] == f"Progress of job {job_id[:8]}"
    assert shown[flawed]["errors"]["invalid_line"] == 1 and len(shown[flawed]["errors"]) == 2
    assert shown[clean]["errors"] == {}
    assert shown[pending]["status"] == "PENDING" and shown[pending]["cancel"] and not shown[pending]["results"]
    assert shown[pending]["now"] is None  # not planned yet: an indeterminate bar
    assert shown[running]["status"] == "PROCESSING" and shown[running]["cancel"]

    # The running job's bar moves without a reload, over its event stream.
    first = page.wait_for(
        row_js(running, "r.live && Number(r.now) > 0 && Number(r.now) < 40 && r.max === '40'") + f" && {ROWS_JS}",
        "the running job's progress to show",
        timeout_s=60,
    )
    before = int(next(r for r in first if r["id"] == running)["now"])
    shot = page.screenshot(SCREENSHOT)
    show(capsys, f"web page screenshot (a job running): {shot}")
    page.wait_for(row_js(running, f"Number(r.now) > {before}"), "the running job's bar to move", timeout_s=60)

    # Cancel the pending job: a first click arms the button, the second cancels.
    page.click(f'tr[data-job-id="{pending}"] button.cancel')
    assert page.evaluate(f"document.querySelector('tr[data-job-id=\"{pending}\"] button.cancel').textContent") == "Confirm cancel"
    page.click(f'tr[data-job-id="{pending}"] button.cancel')
    page.wait_for(row_js(pending, "r.status === 'CANCELLED' && !r.cancel && r.results"), "the pending job to show CANCELLED")
    assert status(base, key, pending)["status"] == "CANCELLED"

    # The running job ends on the page by itself.
    page.wait_for(row_js(running, "r.status === 'COMPLETED' && r.now === '40' && !r.live"), "the job to complete", timeout_s=90)

    # Results: the download links, listed under the job.
    page.click(f'tr[data-job-id="{flawed}"] button.results')
    links = page.wait_for(
        f"""(() => {{
            const list = document.querySelectorAll('#files-{flawed} .file-list a');
            return list.length ? [...list].map((a) => [a.textContent, a.href]) : null;
        }})()""",
        "the result links",
    )
    names = sorted(name for name, _ in links)
    assert names == sorted(f["filename"] for f in _results(base, key, flawed)), names
    assert "errors.jsonl" in names and all(href.startswith("http") for _, href in links)
    expanded = f"document.querySelector('tr[data-job-id=\"{flawed}\"] button.results').getAttribute('aria-expanded')"
    assert page.evaluate(expanded) == "true"
    final = page.screenshot(FINAL_SCREENSHOT)
    show(capsys, f"web page screenshot (all ended, results open): {final}")

    # The key stays for this tab: a reload shows the jobs again without asking.
    page.reload()
    page.wait_for("document.querySelectorAll('tr.job').length === 4", "the jobs after a reload")
    # Until it is forgotten.
    page.click("#forget-key")
    page.wait_for("document.getElementById('jobs-section').hidden", "the jobs to go")
    assert page.evaluate(f"sessionStorage.getItem({json.dumps(KEY_STORAGE)})") is None
    assert page.evaluate("document.getElementById('api-key').value") == ""

    # Nothing came from anywhere but the service (its API, and its events function, which
    # streams from its own URL because the gateway buffers), and the policy blocked nothing.
    origin, events = base.rstrip("/"), _events_origin(base, key)
    made = page.requests_made()
    others = [u for u in made if not (u.startswith((origin + "/", events + "/")) or u.startswith(("about:", "data:")))]
    assert not others, f"requests outside the service: {others}"
    assert any(u.startswith(events + "/v1/jobs/") for u in made), "the page did not stream from the events URL"
    errors = [e for e in page.console_errors() if "status of 401" not in e]  # the wrong key, on purpose
    assert not errors, errors


def _events_origin(base: str, key: str) -> str:
    """The origin of the events URL the service gives in a job's status."""
    jobs = requests.get(f"{base}/v1/jobs?limit=1", headers=headers(key), timeout=30).json()["jobs"]
    parts = urlsplit(jobs[0]["events_url"])
    return f"{parts.scheme}://{parts.netloc}"


def _results(base: str, key: str, job_id: str) -> list[dict[str, Any]]:
    res = requests.get(f"{base}/v1/jobs/{job_id}/results", headers=headers(key), timeout=30)
    assert res.status_code == 200, res.text
    files: list[dict[str, Any]] = res.json()["files"]
    return files
