"""The outbox: what an event is, and the operations delivery and the CLI need from its storage.

An :class:`Outbox` keeps every recorded event in commit order, a cursor per webhook telling how
far its fan-out has read, and one delivery per event and webhook whose filters accept it
(``pending``, ``delivered`` or ``dead``). Any number of processes share one outbox: a delivery
is claimed under a lease, so another process takes over a claim whose holder died, and it can
only be claimed while no earlier pending delivery of the same webhook and repository exists, so
each (webhook, repository) lane is delivered strictly in order. ``sqlite_outbox`` is the SQLite
implementation; another database is one more class with these methods.

A metadata store may offer an outbox of its own database (``MetadataStore.outbox``): its
transactions then write the events staged for a change (``staging``) with the change itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Accepts = Callable[[str, str, str | None], bool]  # (repository, short type, artifact type)


@dataclass(frozen=True, slots=True)
class Event:
    """One event as the outbox stores it."""

    id: str
    repo: str
    type: str  # short type, e.g. "manifest.pushed"
    artifact_type: str | None
    json: str  # the CloudEvent


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery leased to one worker: the webhook, the event's place and JSON."""

    endpoint: str
    seq: int
    attempts: int
    event: str


@dataclass(frozen=True, slots=True)
class Row:
    """An event and one of its deliveries, as ``ocigate events list`` shows them."""

    seq: int
    id: str
    repo: str
    type: str
    endpoint: str | None
    state: str | None
    attempts: int
    last_error: str | None


def failure(
    claim: Claim, owner: str, error: str, retry_in: float | None, now: float
) -> tuple[str, float, str, float, str, int, str]:
    """What a failed attempt records, in the order both outboxes' UPDATE takes it: the new
    state, when it is due again, the error (kept short), when, and which claim of whom."""
    state = "dead" if retry_in is None else "pending"
    return (state, now + (retry_in or 0.0), error[:1000], now, claim.endpoint, claim.seq, owner)


class Outbox(Protocol):
    """Durable events and their deliveries, shared by every worker process."""

    def close(self) -> None: ...

    def append(self, events: Sequence[Event]) -> None:
        """Record events no store transaction recorded (pulls, stores without an outbox)."""
        ...

    def fan_out(self, endpoint: str, accepts: Accepts, limit: int = 1000) -> int:
        """Queue the events after this endpoint's cursor that ``accepts`` takes, and move the
        cursor past them; how many events were read (0: none left)."""
        ...

    def claim(self, owner: str, lease: float, limit: int, endpoints: Sequence[str]) -> list[Claim]:
        """Lease up to ``limit`` due deliveries to ``endpoints`` for ``lease`` seconds, each the
        head of its (endpoint, repository) lane and not leased by a live holder."""
        ...

    def delivered(self, claim: Claim, owner: str) -> None:
        """Mark a claim delivered (ignored if ``owner`` no longer holds it)."""
        ...

    def failed(self, claim: Claim, owner: str, error: str, retry_in: float | None) -> None:
        """Record a failed attempt: retry after ``retry_in`` seconds, or dead-letter (None)."""
        ...

    def prune(self, older_than: float, endpoints: Sequence[str]) -> int:
        """Forget delivered deliveries and events older than ``older_than`` seconds that every
        one of ``endpoints`` has fanned out and none still has pending or dead; how many
        events were removed."""
        ...

    def replay(self, ids: Sequence[str]) -> int:
        """Queue the deliveries of these events (by id or seq) again; how many deliveries."""
        ...

    def status(self) -> dict[str, Any]:
        """``{"events", "last_seq", "endpoints": {name: {state: count, "behind": n}}}``."""
        ...

    def rows(self, dead_only: bool = False, limit: int = 100) -> list[Row]:
        """The latest ``limit`` events with their deliveries, oldest first."""
        ...

    def event(self, seq: int) -> str | None:
        """An event's CloudEvent JSON."""
        ...
