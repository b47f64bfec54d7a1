"""The ``promptforge`` command line (docs/cli.md).

stdout carries what a script wants (a job id, a status, a table, JSON with ``--json``, the
directory of downloaded files); stderr carries progress, notes and the one-line error.
Exit codes: 0 ok, 1 the job ended FAILED or CANCELLED, 2 usage or configuration, 3
authentication, 4 not found, 5 conflict, 6 any other API error, 7 network, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table

from . import __version__
from ._http import MODES, JobOptions
from ._operator import run_admin
from ._progress import Display, LineDisplay, LiveDisplay, NoDisplay, UploadBar, batches_text, duration, rate_text
from ._sync import Client
from .config import ConfigError, resolve
from .errors import (
    APIError,
    AuthenticationError,
    ConflictError,
    InvalidRequest,
    NetworkError,
    NotFoundError,
    NothingToResubmit,
    PromptForgeError,
)
from .models import Job, JobStatus

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_API = 6
EXIT_NETWORK = 7
EXIT_INTERRUPTED = 130

STATUS_STYLE = {
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "yellow",
    JobStatus.PROCESSING: "cyan",
}


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for an error."""
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, ConflictError):
        return EXIT_CONFLICT
    if isinstance(exc, NetworkError):
        return EXIT_NETWORK
    return EXIT_API


def describe(exc: PromptForgeError) -> str:
    """One line for an error: the envelope's code and message, and what else it says."""
    if not isinstance(exc, APIError):
        return f"{'network' if isinstance(exc, NetworkError) else 'error'}: {exc}"
    extras = [f"HTTP {exc.status}"]
    if isinstance(exc, InvalidRequest) and exc.field:
        extras.append(f"field: {exc.field}")
    if isinstance(exc, ConflictError) and exc.current_status:
        extras.append(f"current status: {exc.current_status}")
    if exc.retry_after is not None and isinstance(exc, ConflictError):
        extras.append(f"retry after {exc.retry_after:g}s")
    if isinstance(exc, AuthenticationError):
        extras.append("check --api-key, PROMPTFORGE_API_KEY or the config file")
    return f"{exc.code}: {exc.message} ({', '.join(extras)})"


@dataclass
class App:
    """What every command shares: settings from the group's options, a client made on
    first use (so ``keys`` needs no URL), and the two consoles."""

    url: str | None
    api_key: str | None
    progress: str
    out: Console = field(default_factory=lambda: _console(stderr=False))
    err: Console = field(default_factory=lambda: _console(stderr=True))
    _client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            settings = resolve(self.url, self.api_key)
            for warning in settings.warnings:
                self.note(f"warning: {warning}")
            try:
                self._client = Client(settings.url, settings.api_key)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return self._client

    @property
    def mode(self) -> str:
        """``live``, ``plain`` or ``off``: ``auto`` is live on a terminal, plain elsewhere."""
        if self.progress != "auto":
            return self.progress
        return "live" if self.err.is_terminal else "plain"

    def display(self) -> Display:
        mode = self.mode
        if mode == "off":
            return NoDisplay()
        return LiveDisplay(self.err) if mode == "live" else LineDisplay(self.err)

    def note(self, text: str) -> None:
        self.err.print(text, markup=False, highlight=False, soft_wrap=True)

    def submit_file(self, file: Path, provider: str, model: str, options: JobOptions) -> Job:
        """Init and upload, with a bar for a large file; prints the job id on stdout."""
        size = file.stat().st_size
        bar = UploadBar(self.err, self.mode, size, file.name)
        started = time.monotonic()
        try:
            job = self.client().jobs.submit(file, provider, model, on_upload=bar, **options)
        finally:
            bar.close()
        self.note(f"job {job.job_id} created ({provider}/{model}); uploaded {size:,} bytes in {time.monotonic() - started:.1f}s")
        click.echo(job.job_id)
        return job

    def follow(self, job_id: str, out: Path | None) -> int:
        """Wait with a live display, then download into ``out/JOB_ID``; the exit code."""
        display = self.display()
        started = time.monotonic()
        try:
            job = self.stream(job_id, display.update) or self.client().jobs.wait(job_id, on_progress=display.update)
        except (KeyboardInterrupt, click.exceptions.Abort):
            display.close()
            self.note(f"stopped waiting; the job goes on: promptforge status {job_id}  (or: promptforge cancel {job_id})")
            return EXIT_INTERRUPTED
        finally:
            display.close()
        self.note(summary(job, time.monotonic() - started))
        completed = job.status is JobStatus.COMPLETED
        if out is not None:
            try:
                self.download(job.job_id, out, partial=not completed)
            except APIError as exc:
                if completed:
                    raise
                self.note(f"no partial results: {describe(exc)}")
        return EXIT_OK if completed else EXIT_JOB_FAILED

    def stream(self, job_id: str, on_progress: Callable[[Job], None]) -> Job | None:
        """Follow the job's event stream (from the ``events_url`` its status gives) to its
        end; None when the stream is not to be had (refused, or the connection failed),
        and the caller polls instead."""
        last: Job | None = None
        try:
            for job in self.client().jobs.events(job_id):
                on_progress(job)
                last = job
        except PromptForgeError:
            return None
        return last if last is not None and last.is_terminal else None

    def download(self, job_id: str, out: Path, partial: bool) -> None:
        target = out / job_id
        files = self.client().jobs.download(
            job_id, target, partial=partial, on_file=lambda p: self.note(f"  {p.name}  {_rows(p):,} rows")
        )
        self.note(f"{len(files)} file{'s' if len(files) != 1 else ''} {'(partial) ' if partial else ''}in {target}")
        click.echo(str(target))


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)  # a log or a pipe: no reason to squeeze tables
    return console


def _rows(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def summary(job: Job, elapsed: float) -> str:
    """The closing line of a wait."""
    total = "?" if job.prompt_count is None else f"{job.prompt_count:,}"
    rate = job.processed_count / elapsed if elapsed > 0 and job.processed_count else None
    line = (
        f"{job.status.value}: {job.completed_count or 0:,} completed, {job.failed_count or 0:,} failed of {total} "
        f"in {duration(elapsed)} ({rate_text(rate)})"
    )
    if job.tokens_used:
        line += f"; {job.tokens_used:,} tokens"
    if job.error is not None:
        line += f"; {job.error.code}: {job.error.message}"
    return line


def parse_object(values: tuple[str, ...], option: str) -> dict[str, Any]:
    """``--params`` and ``--metadata``: each value a JSON object or ``KEY=VALUE`` pairs
    (shell-quoted, space-separated); a VALUE that is JSON (``0.2``, ``["\\n"]``) is taken as
    such, anything else as a string. Later values win."""
    merged: dict[str, Any] = {}
    for value in values:
        if value.lstrip().startswith("{"):
            try:
                obj = json.loads(value)
            except ValueError as exc:
                raise click.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
            if not isinstance(obj, dict):
                raise click.BadParameter("a JSON value must be an object", param_hint=option)
            merged.update(obj)
            continue
        try:
            pairs = shlex.split(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=option) from None
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{pair!r} is neither a JSON object nor KEY=VALUE", param_hint=option)
            try:
                merged[key] = json.loads(raw)
            except ValueError:
                merged[key] = raw
    return merged


def job_options(
    params: tuple[str, ...],
    metadata: tuple[str, ...],
    system_prompt: str | None,
    mode: str | None,
    max_attempts: int | None,
    budget_tokens: int | None,
    callback_url: str | None,
    endpoint: str | None,
    base_url: str | None,
) -> JobOptions:
    options = JobOptions()
    if params:
        options["params"] = parse_object(params, "--params")
    if metadata:
        options["metadata"] = parse_object(metadata, "--metadata")
    if system_prompt is not None:
        options["system_prompt"] = system_prompt
    if mode is not None:
        options["mode"] = mode
    if max_attempts is not None:
        options["max_attempts"] = max_attempts
    if budget_tokens is not None:
        options["budget_tokens"] = budget_tokens
    if callback_url is not None:
        options["callback_url"] = callback_url
    if endpoint is not None:
        options["endpoint"] = endpoint
    if base_url is not None:
        options["base_url"] = base_url
    return options


def job_option_flags(provider_required: bool) -> Callable[[F], F]:
    """The options of a new job, shared by submit and resubmit."""
    flags = [
        click.option(
            "--provider",
            required=provider_required,
            help="openai, anthropic, gemini, openai_compatible (with --endpoint), fake"
            + ("" if provider_required else "  [default: the earlier job's]"),
        ),
        click.option(
            "--model",
            required=provider_required,
            help="The provider's model name" + ("" if provider_required else "  [default: the earlier job's]"),
        ),
        click.option(
            "--params",
            "params",
            multiple=True,
            metavar="JSON|K=V",
            help="Model params for every prompt: a JSON object or KEY=VALUE pairs; repeatable",
        ),
        click.option("--system-prompt", help="A system prompt for every prompt"),
        click.option(
            "--mode",
            type=click.Choice(MODES),
            help="fast: at the provider's rate limit, in minutes; economy: through the provider's batch API at half"
            " price, within 24 h (no --budget-tokens, one attempt a prompt)"
            + ("  [default: fast]" if provider_required else "  [default: the earlier job's]"),
        ),
        click.option("--max-attempts", type=click.IntRange(min=1), help="Attempts per prompt  [service default: 3]"),
        click.option("--budget-tokens", type=click.IntRange(min=1), help="Stop spending at this many tokens"),
        click.option("--metadata", multiple=True, metavar="JSON|K=V", help="Echoed in the job's status; repeatable"),
        click.option("--callback-url", help="HTTPS URL to POST to when the job ends"),
        click.option("--endpoint", help="openai_compatible: a server the operator configured, by name"),
        click.option("--base-url", help="openai_compatible: a server of your own, where the deployment allows it"),
        click.option("--wait", is_flag=True, help="Show live progress until the job ends"),
        click.option(
            "--out", type=click.Path(file_okay=False, path_type=Path), help="Download the files into OUT/JOB_ID (implies --wait)"
        ),
    ]

    def decorate(f: F) -> F:
        for flag in reversed(flags):
            f = flag(f)
        return f

    return decorate


pass_app = click.make_pass_decorator(App)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--url", metavar="URL", help="The service's base URL  [env PROMPTFORGE_URL, or the config file]")
@click.option("--api-key", metavar="KEY", help="Your API key  [env PROMPTFORGE_API_KEY, or the config file]")
@click.option(
    "--progress",
    type=click.Choice(["auto", "live", "plain", "off"]),
    default="auto",
    show_default=True,
    help="live bars, plain lines (the default when stderr is not a terminal), or off",
)
@click.version_option(__version__, prog_name="promptforge")
@click.pass_context
def cli(ctx: click.Context, url: str | None, api_key: str | None, progress: str) -> None:
    """Run batches of LLM prompts on a PromptForge service."""
    ctx.obj = App(url, api_key, progress)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@job_option_flags(provider_required=True)
@pass_app
def submit(app: App, /, file: Path, provider: str, model: str, wait: bool, out: Path | None, **flags: Any) -> int:
    """Submit FILE (JSONL, one prompt a line) as a new job; prints its id."""
    job = app.submit_file(file, provider, model, job_options(**flags))
    if not (wait or out):
        app.note(f"follow it with: promptforge status {job.job_id}")
        return EXIT_OK
    return app.follow(job.job_id, out)


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option(
    "--file",
    "source",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The earlier job's input file",
)
@job_option_flags(provider_required=False)
@pass_app
def resubmit(
    app: App, /, job_id: str, source: Path, provider: str | None, model: str | None, wait: bool, out: Path | None, **flags: Any
) -> int:
    """A new job from the lines of --file whose prompts are in JOB's errors.jsonl."""
    try:
        done = app.client().jobs.resubmit(job_id, source, provider=provider, model=model, **job_options(**flags))
    except NothingToResubmit as exc:
        app.note(f"nothing to resubmit: {exc}")
        return EXIT_OK if exc.failed_rows == 0 else EXIT_USAGE
    note = (
        f"job {done.job.job_id} created with {done.lines:,} lines of {source} ({done.failed_rows:,} failed rows in job {job_id}"
    )
    if done.without_prompt_id:
        note += f"; {done.without_prompt_id:,} of them are lines without a prompt_id, which cannot be resubmitted"
    app.note(note + ")")
    click.echo(done.job.job_id)
    if not (wait or out):
        return EXIT_OK
    return app.follow(done.job.job_id, out)


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option("--json", "as_json", is_flag=True, help="Print the status object as JSON")
@pass_app
def status(app: App, /, job_id: str, as_json: bool) -> int:
    """Show a job's status."""
    job = app.client().jobs.get(job_id)
    if as_json:
        click.echo(job.model_dump_json(indent=2))
    else:
        app.out.print(job_view(job))
    return EXIT_OK


def job_view(job: Job) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    style = STATUS_STYLE.get(job.status, "")
    total = "?" if job.prompt_count is None else f"{job.prompt_count:,}"
    grid.add_row("job", job.job_id)
    grid.add_row("status", f"[{style}]{job.status.value}[/]" if style else job.status.value)
    grid.add_row("model", f"{job.provider} / {job.model}")
    grid.add_row("mode", job.mode)
    grid.add_row(
        "prompts",
        f"{job.processed_count:,}/{total} processed: {job.completed_count or 0:,} completed, {job.failed_count or 0:,} failed",
    )
    if job.provider_batches is not None:
        grid.add_row("batches", batches_text(job))
    for label, when in (("created", job.created_at), ("started", job.started_processing_at), ("ended", job.completed_at)):
        if when is not None:
            grid.add_row(label, when.isoformat(timespec="seconds"))
    if job.tokens_used:
        cost = f", about ${job.estimated_cost_usd:.4f}" if job.estimated_cost_usd is not None else ""
        grid.add_row("tokens", f"{job.tokens_used:,} ({job.input_tokens or 0:,} in, {job.output_tokens or 0:,} out){cost}")
    if job.error is not None:
        grid.add_row("error", f"[red]{job.error.code}[/]: {job.error.message}")
    if job.metadata:
        grid.add_row("metadata", json.dumps(job.metadata))
    return grid


@cli.command()
@click.argument("job_id", metavar="JOB")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Download the files into OUT/JOB_ID")
@click.option("--partial", is_flag=True, help="Also what a FAILED or CANCELLED job produced")
@click.option("--json", "as_json", is_flag=True, help="Print the results object (signed URLs) as JSON")
@pass_app
def results(app: App, /, job_id: str, out: Path | None, partial: bool, as_json: bool) -> int:
    """List a job's result files (signed URLs), or download them with --out."""
    if out is not None:
        app.download(job_id, out, partial)
        return EXIT_OK
    found = app.client().jobs.results(job_id, partial=partial)
    if as_json:
        click.echo(found.model_dump_json(indent=2))
        return EXIT_OK
    for entry in found.files:
        click.echo(f"{entry.filename}\t{entry.expires_at.isoformat(timespec='seconds')}\t{entry.url}")
    return EXIT_OK


@cli.command()
@click.argument("job_id", metavar="JOB")
@pass_app
def cancel(app: App, /, job_id: str) -> int:
    """Cancel a job; what finished is kept (results --partial)."""
    job = app.client().jobs.cancel(job_id)
    app.out.print(job_view(job))
    return EXIT_OK


@cli.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many jobs, newest first")
@click.option("--json", "as_json", is_flag=True, help="One status object per line (JSON Lines)")
@pass_app
def list_jobs(app: App, /, limit: int, as_json: bool) -> int:
    """List your jobs, newest first."""
    jobs = app.client().jobs.list(limit)
    if as_json:
        for job in jobs:
            click.echo(job.model_dump_json())
        return EXIT_OK
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("JOB", "STATUS", "MODEL", "PROCESSED", "FAILED", "CREATED"):
        table.add_column(column, no_wrap=True)
    for job in jobs:
        style = STATUS_STYLE.get(job.status, "")
        total = "?" if job.prompt_count is None else f"{job.prompt_count:,}"
        table.add_row(
            job.job_id,
            f"[{style}]{job.status.value}[/]" if style else job.status.value,
            f"{job.provider}/{job.model}",
            f"{job.processed_count:,}/{total}",
            f"{job.failed_count or 0:,}",
            job.created_at.isoformat(timespec="seconds"),
        )
    app.out.print(table)
    return EXIT_OK


@cli.group()
def keys() -> None:
    """Operator commands: create, list and revoke API keys.

    They run the service's own `python -m promptforge.admin keys ...` in this process and
    need its environment (on the local stack: source .run/dev/stack.env). See docs/cli.md.
    """


@keys.command("create")
@click.option("--client-id", help="Add the key to this existing client (default: a new client)")
@click.option("--label", default="", help="A note to tell keys apart")
@click.option("--json", "as_json", is_flag=True, help="Print JSON")
def keys_create(client_id: str | None, label: str, as_json: bool) -> int:
    """Create a key; it is printed once and only its hash is stored."""
    argv = [
        "keys",
        "create",
        "--label",
        label,
        *(["--client-id", client_id] if client_id else []),
        *(["--json"] if as_json else []),
    ]
    return run_admin(argv)


@keys.command("list")
def keys_list() -> int:
    """List keys (prefixes only)."""
    return run_admin(["keys", "list"])


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> int:
    """Revoke a key by its prefix or hash."""
    return run_admin(["keys", "revoke", key_id])


def run(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code. No traceback reaches the user unless
    ``PROMPTFORGE_DEBUG=1``."""
    try:
        result = cli.main(args=argv, prog_name="promptforge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except (ConfigError, PromptForgeError) as exc:
        _fail(str(exc) if isinstance(exc, ConfigError) else describe(exc))
        return exit_code_for(exc)
    except OSError as exc:
        if os.environ.get("PROMPTFORGE_DEBUG"):
            raise
        _fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")
        return EXIT_USAGE
    except Exception as exc:
        if os.environ.get("PROMPTFORGE_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (PROMPTFORGE_DEBUG=1 shows the traceback)")
        return EXIT_API
    return int(result or 0)


def _fail(message: str) -> None:
    click.echo(f"promptforge: {message}", err=True)


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script ``promptforge``."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
