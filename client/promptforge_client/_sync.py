"""The synchronous client: ``Client(url, api_key).jobs``."""

from __future__ import annotations

import builtins
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

import httpx

from . import _http
from ._http import ERRORS_FILENAME, JobOptions, Source, UploadProgress
from ._sse import SSEDecoder
from ._wait import Pacer
from .errors import NothingToResubmit, PromptForgeError, error_from_response, retry_after_seconds
from .models import ErrorRow, InlineResults, Job, JobPage, JobStatus, ResultRow, Results, Upload
from .resubmit import FailedRows, Resubmission

Row = TypeVar("Row", ResultRow, ErrorRow)


class Client:
    """A PromptForge service, reached with one API key.

    ::

        with Client("https://promptforge.example.com", api_key) as client:
            job = client.jobs.submit("prompts.jsonl", "openai", "gpt-4o-mini")
            job = client.jobs.wait(job.job_id)
            for row in client.jobs.iter_results(job.job_id):
                print(row.prompt_id, row.result)

    ``transport`` replaces the network (``httpx.MockTransport`` in tests). The key is sent
    only to the service, never to the signed storage URLs, and never appears in a repr.
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = _http.normalize_url(url)
        self._api = httpx.Client(base_url=self.url, headers=_http.api_headers(api_key), timeout=timeout, transport=transport)
        self._storage = httpx.Client(timeout=_http.STORAGE_TIMEOUT, transport=transport, follow_redirects=True)
        self.jobs = Jobs(self)

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    def close(self) -> None:
        self._api.close()
        self._storage.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._api.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise _http.network_error(self.url, exc) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    @contextmanager
    def _stream(self, client: httpx.Client, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed GET; errors become this package's exceptions."""
        try:
            with client.stream("GET", url, **kwargs) as response:
                if response.is_error:
                    response.read()
                    raise _http.storage_error("download", response) if client is self._storage else error_from_response(response)
                yield response
        except httpx.TransportError as exc:
            raise _http.network_error(self.url if client is self._api else url, exc) from exc


class Jobs:
    """The jobs of this key's client: ``client.jobs``."""

    def __init__(self, client: Client) -> None:
        self._c = client

    def init(self, provider: str, model: str, **options: Unpack[JobOptions]) -> Upload:
        """``POST /v1/jobs/init``: a job waiting for its file, and the signed URL to PUT it to."""
        response = self._c._call("POST", "/v1/jobs/init", json=_http.job_body(provider, model, options))
        return _http.parse(Upload, response)

    def upload(self, upload: Upload, body: str | PathLike[str] | bytes, on_upload: UploadProgress | None = None) -> None:
        """PUT the prompts file (a path, or its bytes) to the job's signed URL, streaming it."""
        data = body if isinstance(body, bytes) else Path(body)
        headers = _http.upload_headers(upload.upload_headers, _http.body_size(data))
        try:
            response = self._c._storage.request(
                upload.upload_method, upload.upload_url, content=_http.byte_chunks(data, on_upload), headers=headers
            )
        except httpx.TransportError as exc:
            raise _http.network_error(upload.upload_url, exc) from exc
        if response.is_error:
            raise _http.storage_error("upload", response)

    def submit(
        self,
        source: Source,
        provider: str,
        model: str,
        *,
        inline: bool | None = None,
        on_upload: UploadProgress | None = None,
        **options: Unpack[JobOptions],
    ) -> Job:
        """Create a job and hand it its prompts.

        ``source`` is a path to a JSONL file or its bytes (init, then an upload reporting
        ``on_upload(sent, total)``), or a list of row dicts, sent inline in the request
        (``POST /v1/jobs``) unless ``inline=False``. Returns the job's status.
        """
        body = _http.classify(source)
        if isinstance(body, builtins.list):
            if inline is not False:
                job_body = {**_http.job_body(provider, model, options), "prompts": body}
                return _http.parse(Job, self._c._call("POST", "/v1/jobs", json=job_body))
            body = _http.rows_to_jsonl(body)
        upload = self.init(provider, model, **options)
        size = _http.body_size(body)
        if size > upload.max_upload_bytes:
            self.cancel(upload.job_id)
            raise _http.too_large(size, upload.max_upload_bytes)
        self.upload(upload, body, on_upload)
        return self.get(upload.job_id)

    def get(self, job_id: str) -> Job:
        """``GET /v1/jobs/{job_id}/status``."""
        return _http.parse(Job, self._c._call("GET", _http.job_path(job_id, "status")))

    def wait(
        self,
        job_id: str,
        on_progress: Callable[[Job], None] | None = None,
        timeout: float | None = None,
        poll_interval: float = 2.0,
    ) -> Job:
        """Poll until the job ends and return its final status (COMPLETED, FAILED or
        CANCELLED: a job that fails is an answer, not an exception).

        Polls as often as the service's ``Retry-After`` asks (``poll_interval`` when it
        gives none), calls ``on_progress`` with every status, rides out a few network
        errors or 5xx answers in a row, and raises :class:`WaitTimeout` after ``timeout``
        seconds.
        """
        pacer = Pacer(job_id, timeout, poll_interval)
        while True:
            try:
                response = self._c._call("GET", _http.job_path(job_id, "status"))
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
            time.sleep(delay)

    def events(self, job_id: str) -> Iterator[Job]:
        """The job's status on every change, from its Server-Sent Events stream, ending
        with the terminal status; reconnects when the service closes a long stream."""
        # The status says where the service streams events from (its API gateway may
        # buffer them); it is the first state seen.
        first = _http.parse(Job, self._c._call("GET", _http.job_path(job_id, "status")))
        yield first
        if first.is_terminal:
            return
        last: Job | None = first
        path = first.events_url or _http.job_path(job_id, "events")
        while True:
            decoder = SSEDecoder()
            with self._c._stream(self._c._api, path, headers={"Accept": "text/event-stream"}, timeout=_http.EVENTS_TIMEOUT) as r:
                for line in r.iter_lines():
                    event = decoder.feed(line)
                    if event is None or event.event not in ("status", "done"):
                        continue
                    job = _http.parse_json(Job, event.data)
                    if job != last:
                        last = job
                        yield job
                    if event.event == "done" or job.is_terminal:
                        return
            time.sleep(decoder.retry or 2.0)

    def results(self, job_id: str, partial: bool = False) -> Results:
        """``GET /v1/jobs/{job_id}/results``: fresh signed URLs of every file. With
        ``partial=True``, also what a FAILED or CANCELLED job produced."""
        params = {"partial": "true"} if partial else {}
        return _http.parse(Results, self._c._call("GET", _http.job_path(job_id, "results"), params=params))

    def inline_results(self, job_id: str, partial: bool = False) -> InlineResults:
        """The rows themselves for a small job (``?inline=true``); :class:`PayloadTooLarge`
        past the service's limit."""
        params = {"inline": "true", **({"partial": "true"} if partial else {})}
        return _http.parse(InlineResults, self._c._call("GET", _http.job_path(job_id, "results"), params=params))

    def download(
        self,
        job_id: str,
        out_dir: str | PathLike[str],
        partial: bool = False,
        on_file: Callable[[Path], None] | None = None,
    ) -> builtins.list[Path]:
        """Stream every file of the job into ``out_dir`` (created if needed); returns the
        paths. A file appears under its name only once it is complete."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for entry in self.results(job_id, partial).files:
            target = out / _http.safe_filename(entry.filename)
            part = target.with_name(target.name + ".part")
            try:
                with self._c._stream(self._c._storage, entry.url) as response, part.open("wb") as f:
                    for chunk in response.iter_bytes(_http.CHUNK_BYTES):
                        f.write(chunk)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            part.replace(target)
            written.append(target)
            if on_file:
                on_file(target)
        return written

    def iter_results(self, job_id: str, partial: bool = False) -> Iterator[ResultRow]:
        """Every result row across the ``results_part_NNN.jsonl`` files, streamed line by
        line from the signed URLs (no file is held in memory)."""
        return self._rows(job_id, partial, ResultRow)

    def iter_errors(self, job_id: str, partial: bool = False) -> Iterator[ErrorRow]:
        """Every row of ``errors.jsonl``, streamed."""
        return self._rows(job_id, partial, ErrorRow)

    def _rows(self, job_id: str, partial: bool, row: type[Row]) -> Iterator[Row]:
        for entry in self.results(job_id, partial).files:
            if (entry.filename == ERRORS_FILENAME) != (row is ErrorRow):
                continue
            with self._c._stream(self._c._storage, entry.url) as response:
                for line in response.iter_lines():
                    if line.strip():
                        yield _http.parse_json(row, line)

    def cancel(self, job_id: str) -> Job:
        """``POST /v1/jobs/{job_id}/cancel``; :class:`JobTerminal` if it has already ended."""
        return _http.parse(Job, self._c._call("POST", _http.job_path(job_id, "cancel")))

    def page(self, limit: int = 20, page_token: str | None = None) -> JobPage:
        """One page of ``GET /v1/jobs``, newest first."""
        params: dict[str, str | int] = {"limit": limit, **({"page_token": page_token} if page_token else {})}
        return _http.parse(JobPage, self._c._call("GET", "/v1/jobs", params=params))

    def list(self, limit: int | None = None, *, page_size: int = 50) -> Iterator[Job]:
        """This client's jobs, newest first, fetched a page at a time; at most ``limit``."""
        token: str | None = None
        seen = 0
        while True:
            size = page_size if limit is None else min(page_size, limit - seen)
            if size <= 0:
                return
            page = self.page(size, token)
            for job in page.jobs:
                yield job
                seen += 1
            token = page.next_page_token
            if not token:
                return

    def resubmit(
        self,
        job_id: str,
        source_file: str | PathLike[str],
        *,
        provider: str | None = None,
        model: str | None = None,
        on_upload: UploadProgress | None = None,
        **options: Unpack[JobOptions],
    ) -> Resubmission:
        """A new job from the lines of ``source_file`` (the earlier job's input) whose
        prompts are in the earlier job's ``errors.jsonl`` (see :mod:`.resubmit`). The
        provider and model default to the earlier job's; its metadata is kept, with
        ``resubmit_of``. Raises :class:`NothingToResubmit` when no line qualifies."""
        earlier = self.get(job_id)
        failed = FailedRows()
        for row in self.iter_errors(job_id, partial=earlier.status is not JobStatus.COMPLETED):
            failed.add(row)
        if not failed.rows:
            raise NothingToResubmit(f"job {job_id} has no failed rows", 0)
        options["metadata"] = {**earlier.metadata, **options.get("metadata", {}), "resubmit_of": job_id}
        with tempfile.TemporaryDirectory(prefix="promptforge-") as tmp:
            chosen = Path(tmp) / "resubmit.jsonl"
            with chosen.open("wb") as out:
                lines = failed.copy_lines(Path(source_file), out)
            if not lines:
                raise failed.nothing_matched(job_id, source_file)
            job = self.submit(chosen, provider or earlier.provider, model or earlier.model, on_upload=on_upload, **options)
        return Resubmission(job, lines, failed.rows, failed.without_prompt_id)
