"""The TaskQueue on Cloud Tasks (or the local Cloud Tasks emulator).

Tasks are named after the work they carry, so Cloud Tasks itself drops a repeated
enqueue of the same plan or chunk. The emulator does not: the workers stay idempotent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from ..config import Settings


def make_client(settings: Settings) -> tasks_v2.CloudTasksClient:
    """A client for Cloud Tasks, or for the emulator over plain gRPC."""
    if settings.tasks_emulator_host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

        channel = grpc.insecure_channel(settings.tasks_emulator_host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()


class CloudTasksQueue:
    """Enqueues planning and chunk tasks for the worker functions."""

    # Cloud Tasks allows HTTP targets up to 30 minutes; a chunk stops well before.
    CHUNK_DEADLINE_SECONDS = 1800
    # A callback attempt: the receiver gets 10 s, the function a little more around it.
    NOTIFY_DEADLINE_SECONDS = 30

    def __init__(self, client: tasks_v2.CloudTasksClient, settings: Settings) -> None:
        self._client = client
        self._s = settings

    def _queue(self, name: str) -> str:
        return str(self._client.queue_path(self._s.project, self._s.tasks_location, name))

    def _create(
        self, queue: str, task_id: str, url: str, payload: dict[str, Any], deadline_s: int | None, delay_s: float = 0.0
    ) -> None:
        http: dict[str, Any] = {
            "http_method": tasks_v2.HttpMethod.POST,
            "url": url,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(payload).encode(),
        }
        if self._s.tasks_service_account:
            http["oidc_token"] = {"service_account_email": self._s.tasks_service_account, "audience": url}
        task: dict[str, Any] = {"name": f"{self._queue(queue)}/tasks/{task_id}", "http_request": http}
        if deadline_s:
            task["dispatch_deadline"] = {"seconds": deadline_s}
        if delay_s > 0:
            at = datetime.now(UTC) + timedelta(seconds=delay_s)
            task["schedule_time"] = {"seconds": int(at.timestamp()), "nanos": at.microsecond * 1000}
        try:
            self._client.create_task(parent=self._queue(queue), task=task)
        except gexc.AlreadyExists:
            pass  # the same work is already enqueued (or ran within the de-duplication window)

    def enqueue_plan(self, job_id: str, tag: str = "") -> None:
        name = f"plan-{job_id}" + (f"-{tag}" if tag else "")
        # Planning streams the whole file: give it the same 30-minute deadline as a chunk.
        self._create(self._s.plan_queue, name, self._s.plan_url, {"job_id": job_id}, self.CHUNK_DEADLINE_SECONDS)

    def enqueue_notify(self, job_id: str) -> None:
        if self._s.notify_url:
            # Its own queue: a receiver that hangs holds callback dispatches, never planning.
            self._create(
                self._s.notify_queue, f"notify-{job_id}", self._s.notify_url, {"job_id": job_id}, self.NOTIFY_DEADLINE_SECONDS
            )

    def enqueue_chunk(self, job_id: str, index: int, tag: str = "", delay_s: float = 0.0, poll: int | None = None) -> None:
        # Several queues stand in for one queue's parallel dispatch on the emulator, which
        # sends one task at a time per queue; production configures a single queue.
        queue = self._s.chunk_queues[index % len(self._s.chunk_queues)]
        self._create(
            queue,
            f"chunk-{job_id}-{index:05d}" + (f"-{tag}" if tag else ""),
            self._s.chunk_url,
            {"job_id": job_id, "chunk": index} | ({"poll": poll} if poll is not None else {}),
            self.CHUNK_DEADLINE_SECONDS,
            delay_s,
        )
