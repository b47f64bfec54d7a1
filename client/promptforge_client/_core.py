"""The SDK's one I/O-free core: every call of ``Client`` and ``AsyncClient`` is written here
once, as a *flow* that the two clients run.

A flow is a generator. It builds each request (method, URL, query, headers, body), yields
it as an *effect* for the client to perform, and is sent what performing it gave: the
answer (status, headers, body), or the transport failure thrown into it. The flow turns
answers into models or this package's errors and decides what comes next: a retry after a
backoff, the next poll, the next page, the next file. The clients only perform effects:
the sync one with blocking httpx calls and ``time.sleep``, the async one with awaited httpx
calls, ``anyio.sleep`` and worker threads for local files. Neither holds a decision of its
own, so the two cannot drift apart, and the flows are tested without any I/O by sending
them canned answers (tests/client/test_core.py).
"""

from __future__ import annotations

import builtins
import inspect
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, Unpack, overload

import httpx
from pydantic import BaseModel

from . import _http
from ._http import ERRORS_FILENAME, JobOptions, Source, UploadProgress
from ._sse import SSEDecoder
from ._wait import Pacer
from .errors import NothingToResubmit, PromptForgeError, error_from_response, retry_after_seconds
from .models import ErrorRow, InlineResults, Job, JobPage, JobStatus, ResultRow, Results, Upload
from .resubmit import FailedRows, Resubmission

T = TypeVar("T")
Item = TypeVar("Item")
P = ParamSpec("P")
M = TypeVar("M", bound=BaseModel)
Row = TypeVar("Row", ResultRow, ErrorRow)

# The reconnection delay of the events stream when the service names none.
EVENTS_RECONNECT_SECONDS = 2.0


# --- requests and effects --------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP request, as data. ``storage`` requests go to a signed URL: through the client
    that carries no API key, and their failures name the storage host only."""

    method: str
    url: str
    params: Mapping[str, str | int] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None
    timeout: httpx.Timeout | None = None
    storage: bool = False

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``httpx.Client.request`` / ``.stream`` for it."""
        options: dict[str, Any] = {"method": self.method, "url": self.url}
        for name in ("params", "json", "headers", "timeout"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        return options


@dataclass(frozen=True)
class Send:
    """Send ``request`` and reply with the whole answer (an ``httpx.Response``)."""

    request: Request


@dataclass(frozen=True)
class Put:
    """Send ``request`` with ``body`` (a file or bytes) streamed as its content, reporting each
    chunk to ``meter``; reply with the answer."""

    request: Request
    body: Path | bytes
    meter: UploadMeter


@dataclass(frozen=True)
class OpenLines:
    """Open a streamed GET, closing the one the call had open; reply with the answer (its body
    read whole when it is an error) and the client's iterator of its body as text, which the
    flow hands back in :class:`NextText`."""

    request: Request


@dataclass(frozen=True)
class NextText:
    """Reply with the next piece of the open stream's text as it arrives, or None at its end,
    when the client closes it. The core splits the lines (one step per piece, not per line)."""

    chunks: Any
    request: Request


@dataclass(frozen=True)
class Save:
    """Stream ``request``'s body into ``part``, then rename it to ``target``; reply with the
    answer. An error answer is read, not written; a failure midway removes ``part``."""

    request: Request
    part: Path
    target: Path


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Local:
    """Blocking work on local files: the sync client calls it, the async client runs it in a
    worker thread. Reply with what it returned."""

    work: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Scratch:
    """Reply with a path named ``name`` in a new temporary directory that the client removes
    when the call ends."""

    name: str


@dataclass(frozen=True)
class Emit(Generic[Item]):
    """Items for the caller of an iterating call (``events``, ``iter_results``, ``list``),
    handed on one by one as the caller asks (a lazy iterable is read only so far)."""

    items: Iterable[Item]


Effect = Send | Put | OpenLines | NextText | Save | Sleep | Local | Scratch
Flow = Generator[Effect, Any, T]
"""A call's flow: effects to perform, then its value."""
Items = Generator[Effect | Emit[Item], Any, None]
"""An iterating call's flow: effects to perform and items for the caller, as they come."""


class Machine(Generic[T]):
    """Steps a flow for a client: ``effect()`` is the next thing to do (None once the flow
    has returned, its value in ``result``); ``reply`` or ``fail`` says how it went."""

    def __init__(self, flow: Generator[Effect | Emit[Any], Any, T]) -> None:
        self._flow = flow
        self._reply: Any = None
        self._failure: BaseException | None = None
        self.result: T

    def effect(self) -> Effect | Emit[Any] | None:
        reply, failure = self._reply, self._failure
        self._reply = self._failure = None
        try:
            return self._flow.send(reply) if failure is None else self._flow.throw(failure)
        except StopIteration as stop:
            self.result = stop.value
            return None

    def reply(self, value: Any) -> None:
        self._reply = value

    def fail(self, exc: BaseException) -> None:
        """A transport failure, for the flow to turn into a :class:`NetworkError`."""
        self._failure = exc

    def close(self) -> None:
        self._flow.close()


_LINE_ENDS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # where str.splitlines splits


class LineSplitter:
    """Lines from text that arrives in pieces, split where ``str.splitlines`` splits the whole:
    a line waits for its end, and a ``\r`` at the end of a piece for a ``\n`` that may follow."""

    def __init__(self) -> None:
        self.rest = ""

    def feed(self, text: str) -> builtins.list[str]:
        text, held = self.rest + text, ""
        if text.endswith("\r"):
            text, held = text[:-1], "\r"
        lines = text.splitlines()
        if lines and text[-1] not in _LINE_ENDS:
            held = lines.pop() + held
        self.rest = held
        return lines

    def flush(self) -> builtins.list[str]:
        lines, self.rest = self.rest.splitlines(), ""
        return lines


@dataclass
class Lines:
    """An open stream of lines: the client's text iterator, and what is left of a line."""

    chunks: Any
    request: Request
    splitter: LineSplitter = field(default_factory=LineSplitter)
    ended: bool = False


class UploadMeter:
    """Counts an upload's bytes for ``on_upload(sent, total)``: once at 0, then per chunk."""

    def __init__(self, total: int, on_upload: UploadProgress | None) -> None:
        self.total, self.sent, self.on_upload = total, 0, on_upload

    def start(self) -> None:
        if self.on_upload:
            self.on_upload(0, self.total)

    def add(self, chunk: bytes) -> bytes:
        self.sent += len(chunk)
        if self.on_upload:
            self.on_upload(self.sent, self.total)
        return chunk


def slices(data: bytes) -> Iterable[bytes]:
    return (data[i : i + _http.CHUNK_BYTES] for i in range(0, len(data), _http.CHUNK_BYTES))


# --- local file steps (run through Local) ------------------------------------------------------


def file_size(path: Path) -> int:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return path.stat().st_size


def make_dirs(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def scratch(resources: ExitStack, effect: Scratch) -> Path:
    """The path a :class:`Scratch` effect asks for, its directory removed with ``resources``."""
    return Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="promptforge-"))) / effect.name


def copy_failed(failed: FailedRows, source: Path, target: Path) -> int:
    with target.open("wb") as out:
        return failed.copy_lines(source, out)


# --- the flows ------------------------------------------------------------------------------------


@dataclass
class Core:
    """The calls of ``client.jobs``, for the service at ``url`` (normalized)."""

    url: str
    clock: Callable[[], float] = field(default=time.monotonic)

    # Sending and checking one request.

    def _transport(self, effect: Send | Put | OpenLines | Save | NextText, request: Request) -> Flow[Any]:
        """Yield ``effect``; a transport failure becomes a NetworkError naming the service, or
        only the storage host for a signed URL (its query is a credential)."""
        try:
            return (yield effect)
        except httpx.TransportError as exc:
            raise _http.network_error(request.url if request.storage else self.url, exc) from exc

    def _answer(self, effect: Send | Put | Save, action: str) -> Flow[httpx.Response]:
        """Perform ``effect``: its successful answer, or the error it means."""
        response: httpx.Response = yield from self._transport(effect, effect.request)
        return self._checked(response, effect.request, action)

    @staticmethod
    def _checked(response: httpx.Response, request: Request, action: str) -> httpx.Response:
        if response.is_error:
            raise _http.storage_error(action, response) if request.storage else error_from_response(response)
        return response

    def send(self, request: Request) -> Flow[httpx.Response]:
        """An API request's successful answer, or the error its envelope names."""
        return (yield from self._answer(Send(request), "request"))

    def call(self, model: type[M], request: Request) -> Flow[M]:
        return _http.parse(model, (yield from self.send(request)))

    def open_lines(self, request: Request) -> Flow[Lines]:
        """Open ``request`` as a stream of lines, read with :meth:`next_lines`."""
        response, chunks = yield from self._transport(OpenLines(request), request)
        self._checked(response, request, "download")
        return Lines(chunks, request)

    def next_lines(self, stream: Lines) -> Flow[builtins.list[str] | None]:
        """The lines completed by the stream's next piece (without their ends); None once
        it has ended."""
        if stream.ended:
            return None
        text = yield from self._transport(NextText(stream.chunks, stream.request), stream.request)
        if text is None:
            stream.ended = True
            return stream.splitter.flush()
        return stream.splitter.feed(text)

    # The calls of client.jobs: their signatures and docstrings are those of Client.jobs and
    # AsyncClient.jobs, which wrap each flow (a value, or items for the iterating calls).

    def init(self, provider: str, model: str, **options: Unpack[JobOptions]) -> Flow[Upload]:
        """``POST /v1/jobs/init``: a job waiting for its file, and the signed URL to PUT it to."""
        return (yield from self.call(Upload, Request("POST", "/v1/jobs/init", json=_http.job_body(provider, model, options))))

    def upload(self, upload: Upload, body: str | PathLike[str] | bytes, on_upload: UploadProgress | None = None) -> Flow[None]:
        """PUT the prompts file (a path, or its bytes) to the job's signed URL, streaming it."""
        data = body if isinstance(body, bytes) else Path(body)
        size = len(data) if isinstance(data, bytes) else (yield Local(file_size, (data,)))
        yield from self._put(upload, data, size, on_upload)

    def _put(self, upload: Upload, data: Path | bytes, size: int, on_upload: UploadProgress | None) -> Flow[None]:
        headers = _http.upload_headers(upload.upload_headers, size)
        request = Request(upload.upload_method, upload.upload_url, headers=headers, storage=True)
        yield from self._answer(Put(request, data, UploadMeter(size, on_upload)), "upload")

    def submit(
        self,
        source: Source,
        provider: str,
        model: str,
        *,
        inline: bool | None = None,
        on_upload: UploadProgress | None = None,
        **options: Unpack[JobOptions],
    ) -> Flow[Job]:
        """Create a job and hand it its prompts.

        ``source`` is a path to a JSONL file or its bytes (init, then an upload reporting
        ``on_upload(sent, total)``), or a list of row dicts, sent inline in the request
        (``POST /v1/jobs``) unless ``inline=False``. Returns the job's status.
        """
        body = _http.classify(source)
        if isinstance(body, builtins.list):
            if inline is not False:
                job_body = {**_http.job_body(provider, model, options), "prompts": body}
                return (yield from self.call(Job, Request("POST", "/v1/jobs", json=job_body)))
            body = _http.rows_to_jsonl(body)
        size = len(body) if isinstance(body, bytes) else (yield Local(file_size, (body,)))
        upload = yield from self.init(provider, model, **options)
        if size > upload.max_upload_bytes:
            # Said before uploading in vain; the job would only wait for its upload to expire.
            yield from self.cancel(upload.job_id)
            raise _http.too_large(size, upload.max_upload_bytes)
        yield from self._put(upload, body, size, on_upload)
        return (yield from self.get(upload.job_id))

    def get(self, job_id: str) -> Flow[Job]:
        """``GET /v1/jobs/{job_id}/status``."""
        return (yield from self.call(Job, Request("GET", _http.job_path(job_id, "status"))))

    def wait(
        self,
        job_id: str,
        on_progress: Callable[[Job], None] | None = None,
        timeout: float | None = None,
        poll_interval: float = 2.0,
    ) -> Flow[Job]:
        """Poll until the job ends and return its final status (COMPLETED, FAILED or
        CANCELLED: a job that fails is an answer, not an exception).

        Polls as often as the service's ``Retry-After`` asks (``poll_interval`` when it
        gives none), calls ``on_progress`` with every status, rides out a few network
        errors or 5xx answers in a row, and raises :class:`WaitTimeout` after ``timeout``
        seconds. A state this SDK does not know (from a newer service) is polled through
        unless the job's ``completed_at`` says it has ended (see ``Job.is_terminal``).
        """
        pacer = Pacer(job_id, timeout, poll_interval, self.clock)
        while True:
            try:
                response = yield from self.send(Request("GET", _http.job_path(job_id, "status")))
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
            yield Sleep(delay)

    def events(self, job_id: str) -> Items[Job]:
        """The job's status on every change, from its Server-Sent Events stream, ending
        with the terminal status; reconnects when the service closes a long stream."""
        # The status says where the service streams events from (its API gateway may
        # buffer them); it is the first state seen.
        first = yield from self.get(job_id)
        yield Emit((first,))
        if first.is_terminal:
            return
        last = first
        path = first.events_url or _http.job_path(job_id, "events")
        request = Request("GET", path, headers={"Accept": "text/event-stream"}, timeout=_http.EVENTS_TIMEOUT)
        while True:
            decoder = SSEDecoder()
            stream = yield from self.open_lines(request)
            while (batch := (yield from self.next_lines(stream))) is not None:
                for line in batch:
                    event = decoder.feed(line)
                    if event is None or event.event not in ("status", "done"):
                        continue
                    job = _http.parse_json(Job, event.data)
                    if job != last:
                        last = job
                        yield Emit((job,))
                    # "done" ends the stream whatever the state, one this SDK does not know too.
                    if event.event == "done" or job.is_terminal:
                        return
            yield Sleep(decoder.retry or EVENTS_RECONNECT_SECONDS)

    def results(self, job_id: str, partial: bool = False) -> Flow[Results]:
        """``GET /v1/jobs/{job_id}/results``: fresh signed URLs of every file. With
        ``partial=True``, also what a FAILED or CANCELLED job produced."""
        params = {"partial": "true"} if partial else {}
        return (yield from self.call(Results, Request("GET", _http.job_path(job_id, "results"), params=params)))

    def inline_results(self, job_id: str, partial: bool = False) -> Flow[InlineResults]:
        """The rows themselves for a small job (``?inline=true``); :class:`PayloadTooLarge`
        past the service's limit."""
        params = {"inline": "true", **({"partial": "true"} if partial else {})}
        return (yield from self.call(InlineResults, Request("GET", _http.job_path(job_id, "results"), params=params)))

    def download(
        self,
        job_id: str,
        out_dir: str | PathLike[str],
        partial: bool = False,
        on_file: Callable[[Path], None] | None = None,
    ) -> Flow[builtins.list[Path]]:
        """Stream every file of the job into ``out_dir`` (created if needed); returns the
        paths. A file appears under its name only once it is complete."""
        out = Path(out_dir)
        yield Local(make_dirs, (out,))
        written = []
        for entry in (yield from self.results(job_id, partial)).files:
            target = out / _http.safe_filename(entry.filename)
            part = target.with_name(target.name + ".part")
            yield from self._answer(Save(Request("GET", entry.url, storage=True), part, target), "download")
            written.append(target)
            if on_file:
                on_file(target)
        return written

    def iter_results(self, job_id: str, partial: bool = False) -> Items[ResultRow]:
        """Every result row across the ``results_part_NNN.jsonl`` files, streamed line by
        line from the signed URLs (no file is held in memory)."""
        return (yield from self._rows(job_id, partial, ResultRow))

    def iter_errors(self, job_id: str, partial: bool = False) -> Items[ErrorRow]:
        """Every row of ``errors.jsonl``, streamed."""
        return (yield from self._rows(job_id, partial, ErrorRow))

    def _rows(self, job_id: str, partial: bool, row: type[Row], into: Callable[[Row], None] | None = None) -> Items[Row]:
        """The rows of the result parts (``ResultRow``) or of ``errors.jsonl`` (``ErrorRow``),
        line by line: emitted, or handed to ``into``."""
        for entry in (yield from self.results(job_id, partial)).files:
            if (entry.filename == ERRORS_FILENAME) != (row is ErrorRow):
                continue
            request = Request("GET", entry.url, storage=True)
            stream = yield from self.open_lines(request)
            while (batch := (yield from self.next_lines(stream))) is not None:
                # Parsed as the caller takes them: the rows before a bad line still arrive.
                parsed = (_http.parse_json(row, line) for line in batch if line.strip())
                if into is None:
                    yield Emit(parsed)
                else:
                    for item in parsed:
                        into(item)

    def cancel(self, job_id: str) -> Flow[Job]:
        """``POST /v1/jobs/{job_id}/cancel``; :class:`JobTerminal` if it has already ended."""
        return (yield from self.call(Job, Request("POST", _http.job_path(job_id, "cancel"))))

    def page(self, limit: int = 20, page_token: str | None = None) -> Flow[JobPage]:
        """One page of ``GET /v1/jobs``, newest first."""
        params: dict[str, str | int] = {"limit": limit, **({"page_token": page_token} if page_token else {})}
        return (yield from self.call(JobPage, Request("GET", "/v1/jobs", params=params)))

    def list(self, limit: int | None = None, *, page_size: int = 50) -> Items[Job]:
        """This client's jobs, newest first, fetched a page at a time; at most ``limit``."""
        token: str | None = None
        seen = 0
        while True:
            # Never asks for more than it will return.
            size = page_size if limit is None else min(page_size, limit - seen)
            if size <= 0:
                return
            page = yield from self.page(size, token)
            yield Emit(page.jobs)
            seen += len(page.jobs)
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
    ) -> Generator[Effect | Emit[ErrorRow], Any, Resubmission]:
        """A new job from the lines of ``source_file`` (the earlier job's input) whose
        prompts are in the earlier job's ``errors.jsonl`` (see :mod:`.resubmit`). The
        provider, model and mode default to the earlier job's (``mode="fast"`` sends an
        economy job's failures, its ``provider_expired`` rows too, at once instead); its
        metadata is kept, with ``resubmit_of``. Raises :class:`NothingToResubmit` when no
        line qualifies."""
        earlier = yield from self.get(job_id)
        failed = FailedRows()
        yield from self._rows(job_id, earlier.status is not JobStatus.COMPLETED, ErrorRow, failed.add)
        if not failed.rows:
            raise NothingToResubmit(f"job {job_id} has no failed rows", 0)
        options["metadata"] = {**earlier.metadata, **options.get("metadata", {}), "resubmit_of": job_id}
        if options.get("mode") is None and earlier.mode != "fast":
            # Only a mode other than the default is carried over: a service from before
            # modes refuses the field, and every job it ran was fast.
            options["mode"] = earlier.mode
        chosen: Path = yield Scratch("resubmit.jsonl")
        lines = yield Local(copy_failed, (failed, Path(source_file), chosen))
        if not lines:
            raise failed.nothing_matched(job_id, source_file)
        job = yield from self.submit(chosen, provider or earlier.provider, model or earlier.model, on_upload=on_upload, **options)
        return Resubmission(job, lines, failed.rows, failed.without_prompt_id)


# --- the public calls, declared once for both clients ----------------------------------------------


class Blocking(Protocol):
    """``Client.jobs``: performs a flow with blocking I/O."""

    _core: Core

    def _run(self, flow: Generator[Any, Any, T]) -> T: ...

    def _iterate(self, flow: Items[Item]) -> Iterator[Item]: ...


class Awaiting(Protocol):
    """``AsyncClient.jobs``: performs a flow when awaited."""

    _core: Core

    def _run(self, flow: Generator[Any, Any, T]) -> Coroutine[Any, Any, T]: ...

    def _iterate(self, flow: Items[Item]) -> AsyncIterator[Item]: ...


class _Method:
    """A flow of :class:`Core` as a method of both clients' ``jobs``: on ``Client.jobs`` it
    returns the flow's value, on ``AsyncClient.jobs`` an awaitable of it (or the items, as an
    iterator or an async iterator). The signature and docstring are the flow's, written once."""

    def __init__(self, flow: Callable[..., Generator[Any, Any, Any]], items: bool) -> None:
        self.flow, self.items = flow, items
        self.name = flow.__name__
        self.__doc__ = flow.__doc__
        signature = inspect.signature(flow)
        self.parameters = list(signature.parameters.values())[1:]  # without the core's self
        self.returns = re.sub(r"^(?:Flow|Items)\[(.*)\]$", r"\1", str(signature.return_annotation))

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.owner = owner.__name__

    def bind(self, jobs: Any) -> Any:
        flow, core = self.flow, jobs._core
        perform = jobs._iterate if self.items else jobs._run
        awaiting = inspect.iscoroutinefunction(jobs._run)

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return perform(flow(core, *args, **kwargs))

        async def awaited(*args: Any, **kwargs: Any) -> Any:
            return await perform(flow(core, *args, **kwargs))

        # A coroutine function where the call is awaited, so that it introspects as one.
        method: Any = awaited if awaiting and not self.items else blocking
        method.__name__, method.__doc__ = self.name, self.__doc__
        method.__qualname__ = f"{type(jobs).__name__}.{self.name}"
        shown = (("AsyncIterator[{}]" if awaiting else "Iterator[{}]") if self.items else "{}").format(self.returns)
        method.__signature__ = inspect.Signature(self.parameters, return_annotation=shown)
        # Kept on the instance, which a non-data descriptor yields to: bound once per client.
        jobs.__dict__[self.name] = method
        return method


class Call(_Method, Generic[P, T]):
    def __init__(self, flow: Callable[Concatenate[Core, P], Generator[Any, Any, T]]) -> None:
        super().__init__(flow, items=False)

    @overload
    def __get__(self, jobs: None, owner: type[Any]) -> Call[P, T]: ...
    @overload
    def __get__(self, jobs: Blocking, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, jobs: Awaiting, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, jobs: Any, owner: type[Any]) -> Any:
        return self if jobs is None else self.bind(jobs)


class Iterate(_Method, Generic[P, Item]):
    def __init__(self, flow: Callable[Concatenate[Core, P], Items[Item]]) -> None:
        super().__init__(flow, items=True)

    @overload
    def __get__(self, jobs: None, owner: type[Any]) -> Iterate[P, Item]: ...
    @overload
    def __get__(self, jobs: Blocking, owner: type[Any]) -> Callable[P, Iterator[Item]]: ...
    @overload
    def __get__(self, jobs: Awaiting, owner: type[Any]) -> Callable[P, AsyncIterator[Item]]: ...
    def __get__(self, jobs: Any, owner: type[Any]) -> Any:
        return self if jobs is None else self.bind(jobs)


class Calls:
    """The calls of ``client.jobs``, the same for both clients; each performs its flow with
    the client's own ``_run`` or ``_iterate``."""

    init = Call(Core.init)
    upload = Call(Core.upload)
    submit = Call(Core.submit)
    get = Call(Core.get)
    wait = Call(Core.wait)
    events = Iterate(Core.events)
    results = Call(Core.results)
    inline_results = Call(Core.inline_results)
    download = Call(Core.download)
    iter_results = Iterate(Core.iter_results)
    iter_errors = Iterate(Core.iter_errors)
    cancel = Call(Core.cancel)
    page = Call(Core.page)
    list = Iterate(Core.list)
    resubmit = Call(Core.resubmit)
