"""Named CLI profiles (endpoint + token), kept in ``~/.v-secure/profiles.json`` with mode 0600.

The directory can be moved with ``V_SECURE_CONFIG_DIR``. ``make run`` writes the ``dev``
profile, which is the default when ``--profile`` / ``V_SECURE_PROFILE`` are not given.

Example::

    save_profile("dev", endpoint="http://127.0.0.1:8000", token="vs_...")
    load_profile("dev").endpoint
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel

DEFAULT_PROFILE = "dev"


class Profile(BaseModel):
    endpoint: str
    token: str | None = None


def config_dir() -> Path:
    return Path(os.environ.get("V_SECURE_CONFIG_DIR") or Path.home() / ".v-secure")


def profiles_path() -> Path:
    return config_dir() / "profiles.json"


def _read_all() -> dict[str, dict[str, str]]:
    path = profiles_path()
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def load_profile(name: str) -> Profile | None:
    raw = _read_all().get(name)
    return Profile.model_validate(raw) if raw else None


def save_profile(name: str, endpoint: str, token: str | None) -> Path:
    """Write (or replace) one profile; the file is created with mode 0600 before any token is in it."""
    directory = config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    profiles = _read_all()
    profiles[name] = Profile(endpoint=endpoint, token=token).model_dump(exclude_none=True)
    path = profiles_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump(profiles, handle, indent=2)
    return path
