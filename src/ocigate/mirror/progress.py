"""What a mirror shows while it works: rich progress bars (overall and per blob, bytes and rate)
when stderr is a terminal, plain log lines otherwise (CI logs, the server's scheduled sync)."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class BlobProgress(Protocol):
    def advance(self, size: int) -> None: ...

    def finish(self, ok: bool) -> None: ...


class Reporter(Protocol):
    def note(self, line: str) -> None:
        """Something done (a manifest copied, a tag moved, a blob skipped)."""
        ...

    def blob(self, label: str, size: int) -> BlobProgress:
        """A blob transfer starting."""
        ...


def _rate(size: int, seconds: float) -> str:
    return f"{size / max(seconds, 1e-3) / 1e6:.1f} MB/s"


class _LoggedBlob:
    def __init__(self, log: logging.Logger, label: str, size: int) -> None:
        self._log, self._label, self._size = log, label, size
        self._done = 0
        self._start = time.monotonic()

    def advance(self, size: int) -> None:
        self._done += size

    def finish(self, ok: bool) -> None:
        seconds = time.monotonic() - self._start
        if ok:
            rate = _rate(self._done, seconds)
            self._log.info(f"copied blob {self._label} ({self._size} bytes, {rate})")
        else:
            self._log.info(f"blob {self._label} failed after {self._done} bytes")


class LogReporter:
    """One log line per thing done."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log

    def note(self, line: str) -> None:
        self._log.info(line)

    def blob(self, label: str, size: int) -> BlobProgress:
        return _LoggedBlob(self._log, label, size)


class _BarBlob:
    def __init__(self, bars: Progress, overall: TaskID, label: str, size: int) -> None:
        self._bars, self._overall = bars, overall
        self._task = bars.add_task(label, total=size)
        total = bars.tasks[overall].total or 0
        bars.update(overall, total=total + size)

    def advance(self, size: int) -> None:
        self._bars.advance(self._task, size)
        self._bars.advance(self._overall, size)

    def finish(self, ok: bool) -> None:
        self._bars.remove_task(self._task)


class BarsReporter:
    """Rich bars on stderr: the whole copy's bytes, and one bar per blob in flight."""

    def __init__(self) -> None:
        console = Console(stderr=True)
        self._bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._overall = self._bars.add_task("total", total=0)

    def __enter__(self) -> BarsReporter:
        self._bars.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bars.stop()

    def note(self, line: str) -> None:
        self._bars.console.print(line, highlight=False, markup=False)

    def blob(self, label: str, size: int) -> BlobProgress:
        return _BarBlob(self._bars, self._overall, label, size)


def on_terminal() -> bool:
    return sys.stderr.isatty()
