"""Where a data directory keeps its outbox, and opening it as a :class:`SqliteOutbox`."""

from __future__ import annotations

from pathlib import Path

from ..store.embedded.metadata import connect, transaction
from .sqlite_outbox import SqliteOutbox

EVENTS_DB = "events.db"  # beside a store whose own database keeps no outbox


def connect_outbox(path: Path) -> SqliteOutbox:
    """The outbox in the SQLite database at ``path`` (created with its tables if missing),
    written with the same connection settings and transactions as the embedded store's."""
    return SqliteOutbox(connect(path), transaction)


def outbox_path(data_dir: Path) -> Path:
    """The embedded store keeps its outbox in meta.db; other stores in events.db."""
    meta = data_dir / "meta.db"
    return meta if meta.exists() or not (data_dir / EVENTS_DB).exists() else data_dir / EVENTS_DB


def open_outbox(data_dir: Path) -> SqliteOutbox:
    """The outbox a data directory already has (``ValueError`` when it has none)."""
    path = outbox_path(data_dir)
    if not path.exists():
        raise ValueError(f"{data_dir}: no event outbox here")
    return connect_outbox(path)
