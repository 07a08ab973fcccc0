"""``ocigate mirror SRC DST``: both ends opened, the copy run with the progress the terminal
allows, the summary printed; exit code 1 when anything failed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from dataclasses import dataclass

from .credentials import credentials
from .endpoints import parse_endpoint
from .engine import Mirror
from .plan import Options, Platform, Summary
from .progress import BarsReporter, LogReporter, Reporter, on_terminal
from .remote import open_registry

log = logging.getLogger("ocigate.mirror")


@dataclass(frozen=True, slots=True)
class Request:
    """The command line, parsed by the CLI."""

    source: str
    dest: str
    repos: tuple[str, ...]
    tags: str | None
    platform: str | None
    referrers: bool
    dry_run: bool
    jobs: int
    src_creds: str | None
    dest_creds: str | None
    tls_verify: bool


def options_of(request: Request) -> Options:
    try:
        tags = re.compile(request.tags) if request.tags is not None else None
    except re.error as exc:
        raise ValueError(f"--tags {request.tags}: {exc}") from exc
    if request.jobs < 1:
        raise ValueError("--jobs must be at least 1")
    platform = Platform.parse(request.platform) if request.platform else None
    return Options(request.repos, tags, platform, request.referrers, request.dry_run, request.jobs)


async def _run(request: Request, reporter: Reporter) -> Summary:
    src, dst = parse_endpoint(request.source), parse_endpoint(request.dest)
    options = options_of(request)
    connections = options.jobs * 2
    source = open_registry(
        src,
        credentials(src, request.src_creds, "MIRROR_SRC_CREDS"),
        connections=connections,
        tls_verify=request.tls_verify,
    )
    dest = open_registry(
        dst,
        credentials(dst, request.dest_creds, "MIRROR_DEST_CREDS"),
        connections=connections,
        tls_verify=request.tls_verify,
    )
    try:
        return await Mirror(source, src, dest, dst, options, reporter).run()
    finally:
        await source.close()
        await dest.close()


def mirror(request: Request) -> int:
    options_of(request)  # bad flags fail before anything is opened
    reporter: Reporter
    with contextlib.ExitStack() as stack:
        if on_terminal():
            reporter = stack.enter_context(BarsReporter())
        else:
            logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(message)s")
            reporter = LogReporter(log)
        summary = asyncio.run(_run(request, reporter))
    prefix = f"mirror {request.source} -> {request.dest}"
    for line in summary.lines(request.dry_run):
        print(f"{prefix}: {line}")
        prefix = "mirror"
    return 1 if summary.failures else 0
