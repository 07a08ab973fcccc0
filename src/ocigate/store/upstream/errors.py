"""Mapping an upstream registry's error response onto our OCI errors, faithfully.

A 4xx with an OCI error body keeps its code; 401/403 become DENIED naming the upstream (the
gateway's own credentials failed; asking our client to authenticate would not help); 429 stays
429; 5xx become 502/503/504 naming the upstream. Nothing here turns an outage into "unknown".
"""

from __future__ import annotations

import json
import re

from ...client import Response
from ...client.connection import TransportError
from ...oci import errors
from ...oci.errors import (
    BadGateway,
    Denied,
    GatewayTimeout,
    OCIError,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)

MAX_ERROR_BODY = 64 * 1024
# What of an upstream's error reaches our client: a short excerpt of printable text (the body
# may be anything, e.g. an internal page), and its ``detail`` only when small.
MAX_ERROR_TEXT = 200
MAX_ERROR_DETAIL = 1024
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")

_BY_CODE: dict[str, list[type[OCIError]]] = {}
for _value in vars(errors).values():
    if isinstance(_value, type) and issubclass(_value, OCIError) and _value is not OCIError:
        _BY_CODE.setdefault(_value.code, []).append(_value)


def _error_class(code: str, status: int) -> type[OCIError] | None:
    candidates = _BY_CODE.get(code, [])
    for candidate in candidates:
        if candidate.status == status:
            return candidate
    return candidates[0] if candidates else None


def excerpt(text: str) -> str:
    """``text`` as one short line of printable ASCII."""
    cleaned = _UNPRINTABLE.sub(" ", text).strip()
    return cleaned if len(cleaned) <= MAX_ERROR_TEXT else cleaned[:MAX_ERROR_TEXT] + "..."


def _small(detail: object) -> object:
    try:
        return detail if len(json.dumps(detail)) <= MAX_ERROR_DETAIL else None
    except (TypeError, ValueError):
        return None


async def read_error(response: Response) -> tuple[str, str, object]:
    """``(code, message, detail)`` of the first OCI error in the body, or empty strings. A body
    over ``MAX_ERROR_BODY`` or one that fails to arrive is ignored: the status still tells."""
    try:
        body = await response.aread(MAX_ERROR_BODY)
    except TransportError:
        body = b""
    finally:
        await response.aclose()
    try:
        first = json.loads(body)["errors"][0]
        code, message = str(first.get("code", ""))[:64], str(first.get("message", ""))
        return excerpt(code), excerpt(message), _small(first.get("detail"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "", excerpt(body[: MAX_ERROR_TEXT * 4].decode("utf-8", "replace")), None


async def upstream_error(
    response: Response,
    upstream: str,
    missing: type[OCIError],
    invalid: type[OCIError],
    clients_credentials: bool = False,
) -> OCIError:
    """The error to raise for a non-success ``response``; ``missing`` for a bare 404 and
    ``invalid`` for a bare 4xx of the operation. With ``clients_credentials`` (the client's
    own credentials were forwarded) a 401 stays 401: the client can log in and retry."""
    status = response.status_code
    code, message, detail = await read_error(response)
    where = f"upstream {upstream}"
    if status == 401 and clients_credentials:
        return Unauthorized(
            {"upstream": upstream, "upstream_code": code or None},
            f"{where} requires the client's credentials: {message or 'no detail'}",
        )
    if status in (401, 403):
        return Denied(
            {"upstream": upstream, "status": status, "upstream_code": code or None},
            f"{where} denied ocigate's request ({status}): {message or 'no detail'}",
        )
    if status == 429:
        return TooManyRequests({"upstream": upstream}, f"{where} is rate limiting: {message}")
    if status >= 500:
        kind = {503: Unavailable, 504: GatewayTimeout}.get(status, BadGateway)
        return kind(
            {"upstream": upstream, "status": status, "upstream_code": code or None},
            f"{where} failed with {status}: {message or 'no detail'}",
        )
    cls = _error_class(code, status) if code else None
    if cls is None:
        cls = missing if status == 404 else invalid
    return cls(detail if detail is not None else {"upstream": upstream}, message or None)
