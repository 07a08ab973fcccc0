"""``ocigate events status | list [--dead] | replay ID…`` over a data directory's outbox."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .database import open_outbox


def status(data_dir: Path) -> int:
    outbox = open_outbox(data_dir)
    try:
        print(json.dumps(outbox.status(), indent=2))
    finally:
        outbox.close()
    return 0


def list_events(data_dir: Path, dead: bool, limit: int, full: bool) -> int:
    outbox = open_outbox(data_dir)
    try:
        for row in outbox.rows(dead_only=dead, limit=limit):
            where = f"{row.endpoint}:{row.state} attempts={row.attempts}" if row.endpoint else "-"
            line = f"{row.seq}\t{row.id}\t{row.type}\t{row.repo}\t{where}"
            if row.last_error:
                line += f"\t{row.last_error}"
            print(line)
            if full:
                print(outbox.event(row.seq))
    finally:
        outbox.close()
    return 0


def replay(data_dir: Path, ids: Sequence[str]) -> int:
    outbox = open_outbox(data_dir)
    try:
        count = outbox.replay(ids)
    finally:
        outbox.close()
    print(f"{count} deliveries queued again")
    return 0 if count else 1
