"""Every skipped checkov check is in terraform/checks/checkov.yaml with its reason, and
nowhere else."""

from __future__ import annotations

import re
from pathlib import Path

from tests.terraform.tfmodel import ROOT, terraform_dir

CONFIG = ROOT / "terraform" / "checks" / "checkov.yaml"


def skipped_with_reasons(config: Path = CONFIG) -> dict[str, str]:
    """Check id => the comment lines right above its `skip-check` entry."""
    skips: dict[str, str] = {}
    comment: list[str] = []
    in_skips = False
    for line in config.read_text().splitlines():
        stripped = line.strip()
        if not line.startswith(" ") and stripped:
            in_skips = stripped == "skip-check:"
            comment = []
        elif in_skips and stripped.startswith("#"):
            comment.append(stripped.lstrip("# "))
        elif in_skips and stripped.startswith("- "):
            skips[stripped[2:].split("#")[0].strip()] = " ".join(comment)
            comment = []
    return skips


def test_every_skip_has_a_reason() -> None:
    skips = skipped_with_reasons()
    assert skips, "expected the skipped checks to be listed"
    for check, reason in skips.items():
        assert re.fullmatch(r"CKV2?_[A-Z]+_\d+", check), check
        assert len(reason.split()) >= 8, f"{check} needs a reason in a comment above it"


def test_no_inline_skips_in_the_terraform() -> None:
    inline = [str(p) for p in terraform_dir().rglob("*.tf") if "checkov:skip" in p.read_text()]
    assert not inline, f"skip checks in terraform/checks/checkov.yaml, with the reason, not inline: {inline}"
