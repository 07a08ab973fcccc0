"""Staging a change's events so the store's own transaction decides and writes them.

The events layer puts a decision in :data:`STAGED` (a context variable, which anyio copies into
the worker thread running the store's metadata code) before delegating the change: a function
from a :class:`StoreView` to the events describing the change. A metadata store with an outbox
of its own calls :func:`resolve_staged` as its write transaction begins (the write lock held, so
nobody else's change can come between what the decision reads and the change) and writes
:func:`take_staged`'s events just before it commits, so the events are exact (one
``repository.created`` however many pushes race) and commit or roll back with the change they
describe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from .outbox import Event


class StoreView(Protocol):
    """What deciding a change's events reads: the state the change is about to apply to."""

    def repository_exists(self, repo: str) -> bool: ...

    def tag_digest(self, repo: str, tag: str) -> str | None: ...


Decide = Callable[[StoreView], list[Event]]


@dataclass(slots=True)
class Staged:
    decide: Decide
    events: list[Event] | None = None  # once decided
    claimed: bool = False  # a store transaction took charge of them (written or not needed)


# Not part of the request context: a hand-off of one change from the events layer to the
# metadata store's transaction, set around that change only (a request may make several).
STAGED: ContextVar[Staged | None] = ContextVar("ocigate_staged_events", default=None)


@contextlib.contextmanager
def staging(decide: Decide) -> Iterator[Staged]:
    staged = Staged(decide)
    token = STAGED.set(staged)
    try:
        yield staged
    finally:
        STAGED.reset(token)


def resolve_staged(view: StoreView) -> None:
    """Called by a store as its write transaction begins: decide the staged events from the
    state its change applies to."""
    staged = STAGED.get()
    if staged is not None and staged.events is None and not staged.claimed:
        staged.events = staged.decide(view)


def take_staged(changed: bool) -> list[Event]:
    """Called by a store inside its write transaction, just before it commits: the events to
    write with it, once; none when the transaction changed nothing (a no-op gets no event)."""
    staged = STAGED.get()
    if staged is None or staged.claimed:
        return []
    staged.claimed = True
    return (staged.events or []) if changed else []
