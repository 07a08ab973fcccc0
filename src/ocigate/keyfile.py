"""A key file the workers of one server share: written once, by whichever worker is first."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def create_once(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600, synced) unless it exists; when another worker wins
    the race its file stays and ``data`` is dropped, so every worker reads the same key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(temp, path)  # another worker may have won the race: keep its key
    except FileExistsError:
        pass
    finally:
        temp.unlink()
