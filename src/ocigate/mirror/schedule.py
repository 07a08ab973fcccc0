"""The server's scheduled sync: each ``sync:`` entry mirrored into the server's own registry
stack (so its events layer reports every manifest and tag copied as a push) every interval,
by one worker at a time (a marker file per entry says when the last run ended)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import anyio

from ..registry import Registry
from ..store.embedded.gc_schedule import collect_if_due
from .config import SyncConfig
from .endpoints import Endpoint, parse_endpoint
from .engine import Mirror
from .plan import Options, Platform, Summary
from .progress import LogReporter
from .remote import open_registry

log = logging.getLogger("ocigate.sync")


def options_of(entry: SyncConfig) -> Options:
    return Options(
        tuple(entry.repos),
        re.compile(entry.tags) if entry.tags is not None else None,
        Platform.parse(entry.platform) if entry.platform else None,
        entry.referrers,
        dry_run=False,
        jobs=entry.jobs,
    )


async def sync_once(entry: SyncConfig, dest: Registry) -> Summary:
    src = parse_endpoint(entry.source)
    login = (entry.username, entry.password or "") if entry.username else None
    source = open_registry(src, login, connections=entry.jobs * 2, tls_verify=entry.tls_verify)
    here = Endpoint("local", entry.prefix)
    try:
        summary = await Mirror(source, src, dest, here, options_of(entry), LogReporter(log)).run()
    finally:
        await source.close()
    record = {
        "sync": entry.source,
        "summary": summary.lines(False)[0],
        "tagged": summary.tagged,
        "failed": [f"{what}: {why}" for what, why in summary.failures],
    }
    log.info(json.dumps(record))
    return summary


def _marker(data_dir: Path, entry: SyncConfig) -> Path:
    # Named by what the entry pulls, so an edited configuration does not inherit a stamp.
    name = hashlib.sha256(entry.model_dump_json().encode()).hexdigest()[:16]
    return data_dir / f"sync-{name}.last"


async def _entry_forever(entry: SyncConfig, dest: Registry, data_dir: Path) -> None:
    marker = _marker(data_dir, entry)
    while True:
        try:
            await collect_if_due(marker, entry.interval, lambda: sync_once(entry, dest))
        except Exception:
            # Not stamped: whichever worker comes next tries again an interval later.
            log.exception(f"sync from {entry.source} failed")
        await anyio.sleep(entry.interval)


async def sync_forever(entries: Sequence[SyncConfig], dest: Registry, data_dir: Path) -> None:
    await asyncio.gather(*(_entry_forever(entry, dest, data_dir) for entry in entries))
