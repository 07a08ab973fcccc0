"""Parsing the ``Range`` and ``Content-Range`` request headers."""

from __future__ import annotations

import re

from ..oci.errors import BlobUploadInvalid, RangeInvalid
from ..registry import ByteRange

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")
_CONTENT_RANGE = re.compile(r"^(?:bytes[ =])?\s*(\d+)-(\d+)(?:/(?:\d+|\*))?$")


def parse_range(header: str) -> ByteRange | None:
    """One byte range, or None for a header to ignore: RFC 9110 lets a server answer multiple
    or invalid ranges with the whole content."""
    match = _RANGE.match(header)
    if not match:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:
        return ByteRange(None, int(last))
    if last and int(last) < int(first):
        return None  # an invalid range-spec; RFC 9110 lets us serve the whole content
    return ByteRange(int(first), int(last) if last else None)


def parse_content_range(header: str) -> tuple[int, int]:
    """An upload chunk's inclusive ``(start, end)`` from ``Content-Range: start-end``."""
    match = _CONTENT_RANGE.match(header.strip())
    if not match:
        raise BlobUploadInvalid(f"malformed Content-Range {header[:100]!r}")
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise RangeInvalid(f"Content-Range {header!r} ends before it starts")
    return start, end
