"""Plot the benchmark's ``results.json`` (runs in ``.venv-bench``, which has matplotlib).

    .venv-bench/bin/python -m infra.bench.plot bench-out/results.json

Writes next to the JSON file:

* ``throughput.png``: per tool, the throughput ratio (1.0 = the limit) and the share of
  requests answered 429, for the headline scenario;
* ``timeline.png``: per tool, the rate of answered requests (over 2-second windows) and
  the 429s so far against time, sampled from the fake server's counters;
* with ``--grid`` results, ``grid.png``: the ratio, the 429 share and the share of prompts
  that failed against latency (at the base limit) and against the limit (at the base
  latency), one line per tool.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

TOOL_ORDER = ("promptforge", "oaib", "cookbook")


def _tools(runs: list[dict[str, Any]]) -> list[str]:
    seen = {r["tool"] for r in runs}
    return [t for t in TOOL_ORDER if t in seen] + sorted(seen - set(TOOL_ORDER))


def plot_headline(runs: list[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tools = _tools(runs)
    by_tool = {r["tool"]: r for r in runs}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ratios = [by_tool[t]["ratio"] or 0.0 for t in tools]
    shares = [100 * (by_tool[t]["share_429"] or 0.0) for t in tools]
    # A tool that lost prompts is drawn hatched, with the count under its ratio.
    lost = [(by_tool[t]["failed"] or 0) + (0 if by_tool[t]["correct"] in (True, None) else 1) for t in tools]
    bars = ax1.bar(tools, ratios, color="tab:blue", hatch=None)
    for bar, n in zip(bars, lost, strict=True):
        if n:
            bar.set_hatch("//")
            bar.set_alpha(0.6)
    ax1.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax1.axhline(0.9, color="tab:green", linestyle=":", linewidth=1, label="90% of the limit")
    labels = [
        f"{r:.3f}" + (f"\n{by_tool[t]['failed']:,} failed" if by_tool[t]["failed"] else "")
        for t, r in zip(tools, ratios, strict=True)
    ]
    ax1.bar_label(bars, labels=labels)
    ax1.set_ylabel("answered prompts per second / limit")
    ax1.set_ylim(0, max(1.1, *ratios) * 1.15)
    ax1.legend(loc="lower right")
    bars = ax2.bar(tools, shares, color="tab:red")
    ax2.bar_label(bars, fmt="%.2f")
    ax2.set_ylabel("requests answered 429 (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rate(samples: list[list[float]], column: int, window_s: float = 2.0) -> tuple[list[float], list[float]]:
    """(times, per-second rate of ``column`` over the trailing ``window_s``)."""
    xs, ys = [], []
    j = 0
    for i, sample in enumerate(samples):
        while samples[j][0] < sample[0] - window_s:
            j += 1
        if i > j:
            xs.append(sample[0])
            ys.append((sample[column] - samples[j][column]) / (sample[0] - samples[j][0]))
    return xs, ys


def plot_timeline(runs: list[dict[str, Any]], rpm: int, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    by_tool = {r["tool"]: r for r in runs}
    for tool in _tools(runs):
        samples = by_tool[tool]["extra"].get("timeline") or []
        if len(samples) < 2:
            continue
        ax1.plot(*_rate(samples, 1), label=tool)
        ax2.plot([s[0] for s in samples], [s[2] for s in samples], label=tool)
    ax1.axhline(rpm / 60.0, color="grey", linestyle="--", linewidth=1, label="the limit")
    ax1.set_ylabel("answered requests / s (2 s window)")
    ax1.legend()
    ax2.set_ylabel("429s so far")
    ax2.set_xlabel("seconds since the tool's clock started (PromptForge: the PUT)")
    ax2.legend()
    fig.suptitle(title)
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
    data = json.loads(args.results.read_text())
    out_dir = args.results.parent
    written = []
    head = data["headline"]
    if head["runs"]:
        s = head["scenario"]
        title = f"{s['prompts']:,} prompts, {s['rpm']:,} requests/min, {s['latency_ms']:g} ms latency"
        plot_headline(head["runs"], title, out_dir / "throughput.png")
        plot_timeline(head["runs"], s["rpm"], title, out_dir / "timeline.png")
        written += [out_dir / "throughput.png", out_dir / "timeline.png"]
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
