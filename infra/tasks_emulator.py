"""Start the Cloud Tasks emulator (PyPI ``gcloud-tasks-emulator``) on loopback only.

Run it with the emulator's own virtual environment, because the package pins
``protobuf<5`` and cannot share ``.venv``::

    .venv-tasks/bin/python infra/tasks_emulator.py --port 8404 --project promptforge-local \
        --location us-central1 --queue promptforge-plan --queue promptforge-chunks-0

What this launcher changes compared with the package's own ``start`` command:

* The package's ``APIThread`` binds its gRPC server to ``[::]`` (every interface) and ignores
  the host it is given; ours binds to ``--host`` (127.0.0.1 by default) and fails loudly when
  it cannot.
* Queues are named on the command line by their short id; the full resource names
  (``projects/P/locations/L/queues/Q``) are built here, so they match what the functions
  build from ``GOOGLE_CLOUD_PROJECT`` and ``PROMPTFORGE_TASKS_LOCATION``.
* HTTP dispatches get a deadline (the package calls ``urlopen`` without a timeout, so one
  hung target would block its queue for ever). A timed-out dispatch counts as a failure and
  is retried, like a dispatch deadline in Cloud Tasks.
* ``X-CloudTasks-QueueName`` carries the queue's short id, as Cloud Tasks sends it; the
  package sends the full resource name.
* SIGTERM stops it cleanly.

The emulator itself is used unchanged. Remember what it lacks:
it dispatches one task at a time per queue, synchronously; it retries a failed task every
~0.1 s with no backoff, for ever unless ``--max-retries`` is set; no task-name
de-duplication, no OIDC tokens, no rate limits.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
import warnings
from concurrent import futures
from types import FrameType
from typing import Any

# google.api_core warns about Python 3.11's end of life on every import; it is noise here.
warnings.filterwarnings("ignore", category=FutureWarning)

import grpc  # noqa: E402
from gcloud_tasks_emulator import server as emulator  # noqa: E402
from gcloud_tasks_emulator.cloudtasks_pb2_grpc import add_CloudTasksServicer_to_server  # noqa: E402

logger = logging.getLogger("promptforge.tasks_emulator")

# Concurrent CreateTask calls come from every chunk worker at once; the package's server
# has 2 threads, enough in practice but needlessly tight.
_GRPC_WORKERS = 8


_package_make_task_request = emulator._make_task_request


def _make_task_request_with_short_queue_name(queue_name: str, task: Any, host: str, port: int) -> Any:
    """The package's dispatch, given the queue id Cloud Tasks puts in X-CloudTasks-QueueName.

    The package passes ``projects/P/locations/L/queues/Q``; production sends ``Q``.
    """
    return _package_make_task_request(queue_name.rsplit("/", 1)[-1], task, host, port)


# submit_task() looks the function up in the module at call time, so this takes effect.
emulator._make_task_request = _make_task_request_with_short_queue_name


class LoopbackAPIThread(emulator.APIThread):  # type: ignore[misc]  # untyped package
    """The emulator's gRPC API thread, bound to the given host instead of ``[::]``."""

    def __init__(self, state: emulator.QueueState, host: str, port: int) -> None:
        super().__init__(state, host, port, daemon=True)
        self._host = host
        self.bound = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        """Serve the Cloud Tasks gRPC API on ``host:port`` until stopped."""
        try:
            # gRPC sets SO_REUSEPORT by default, which would let a second emulator share the
            # port (and its tasks) silently; fail to bind instead.
            self._httpd = grpc.server(futures.ThreadPoolExecutor(max_workers=_GRPC_WORKERS), options=[("grpc.so_reuseport", 0)])
            add_CloudTasksServicer_to_server(emulator.Greeter(self._state), self._httpd)
            address = f"{self._host}:{self._port}"
            # Older grpcio returns 0 on failure instead of raising: check both ways.
            if self._httpd.add_insecure_port(address) == 0:
                raise RuntimeError(f"cannot bind {address}")
            self._httpd.start()
            logger.info("Cloud Tasks emulator API listening on %s", address)
        except BaseException as exc:  # reported to the main thread, which exits non-zero
            self.error = exc
            return
        finally:
            self.bound.set()
        self._httpd.wait_for_termination()


class LoopbackServer(emulator.Server):  # type: ignore[misc]  # untyped package
    """The emulator's server with :class:`LoopbackAPIThread` as its API thread."""

    def __init__(
        self,
        host: str,
        port: int,
        queue_names: list[str],
        max_retries: int,
    ) -> None:
        # target_host/target_port only matter for App Engine tasks; ours are HTTP tasks
        # with absolute URLs. Point them at loopback so nothing leaves the machine.
        super().__init__(host, port, "127.0.0.1", 80, queue_names, max_retries)
        self._api = LoopbackAPIThread(self._state, host, port)

    def start(self) -> None:
        """Start the API thread, fail if it could not bind, then start dispatching."""
        self._api.start()
        self._api.bound.wait()
        if self._api.error is not None:
            raise SystemExit(f"tasks emulator: could not start the gRPC API: {self._api.error}")
        self._processor.start()


def queue_path(project: str, location: str, queue: str) -> str:
    """The full resource name of a queue, as the Cloud Tasks client builds it."""
    return f"projects/{project}/locations/{location}/queues/{queue}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the launcher's command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--location", default="us-central1")
    p.add_argument("--queue", action="append", default=[], help="queue id; repeat for more")
    p.add_argument(
        "--max-retries",
        type=int,
        default=-1,
        help="give a failing task up after this many retries (-1: retry for ever, the default)",
    )
    p.add_argument(
        "--dispatch-deadline",
        type=float,
        default=600.0,
        help="seconds a task's HTTP request may take before it counts as failed (default 600, "
        "Cloud Tasks' default for HTTP targets)",
    )
    p.add_argument("--quiet", action="store_true", help="log errors only")
    args = p.parse_args(argv)
    if not args.queue:
        p.error("give at least one --queue")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGTERM or SIGINT."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    # The package's urlopen has no timeout argument; the default socket timeout applies to
    # it. The gRPC server does not use Python sockets, so nothing else is affected.
    socket.setdefaulttimeout(args.dispatch_deadline)

    queues = [queue_path(args.project, args.location, q) for q in args.queue]
    server = LoopbackServer(args.host, args.port, queues, args.max_retries)

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server.start()
    logger.info(
        "queues: %s; max retries: %s; dispatch deadline: %.0fs",
        ", ".join(queues),
        "unlimited" if args.max_retries < 0 else args.max_retries,
        args.dispatch_deadline,
    )
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
