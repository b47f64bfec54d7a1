"""Where the command line finds the service URL and the API key.

Each setting comes from the first of: a flag (``--url``, ``--api-key``), the environment
(``PROMPTFORGE_URL``, then ``PROMPTFORGE_BASE_URL`` as the local stack's ``stack.env``
sets it; ``PROMPTFORGE_API_KEY``), and a TOML config file with the keys ``url`` and
``api_key``: ``$PROMPTFORGE_CONFIG``, or else ``$XDG_CONFIG_HOME/promptforge/config.toml``
(``~/.config/promptforge/config.toml``).
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

KNOWN_KEYS = ("url", "api_key")


class ConfigError(Exception):
    """The command line is missing a setting or has a bad one (exit code 2)."""


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str
    warnings: tuple[str, ...] = field(default=())


def config_path(environ: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file and whether it was named explicitly (then it must exist)."""
    explicit = environ.get("PROMPTFORGE_CONFIG")
    if explicit:
        return Path(explicit).expanduser(), True
    base = environ.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "promptforge" / "config.toml", False


def read_file(path: Path, required: bool) -> tuple[dict[str, str], list[str]]:
    """The settings in a config file, and warnings about it."""
    if not path.is_file():
        if required:
            raise ConfigError(f"config file {path} (PROMPTFORGE_CONFIG) does not exist")
        return {}, []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    unknown = sorted(set(data) - set(KNOWN_KEYS))
    if unknown:
        raise ConfigError(f"config file {path}: unknown key {unknown[0]!r} (known: {', '.join(KNOWN_KEYS)})")
    values = {}
    for key, value in data.items():
        if not isinstance(value, str):
            raise ConfigError(f"config file {path}: {key} must be a string")
        values[key] = value
    warnings = []
    if "api_key" in values and os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(f"config file {path} holds an API key and others can read it; chmod 600 {path}")
    return values, warnings


def resolve(url: str | None, api_key: str | None, environ: Mapping[str, str] | None = None) -> Settings:
    """The service URL and API key, flags first, then the environment, then the file."""
    env = os.environ if environ is None else environ
    path, required = config_path(env)
    from_file, warnings = read_file(path, required)
    url = url or env.get("PROMPTFORGE_URL") or env.get("PROMPTFORGE_BASE_URL") or from_file.get("url")
    api_key = api_key or env.get("PROMPTFORGE_API_KEY") or from_file.get("api_key")
    if not url:
        raise ConfigError(f'no service URL: pass --url, set PROMPTFORGE_URL, or put url = "..." in {path}')
    if not api_key:
        raise ConfigError(f'no API key: pass --api-key, set PROMPTFORGE_API_KEY, or put api_key = "..." in {path}')
    return Settings(url, api_key, tuple(warnings))
