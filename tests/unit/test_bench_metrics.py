"""The throughput benchmark's pure helpers: the ideal time, the ratio, the id check, the table."""

from __future__ import annotations

import pytest

from infra.bench.metrics import RunResult, check_ids, format_table, ideal_seconds, share, throughput_ratio


def test_ideal_is_bound_by_requests_when_tokens_do_not_bind() -> None:
    # 10,000 prompts at 6,000 requests/minute (100/s): 100 s.
    assert ideal_seconds(10_000, 6000, 2_000_000, tokens=10_000 * 40) == pytest.approx(100.0)


def test_ideal_is_bound_by_tokens_when_they_bind() -> None:
    # 1,000 prompts of 100 tokens at 60,000 tokens/minute (1,000/s): 100 s, more than 1,000 / 100 rps.
    assert ideal_seconds(1000, 6000, 60_000, tokens=100_000) == pytest.approx(100.0)


def test_ideal_without_a_token_limit() -> None:
    assert ideal_seconds(3000, 3000, None, tokens=1e9) == pytest.approx(60.0)


def test_ideal_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        ideal_seconds(10, 0)


def test_ratio_counts_only_answered_prompts() -> None:
    assert throughput_ratio(100.0, 110.0) == pytest.approx(100 / 110)
    assert throughput_ratio(20.0, 10.0, answered=0.5) == pytest.approx(1.0)
    assert throughput_ratio(20.0, None) is None
    assert throughput_ratio(20.0, 0.0) is None


def test_share() -> None:
    assert share(5, 100) == 0.05
    assert share(None, 100) is None
    assert share(3, 0) is None


def test_check_ids() -> None:
    ok = check_ids(["a", "b"], ["b", "a"])
    assert ok.correct and ok.describe() == "yes"
    bad = check_ids(["a", "b", "c"], ["a", "a", "z"])
    assert (bad.missing, bad.duplicated, bad.unexpected) == (2, 1, 1)
    assert not bad.correct
    assert bad.describe() == "NO: 2 missing, 1 dup, 1 extra"


def test_result_ratio_and_table() -> None:
    r = RunResult("cookbook", prompts=1000, rpm=3000, tpm=None, latency_ms=300, ideal_s=20.0, wall_s=10.0)
    r.requests, r.rate_limited, r.ok, r.failed = 4000, 3000, 500, 500
    r.ids = check_ids([str(i) for i in range(1000)], [str(i) for i in range(1000)])
    assert r.ratio == pytest.approx(1.0)  # half answered, in half the ideal time
    assert r.share_429 == pytest.approx(0.75)
    data = r.as_dict()
    assert data["correct"] is True and data["ratio"] == pytest.approx(1.0)
    text = format_table([r])
    assert "cookbook" in text and "75.00" in text and "1.000*" in text
    md = format_table([r], markdown=True)
    assert md.splitlines()[1].startswith("|:---|---:")
