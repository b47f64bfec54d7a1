"""Plot the benchmark's ``results.json`` (runs in ``.venv-bench``, which has matplotlib).

    .venv-bench/bin/python -m infra.bench.plot bench-out/results.json

Writes next to the JSON file:

* ``summary.png``: per scenario and tool, the throughput ratio (1.0 = the limit) and the
  share of requests answered 429;
* ``timeline-<scenario label>.png``: the provider's view second by second, one line per
  tool, from the fake server's per-second counters (``/_timeline``): requests admitted by
  the limits and answers sent (and, when the token limit binds, tokens charged), 429s
  answered, and other failures (5xx, connections reset); the x axis is the tool's clock;
* with ``--grid`` results, ``grid.png``: the ratio, the 429 share and the share of prompts
  that failed against latency (at the base limit) and against the limit (at the base
  latency), one line per tool.

Without matplotlib it says so and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TOOL_ORDER = ("promptforge", "oaib", "aiolimiter", "cookbook")


def _tools(runs: list[dict[str, Any]]) -> list[str]:
    seen = {r["tool"] for r in runs}
    return [t for t in TOOL_ORDER if t in seen] + sorted(seen - set(TOOL_ORDER))


def _scenario_title(s: dict[str, Any]) -> str:
    limits = f"{s['rpm']:,} requests/min, {s['tpm']:,} tokens/min"
    extra = "" if s["configured"] else ", limits NOT configured"
    faults = ", faults " + ", ".join(f"{k} {100 * v:g}%" for k, v in s["faults"]) if s["faults"] else ""
    return f"{s['kind']}: {s['prompts']:,} prompts, {limits}, {s['latency_ms']:g} ms{extra}{faults}"


def plot_summary(scenarios: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(sc["label"], run) for sc in scenarios for run in sc["runs"]]
    tools = _tools([run for _, run in points])
    labels = [sc["label"] for sc in scenarios if sc["runs"]]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8.0, 1.6 * len(labels) * len(tools) / 2), 8), sharex=True)
    width = 0.8 / max(1, len(tools))
    for j, tool in enumerate(tools):
        xs, ratios, shares = [], [], []
        for i, label in enumerate(labels):
            run = next((r for lab, r in points if lab == label and r["tool"] == tool), None)
            if run is None:
                continue
            xs.append(i + (j - (len(tools) - 1) / 2) * width)
            ratios.append(run["ratio"] or 0.0)
            shares.append(100 * (run["share_429"] or 0.0))
        bars = ax1.bar(xs, ratios, width, label=tool)
        ax1.bar_label(bars, fmt="%.3f", fontsize=7)
        bars = ax2.bar(xs, shares, width, label=tool)
        ax2.bar_label(bars, fmt="%.1f", fontsize=7)
    ax1.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax1.set_ylabel("answered prompts per second / limit")
    ax1.legend(fontsize=8)
    ax2.set_ylabel("requests answered 429 (%)")
    ax2.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _series(run: dict[str, Any], key: str) -> tuple[list[float], list[float]]:
    """(seconds on the tool's clock, ``key`` per second) from a run's provider timeline."""
    timeline = run["extra"].get("timeline") or {}
    offset = float(timeline.get("offset_s") or 0.0)
    rows = timeline.get("seconds") or []
    return [row["t"] + offset for row in rows], [float(row.get(key, 0)) for row in rows]


def _failures(row: dict[str, Any]) -> float:
    """Answers that were 5xx, and connections reset (status 0), in one second's row."""
    codes = {int(k.removeprefix("status_")): n for k, n in row.items() if k.startswith("status_")}
    return float(sum(n for code, n in codes.items() if code == 0 or code >= 500))


def plot_timeline(scenario: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, runs = scenario["scenario"], scenario["runs"]
    tokens_bind = s["kind"] == "tokens"
    panels = 4 if tokens_bind else 3
    fig, axes = plt.subplots(panels, 1, figsize=(10, 2.6 * panels), sharex=True)
    by_tool = {r["tool"]: r for r in runs}
    for tool in _tools(runs):
        run = by_tool[tool]
        xs, admitted = _series(run, "admitted")
        if not xs:
            continue
        (line,) = axes[0].plot(xs, admitted, label=f"{tool}: admitted", linewidth=1)
        # Answers go out a latency later: the tail after the last admission is the job's, not the limit's.
        axes[0].plot(
            xs, _series(run, "status_200")[1], label=f"{tool}: answered 200", linewidth=1, linestyle=":", color=line.get_color()
        )
        axes[1].plot(xs, _series(run, "status_429")[1], label=tool, linewidth=1)
        rows = (run["extra"].get("timeline") or {}).get("seconds") or []
        axes[2].plot(xs, [_failures(row) for row in rows], label=tool, linewidth=1)
        if tokens_bind:
            axes[3].plot(xs, _series(run, "charged_tokens")[1], label=tool, linewidth=1)
    axes[0].axhline(s["rpm"] / 60.0, color="grey", linestyle="--", linewidth=1, label="the limit")
    axes[0].set_ylabel("requests / s")
    axes[0].legend(fontsize=8)
    axes[1].set_ylabel("429s / s")
    axes[2].set_ylabel("5xx + resets / s")
    if tokens_bind:
        axes[3].axhline(s["tpm"] / 60.0, color="grey", linestyle="--", linewidth=1, label="the limit")
        axes[3].set_ylabel("tokens charged / s")
    axes[-1].set_xlabel("seconds on the tool's clock (PromptForge: since the PUT)")
    fig.suptitle(_scenario_title(s), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_grid(runs: list[dict[str, Any]], base_rpm: int, base_latency: float, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(11, 11), sharex="col")
    for tool in _tools(runs):
        mine = [r for r in runs if r["tool"] == tool]
        by_latency = sorted((r for r in mine if r["rpm"] == base_rpm), key=lambda r: r["latency_ms"])
        by_limit = sorted((r for r in mine if r["latency_ms"] == base_latency), key=lambda r: r["rpm"])
        for col, points, key in ((0, by_latency, "latency_ms"), (1, by_limit, "rpm")):
            xs = [r[key] for r in points]
            axes[0][col].plot(xs, [r["ratio"] or 0.0 for r in points], marker="o", label=tool)
            axes[1][col].plot(xs, [100 * (r["share_429"] or 0.0) for r in points], marker="o", label=tool)
            failed = [100 * (r["failed"] or 0) / r["prompts"] for r in points]
            axes[2][col].plot(xs, failed, marker="o", label=tool)
    for col in (0, 1):
        axes[0][col].axhline(1.0, color="grey", linestyle="--", linewidth=1)
        axes[0][col].axhline(0.9, color="tab:green", linestyle=":", linewidth=1)
        axes[0][col].set_ylabel("answered prompts per second / limit")
        axes[1][col].set_ylabel("requests answered 429 (%)")
        axes[2][col].set_ylabel("prompts failed (%)")
        axes[0][col].legend()
    axes[0][0].set_title(f"vs latency, at {base_rpm:,} requests/min")
    axes[0][1].set_title(f"vs limit, at {base_latency:g} ms latency")
    axes[2][0].set_xlabel("fake server latency (ms)")
    axes[2][0].set_xscale("log")
    axes[2][1].set_xlabel("limit (requests/min)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: no plots", file=sys.stderr)
        return 0
    data = json.loads(args.results.read_text())
    out_dir = args.results.parent
    written = []
    scenarios = [sc for sc in data.get("scenarios") or [] if sc["runs"]]
    if scenarios:
        plot_summary(scenarios, out_dir / "summary.png")
        written.append(out_dir / "summary.png")
        for sc in scenarios:
            path = out_dir / f"timeline-{sc['label']}.png"
            plot_timeline(sc, path)
            written.append(path)
    grid = data.get("grid")
    if grid and grid["runs"]:
        title = f"{grid['prompts']:,} prompts per point"
        plot_grid(grid["runs"], grid["base_rpm"], grid["base_latency_ms"], title, out_dir / "grid.png")
        written.append(out_dir / "grid.png")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
