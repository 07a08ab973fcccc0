"""The request's context: who asks, under which id, through which namespace, and why.

The HTTP layer builds one :class:`RequestContext` per request, after authentication, and sets
it once in :data:`_CURRENT`; the layers and stores below read it with :func:`request_context`.
A context variable rather than an argument: the ``Registry`` protocol stays free of transport
details, and anyio copies it into the worker threads the stores run in. Nothing writes back
through it: it is immutable, and a layer reading for its own purposes runs under a derived
copy (:func:`internal`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
from collections.abc import Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass

from .auth.identity import ANONYMOUS, Identity


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str | None = None  # in the access log and the events the request causes
    identity: Identity = ANONYMOUS  # the authenticated caller
    # The request's ``ns`` (distribution spec, "Registry Proxying") when the registry routes
    # by it: the upstream host the client means. An ``ns`` naming no upstream is left out.
    namespace: str | None = None
    # The client's own Authorization header, kept only when some upstream is configured to
    # forward client credentials (``forward_credentials``).
    authorization: str | None = None
    # A layer reading content for its own purposes (validation reading a payload): the events
    # layer does not report the read as a client's pull.
    internal: bool = False


# Outside any request (start-up, background jobs, the CLI): anonymous, no id, nothing forwarded.
_OUTSIDE = RequestContext()
_CURRENT: ContextVar[RequestContext] = ContextVar("ocigate_request", default=_OUTSIDE)


def request_context() -> RequestContext:
    return _CURRENT.get()


def enter(context: RequestContext) -> Token[RequestContext]:
    """Set by the HTTP layer once per request; :func:`leave` with the token when it ends."""
    return _CURRENT.set(context)


def leave(token: Token[RequestContext]) -> None:
    _CURRENT.reset(token)


@contextlib.contextmanager
def internal() -> Iterator[None]:
    """The current request's context, marked as an internal read, for the block's duration."""
    token = _CURRENT.set(dataclasses.replace(_CURRENT.get(), internal=True))
    try:
        yield
    finally:
        _CURRENT.reset(token)


class _RequestIds:
    """16 hex digits, unique across processes and restarts: a random prefix per process and a
    counter (a random id per request, a system call, cost twice as much)."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.prefix, self.counter = os.urandom(4).hex(), itertools.count()

    def new(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFF:08x}"


_ids = _RequestIds()
os.register_at_fork(after_in_child=_ids.restart)  # each worker process its own prefix
new_request_id = _ids.new
