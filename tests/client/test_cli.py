"""The command line in process against the fake service: output, configuration, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import httpx
import pytest

from promptforge_client import Client, cli
from promptforge_client.config import ConfigError, resolve
from tests.client.fake_service import API, KEY, FakeService, envelope


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeService:
    service = FakeService()
    monkeypatch.setattr(cli, "Client", lambda url, key: Client(url, key, transport=service.transport))
    monkeypatch.setattr("promptforge_client._sync.time.sleep", lambda _: None)
    for name in ("PROMPTFORGE_URL", "PROMPTFORGE_BASE_URL", "PROMPTFORGE_API_KEY", "PROMPTFORGE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    return service


def run(capsys: pytest.CaptureFixture[str], *argv: str, key: str = KEY) -> tuple[int, str, str]:
    code = cli.run(["--url", API, "--api-key", key, *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_submit_wait_out_shows_progress_lines_and_downloads_into_out_job_id(
    fake: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = write(tmp_path / "in.jsonl", [{"prompt_id": f"p{i}", "prompt": "x"} for i in range(4)])
    code, out, err = run(
        capsys, "submit", str(source), "--provider", "fake", "--model", "m", "--wait", "--out", str(tmp_path / "res")
    )
    assert code == 0, err
    job_id, target = out.splitlines()
    assert target == str(tmp_path / "res" / job_id)
    assert "progress: PROCESSING 2/4 processed, 2 completed, 0 failed" in err
    assert "progress: COMPLETED 4/4 processed, 4 completed, 0 failed" in err
    assert "COMPLETED: 4 completed, 0 failed of 4" in err and "3 files in" in err
    ids = [json.loads(line)["prompt_id"] for f in Path(target).iterdir() for line in f.read_text().splitlines()]
    assert sorted(ids) == ["p0", "p1", "p2", "p3"]


def test_params_metadata_and_options_reach_the_service(
    fake: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = write(tmp_path / "in.jsonl", [{"prompt_id": "a", "prompt": "x"}])
    code, out, _ = run(
        capsys,
        *("submit", str(source), "--provider", "fake", "--model", "m"),
        *("--params", '{"temperature": 0.5}', "--params", "max_tokens=20 stop='[\"a b\"]'"),
        *("--metadata", "team=search", "--system-prompt", "Be brief.", "--max-attempts", "2"),
    )
    assert code == 0
    assert fake.jobs[out.strip()].request == {
        "provider": "fake",
        "model": "m",
        "params": {"temperature": 0.5, "max_tokens": 20, "stop": ["a b"]},
        "metadata": {"team": "search"},
        "system_prompt": "Be brief.",
        "max_attempts": 2,
    }


def test_economy_mode_reaches_the_service_and_its_batches_show_while_it_runs(
    fake: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = write(tmp_path / "in.jsonl", [{"prompt_id": f"p{i}", "prompt": "x"} for i in range(4)])
    code, out, err = run(capsys, "submit", str(source), "--provider", "fake", "--model", "m", "--mode", "economy", "--wait")
    assert code == 0, err
    job_id = out.strip()
    assert fake.jobs[job_id].request == {"provider": "fake", "model": "m", "mode": "economy"}
    assert "progress: PROCESSING 2/4 processed, 2 completed, 0 failed" in err
    assert "; 0/1 provider batches ended; 2/4 requests done, 0 failed" in err
    code, out, _ = run(capsys, "status", job_id)
    assert code == 0 and re.search(r"^mode +economy", out, re.M) and "batches" not in out  # ended: no batches to show
    fake.jobs[job_id].status = "PROCESSING"
    code, out, _ = run(capsys, "status", job_id)
    assert "0/1 provider batches ended; 2/4 requests done, 0 failed" in out
    code, _, err = run(capsys, "submit", str(source), "--provider", "fake", "--model", "m", "--mode", "slow")
    assert code == 2 and "Invalid value for '--mode'" in err


def test_a_job_that_ends_failed_exits_1_with_its_reason(
    fake: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    code, out, err = run(capsys, "submit", str(empty), "--provider", "fake", "--model", "m", "--out", str(tmp_path / "res"))
    assert code == 1
    assert "FAILED: 0 completed, 0 failed of 0" in err and "empty_file: the file has no prompts" in err
    assert "(partial) in" in err  # what there is, downloaded all the same


@pytest.mark.parametrize(
    ("argv", "key", "code", "message"),
    [
        (("status", "x"), "pf_wrong_secret_key", 3, "unauthenticated: Missing or invalid X-API-Key (HTTP 401, check --api-key"),
        (("status", "00000000-0000-0000-0000-000000000000"), KEY, 4, "not_found: Job not found (HTTP 404)"),
        (("list", "--limit", "0"), KEY, 2, "Invalid value for '--limit'"),
    ],
)
def test_errors_are_one_line_with_their_exit_code(
    fake: FakeService, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], key: str, code: int, message: str
) -> None:
    got, out, err = run(capsys, *argv, key=key)
    assert got == code and message in err and out == ""
    assert key not in err


def test_conflicts_invalid_requests_and_the_network(
    fake: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    job = fake._new_job({"provider": "fake", "model": "m"})
    assert not isinstance(job, httpx.Response)
    code, _, err = run(capsys, "results", job.job_id)
    assert code == 5 and err.strip() == (
        "promptforge: job_not_completed: Job is not yet completed (HTTP 409, current status: AWAITING_UPLOAD, retry after 5s)"
    )
    source = write(tmp_path / "in.jsonl", [{"prompt_id": "a", "prompt": "x"}])
    code, _, err = run(capsys, "submit", str(source), "--provider", "nope", "--model", "m")
    assert code == 6 and "invalid_request: provider: unknown provider (HTTP 400, field: provider)" in err
    fake.faults = [envelope(500, "internal", "Internal error; the request can be retried")]
    code, _, err = run(capsys, "status", job.job_id)
    assert code == 6 and "internal: Internal error" in err
    fake.faults = [httpx.ConnectError("[Errno 111] Connection refused")]
    code, _, err = run(capsys, "status", job.job_id)
    assert code == 7 and err.strip() == "promptforge: network: cannot reach http://api.test: [Errno 111] Connection refused"


def test_status_list_results_and_cancel(fake: FakeService, capsys: pytest.CaptureFixture[str]) -> None:
    first = fake._create({"provider": "fake", "model": "m", "prompts": [{"prompt_id": "a", "prompt": "x"}]}).json()["job_id"]
    fake.finish(first)
    second = fake._new_job({"provider": "fake", "model": "m2"})
    assert not isinstance(second, httpx.Response)

    code, out, _ = run(capsys, "status", first, "--json")
    assert code == 0 and json.loads(out)["status"] == "COMPLETED"
    code, out, _ = run(capsys, "status", first)
    assert "1/1 processed: 1 completed, 0 failed" in out
    code, out, _ = run(capsys, "list")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0][:2] == ["JOB", "STATUS"] and [r[0] for r in rows[1:]] == [second.job_id, first]
    code, out, _ = run(capsys, "list", "--json", "--limit", "1")
    assert [json.loads(line)["job_id"] for line in out.splitlines()] == [second.job_id]
    code, out, _ = run(capsys, "results", first)
    assert [line.split("\t")[0] for line in out.splitlines()] == ["results_part_001.jsonl", "errors.jsonl"]
    code, out, _ = run(capsys, "cancel", second.job_id)
    assert code == 0 and "CANCELLED" in out
    code, _, err = run(capsys, "cancel", second.job_id)
    assert code == 5 and "job_terminal: Job has already ended (HTTP 409, current status: CANCELLED)" in err


def test_resubmit_from_the_command_line(fake: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = write(tmp_path / "in.jsonl", [{"prompt_id": "a", "prompt": "x"}, {"prompt_id": "b", "prompt": "FAIL"}, "{oops"])
    code, out, _ = run(capsys, "submit", str(source), "--provider", "fake", "--model", "m", "--wait")
    first = out.strip()
    code, out, err = run(capsys, "resubmit", first, "--file", str(source))
    assert code == 0 and out.strip() in fake.jobs
    assert "with 1 lines of" in err and "2 failed rows" in err and "1 of them are lines without a prompt_id" in err
    assert fake.uploads[out.strip()] == b'{"prompt_id": "b", "prompt": "FAIL"}\n'

    # Either mode for the new job: the one asked for, else the earlier job's.
    code, out, err = run(capsys, "resubmit", first, "--file", str(source), "--mode", "economy")
    economy = out.strip()
    assert code == 0 and fake.jobs[economy].request["mode"] == "economy", err
    fake.finish(economy)
    code, out, _ = run(capsys, "resubmit", economy, "--file", str(source))
    assert code == 0 and fake.jobs[out.strip()].request["mode"] == "economy"
    code, out, _ = run(capsys, "resubmit", economy, "--file", str(source), "--mode", "fast")
    assert code == 0 and fake.jobs[out.strip()].request["mode"] == "fast"

    other = write(tmp_path / "other.jsonl", [{"prompt_id": "zzz", "prompt": "x"}])
    code, _, err = run(capsys, "resubmit", first, "--file", str(other))
    assert code == 2 and "nothing to resubmit: none of the 2 failed rows" in err
    clean = fake._create({"provider": "fake", "model": "m", "prompts": [{"prompt_id": "a", "prompt": "x"}]}).json()["job_id"]
    fake.finish(clean)
    code, _, err = run(capsys, "resubmit", clean, "--file", str(source))
    assert code == 0 and f"nothing to resubmit: job {clean} has no failed rows" in err


def test_settings_come_from_flags_then_environment_then_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('url = "http://from-file"\napi_key = "pf_file"\n')
    config.chmod(0o600)
    env = {"PROMPTFORGE_CONFIG": str(config)}
    assert (resolve(None, None, env).url, resolve(None, None, env).api_key) == ("http://from-file", "pf_file")
    env_set = {**env, "PROMPTFORGE_URL": "http://from-env", "PROMPTFORGE_API_KEY": "pf_env"}
    assert (resolve(None, None, env_set).url, resolve(None, None, env_set).api_key) == ("http://from-env", "pf_env")
    assert resolve("http://flag", "pf_flag", env_set).url == "http://flag"
    assert resolve(None, None, {**env, "PROMPTFORGE_BASE_URL": "http://stack-env"}).url == "http://stack-env"
    (tmp_path / "xdg" / "promptforge").mkdir(parents=True)
    (tmp_path / "xdg" / "promptforge" / "config.toml").write_text('url = "http://xdg"\n')
    assert resolve(None, "pf_flag", {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}).url == "http://xdg"

    config.chmod(0o644)
    assert "others can read it" in resolve(None, None, env).warnings[0]
    config.write_text('url = "http://x"\napikey = "typo"\n')
    with pytest.raises(ConfigError, match="unknown key 'apikey'"):
        resolve(None, None, env)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(None, None, {"PROMPTFORGE_CONFIG": str(tmp_path / "missing.toml")})
    with pytest.raises(ConfigError, match="no API key"):
        resolve("http://x", None, {"XDG_CONFIG_HOME": str(tmp_path / "empty")})


def test_missing_settings_exit_2_and_operators_need_the_service_environment(
    fake: FakeService, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.run(["status", "x"]) == 2
    assert "no service URL: pass --url, set PROMPTFORGE_URL" in capsys.readouterr().err
    for name in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GCP_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    assert cli.run(["keys", "list"]) == 2
    assert "keys commands need the service's environment" in capsys.readouterr().err
    monkeypatch.setenv("PROMPTFORGE_FUNCTIONS_DIR", "/nonexistent")
    assert cli.run(["keys", "list"]) == 2
    assert "no promptforge/admin.py in /nonexistent" in capsys.readouterr().err


def test_params_parsing() -> None:
    assert cli.parse_object(("temperature=0.2", "stop='[\"\\n\"]' user=bob"), "--params") == {
        "temperature": 0.2,
        "stop": ["\n"],
        "user": "bob",
    }
    assert cli.parse_object(('{"a": 1}', "a=2"), "--params") == {"a": 2}
    for bad in ("[1, 2]", "{nope", "novalue", "=1"):
        with pytest.raises(click.BadParameter):
            cli.parse_object((bad,), "--params")


def test_exit_codes_are_the_documented_ones() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    for code, name in [(0, "EXIT_OK"), (1, "EXIT_JOB_FAILED"), (2, "EXIT_USAGE"), (3, "EXIT_AUTH"), (4, "EXIT_NOT_FOUND")]:
        assert getattr(cli, name) == code and f"| {code} |" in doc
    for code, name in [(5, "EXIT_CONFLICT"), (6, "EXIT_API"), (7, "EXIT_NETWORK"), (130, "EXIT_INTERRUPTED")]:
        assert getattr(cli, name) == code and f"| {code} |" in doc


def test_operator_commands_report_firestore_out_of_reach_and_missing_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.api_core.exceptions import RetryError, ServiceUnavailable
    from google.auth.exceptions import DefaultCredentialsError

    from promptforge_client._operator import translate
    from promptforge_client.errors import NetworkError

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    retry = translate(
        RetryError("Timeout of 60.0s exceeded, last exception: 503 failed to connect; more", ServiceUnavailable("x"))
    )
    assert isinstance(retry, NetworkError) and cli.exit_code_for(retry) == 7
    assert (
        str(retry)
        == "cannot reach the Firestore emulator at 127.0.0.1:9: Timeout of 60.0s exceeded, last exception: 503 failed to connect"
    )
    creds = translate(DefaultCredentialsError("no"))
    assert isinstance(creds, ConfigError) and cli.exit_code_for(creds) == 2
    assert translate(KeyError("x")) is None


def test_plain_mode_reports_a_large_upload_by_quarters_and_off_prints_no_progress(
    fake: FakeService, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    big = write(tmp_path / "big.jsonl", [{"prompt_id": f"p{i:05d}", "prompt": "x" * 80} for i in range(12_000)])
    assert big.stat().st_size > 1 << 20
    code, _, err = run(capsys, "--progress", "plain", "submit", str(big), "--provider", "fake", "--model", "m", "--wait")
    percents = [int(line.split()[1].rstrip("%")) for line in err.splitlines() if line.startswith("upload: ")]
    # A line each time the upload passes a quarter (at the first chunk past it).
    assert code == 0 and percents == sorted(set(percents)) and percents[-1] == 100 and len(percents) >= 3
    assert "progress: COMPLETED" in err

    code, _, err = run(capsys, "--progress", "off", "submit", str(big), "--provider", "fake", "--model", "m", "--wait")
    assert code == 0 and "upload: " not in err and "progress: " not in err
    assert "COMPLETED: 12,000 completed" in err  # the outcome is still said
