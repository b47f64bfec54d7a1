"""terraform/package_functions.py: the archive Cloud Functions builds from."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

from terraform.package_functions import SOURCE, build


def test_archive_is_reproducible_and_holds_only_the_functions(tmp_path: Path) -> None:
    first = build(tmp_path / "a.zip")
    second = build(tmp_path / "b.zip")
    assert first == second == hashlib.md5((tmp_path / "a.zip").read_bytes()).hexdigest()
    names = zipfile.ZipFile(tmp_path / "a.zip").namelist()
    assert {"main.py", "requirements.txt", "promptforge/config.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    code = {p.relative_to(SOURCE).as_posix() for p in SOURCE.rglob("*.py") if "__pycache__" not in p.parts}
    assert code <= set(names)
    # The web function serves these from the deployed tree.
    page = {p.relative_to(SOURCE).as_posix() for p in (SOURCE / "promptforge" / "web").iterdir()}
    assert {"promptforge/web/index.html", "promptforge/web/app.js", "promptforge/web/style.css"} <= page <= set(names)
