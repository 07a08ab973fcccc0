"""Per-request context shared by the HTTP layer and the layers."""

from __future__ import annotations

from contextvars import ContextVar

# The current request's id, set by the HTTP layer; events carry it.
current_request_id: ContextVar[str | None] = ContextVar("ocigate_request_id", default=None)
# Set while a layer reads content for its own purposes (validation reading a payload), so that
# the events layer does not report the read as a client's pull.
internal_read: ContextVar[bool] = ContextVar("ocigate_internal_read", default=False)
