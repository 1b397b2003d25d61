"""Where infernet keeps its data, and the small JSON files in it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def home() -> Path:
    """INFERNET_HOME, else $XDG_DATA_HOME/infernet, else ~/.local/share/infernet."""
    if env := os.environ.get("INFERNET_HOME"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "infernet"


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only (it holds keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def client_file(root: Path | None = None) -> Path:
    """What `infernet up` leaves for `infernet chat`: the URL and the API key."""
    return (root or home()) / "client.json"
