"""Zip functions/ into the archive Cloud Functions builds from.

The archive is reproducible (sorted entries, fixed timestamps and modes), so an unchanged
tree gives the same bytes, the same object name in the source bucket (named by its MD5 in
modules/promptforge/functions.tf) and no redeployment.

Usage: python terraform/package_functions.py [--out terraform/.build/functions.zip]
"""

from __future__ import annotations

import argparse
import hashlib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "functions"
DEFAULT_OUT = ROOT / "terraform" / ".build" / "functions.zip"
# What the functions run: their code and their requirements, and the web page's static
# files (promptforge/web). Nothing cached or local.
INCLUDE_SUFFIXES = {".py", ".txt", ".json", ".yaml", ".html", ".js", ".css", ".svg"}
EXCLUDE_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def source_files(source: Path = SOURCE) -> list[Path]:
    """The files that go into the archive, relative to ``source``, in a stable order."""
    files = [
        p.relative_to(source)
        for p in source.rglob("*")
        if p.is_file() and p.suffix in INCLUDE_SUFFIXES and not EXCLUDE_DIRS.intersection(p.relative_to(source).parts)
    ]
    return sorted(files, key=lambda p: p.as_posix())


def build(out: Path, source: Path = SOURCE) -> str:
    """Write the archive to ``out``; returns its MD5 (hex)."""
    files = source_files(source)
    for required in (Path("main.py"), Path("requirements.txt")):
        if required not in files:
            raise SystemExit(f"package_functions: {source / required} is missing")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in files:
            info = zipfile.ZipInfo(rel.as_posix(), date_time=FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, (source / rel).read_bytes())
    return hashlib.md5(out.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"archive path (default {DEFAULT_OUT})")
    args = parser.parse_args()
    digest = build(args.out)
    print(f"{args.out} md5={digest} files={len(source_files())}")


if __name__ == "__main__":
    main()
