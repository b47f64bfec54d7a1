"""The throughput benchmark's pure helpers: the ideal time, the ratio, the id check, the table."""

from __future__ import annotations

import pytest

from infra.bench.metrics import (
    RunResult,
    after_first_second,
    check_ids,
    format_table,
    ideal_seconds,
    share,
    throughput_ratio,
)


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
    assert md.splitlines()[1].startswith("|:---|:---|---:")


def test_429_share_after_the_first_second_leaves_out_second_zero() -> None:
    seconds = [
        {"t": 0, "arrived": 500, "status_429": 400},
        {"t": 1, "arrived": 100, "status_429": 2},
        {"t": 2},
        {"t": 3, "arrived": 98, "status_200": 98},
    ]
    assert after_first_second(seconds) == (198, 2)
    r = RunResult("promptforge", prompts=600, rpm=6000, tpm=None, latency_ms=300, ideal_s=6.0, wall_s=7.0, scenario="learned")
    r.requests, r.rate_limited = 698, 402
    r.requests_after_1s, r.rate_limited_after_1s = after_first_second(seconds)
    assert r.share_429_after_1s == pytest.approx(2 / 198)
    row = format_table([r]).splitlines()[2].split()
    assert row[:2] == ["learned", "promptforge"]
    assert "57.59" in row and "1.01" in row


def test_lost_and_duplicated_come_from_the_id_check() -> None:
    r = RunResult("aiolimiter", prompts=3, rpm=6000, tpm=None, latency_ms=300, ideal_s=1.0, wall_s=1.0, scenario="faults")
    assert (r.lost, r.duplicated) == (None, None)
    r.ids = check_ids(["a", "b", "c"], ["a", "a", "b"])
    assert (r.lost, r.duplicated) == (1, 1)
    data = r.as_dict()
    assert (data["lost"], data["duplicated"], data["correct"]) == (1, 1, False)
