"""``ocigate events status | list [--dead] | replay ID…`` over a store's outbox (the data
directory's SQLite, or the objects backend's PostgreSQL); the caller opens and closes it."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .outbox import Outbox


def status(outbox: Outbox) -> int:
    print(json.dumps(outbox.status(), indent=2))
    return 0


def list_events(outbox: Outbox, dead: bool, limit: int, full: bool) -> int:
    for row in outbox.rows(dead_only=dead, limit=limit):
        where = f"{row.endpoint}:{row.state} attempts={row.attempts}" if row.endpoint else "-"
        line = f"{row.seq}\t{row.id}\t{row.type}\t{row.repo}\t{where}"
        if row.last_error:
            line += f"\t{row.last_error}"
        print(line)
        if full:
            print(outbox.event(row.seq))
    return 0


def replay(outbox: Outbox, ids: Sequence[str]) -> int:
    count = outbox.replay(ids)
    print(f"{count} deliveries queued again")
    return 0 if count else 1
