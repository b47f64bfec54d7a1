"""``promptforge keys ...``: the operator's key commands, run in process.

They are ``python -m promptforge.admin keys ...`` from the service's own code, which talks
to Firestore directly (not through the API): they need the repository's ``functions/``
directory (found next to this package in a checkout, or at ``$PROMPTFORGE_FUNCTIONS_DIR``),
its dependencies (``requirements.txt``), and the service's environment: on the local stack
``source .run/dev/stack.env``; against Google Cloud, application default credentials and
``GOOGLE_CLOUD_PROJECT``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

from .config import ConfigError
from .errors import NetworkError


def functions_dir() -> Path:
    """The directory that holds the service's ``promptforge`` package."""
    explicit = os.environ.get("PROMPTFORGE_FUNCTIONS_DIR")
    candidate = Path(explicit) if explicit else Path(__file__).resolve().parents[2] / "functions"
    if not (candidate / "promptforge" / "admin.py").is_file():
        where = "PROMPTFORGE_FUNCTIONS_DIR" if explicit else "this checkout"
        raise ConfigError(
            f"keys commands need the service code: no promptforge/admin.py in {candidate} ({where}); "
            "run them from a PromptForge checkout or set PROMPTFORGE_FUNCTIONS_DIR"
        )
    return candidate


def run_admin(argv: list[str]) -> int:
    """``promptforge.admin.main(argv)`` with ``functions/`` importable; its exit code."""
    path = str(functions_dir())
    if path not in sys.path:
        sys.path.insert(0, path)
    if not any(os.environ.get(v) for v in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT", "GCP_PROJECT")):
        raise ConfigError(
            "keys commands need the service's environment: set GOOGLE_CLOUD_PROJECT (Google Cloud) "
            "or FIRESTORE_EMULATOR_HOST (the local stack: source .run/dev/stack.env)"
        )
    admin_main = cast(Callable[[list[str]], int], importlib.import_module("promptforge.admin").main)
    try:
        return admin_main(argv)
    except SystemExit as exc:  # argparse's usage errors
        return exc.code if isinstance(exc.code, int) else 2
    except Exception as exc:
        known = translate(exc)
        if known is None:
            raise
        raise known from exc


def translate(exc: Exception) -> Exception | None:
    """Firestore out of reach or no credentials, as this package's errors (exit 7 and 2)."""
    name, module = type(exc).__name__, type(exc).__module__
    if module.startswith("google.auth") and name == "DefaultCredentialsError":
        return ConfigError("no Google Cloud credentials for Firestore: run 'gcloud auth application-default login'")
    if module.startswith("google.api_core") and name in ("RetryError", "ServiceUnavailable", "DeadlineExceeded"):
        emulator = os.environ.get("FIRESTORE_EMULATOR_HOST")
        where = f"the Firestore emulator at {emulator}" if emulator else "Firestore"
        return NetworkError(f"cannot reach {where}: {str(exc).split(';')[0]}")
    return None
