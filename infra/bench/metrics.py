"""Pure helpers of the throughput benchmark: the ideal time, the figures of a run, the table.

No I/O and no third-party imports, so the unit tests (``tests/unit/test_bench_metrics.py``)
and both virtual environments (``.venv`` runs the benchmark, ``.venv-bench`` the peers and
the plot) can import it.

The arithmetic of the ideal: a provider that allows ``rpm`` requests and ``tpm`` tokens a
minute, enforced as a rate (a bucket that refills continuously and holds about a second of
it), serves at most ``rpm / 60`` requests and ``tpm / 60`` tokens each second. N prompts
that cost ``c_i`` tokens each (prompt tokens plus ``max_tokens``: what the limit charges up
front) therefore need at least ``max(N / (rpm / 60), sum(c_i) / (tpm / 60))`` seconds.
A tool's throughput ratio is its rate of answered prompts over the limit's rate:
``(ok / N) * ideal / wall``, which is ``ideal / wall`` when every prompt was answered.
1.0 is the limit; prompts that failed do not count, so giving up fast does not look fast.

The 429 share after the first second leaves out the start-up, where a tool that does not
know the limit yet may be excused a burst; it comes from the provider's per-second
timeline (:func:`after_first_second`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def ideal_seconds(prompts: int, rpm: float, tpm: float | None = None, tokens: float = 0.0) -> float:
    """The least time ``prompts`` requests costing ``tokens`` in all can take under the limits."""
    if prompts < 0 or rpm <= 0:
        raise ValueError("prompts must be >= 0 and rpm > 0")
    by_requests = prompts / (rpm / 60.0)
    by_tokens = tokens / (tpm / 60.0) if tpm else 0.0
    return max(by_requests, by_tokens)


def throughput_ratio(ideal_s: float, wall_s: float | None, answered: float = 1.0) -> float | None:
    """Ideal time over measured time, times the share of prompts ``answered``: 1.0 is the limit."""
    if wall_s is None or wall_s <= 0:
        return None
    return answered * ideal_s / wall_s


def after_first_second(seconds: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """(requests that arrived, of them answered 429) from second 1 of a provider timeline on.

    ``seconds`` are the rows of the fake server's ``/_timeline``, second 0 being the one
    of the first request. A 429 is answered as the request arrives, so both counts fall in
    the same second.
    """
    arrived = limited = 0
    for row in seconds:
        if row["t"] >= 1:
            arrived += int(row.get("arrived", 0))
            limited += int(row.get("status_429", 0))
    return arrived, limited


def share(part: int | None, whole: int | None) -> float | None:
    """``part / whole``, or None when either is unknown or ``whole`` is 0."""
    if part is None or not whole:
        return None
    return part / whole


@dataclass(frozen=True)
class IdCheck:
    """Whether every expected prompt_id came back exactly once (as a result or an error row)."""

    expected: int
    missing: int
    duplicated: int
    unexpected: int

    @property
    def correct(self) -> bool:
        return self.missing == 0 and self.duplicated == 0 and self.unexpected == 0

    def describe(self) -> str:
        if self.correct:
            return "yes"
        parts = [
            f"{n} {what}" for n, what in ((self.missing, "missing"), (self.duplicated, "dup"), (self.unexpected, "extra")) if n
        ]
        return "NO: " + ", ".join(parts)


def check_ids(expected: Iterable[str], seen: Iterable[str]) -> IdCheck:
    """Compare the prompt_ids sent with those in the output (a result or an error row each)."""
    wanted = set(expected)
    counts = Counter(seen)
    return IdCheck(
        expected=len(wanted),
        missing=sum(1 for pid in wanted if pid not in counts),
        duplicated=sum(n - 1 for pid, n in counts.items() if pid in wanted and n > 1),
        unexpected=sum(n for pid, n in counts.items() if pid not in wanted),
    )


@dataclass
class RunResult:
    """One tool's run on one scenario: what the table shows and the JSON keeps."""

    tool: str
    prompts: int
    rpm: int
    tpm: int | None
    latency_ms: float
    ideal_s: float
    wall_s: float | None = None
    requests: int | None = None  # API requests the fake server received (any answer)
    rate_limited: int | None = None  # of which answered 429 by the limits
    ok: int | None = None  # prompts answered
    failed: int | None = None  # prompts that ended as an error row (or were dropped)
    ids: IdCheck | None = None
    note: str = ""
    scenario: str = ""  # the scenario's kind: configured, learned, tokens, faults
    requests_after_1s: int | None = None  # from second 1 of the provider's timeline on
    rate_limited_after_1s: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        answered = 1.0 if self.ok is None or not self.prompts else self.ok / self.prompts
        return throughput_ratio(self.ideal_s, self.wall_s, answered)

    @property
    def share_429(self) -> float | None:
        return share(self.rate_limited, self.requests)

    @property
    def share_429_after_1s(self) -> float | None:
        return share(self.rate_limited_after_1s, self.requests_after_1s)

    @property
    def lost(self) -> int | None:
        """Prompts with no line at all in the tool's output: neither an answer nor an error."""
        return self.ids.missing if self.ids else None

    @property
    def duplicated(self) -> int | None:
        """Extra lines for prompts that already had one."""
        return self.ids.duplicated if self.ids else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["share_429"] = self.share_429
        data["share_429_after_1s"] = self.share_429_after_1s
        data["lost"] = self.lost
        data["duplicated"] = self.duplicated
        data["correct"] = self.ids.correct if self.ids else None
        return data


COLUMNS: tuple[tuple[str, str], ...] = (
    ("scenario", "<"),
    ("tool", "<"),
    ("prompts", ">"),
    ("rpm", ">"),
    ("latency", ">"),
    ("wall s", ">"),
    ("ideal s", ">"),
    ("ratio", ">"),
    ("requests", ">"),
    ("429s", ">"),
    ("429 %", ">"),
    ("429 % after 1s", ">"),
    ("ok", ">"),
    ("failed", ">"),
    ("lost", ">"),
    ("dup", ">"),
    ("correct", "<"),
)


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def table_row(r: RunResult) -> list[str]:
    return [
        r.scenario or "-",
        r.tool,
        f"{r.prompts:,}",
        f"{r.rpm:,}",
        f"{r.latency_ms:g} ms",
        _fmt(r.wall_s, ".1f"),
        _fmt(r.ideal_s, ".1f"),
        # A run that lost prompts ended early: its ratio is not a whole job's.
        _fmt(r.ratio, ".3f") + ("*" if r.failed else ""),
        _fmt(r.requests, ","),
        _fmt(r.rate_limited, ","),
        _percent(r.share_429),
        _percent(r.share_429_after_1s),
        _fmt(r.ok, ","),
        _fmt(r.failed, ","),
        _fmt(r.lost, ","),
        _fmt(r.duplicated, ","),
        r.ids.describe() if r.ids else "-",
    ]


def format_table(results: Sequence[RunResult], markdown: bool = False) -> str:
    """The results as an aligned text table, or a Markdown one."""
    head = [name for name, _ in COLUMNS]
    rows = [table_row(r) for r in results]
    if markdown:
        align = {"<": ":---", ">": "---:"}
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align[a] for _, a in COLUMNS) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(head[i]), *(len(row[i]) for row in rows)) if rows else len(head[i]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(format(c, f"{a}{w}") for c, (_, a), w in zip(cells, COLUMNS, widths, strict=True)).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(row) for row in rows)])
