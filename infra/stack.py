#!/usr/bin/env python
"""The local PromptForge stack: Google Cloud emulators, function servers and helpers.

CLI (from the repository root, after ``bash infra/bootstrap.sh``)::

    .venv/bin/python infra/stack.py up     [--profile dev|test] [--base-port N] [--services a,b]
    .venv/bin/python infra/stack.py status [--profile dev|test]
    .venv/bin/python infra/stack.py env    [--profile dev|test]   # export lines, for eval
    .venv/bin/python infra/stack.py down   [--profile dev|test]

Python API (e.g. a pytest session fixture)::

    stack = Stack("test")
    stack.up()            # raises StackError, after stopping what it started, on any failure
    os.environ.update(stack.env())
    ... requests.get(stack.base_url + "/v1/jobs/x/status") ...
    stack.down()

Every server binds 127.0.0.1 only and runs in its own process group (``start_new_session``),
so ``down`` also stops the Java processes behind the emulators' shell launchers. The run
directory (``.run/PROFILE/``) holds one ``NAME.pid`` and ``NAME.log`` per process,
``stack.env`` (export lines), ``stack.json`` and a throwaway signing key.

Port layout, from the profile's base port B (8400 dev, 18400 test): gateway B, Firestore B+1,
Pub/Sub B+2, fake-gcs-server B+3, Cloud Tasks emulator B+4, fake LLM B+5, Eventarc forwarder
B+6, and the functions from B+10 as listed in :data:`FUNCTIONS`.

Environment overrides: ``PROMPTFORGE_FUNCTIONS_SOURCE`` (the ``main.py`` the function
servers load, default ``functions/main.py``), ``PROMPTFORGE_TASKS_MAX_RETRIES`` (default -1,
retry for ever).

The parts: ``infra/stack_services.py`` says what runs (functions, ports, command lines),
``infra/procs.py`` reads processes and sockets from /proc, ``infra/stack_cli.py`` is the
command line; this module starts, stops and watches the processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: `infra` is importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra import model_server as model_srv  # noqa: E402

# Re-exported: tests, benchmarks and the demo import these names from infra.stack.
from infra.procs import (  # noqa: E402
    HOST,
    group_members,
    http_ok,
    listening_inodes,
    log_tail,
    port_in_use,
    proc_start_time,
    process_groups,
    socket_inodes,
)
from infra.stack_services import (  # noqa: E402
    CHUNK_QUEUES,
    EVENTS_ACK_DEADLINE_SECONDS,
    EVENTS_SUBSCRIPTION,
    EVENTS_TOPIC,
    FUNCTIONS,
    FUNCTIONS_DIR,
    LOCAL_PROVIDERS,
    NOTIFY_QUEUE,
    PLAN_QUEUE,
    PROFILES,
    REPO,
    RESULTS_BUCKET,
    SERVER_OFFSETS,
    TASKS_LOCATION,
    TASKS_VENV_PYTHON,
    UPLOAD_BUCKET,
    VENV_BIN,
    Function,
    Profile,
    Service,
    definitions,
    function_url,
)

__all__ = [
    "FUNCTIONS",
    "HOST",
    "PROFILES",
    "SERVER_OFFSETS",
    "Function",
    "Profile",
    "Service",
    "Stack",
    "StackError",
    "make_signing_key",
    "port_in_use",
]

logger = logging.getLogger("promptforge.stack")

START_TIMEOUT_SECONDS = 30.0  # per process; JVMs start in ~2-4 s, functions in ~1-3 s
STOP_GRACE_SECONDS = 5.0  # SIGTERM, then SIGKILL
PORT_FREE_TIMEOUT_SECONDS = 10.0
LOG_TAIL_LINES = 40


class StackError(RuntimeError):
    """The stack could not be started, or is in a state the command refuses to act on."""


def make_signing_key(path: Path, project: str) -> str:
    """Write a throwaway service-account-style JSON key for signing URLs locally.

    Returns the key's ``client_email``. fake-gcs-server does not verify signatures, but the
    functions still sign exactly as they would with a real key. Never commit these.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    email = f"local-signer@{project}.iam.gserviceaccount.com"
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": str(secrets.randbelow(10**21)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    # Create with 0600 from the start rather than chmod after the key hit the disk.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f, indent=2)
    return email


class Stack:
    """One local stack: its configuration, and up/down/status of its processes."""

    def __init__(
        self,
        profile: str = "dev",
        *,
        base_port: int | None = None,
        run_dir: Path | None = None,
        functions_source: Path | None = None,
        services: Collection[str] | None = None,
        extra_env: dict[str, str] | None = None,
        tasks_max_retries: int | None = None,
        model_server: bool = False,
    ) -> None:
        """Configure a stack; nothing starts until :meth:`up`.

        ``base_port`` overrides the profile's (tests use their own so they never collide
        with a running dev or test stack); ``services`` limits which processes start (names
        from :meth:`service_names`); ``functions_source`` replaces ``functions/main.py``
        (default: ``$PROMPTFORGE_FUNCTIONS_SOURCE``); ``extra_env`` is added to every
        process's environment. ``model_server`` adds the real model server
        (``infra/model_server.py``, installed by ``infra/llm_install.sh``) as the service
        ``model-server`` and as the ``openai_compatible`` endpoint ``llama``.
        """
        if profile not in PROFILES:
            raise StackError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        self.profile = profile
        self.project = PROFILES[profile].project
        self.base_port = base_port if base_port is not None else PROFILES[profile].base_port
        self.run_dir = (run_dir or REPO / ".run" / profile).resolve()
        source = functions_source or os.environ.get("PROMPTFORGE_FUNCTIONS_SOURCE") or FUNCTIONS_DIR / "main.py"
        self.functions_source = Path(source).resolve()
        self.model_server = model_server
        names = self.service_names()
        if model_server:
            names.insert(names.index("fake-llm") + 1, "model-server")
        unknown = set(services or ()) - set(names)
        if unknown:
            raise StackError(f"unknown services: {', '.join(sorted(unknown))}; known: {', '.join(names)}")
        self.services = [n for n in names if services is None or n in services]
        self.extra_env = dict(extra_env or {})
        if tasks_max_retries is None:
            tasks_max_retries = int(os.environ.get("PROMPTFORGE_TASKS_MAX_RETRIES", "-1"))
        self.tasks_max_retries = tasks_max_retries
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.startup_seconds: float | None = None  # how long the last successful up() took

    # --- configuration ------------------------------------------------------------------

    @staticmethod
    def service_names() -> list[str]:
        """Every process the stack can run, in start order."""
        order = ["firestore", "pubsub", "tasks-emulator", "fake-llm", "eventarc-forwarder", "fake-gcs"]
        return order + [f.name for f in FUNCTIONS] + ["gateway"]

    @property
    def ports(self) -> dict[str, int]:
        """Port of every service of this stack (selected or not), by service name."""
        ports = {name: self.base_port + off for name, off in SERVER_OFFSETS.items()}
        ports.update({f.name: self.base_port + f.port_offset for f in FUNCTIONS})
        if self.model_server:
            ports["model-server"] = self.base_port + model_srv.PORT_OFFSET
        return ports

    @property
    def base_url(self) -> str:
        """The public API's base URL (the gateway)."""
        return f"http://{HOST}:{self.ports['gateway']}"

    def function_url(self, name: str) -> str:
        """Direct URL of a function server (what Cloud Tasks and Eventarc call)."""
        return function_url(self.ports, name)

    @property
    def signing_key_file(self) -> Path:
        """Where :meth:`up` writes the throwaway URL-signing key."""
        return self.run_dir / "signing-key.json"

    def env(self) -> dict[str, str]:
        """Environment variables the functions and clients need to use this stack."""
        p = self.ports
        # The operator's openai_compatible endpoints: the fake LLM, and the real model server
        # when this stack runs one (its address is the operator's choice, as in production).
        endpoints: dict[str, dict[str, str]] = {"local": {"base_url": f"http://{HOST}:{p['fake-llm']}/v1"}}
        if self.model_server:
            endpoints[model_srv.ENDPOINT] = model_srv.endpoint_config(f"http://{HOST}:{p['model-server']}/v1")
        return {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "FIRESTORE_EMULATOR_HOST": f"{HOST}:{p['firestore']}",
            "PUBSUB_EMULATOR_HOST": f"{HOST}:{p['pubsub']}",
            "STORAGE_EMULATOR_HOST": f"http://{HOST}:{p['fake-gcs']}",
            "PROMPTFORGE_UPLOAD_BUCKET": UPLOAD_BUCKET,
            "PROMPTFORGE_RESULTS_BUCKET": RESULTS_BUCKET,
            "PROMPTFORGE_TASKS_LOCATION": TASKS_LOCATION,
            "PROMPTFORGE_PLAN_QUEUE": PLAN_QUEUE,
            "PROMPTFORGE_CHUNK_QUEUES": ",".join(CHUNK_QUEUES),
            "PROMPTFORGE_PLAN_URL": self.function_url("plan_job"),
            "PROMPTFORGE_CHUNK_URL": self.function_url("process_chunk"),
            "PROMPTFORGE_NOTIFY_URL": self.function_url("notify_callback"),
            "PROMPTFORGE_NOTIFY_QUEUE": NOTIFY_QUEUE,
            # A named database, as each environment has in production.
            "PROMPTFORGE_FIRESTORE_DATABASE": f"promptforge-{self.profile}",
            # Events stream from the function's own URL (the gateway buffers in production);
            # the jobs page, served by the gateway, calls it across origins.
            "PROMPTFORGE_EVENTS_URL": self.function_url("job_events").rstrip("/"),
            "PROMPTFORGE_CORS_ORIGINS": self.base_url,
            "PROMPTFORGE_ALLOW_LOOPBACK_HTTP_CALLBACKS": "1",
            "PROMPTFORGE_ENDPOINTS": json.dumps(endpoints),
            "PROMPTFORGE_TASKS_EMULATOR_HOST": f"{HOST}:{p['tasks-emulator']}",
            "PROMPTFORGE_SIGNING_KEY_FILE": str(self.signing_key_file),
            "PROMPTFORGE_SIGNING_SERVICE_ACCOUNT": f"local-signer@{self.project}.iam.gserviceaccount.com",
            "PROMPTFORGE_FAKE_LLM_URL": f"http://{HOST}:{p['fake-llm']}/v1",
            # The stack is offline: enable the fake provider (and any OpenAI-compatible
            # server, which can also be pointed at the fake LLM).
            "PROMPTFORGE_PROVIDERS": LOCAL_PROVIDERS,
            "PROMPTFORGE_BASE_URL": self.base_url,
            # Economy jobs poll their provider batches after 1 s, then at most every 5 s
            # (production waits 30 s, doubling to 10 minutes): the fake LLM's batches end
            # in seconds, and a local economy job should too.
            "PROMPTFORGE_ECONOMY_POLL_FIRST_SECONDS": "1",
            "PROMPTFORGE_ECONOMY_POLL_MAX_SECONDS": "5",
        }

    def sdk_providers_env(self) -> dict[str, str]:
        """openai, anthropic and gemini enabled and pointed at this stack's fake LLM (which
        speaks all three formats and their batch APIs), with a throwaway key each: add it
        to ``extra_env`` to run jobs, economy ones included, on those providers locally.

        Not part of :meth:`env`: shells export that (``stack.py env``), and
        ``OPENAI_BASE_URL`` or ``OPENAI_API_KEY`` there would point a developer's own SDKs
        at the fake, or replace their real key.
        """
        fake = f"http://{HOST}:{self.ports['fake-llm']}"
        return {
            "PROMPTFORGE_PROVIDERS": f"{LOCAL_PROVIDERS},openai,anthropic,gemini",
            "OPENAI_BASE_URL": f"{fake}/v1",
            "ANTHROPIC_BASE_URL": fake,
            "GEMINI_BASE_URL": fake,
            "OPENAI_API_KEY": "sk-local-fake-llm",
            "ANTHROPIC_API_KEY": "sk-ant-local-fake-llm",
            "GEMINI_API_KEY": "local-fake-llm",
        }

    def _definitions(self) -> dict[str, Service]:
        return definitions(
            project=self.project,
            ports=self.ports,
            functions_source=self.functions_source,
            services=self.services,
            tasks_max_retries=self.tasks_max_retries,
        )

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def _log_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def _recorded_groups(self) -> dict[str, int]:
        """Service name -> process group of every pid file whose group still has members."""
        groups = {}
        self._reap()
        live = process_groups()
        for pid_file in sorted(self.run_dir.glob("*.pid")):
            try:
                pid_s, start = pid_file.read_text().split()
                pid = int(pid_s)
            except (OSError, ValueError):
                continue
            # A live leader with another start time is a reused pid: not ours. A dead
            # leader's pid cannot be reused while its group still has members.
            leader_start = proc_start_time(pid)
            if leader_start is not None and leader_start != start:
                continue
            if live.get(pid):
                groups[pid_file.stem] = pid
        return groups

    def _reap(self) -> None:
        # Collect exited children we spawned, so they do not linger as zombies in their group.
        for proc in self._procs.values():
            proc.poll()

    def _child_env(self, service: Service) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env())
        env.update(self.extra_env)
        env.update(service.env)
        env["PYTHONUNBUFFERED"] = "1"  # logs appear as they happen
        return env

    def _spawn(self, service: Service) -> None:
        log = open(self._log_file(service.name), "wb")  # noqa: SIM115 (the child owns it)
        try:
            proc = subprocess.Popen(
                service.argv,
                cwd=service.cwd,
                env=self._child_env(service),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: down() signals the group, which reaches the JVMs the
                # emulator launchers start and the workers gunicorn forks.
                start_new_session=True,
            )
        finally:
            log.close()
        self._procs[service.name] = proc
        self._pid_file(service.name).write_text(f"{proc.pid} {proc_start_time(proc.pid)}\n")

    def _healthy(self, service: Service) -> bool:
        if service.health_path is None:
            return port_in_use(service.port)
        return http_ok(f"http://{HOST}:{service.port}{service.health_path}")

    def _wait_ready(self, service: Service, started: float) -> float:
        """Block until ``service`` is ready; return seconds since ``started``."""
        proc = self._procs[service.name]
        deadline = started + START_TIMEOUT_SECONDS
        while True:
            rc = proc.poll()
            if rc is not None:
                raise self._failure(service, f"exited with code {rc} while starting")
            if self._healthy(service):
                return time.monotonic() - started
            if time.monotonic() > deadline:
                what = f"GET {service.health_path}" if service.health_path else "TCP"
                raise self._failure(service, f"not ready ({what} on port {service.port}) after {START_TIMEOUT_SECONDS:.0f}s")
            time.sleep(0.05)

    def _failure(self, service: Service, what: str) -> StackError:
        log = self._log_file(service.name)
        return StackError(
            f"{service.name} {what}.\n"
            f"command: {shlex.join(service.argv)}\n"
            f"--- last lines of {log} ---\n{log_tail(log, LOG_TAIL_LINES)}\n--- end of {service.name} log ---"
        )

    # --- lifecycle ----------------------------------------------------------------------

    def _preflight(self, defs: dict[str, Service]) -> None:
        running = self._recorded_groups()
        if running:
            raise StackError(
                f"profile {self.profile!r} is already running ({', '.join(sorted(running))}; run dir {self.run_dir}). "
                f"Stop it first: .venv/bin/python infra/stack.py down --profile {self.profile}"
            )
        busy = [f"{n} ({defs[n].port})" for n in self.services if port_in_use(defs[n].port)]
        if busy:
            raise StackError(f"ports already in use by other processes: {', '.join(busy)}")
        missing = []
        if not TASKS_VENV_PYTHON.exists() or not (VENV_BIN / "functions-framework").exists():
            missing.append("the virtual environments (.venv, .venv-tasks): run bash infra/bootstrap.sh")
        if not shutil.which("java") and {"firestore", "pubsub"} & set(self.services):
            missing.append("java (needed by the Firestore and Pub/Sub emulators)")
        if "model-server" in self.services and not (model_srv.VENV_PYTHON.exists() and model_srv.MODEL_FILE.exists()):
            missing.append("the model server and its model (.venv-llm): run bash infra/llm_install.sh")
        for name in ("firestore", "pubsub"):
            if name in self.services and not Path(defs[name].argv[0]).exists():
                missing.append(f"the {name} emulator at {defs[name].argv[0]} (google-cloud-cli-{name}-emulator)")
        if any(f.name in self.services for f in FUNCTIONS) and not self.functions_source.exists():
            missing.append(
                f"the functions source {self.functions_source} "
                "(set PROMPTFORGE_FUNCTIONS_SOURCE, or start without functions: --services ...)"
            )
        if missing:
            raise StackError("cannot start the stack, missing: " + "; ".join(missing))

    def up(self) -> None:
        """Start every selected service and wait until each is ready.

        Raises :class:`StackError` if the profile is already running, a port is taken, or
        any process fails to start; in the last case everything started is stopped first
        and the error carries the tail of the failing process's log.
        """
        t0 = time.monotonic()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        defs = self._definitions()
        self._preflight(defs)
        stale_state = (self.run_dir / "stack.env", self.run_dir / "stack.json")
        for stale in (*self.run_dir.glob("*.pid"), *self.run_dir.glob("*.log"), *stale_state):
            stale.unlink(missing_ok=True)
        make_signing_key(self.signing_key_file, self.project)

        started: dict[str, float] = {}
        try:
            # fake-gcs-server publishes to a topic that must exist first, so it starts once
            # Pub/Sub is set up; everything else starts at once (the JVMs are the slow part).
            for name in self.services:
                if name != "fake-gcs" or "pubsub" not in self.services:
                    started[name] = time.monotonic()
                    self._spawn(defs[name])
            if "pubsub" in self.services:
                self._log_ready("pubsub", self._wait_ready(defs["pubsub"], started["pubsub"]))
                self._setup_pubsub()
                if "fake-gcs" in self.services:
                    started["fake-gcs"] = time.monotonic()
                    self._spawn(defs["fake-gcs"])
            for name in self.services:
                if name == "pubsub":
                    continue
                self._log_ready(name, self._wait_ready(defs[name], started[name]))
                if name == "fake-gcs":
                    self._setup_buckets()
        except BaseException as exc:
            # Includes KeyboardInterrupt: never leave half a stack behind.
            leftovers = self.down()
            if leftovers:
                logger.error("could not stop everything after the failure: %s", "; ".join(leftovers))
            if isinstance(exc, StackError):
                raise
            if isinstance(exc, Exception):
                raise StackError(f"stack start-up failed: {type(exc).__name__}: {exc}") from exc
            raise
        self.startup_seconds = time.monotonic() - t0
        self._write_state()
        logger.info("stack %r up in %.1fs: %s", self.profile, self.startup_seconds, self.base_url)

    def _log_ready(self, name: str, seconds: float) -> None:
        logger.info("  %-20s ready on %s:%d after %.1fs", name, HOST, self.ports[name], seconds)

    def _setup_pubsub(self) -> None:
        """Create the notifications topic and, with the forwarder, its push subscription."""
        import grpc
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.publisher.transports import (
            PublisherGrpcTransport,
        )
        from google.pubsub_v1.services.subscriber.transports import (
            SubscriberGrpcTransport,
        )

        # Explicit insecure channels rather than setting PUBSUB_EMULATOR_HOST in this
        # process's environment, which may be a test runner's.
        target = f"{HOST}:{self.ports['pubsub']}"
        publisher = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(target)))
        subscriber = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(target)))
        topic = publisher.topic_path(self.project, EVENTS_TOPIC)
        publisher.create_topic(name=topic, timeout=10)
        if "eventarc-forwarder" not in self.services:
            # Without the forwarder the emulator would retry pushes to nowhere every second.
            logger.info("  no eventarc-forwarder: upload events stay unsubscribed on %s", topic)
        else:
            subscriber.create_subscription(
                request={
                    "name": subscriber.subscription_path(self.project, EVENTS_SUBSCRIPTION),
                    "topic": topic,
                    "push_config": {"push_endpoint": f"http://{HOST}:{self.ports['eventarc-forwarder']}/push"},
                    "ack_deadline_seconds": EVENTS_ACK_DEADLINE_SECONDS,
                },
                timeout=10,
            )
        subscriber.close()
        publisher.transport.close()

    def _setup_buckets(self) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": f"http://{HOST}:{self.ports['fake-gcs']}"},
        )
        for bucket in (UPLOAD_BUCKET, RESULTS_BUCKET):
            client.create_bucket(bucket, timeout=10)

    def _write_state(self) -> None:
        env = self.env()
        groups = self._recorded_groups()
        (self.run_dir / "stack.env").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
        state = {
            "profile": self.profile,
            "project": self.project,
            "base_port": self.base_port,
            "base_url": self.base_url,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "startup_seconds": round(self.startup_seconds or 0.0, 1),
            "functions_source": str(self.functions_source),
            "services": {n: {"port": self.ports[n], "pid": groups.get(n)} for n in self.services},
            "env": env,
        }
        (self.run_dir / "stack.json").write_text(json.dumps(state, indent=2) + "\n")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one service's whole process group at once, as a crash or a scale-in would,
        and wait until it is gone (its port free)."""
        group = self._recorded_groups().get(name)
        if group is None:
            raise StackError(f"{name} is not running")
        os.killpg(group, sig)
        port = self._definitions()[name].port
        deadline = time.monotonic() + 10
        while (group in process_groups() or port_in_use(port)) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)

    def start(self, name: str) -> float:
        """Start one service again (after :meth:`kill`); returns seconds until it answered."""
        service = self._definitions()[name]
        started = time.monotonic()
        self._spawn(service)
        return self._wait_ready(service, started)

    def down(self) -> list[str]:
        """Stop every process this run dir records and wait until the ports are free.

        Returns the problems left (processes or ports that would not go away); empty when
        everything stopped. Safe to call when nothing runs.
        """
        groups = self._recorded_groups()
        for pgid in groups.values():
            with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
                os.killpg(pgid, signal.SIGTERM)
        alive = self._wait_groups_gone(groups, STOP_GRACE_SECONDS)
        for name, pgid in alive.items():
            logger.warning("%s (process group %d) ignored SIGTERM; killing it", name, pgid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        alive = self._wait_groups_gone(alive, 2.0)
        problems = [f"{n}: process group {g} still has processes {group_members(g)}" for n, g in alive.items()]

        # Pid files of processes that are gone (stopped now, or crashed earlier) go too.
        for pid_file in self.run_dir.glob("*.pid"):
            if pid_file.stem not in alive:
                pid_file.unlink()
                self._procs.pop(pid_file.stem, None)

        ports = self._state_ports()
        deadline = time.monotonic() + PORT_FREE_TIMEOUT_SECONDS
        busy = {n: p for n, p in ports.items() if port_in_use(p)}
        while busy and time.monotonic() < deadline:
            time.sleep(0.1)
            busy = {n: p for n, p in busy.items() if port_in_use(p)}
        problems += [f"port {p} ({n}) is still in use" for n, p in sorted(busy.items())]
        # The state files and the throwaway key go with the stack; the logs stay for reading.
        for path in (self.run_dir / "stack.json", self.run_dir / "stack.env", self.signing_key_file):
            path.unlink(missing_ok=True)
        return problems

    def _wait_groups_gone(self, groups: dict[str, int], timeout: float) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        alive = dict(groups)
        while alive:
            self._reap()
            live = process_groups()
            alive = {n: g for n, g in alive.items() if live.get(g)}
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return alive

    def _state_ports(self) -> dict[str, int]:
        """Ports of the running stack: from stack.json if it exists, else the configuration."""
        try:
            state = json.loads((self.run_dir / "stack.json").read_text())
            return {n: s["port"] for n, s in state["services"].items()}
        except (OSError, ValueError, KeyError):
            return {n: self.ports[n] for n in self.services}

    # --- inspection ---------------------------------------------------------------------

    def processes(self) -> dict[str, list[int]]:
        """Service name -> pids of its live processes (the whole process group)."""
        live = process_groups()
        return {name: live.get(pgid, []) for name, pgid in self._recorded_groups().items()}

    def listening_sockets(self) -> list[tuple[str, int, str, int]]:
        """(service, pid, address, port) of every TCP socket the stack's processes listen on."""
        listeners = listening_inodes()
        found = []
        for name, pids in sorted(self.processes().items()):
            for pid in pids:
                for inode in socket_inodes(pid):
                    if inode in listeners:
                        found.append((name, pid, *listeners[inode]))
        return sorted(found)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per selected service: port, pid, whether it runs and whether it answers."""
        groups = self._recorded_groups()
        defs = self._definitions()
        report = {}
        for name in self.services:
            svc = defs[name]
            running = name in groups
            report[name] = {
                "port": svc.port,
                "pid": groups.get(name),
                "running": running,
                "healthy": running and self._healthy(svc),
                "port_taken_by_other": not running and port_in_use(svc.port),
            }
        return report


# --- CLI ----------------------------------------------------------------------------------


if __name__ == "__main__":
    from infra.stack_cli import main

    sys.exit(main())
