"""Per-request context shared by the HTTP layer and the layers."""

from __future__ import annotations

import itertools
import os
from contextvars import ContextVar
from dataclasses import dataclass

# The current request's id, set by the HTTP layer; events carry it.
current_request_id: ContextVar[str | None] = ContextVar("ocigate_request_id", default=None)


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


# Set while a layer reads content for its own purposes (validation reading a payload), so that
# the events layer does not report the read as a client's pull.
internal_read: ContextVar[bool] = ContextVar("ocigate_internal_read", default=False)


@dataclass(slots=True)
class NamespaceRequest:
    """A request's ``ns`` query parameter (distribution spec, "Registry Proxying"): the host of
    the upstream registry the client means. Whoever routes by it sets ``resolved``, and the
    HTTP layer then answers with ``OCI-Namespace``; an ``ns`` nobody resolves is ignored."""

    host: str
    resolved: bool = False


# Set by the HTTP layer for requests that carry ``ns``; the gateway's router reads it.
requested_namespace: ContextVar[NamespaceRequest | None] = ContextVar(
    "ocigate_requested_namespace", default=None
)

# The client's own Authorization header, set by the HTTP layer only when some upstream is
# configured to forward client credentials (``forward_credentials``).
client_authorization: ContextVar[str | None] = ContextVar(
    "ocigate_client_authorization", default=None
)
