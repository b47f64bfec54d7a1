"""The local stack against the real emulators: wiring, loopback-only sockets, events, tasks.

The stack here serves stand-in entry points (``STAND_IN_MAIN`` below) that record what they
receive, not ``functions/main.py``: these tests check the stack's plumbing and do not
depend on the service code. It runs 500 ports above the test process's own base
(``tests.conftest.worker_port_base``: 18400, or ``PROMPTFORGE_TEST_PORT_BASE``, plus 1000 per
pytest-xdist worker) with its own run directory, so it never collides with a dev (8400)
stack nor with the session's test stack of any worker.

Run: ``.venv/bin/python -m pytest tests/integration/test_stack.py -q`` (about 15 s).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from infra import stack as stack_mod  # noqa: E402
from infra.stack import FUNCTIONS, Stack, StackError, port_in_use  # noqa: E402
from tests.conftest import wait_until, worker_port_base  # noqa: E402

# 500 above the session's test stack (which uses about 30 ports from its base), and the
# ports here stay below base + 1000: one test process's range of 1000 ports holds both.
BASE_PORT = worker_port_base() + 500
# Every service except the fake LLM, which is someone else's module: it gets its own test.
CORE_SERVICES = [n for n in Stack.service_names() if n != "fake-llm"]
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}
WAIT_SECONDS = 15.0

STAND_IN_MAIN = textwrap.dedent(
    '''
    """Stand-in entry points: each records what it receives as one JSON line."""
    import json
    import os
    import pathlib
    import time
    import uuid

    import flask
    import functions_framework

    RECORDS = pathlib.Path(os.environ["STACK_TEST_RECORDS"])


    def _record(name, entry):
        with open(RECORDS / f"{name}.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\\n")


    def _together(request):
        """With ?together=N&key=K: hold the request until N requests with key K are held
        at once (each leaves a file), so they can only all succeed when served
        concurrently; False after 10 s without them."""
        n = int(request.args.get("together", 0))
        if not n:
            return True
        held = RECORDS / ("together-" + request.args["key"])
        held.mkdir(exist_ok=True)
        (held / uuid.uuid4().hex).touch()
        deadline = time.monotonic() + 10
        while len(list(held.iterdir())) < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


    def _echo(name, request):
        entry = {
            "function": name,
            "method": request.method,
            "path": request.path,
            "query": request.query_string.decode(),
            "headers": dict(request.headers),
            "body": request.get_data(as_text=True),
        }
        _record(name, entry)
        if not _together(request):
            return flask.jsonify(entry), 504, {"X-Echo": name}
        return flask.jsonify(entry), 201, {"X-Echo": name}


    @functions_framework.http
    def jobs_init(request):
        return _echo("jobs_init", request)


    @functions_framework.http
    def job_status(request):
        return _echo("job_status", request)


    @functions_framework.http
    def job_results(request):
        return _echo("job_results", request)


    @functions_framework.http
    def plan_job(request):
        return _echo("plan_job", request)


    @functions_framework.http
    def process_chunk(request):
        return _echo("process_chunk", request)


    @functions_framework.cloud_event
    def on_upload(event):
        _record("on_upload", {
            "headers": dict(flask.request.headers),
            "attributes": dict(event.get_attributes()),
            "data": event.data,
        })
        # Fail the first delivery of these objects, to see Pub/Sub redeliver.
        marker = RECORDS / ("failed-" + event["subject"].replace("/", "_"))
        if "fail-once" in event["subject"] and not marker.exists():
            marker.touch()
            raise RuntimeError("failing the first delivery on purpose")
    '''
)


def lower_keys(headers: dict[str, str]) -> dict[str, str]:
    """Headers with lower-case names (WSGI servers re-case them)."""
    return {k.lower(): v for k, v in headers.items()}


def records(records_dir: Path, name: str) -> list[dict[str, Any]]:
    """What the stand-in function ``name`` has received so far."""
    path = records_dir / f"{name}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def records_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("records")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, records_dir: Path) -> Iterator[Stack]:
    source_dir = tmp_path_factory.mktemp("stand-in-functions")
    # Every other HTTP entry point of the table gets an echoing stand-in too.
    extra = "".join(
        f"\n\n@functions_framework.http\ndef {f.name}(request):\n    return _echo({f.name!r}, request)\n"
        for f in FUNCTIONS
        if f.signature == "http" and f"def {f.name}(" not in STAND_IN_MAIN
    )
    (source_dir / "main.py").write_text(STAND_IN_MAIN + extra)
    s = Stack(
        "test",
        base_port=BASE_PORT,
        run_dir=tmp_path_factory.mktemp("run"),
        functions_source=source_dir / "main.py",
        services=CORE_SERVICES,
        extra_env={"STACK_TEST_RECORDS": str(records_dir)},
    )
    s.up()
    try:
        yield s
    finally:
        s.down()


@pytest.fixture()
def stack_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The stack's environment, applied to this process for the test's clients."""
    env = stack.env()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def test_profiles_have_the_documented_ports_and_projects() -> None:
    dev, test = Stack("dev"), Stack("test")
    assert (dev.base_port, dev.project) == (8400, "promptforge-local")
    assert (test.base_port, test.project) == (18400, "promptforge-test")
    assert dev.ports == {
        "gateway": 8400,
        "firestore": 8401,
        "pubsub": 8402,
        "fake-gcs": 8403,
        "tasks-emulator": 8404,
        "fake-llm": 8405,
        "eventarc-forwarder": 8406,
        **{f.name: 8400 + f.port_offset for f in FUNCTIONS},
    }
    # the first functions keep the ports the README documents; no two share one
    assert [dev.ports[n] for n in ("on_upload", "plan_job", "process_chunk", "watchdog", "notify_callback", "jobs_init")] == list(
        range(8410, 8416)
    )
    assert len({f.port_offset for f in FUNCTIONS}) == len(FUNCTIONS) and min(f.port_offset for f in FUNCTIONS) >= 10
    assert test.ports["process_chunk"] == 18412
    with pytest.raises(StackError, match="unknown profile"):
        Stack("prod")


def test_the_model_server_is_an_extra_service_and_endpoint_only_when_asked_for() -> None:
    plain, with_model = Stack("dev"), Stack("dev", model_server=True)
    assert "model-server" not in plain.ports and "model-server" not in plain.services
    assert json.loads(plain.env()["PROMPTFORGE_ENDPOINTS"]) == {"local": {"base_url": "http://127.0.0.1:8405/v1"}}
    assert with_model.ports == {**plain.ports, "model-server": 8407}
    assert with_model.services == [*plain.services[:4], "model-server", *plain.services[4:]]
    assert json.loads(with_model.env()["PROMPTFORGE_ENDPOINTS"]) == {
        "local": {"base_url": "http://127.0.0.1:8405/v1"},
        "llama": {"base_url": "http://127.0.0.1:8407/v1"},
    }
    with pytest.raises(StackError, match="unknown services: model-server"):
        Stack("dev", services=["model-server"])


def test_the_sdk_providers_env_points_them_at_the_fake_llm_and_stays_out_of_env() -> None:
    dev = Stack("dev")
    assert dev.sdk_providers_env() == {
        "PROMPTFORGE_PROVIDERS": "fake,openai_compatible,openai,anthropic,gemini",
        "OPENAI_BASE_URL": "http://127.0.0.1:8405/v1",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8405",
        "GEMINI_BASE_URL": "http://127.0.0.1:8405",
        "OPENAI_API_KEY": "sk-local-fake-llm",
        "ANTHROPIC_API_KEY": "sk-ant-local-fake-llm",
        "GEMINI_API_KEY": "local-fake-llm",
    }
    # What shells export enables none of them and carries no key.
    assert dev.env()["PROMPTFORGE_PROVIDERS"] == "fake,openai_compatible"
    assert not {k for k in dev.env() if k.endswith("_API_KEY") or k.endswith("_BASE_URL") and k != "PROMPTFORGE_BASE_URL"}


def test_env_points_at_the_stack(stack: Stack) -> None:
    env = stack.env()
    b = BASE_PORT
    fn = {f.name: b + f.port_offset for f in FUNCTIONS}  # numbered in the route table's order
    assert env == {
        "GOOGLE_CLOUD_PROJECT": "promptforge-test",
        "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{b + 1}",
        "PUBSUB_EMULATOR_HOST": f"127.0.0.1:{b + 2}",
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{b + 3}",
        "PROMPTFORGE_UPLOAD_BUCKET": "promptforge-uploads",
        "PROMPTFORGE_RESULTS_BUCKET": "promptforge-results",
        "PROMPTFORGE_TASKS_LOCATION": "us-central1",
        "PROMPTFORGE_PLAN_QUEUE": "promptforge-plan",
        "PROMPTFORGE_CHUNK_QUEUES": ",".join(f"promptforge-chunks-{i}" for i in range(4)),
        "PROMPTFORGE_PLAN_URL": f"http://127.0.0.1:{fn['plan_job']}/",
        "PROMPTFORGE_CHUNK_URL": f"http://127.0.0.1:{fn['process_chunk']}/",
        "PROMPTFORGE_TASKS_EMULATOR_HOST": f"127.0.0.1:{b + 4}",
        "PROMPTFORGE_SIGNING_KEY_FILE": str(stack.run_dir / "signing-key.json"),
        "PROMPTFORGE_SIGNING_SERVICE_ACCOUNT": "local-signer@promptforge-test.iam.gserviceaccount.com",
        "PROMPTFORGE_FAKE_LLM_URL": f"http://127.0.0.1:{b + 5}/v1",
        "PROMPTFORGE_PROVIDERS": "fake,openai_compatible",
        "PROMPTFORGE_NOTIFY_URL": f"http://127.0.0.1:{fn['notify_callback']}/",
        "PROMPTFORGE_NOTIFY_QUEUE": "promptforge-notify",
        "PROMPTFORGE_FIRESTORE_DATABASE": "promptforge-test",
        "PROMPTFORGE_EVENTS_URL": f"http://127.0.0.1:{fn['job_events']}",
        "PROMPTFORGE_CORS_ORIGINS": f"http://127.0.0.1:{b}",
        "PROMPTFORGE_ALLOW_LOOPBACK_HTTP_CALLBACKS": "1",
        "PROMPTFORGE_ENDPOINTS": json.dumps({"local": {"base_url": f"http://127.0.0.1:{b + 5}/v1"}}),
        "PROMPTFORGE_BASE_URL": f"http://127.0.0.1:{b}",
        "PROMPTFORGE_ECONOMY_POLL_FIRST_SECONDS": "1",
        "PROMPTFORGE_ECONOMY_POLL_MAX_SECONDS": "5",
    }
    # The files `up` leaves for shells and tools say the same.
    exported = (stack.run_dir / "stack.env").read_text()
    assert f"export STORAGE_EMULATOR_HOST=http://127.0.0.1:{b + 3}\n" in exported
    state = json.loads((stack.run_dir / "stack.json").read_text())
    assert state["env"] == env
    assert {n: s["port"] for n, s in state["services"].items()} == {n: stack.ports[n] for n in CORE_SERVICES}


def test_signing_key_is_a_private_service_account_key(stack: Stack) -> None:
    from google.oauth2 import service_account

    key_file = stack.signing_key_file
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    info = json.loads(key_file.read_text())
    assert info["type"] == "service_account"
    assert info["client_email"] == "local-signer@promptforge-test.iam.gserviceaccount.com"
    assert info["project_id"] == "promptforge-test"
    assert info["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert {"private_key_id", "token_uri"} <= info.keys()
    creds = service_account.Credentials.from_service_account_info(info)
    assert creds.sign_bytes(b"x")


def test_every_listening_socket_is_on_loopback(stack: Stack) -> None:
    sockets = stack.listening_sockets()
    by_service: dict[str, set[int]] = {}
    for service, _pid, address, port in sockets:
        assert address in LOOPBACK, f"{service} listens on {address}:{port}"
        by_service.setdefault(service, set()).add(port)
    # Every service listens on its own port (the JVMs open a few more, on loopback too).
    for name in CORE_SERVICES:
        assert stack.ports[name] in by_service.get(name, set()), f"{name} is not listening on its port"


def test_emulators_answer_with_the_stack_env(stack_env: dict[str, str]) -> None:
    from google.cloud import firestore, storage

    db = firestore.Client(project=stack_env["GOOGLE_CLOUD_PROJECT"], database=stack_env["PROMPTFORGE_FIRESTORE_DATABASE"])
    db.collection("stack-test").document("probe").set({"ok": True})
    assert db.collection("stack-test").document("probe").get().to_dict() == {"ok": True}
    buckets = {b.name for b in storage.Client(project=stack_env["GOOGLE_CLOUD_PROJECT"]).list_buckets()}
    assert buckets == {"promptforge-uploads", "promptforge-results"}


def _signed_put(env: dict[str, str], bucket: str, name: str, data: bytes, content_type: str) -> requests.Response:
    """Upload as a client does: a V4 signed PUT URL made with the stack's key."""
    from google.cloud import storage
    from google.oauth2 import service_account

    creds = service_account.Credentials.from_service_account_file(env["PROMPTFORGE_SIGNING_KEY_FILE"])
    blob = storage.Client(project=env["GOOGLE_CLOUD_PROJECT"]).bucket(bucket).blob(name)
    url = blob.generate_signed_url(
        version="v4",
        method="PUT",
        expiration=dt.timedelta(minutes=5),
        credentials=creds,
        content_type=content_type,
        api_access_endpoint=env["STORAGE_EMULATOR_HOST"],
    )
    return requests.put(url, data=data, headers={"Content-Type": content_type}, timeout=10)


def test_upload_reaches_on_upload_as_an_eventarc_cloudevent(stack_env: dict[str, str], records_dir: Path) -> None:
    bucket = stack_env["PROMPTFORGE_UPLOAD_BUCKET"]
    # Not for the trigger: another prefix in the uploads bucket, and the results bucket.
    assert _signed_put(stack_env, bucket, "elsewhere/x.jsonl", b"{}\n", "application/jsonl").status_code == 200
    results_bucket = stack_env["PROMPTFORGE_RESULTS_BUCKET"]
    assert _signed_put(stack_env, results_bucket, "uploads/y.jsonl", b"{}\n", "application/jsonl").status_code == 200

    payload = b'{"prompt": "hello"}\n{"prompt": "world"}\n'
    name = "uploads/client-1/job-1.jsonl"
    resp = _signed_put(stack_env, bucket, name, payload, "application/jsonl")
    assert resp.status_code == 200, resp.text
    generation = resp.json()["generation"]

    def delivered() -> list[dict[str, Any]]:
        return [r for r in records(records_dir, "on_upload") if r["attributes"]["subject"] == f"objects/{name}"]

    [event] = wait_until("the finalize CloudEvent", delivered, WAIT_SECONDS)
    headers = lower_keys(event["headers"])
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "google.cloud.storage.object.v1.finalized"
    assert headers["ce-source"] == f"//storage.googleapis.com/projects/_/buckets/{bucket}"
    assert headers["ce-subject"] == f"objects/{name}"
    assert headers["ce-id"]
    assert headers["content-type"] == "application/json"
    ce_time = dt.datetime.fromisoformat(headers["ce-time"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - ce_time).total_seconds()) < 60
    data = event["data"]
    assert data["bucket"] == bucket
    assert data["name"] == name
    assert data["generation"] == generation
    assert data["size"] == str(len(payload))
    assert data["contentType"] == "application/jsonl"
    assert {"timeCreated", "updated"} <= data.keys()

    # The other two uploads never produce an event. An absence has no event to wait on, and
    # fake-gcs-server publishes asynchronously (a stray event could come after the awaited
    # one): this sleep is the window a stray event is given, the one sleep that stays.
    time.sleep(1.5)
    subjects = {r["attributes"]["subject"] for r in records(records_dir, "on_upload")}
    assert "objects/elsewhere/x.jsonl" not in subjects
    assert subjects <= {f"objects/{name}", "objects/uploads/fail-once.jsonl"}


def test_failed_delivery_is_redelivered_with_the_same_id(stack_env: dict[str, str], records_dir: Path) -> None:
    name = "uploads/fail-once.jsonl"
    bucket = stack_env["PROMPTFORGE_UPLOAD_BUCKET"]
    assert _signed_put(stack_env, bucket, name, b"{}\n", "application/jsonl").status_code == 200

    def attempts() -> list[dict[str, Any]]:
        found = [r for r in records(records_dir, "on_upload") if r["attributes"]["subject"] == f"objects/{name}"]
        return found if len(found) >= 2 else []

    first, second = wait_until("the redelivery after a 500", attempts, WAIT_SECONDS)[:2]
    assert first["attributes"]["id"] == second["attributes"]["id"]


def test_tasks_emulator_dispatches_http_tasks_to_the_workers(stack_env: dict[str, str], records_dir: Path) -> None:
    import grpc
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import (
        CloudTasksGrpcTransport,
    )

    channel = grpc.insecure_channel(stack_env["PROMPTFORGE_TASKS_EMULATOR_HOST"])
    client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    project, location = stack_env["GOOGLE_CLOUD_PROJECT"], stack_env["PROMPTFORGE_TASKS_LOCATION"]

    def enqueue(queue: str, url: str, body: dict[str, Any]) -> None:
        client.create_task(
            parent=client.queue_path(project, location, queue),
            task=tasks_v2.Task(
                http_request=tasks_v2.HttpRequest(
                    http_method=tasks_v2.HttpMethod.POST,
                    url=url,
                    headers={"Content-Type": "application/json", "X-Test": "tasks"},
                    body=json.dumps(body).encode(),
                )
            ),
            timeout=10,
        )

    enqueue(stack_env["PROMPTFORGE_PLAN_QUEUE"], stack_env["PROMPTFORGE_PLAN_URL"], {"job_id": "job-1"})
    chunk_queues = stack_env["PROMPTFORGE_CHUNK_QUEUES"].split(",")
    for i, queue in enumerate(chunk_queues):
        enqueue(queue, stack_env["PROMPTFORGE_CHUNK_URL"], {"job_id": "job-1", "chunk": i})

    [plan] = wait_until("the plan task", lambda: records(records_dir, "plan_job"), WAIT_SECONDS)
    assert plan["method"] == "POST"
    assert json.loads(plan["body"]) == {"job_id": "job-1"}
    assert lower_keys(plan["headers"])["x-test"] == "tasks"
    assert lower_keys(plan["headers"])["x-cloudtasks-queuename"] == stack_env["PROMPTFORGE_PLAN_QUEUE"]

    def all_chunks() -> list[dict[str, Any]]:
        found = records(records_dir, "process_chunk")
        return found if len(found) >= len(chunk_queues) else []

    chunks = wait_until("one task per chunk queue", all_chunks, WAIT_SECONDS)
    assert sorted(json.loads(c["body"])["chunk"] for c in chunks) == [0, 1, 2, 3]
    assert {lower_keys(c["headers"])["x-cloudtasks-queuename"] for c in chunks} == set(chunk_queues)
    channel.close()


def test_gateway_proxies_routes_to_their_functions(stack: Stack) -> None:
    resp = requests.post(
        f"{stack.base_url}/v1/jobs/init?dry_run=1&x=%20y",
        data=b'{"model": "m"}',
        headers={"Content-Type": "application/json", "Authorization": "Bearer k1", "X-Custom": "c"},
        timeout=10,
    )
    assert resp.status_code == 201
    assert resp.headers["X-Echo"] == "jobs_init"
    seen = resp.json()
    assert (seen["method"], seen["path"], seen["query"]) == ("POST", "/v1/jobs/init", "dry_run=1&x=%20y")
    assert seen["body"] == '{"model": "m"}'
    headers = lower_keys(seen["headers"])
    assert headers["authorization"] == "Bearer k1"
    assert headers["x-custom"] == "c"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{BASE_PORT}"
    assert headers["host"] == f"127.0.0.1:{stack.ports['jobs_init']}"

    # A chunked request body (no Content-Length) arrives whole.
    resp = requests.post(f"{stack.base_url}/v1/jobs/init", data=iter([b'{"a": ', b"1}"]), timeout=10)
    assert resp.json()["body"] == '{"a": 1}'

    for path, function in (("/v1/jobs/j-1/status", "job_status"), ("/v1/jobs/j-1/results", "job_results")):
        resp = requests.get(stack.base_url + path, timeout=10)
        assert (resp.status_code, resp.json()["function"], resp.json()["path"]) == (201, function, path)


def test_gateway_serves_requests_concurrently(stack: Stack) -> None:
    # Each request is held by the stand-in until all six are held at once: served one at a
    # time, the first would give up after 10 s (504) and the others would never be together.
    url = f"{stack.base_url}/v1/jobs/j-1/status?together=6&key=gateway-concurrency"

    def status(_: int) -> int | str:
        try:
            return requests.get(url, timeout=30).status_code
        except requests.Timeout:
            return "no answer in 30 s"

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(status, range(6)))
    assert statuses == [201] * 6, f"{statuses}: the six requests were not served concurrently"


def test_gateway_errors_use_the_envelope(stack: Stack, tmp_path: Path) -> None:
    for method, path in (("GET", "/v1/nope"), ("DELETE", "/v1/jobs/j-1/status"), ("GET", "/")):
        resp = requests.request(method, stack.base_url + path, timeout=10)
        assert resp.status_code == 404
        assert resp.json()["error"]["code"] == "not_found"
        assert resp.json()["error"]["details"] == {}

    # A gateway whose function is not running answers 502 "internal", without a trace.
    port, dead_port = BASE_PORT + 90, BASE_PORT + 91
    assert not port_in_use(port) and not port_in_use(dead_port)
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.gateway", "--port", str(port), "--function", f"job_status={dead_port}"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until("the second gateway", lambda: port_in_use(port), WAIT_SECONDS)
        resp = requests.get(f"http://127.0.0.1:{port}/v1/jobs/j-1/status", timeout=10)
        assert resp.status_code == 502
        assert resp.json() == {"error": {"code": "internal", "message": "The service is not available.", "details": {}}}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()


def test_up_refuses_while_the_profile_runs(stack: Stack) -> None:
    again = Stack(
        "test",
        base_port=BASE_PORT,
        run_dir=stack.run_dir,
        services=CORE_SERVICES,
        functions_source=stack.functions_source,
    )
    with pytest.raises(StackError, match="already running"):
        again.up()


def test_down_leaves_no_process_and_no_open_port(stack: Stack) -> None:
    pids = [pid for group in stack.processes().values() for pid in group]
    assert len(pids) >= len(CORE_SERVICES)
    assert stack.down() == []
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"]
    assert alive == []
    assert [n for n, p in stack.ports.items() if port_in_use(p)] == []
    assert list(stack.run_dir.glob("*.pid")) == []
    assert stack.down() == []  # idempotent


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"  # gone while we looked


def test_failed_start_reports_the_log_and_stops_everything(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("raise RuntimeError('boom at import')\n")
    broken = Stack(
        "test",
        base_port=BASE_PORT + 200,
        run_dir=tmp_path / "run",
        functions_source=tmp_path / "main.py",
        services=["eventarc-forwarder", "jobs_init"],
    )
    with pytest.raises(StackError) as err:
        broken.up()
    message = str(err.value)
    assert "jobs_init exited with code" in message
    assert "boom at import" in message  # the tail of the failing process's log
    assert not port_in_use(broken.ports["eventarc-forwarder"])
    assert broken.processes() == {}


@pytest.mark.skipif(
    not (REPO / "infra" / "fake_llm" / "server.py").exists(), reason="infra/fake_llm/server.py is not written yet"
)
def test_fake_llm_starts_on_loopback(tmp_path: Path) -> None:
    s = Stack("test", base_port=BASE_PORT + 300, run_dir=tmp_path / "run", services=["fake-llm"])
    s.up()
    try:
        assert requests.get(f"http://127.0.0.1:{s.ports['fake-llm']}/healthz", timeout=5).status_code == 200
        assert {addr for _, _, addr, _ in s.listening_sockets()} <= LOOPBACK
    finally:
        assert s.down() == []


def test_stack_module_table_drives_the_gateway_and_servers() -> None:
    # One table: every function has a unique port offset above the stack's own servers.
    offsets = [f.port_offset for f in stack_mod.FUNCTIONS]
    assert len(set(offsets)) == len(offsets)
    assert min(offsets) > max(stack_mod.SERVER_OFFSETS.values())
    assert {f.signature for f in stack_mod.FUNCTIONS} <= {"http", "cloudevent"}
