"""Turning :class:`OCIError` into the spec's JSON error response: the only place that does."""

from __future__ import annotations

from ..oci.errors import OCIError
from .http import Headers, Send, respond_json


async def send_error(send: Send, error: OCIError, headers: Headers | None = None) -> None:
    await respond_json(send, error.status, {"errors": [error.body()]}, headers)
