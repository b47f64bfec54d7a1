"""How the command line shows an upload and a running job: rich progress bars on a
terminal, or plain lines (one per change) when the output is a file or a CI log."""

from __future__ import annotations

import time
from collections import deque
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TransferSpeedColumn

from .models import Job, JobStatus, ProviderBatches

# The upload gets a bar from this size on: smaller files are sent before a bar would show.
LARGE_FILE_BYTES = 1 << 20
# A plain line is printed on every change, and at least this often while nothing changes.
QUIET_LINE_SECONDS = 30.0


class Rate:
    """Prompts per second over the last ``window`` seconds of observations, and the ETA."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def observe(self, job: Job, now: float | None = None) -> None:
        """Count a status: only from processing on, so time in the queue is not averaged in."""
        if job.status is JobStatus.PROCESSING or job.is_terminal:
            self.add(job.processed_count, now)

    def add(self, processed: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.samples.append((now, processed))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()

    def per_second(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, n0), (t1, n1) = self.samples[0], self.samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None

    def eta_seconds(self, remaining: int) -> float | None:
        rate = self.per_second()
        if remaining <= 0:
            return 0.0
        return remaining / rate if rate else None


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def rate_text(rate: float | None) -> str:
    return "-/s" if rate is None else f"{rate:,.1f}/s"


def batches_text(job: Job) -> str:
    """An economy job's provider batches, as the providers count them."""
    b = job.provider_batches
    if b is None:
        return ""
    return (
        f"{b.ended:,}/{b.batches:,} provider batches ended; {b.requests_done:,}/{b.requests:,} requests done,"
        f" {b.requests_failed:,} failed"
    )


def progress_line(job: Job, rate: Rate) -> str:
    """One line for a job's progress: status, processed of total, completed, failed, rate,
    ETA; and an economy job's provider batches while they run."""
    total = "?" if job.prompt_count is None else f"{job.prompt_count:,}"
    eta = rate.eta_seconds((job.prompt_count or 0) - job.processed_count) if job.prompt_count is not None else None
    line = (
        f"progress: {job.status.value} {job.processed_count:,}/{total} processed, "
        f"{job.completed_count or 0:,} completed, {job.failed_count or 0:,} failed, "
        f"{rate_text(rate.per_second())}, ETA {duration(eta) if not job.is_terminal else '0s'}"
    )
    return f"{line}; {batches_text(job)}" if job.provider_batches is not None else line


class Display(Protocol):
    def update(self, job: Job) -> None: ...

    def close(self) -> None: ...


class LineDisplay:
    """Plain lines on stderr: one for every change of the job, and a quiet-time reminder."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rate = Rate()
        self.state: tuple[str, int, ProviderBatches | None] | None = None
        self.last_at = 0.0

    def update(self, job: Job) -> None:
        self.rate.observe(job)
        # An economy job's counts move only as its batches end: the batches' own progress is news too.
        now, state = time.monotonic(), (job.status.value, job.processed_count, job.provider_batches)
        if state == self.state and now - self.last_at < QUIET_LINE_SECONDS:
            return
        self.console.print(progress_line(job, self.rate), markup=False, highlight=False, soft_wrap=True)
        self.state, self.last_at = state, now

    def close(self) -> None:
        pass


class LiveDisplay:
    """A rich progress bar with completed, failed, rate and ETA, redrawn in place."""

    def __init__(self, console: Console) -> None:
        self.rate = Rate()
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[status]:<11}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.fields[total_text]}"),
            TextColumn("[green]{task.fields[completed_count]:,} completed[/] [red]{task.fields[failed_count]:,} failed[/]"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA {task.fields[eta]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[batches]}"),
            console=console,
        )
        self.task = self.progress.add_task(
            "job", total=None, status="", total_text="?", completed_count=0, failed_count=0, rate="-/s", eta="-", batches=""
        )
        self.progress.start()

    def update(self, job: Job) -> None:
        self.rate.observe(job)
        remaining = (job.prompt_count or 0) - job.processed_count
        eta = 0.0 if job.is_terminal else (self.rate.eta_seconds(remaining) if job.prompt_count is not None else None)
        self.progress.update(
            self.task,
            total=job.prompt_count,
            completed=job.processed_count,
            status=job.status.value,
            total_text="?" if job.prompt_count is None else f"{job.prompt_count:,}",
            completed_count=job.completed_count or 0,
            failed_count=job.failed_count or 0,
            rate=rate_text(self.rate.per_second()),
            eta=duration(eta),
            batches=batches_text(job),
        )

    def close(self) -> None:
        self.progress.stop()


class NoDisplay:
    def update(self, job: Job) -> None:
        pass

    def close(self) -> None:
        pass


class UploadBar:
    """``on_upload(sent, total)`` for jobs.submit: a transfer bar for a large file in live
    mode, a line at each quarter in plain mode; nothing for a small file or when off."""

    def __init__(self, console: Console, mode: str, total: int, label: str) -> None:
        self.console, self.total = console, total
        self.progress: Progress | None = None
        self.plain = mode == "plain" and total >= LARGE_FILE_BYTES
        self.next_quarter = 1
        if mode == "live" and total >= LARGE_FILE_BYTES:
            self.progress = Progress(
                TextColumn(f"uploading {label}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console
            )
            self.task = self.progress.add_task("upload", total=total)
            self.progress.start()

    def __call__(self, sent: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=sent)
        elif self.plain and total and sent * 4 >= total * self.next_quarter:
            self.console.print(f"upload: {sent * 100 // total}% ({sent:,} of {total:,} bytes)", highlight=False)
            self.next_quarter = sent * 4 // total + 1

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
