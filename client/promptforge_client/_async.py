"""The asynchronous client: ``AsyncClient(url, api_key).jobs``, the same methods as
:class:`~promptforge_client.Client` awaited (and iterated with ``async for``). Runs on
asyncio or trio (through anyio, as httpx does); file I/O happens in worker threads."""

from __future__ import annotations

import builtins
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

import anyio
import anyio.to_thread
import httpx

from . import _http
from ._http import ERRORS_FILENAME, JobOptions, Source, UploadProgress
from ._sse import SSEDecoder
from ._wait import Pacer
from .errors import NothingToResubmit, PromptForgeError, error_from_response, retry_after_seconds
from .models import ErrorRow, InlineResults, Job, JobPage, JobStatus, ResultRow, Results, Upload
from .resubmit import FailedRows, Resubmission

Row = TypeVar("Row", ResultRow, ErrorRow)


class AsyncClient:
    """A PromptForge service, reached with one API key, from async code.

    ::

        async with AsyncClient(url, api_key) as client:
            job = await client.jobs.submit(rows, "fake", "fake-small")
            job = await client.jobs.wait(job.job_id)
            async for row in client.jobs.iter_results(job.job_id):
                ...
    """

    def __init__(
        self, url: str, api_key: str, *, timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = _http.normalize_url(url)
        self._api = httpx.AsyncClient(base_url=self.url, headers=_http.api_headers(api_key), timeout=timeout, transport=transport)
        self._storage = httpx.AsyncClient(timeout=_http.STORAGE_TIMEOUT, transport=transport, follow_redirects=True)
        self.jobs = AsyncJobs(self)

    def __repr__(self) -> str:
        return f"AsyncClient(url={self.url!r})"

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._storage.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._api.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _http.network_error(self.url, exc) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    @asynccontextmanager
    async def _stream(self, client: httpx.AsyncClient, url: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        try:
            async with client.stream("GET", url, **kwargs) as response:
                if response.is_error:
                    await response.aread()
                    raise _http.storage_error("download", response) if client is self._storage else error_from_response(response)
                yield response
        except httpx.TransportError as exc:
            raise _http.network_error(self.url if client is self._api else url, exc) from exc


class AsyncJobs:
    """The jobs of this key's client: ``client.jobs``. See :class:`~promptforge_client.Jobs`."""

    def __init__(self, client: AsyncClient) -> None:
        self._c = client

    async def init(self, provider: str, model: str, **options: Unpack[JobOptions]) -> Upload:
        """``POST /v1/jobs/init``."""
        response = await self._c._call("POST", "/v1/jobs/init", json=_http.job_body(provider, model, options))
        return _http.parse(Upload, response)

    async def upload(self, upload: Upload, body: str | PathLike[str] | bytes, on_upload: UploadProgress | None = None) -> None:
        """PUT the prompts file to the job's signed URL, streaming it."""
        data = body if isinstance(body, bytes) else Path(body)
        headers = _http.upload_headers(upload.upload_headers, _http.body_size(data))
        try:
            response = await self._c._storage.request(
                upload.upload_method, upload.upload_url, content=_chunks(data, on_upload), headers=headers
            )
        except httpx.TransportError as exc:
            raise _http.network_error(upload.upload_url, exc) from exc
        if response.is_error:
            raise _http.storage_error("upload", response)

    async def submit(
        self,
        source: Source,
        provider: str,
        model: str,
        *,
        inline: bool | None = None,
        on_upload: UploadProgress | None = None,
        **options: Unpack[JobOptions],
    ) -> Job:
        """Create a job and hand it its prompts (a file path, bytes, or rows sent inline)."""
        body = _http.classify(source)
        if isinstance(body, builtins.list):
            if inline is not False:
                job_body = {**_http.job_body(provider, model, options), "prompts": body}
                return _http.parse(Job, await self._c._call("POST", "/v1/jobs", json=job_body))
            body = _http.rows_to_jsonl(body)
        upload = await self.init(provider, model, **options)
        size = _http.body_size(body)
        if size > upload.max_upload_bytes:
            await self.cancel(upload.job_id)
            raise _http.too_large(size, upload.max_upload_bytes)
        await self.upload(upload, body, on_upload)
        return await self.get(upload.job_id)

    async def get(self, job_id: str) -> Job:
        """``GET /v1/jobs/{job_id}/status``."""
        return _http.parse(Job, await self._c._call("GET", _http.job_path(job_id, "status")))

    async def wait(
        self,
        job_id: str,
        on_progress: Callable[[Job], None] | None = None,
        timeout: float | None = None,
        poll_interval: float = 2.0,
    ) -> Job:
        """Poll until the job ends, honouring ``Retry-After``; return its final status."""
        pacer = Pacer(job_id, timeout, poll_interval)
        while True:
            try:
                response = await self._c._call("GET", _http.job_path(job_id, "status"))
            except PromptForgeError as exc:
                delay = pacer.failed(exc)
            else:
                job = _http.parse(Job, response)
                if on_progress:
                    on_progress(job)
                if job.is_terminal:
                    return job
                hint = retry_after_seconds(response.headers)
                delay = pacer.polled(hint if hint is not None else job.retry_after)
            await anyio.sleep(delay)

    async def events(self, job_id: str) -> AsyncIterator[Job]:
        """The job's status on every change, from its Server-Sent Events stream."""
        # The status says where the service streams events from (its API gateway may
        # buffer them); it is the first state seen.
        first = _http.parse(Job, await self._c._call("GET", _http.job_path(job_id, "status")))
        yield first
        if first.is_terminal:
            return
        last: Job | None = first
        path = first.events_url or _http.job_path(job_id, "events")
        while True:
            decoder = SSEDecoder()
            headers = {"Accept": "text/event-stream"}
            async with self._c._stream(self._c._api, path, headers=headers, timeout=_http.EVENTS_TIMEOUT) as response:
                async for line in response.aiter_lines():
                    event = decoder.feed(line)
                    if event is None or event.event not in ("status", "done"):
                        continue
                    job = _http.parse_json(Job, event.data)
                    if job != last:
                        last = job
                        yield job
                    if event.event == "done" or job.is_terminal:
                        return
            await anyio.sleep(decoder.retry or 2.0)

    async def results(self, job_id: str, partial: bool = False) -> Results:
        """Fresh signed URLs of every file of the job."""
        params = {"partial": "true"} if partial else {}
        return _http.parse(Results, await self._c._call("GET", _http.job_path(job_id, "results"), params=params))

    async def inline_results(self, job_id: str, partial: bool = False) -> InlineResults:
        """The rows themselves for a small job (``?inline=true``)."""
        params = {"inline": "true", **({"partial": "true"} if partial else {})}
        return _http.parse(InlineResults, await self._c._call("GET", _http.job_path(job_id, "results"), params=params))

    async def download(
        self,
        job_id: str,
        out_dir: str | PathLike[str],
        partial: bool = False,
        on_file: Callable[[Path], None] | None = None,
    ) -> builtins.list[Path]:
        """Stream every file of the job into ``out_dir``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for entry in (await self.results(job_id, partial)).files:
            target = out / _http.safe_filename(entry.filename)
            part = target.with_name(target.name + ".part")
            try:
                async with self._c._stream(self._c._storage, entry.url) as response:
                    f = await anyio.open_file(part, "wb")
                    async with f:
                        async for chunk in response.aiter_bytes(_http.CHUNK_BYTES):
                            await f.write(chunk)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            part.replace(target)
            written.append(target)
            if on_file:
                on_file(target)
        return written

    def iter_results(self, job_id: str, partial: bool = False) -> AsyncIterator[ResultRow]:
        """Every result row across the result parts, streamed line by line."""
        return self._rows(job_id, partial, ResultRow)

    def iter_errors(self, job_id: str, partial: bool = False) -> AsyncIterator[ErrorRow]:
        """Every row of ``errors.jsonl``, streamed."""
        return self._rows(job_id, partial, ErrorRow)

    async def _rows(self, job_id: str, partial: bool, row: type[Row]) -> AsyncIterator[Row]:
        for entry in (await self.results(job_id, partial)).files:
            if (entry.filename == ERRORS_FILENAME) != (row is ErrorRow):
                continue
            async with self._c._stream(self._c._storage, entry.url) as response:
                async for line in response.aiter_lines():
                    if line.strip():
                        yield _http.parse_json(row, line)

    async def cancel(self, job_id: str) -> Job:
        """``POST /v1/jobs/{job_id}/cancel``."""
        return _http.parse(Job, await self._c._call("POST", _http.job_path(job_id, "cancel")))

    async def page(self, limit: int = 20, page_token: str | None = None) -> JobPage:
        """One page of ``GET /v1/jobs``, newest first."""
        params: dict[str, str | int] = {"limit": limit, **({"page_token": page_token} if page_token else {})}
        return _http.parse(JobPage, await self._c._call("GET", "/v1/jobs", params=params))

    async def list(self, limit: int | None = None, *, page_size: int = 50) -> AsyncIterator[Job]:
        """This client's jobs, newest first, a page at a time; at most ``limit``."""
        token: str | None = None
        seen = 0
        while True:
            size = page_size if limit is None else min(page_size, limit - seen)
            if size <= 0:
                return
            page = await self.page(size, token)
            for job in page.jobs:
                yield job
                seen += 1
            token = page.next_page_token
            if not token:
                return

    async def resubmit(
        self,
        job_id: str,
        source_file: str | PathLike[str],
        *,
        provider: str | None = None,
        model: str | None = None,
        on_upload: UploadProgress | None = None,
        **options: Unpack[JobOptions],
    ) -> Resubmission:
        """A new job from the input lines behind the earlier job's ``errors.jsonl``."""
        earlier = await self.get(job_id)
        failed = FailedRows()
        async for row in self.iter_errors(job_id, partial=earlier.status is not JobStatus.COMPLETED):
            failed.add(row)
        if not failed.rows:
            raise NothingToResubmit(f"job {job_id} has no failed rows", 0)
        options["metadata"] = {**earlier.metadata, **options.get("metadata", {}), "resubmit_of": job_id}
        with tempfile.TemporaryDirectory(prefix="promptforge-") as tmp:
            chosen = Path(tmp) / "resubmit.jsonl"
            lines = await anyio.to_thread.run_sync(_copy, failed, Path(source_file), chosen)
            if not lines:
                raise failed.nothing_matched(job_id, source_file)
            job = await self.submit(chosen, provider or earlier.provider, model or earlier.model, on_upload=on_upload, **options)
        return Resubmission(job, lines, failed.rows, failed.without_prompt_id)


def _copy(failed: FailedRows, source: Path, target: Path) -> int:
    with target.open("wb") as out:
        return failed.copy_lines(source, out)


async def _chunks(body: Path | bytes, on_upload: UploadProgress | None) -> AsyncIterator[bytes]:
    """The upload's bytes, the file read in a worker thread chunk by chunk."""
    if isinstance(body, bytes):
        for chunk in _http.byte_chunks(body, on_upload):
            yield chunk
        return
    total, sent = _http.body_size(body), 0
    if on_upload:
        on_upload(0, total)
    f = await anyio.open_file(body, "rb")
    async with f:
        while chunk := await f.read(_http.CHUNK_BYTES):
            yield chunk
            sent += len(chunk)
            if on_upload:
                on_upload(sent, total)
