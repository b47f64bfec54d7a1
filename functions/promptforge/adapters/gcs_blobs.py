"""The BlobStore on Cloud Storage (or fake-gcs-server), with V4 signed URLs."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, BinaryIO

from google.api_core import exceptions as gexc
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from ..service.ports import COMPOSE_MAX_SOURCES, ObjectInfo


class Signer:
    """Signs V4 URLs: with a local key on the emulator stack, through IAM in production.

    In production there is no key file: the function's runtime identity signs as the
    signer service account through the IAM Credentials signBlob API (it holds a custom
    role with only ``iam.serviceAccounts.signBlob`` on the signer), with the access token
    of its default credentials.
    """

    def __init__(self, key_file: str = "", service_account: str = "", api_access_endpoint: str | None = None) -> None:
        self._key_file = key_file
        self._service_account = service_account
        self._endpoint = api_access_endpoint
        self._key_credentials: Any = None
        self._default_credentials: Any = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Blob.generate_signed_url``."""
        out: dict[str, Any] = {"version": "v4"}
        if self._endpoint:
            out["api_access_endpoint"] = self._endpoint
        if self._key_file:
            if self._key_credentials is None:
                from google.oauth2 import service_account

                self._key_credentials = service_account.Credentials.from_service_account_file(self._key_file)
            out["credentials"] = self._key_credentials
            return out
        import google.auth
        import google.auth.transport.requests

        if self._default_credentials is None:
            self._default_credentials, _ = google.auth.default()
        creds = self._default_credentials
        if not creds.valid:
            creds.refresh(google.auth.transport.requests.Request())
        out["service_account_email"] = self._service_account or creds.service_account_email
        out["access_token"] = creds.token
        return out


class _RangeDownload(io.RawIOBase):
    """Bytes ``[start, end)`` of an object in ranged GETs of at most ``piece`` bytes each,
    none past ``end``.

    Not the library's BlobReader: it asks the object's size first (a metadata GET before
    the first seek) and then reads its whole chunk size from the offset, so a chunk of a
    few kilobytes in a large upload cost a megabyte from the offset on, downloaded and
    copied, for every chunk.
    """

    def __init__(self, blob: storage.Blob, start: int, end: int, piece: int) -> None:
        self._blob = blob
        self._pos = start
        self._end = end
        self._piece = piece
        self._buffer = b""
        self._offset = 0  # how much of ``_buffer`` was handed out

    def readable(self) -> bool:
        return True

    def _fetch(self) -> None:
        last = min(self._end, self._pos + self._piece) - 1  # the API's range end is inclusive
        try:
            data = self._blob.download_as_bytes(start=self._pos, end=last, checksum=None, retry=DEFAULT_RETRY)
        except gexc.RequestRangeNotSatisfiable:
            data = b""  # the object ends before ``start``
        if len(data) < last + 1 - self._pos:
            self._end = self._pos + len(data)  # the object ends inside the range
        self._pos += len(data)
        self._buffer, self._offset = data, 0

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size if size >= 0 else None
        while wanted is None or wanted > 0:
            if self._offset >= len(self._buffer):
                if self._pos >= self._end:
                    break
                self._fetch()
                continue
            take = len(self._buffer) - self._offset if wanted is None else min(wanted, len(self._buffer) - self._offset)
            parts.append(self._buffer[self._offset : self._offset + take])
            self._offset += take
            if wanted is not None:
                wanted -= take
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class GcsBlobStore:
    """BlobStore over a ``google.cloud.storage.Client``."""

    def __init__(self, client: storage.Client, signer: Signer, read_chunk_bytes: int = 1024 * 1024) -> None:
        self._client = client
        self._signer = signer
        self._read_chunk = read_chunk_bytes

    def _blob(self, bucket: str, name: str) -> storage.Blob:
        return self._client.bucket(bucket).blob(name)

    def signed_upload_url(self, bucket: str, name: str, headers: Mapping[str, str], ttl: timedelta) -> str:
        # Every header is signed (the library adds Host, and writes into the dict it gets);
        # Cloud Storage then refuses a PUT that leaves one out or changes its value.
        url: str = self._blob(bucket, name).generate_signed_url(
            expiration=ttl, method="PUT", headers=dict(headers), **self._signer.kwargs()
        )
        return url

    def signed_download_url(self, bucket: str, name: str, filename: str, ttl: timedelta) -> str:
        url: str = self._blob(bucket, name).generate_signed_url(
            expiration=ttl,
            method="GET",
            response_disposition=f'attachment; filename="{filename}"',
            **self._signer.kwargs(),
        )
        return url

    @contextmanager
    def open_read(self, bucket: str, name: str, start: int = 0, end: int | None = None) -> Iterator[BinaryIO]:
        if end is not None:
            yield _RangeDownload(self._blob(bucket, name), start, end, self._read_chunk)  # type: ignore[misc]
            return
        reader = self._blob(bucket, name).open("rb", chunk_size=self._read_chunk)
        try:
            if start:
                reader.seek(start)
            yield reader
        finally:
            reader.close()

    @contextmanager
    def open_write(self, bucket: str, name: str) -> Iterator[BinaryIO]:
        # Spool, then upload in one request: the object appears whole or not at all.
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
            yield spool  # type: ignore[misc]
            spool.seek(0)
            self._blob(bucket, name).upload_from_file(spool, content_type="application/x-ndjson")

    def write(self, bucket: str, name: str, data: bytes, content_type: str = "application/x-ndjson") -> None:
        self._blob(bucket, name).upload_from_string(data, content_type=content_type)

    def exists(self, bucket: str, name: str) -> bool:
        return bool(self._blob(bucket, name).exists())

    def stat(self, bucket: str, name: str) -> ObjectInfo | None:
        blob = self._client.bucket(bucket).get_blob(name)
        if blob is None:
            return None
        return ObjectInfo(size=int(blob.size or 0), created=blob.time_created)

    def compose(self, bucket: str, sources: list[str], target: str) -> int:
        if not 1 <= len(sources) <= COMPOSE_MAX_SOURCES or target in sources:
            raise ValueError(f"compose takes 1 to {COMPOSE_MAX_SOURCES} sources other than the target")
        b = self._client.bucket(bucket)
        dest = b.blob(target)
        dest.content_type = "application/x-ndjson"
        # The client retries compose only under a generation precondition, because in
        # general a repeat could fold the target into itself. Here no source is the target
        # and sources never change, so a repeat writes the same object: retry 503s and
        # resets like any idempotent call.
        dest.compose([b.blob(s) for s in sources], retry=DEFAULT_RETRY)
        return int(dest.size or 0)

    def delete(self, bucket: str, name: str) -> None:
        try:
            self._blob(bucket, name).delete(retry=DEFAULT_RETRY)
        except gexc.NotFound:
            pass
