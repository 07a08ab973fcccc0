"""Parsing the ``Range`` and ``Content-Range`` request headers."""

from __future__ import annotations

import re

from ..oci.errors import BlobUploadInvalid, RangeInvalid, RangeNotSatisfiable
from ..oci.numbers import parse_decimal
from ..registry import ByteRange

# ASCII digits and HTTP's optional whitespace (SP, HTAB) only: ``\d`` and ``\s`` are Unicode.
_RANGE = re.compile(r"[ \t]*bytes[ \t]*=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?[ \t]*([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?")


def parse_range(header: str) -> ByteRange | None:
    """One byte range, or None for a header to ignore: RFC 9110 lets a server answer multiple
    or invalid ranges with the whole content."""
    match = _RANGE.fullmatch(header)
    if not match:
        return None
    first, last = (_position(digits, header) for digits in match.groups())
    if first is None and last is None:
        return None
    if first is not None and last is not None and last < first:
        return None  # an invalid range-spec; RFC 9110 lets us serve the whole content
    return ByteRange(first, last)


def _position(digits: str, header: str) -> int | None:
    if not digits:
        return None
    value = parse_decimal(digits)
    if value is None:
        # Beyond any blob: 416, as Go's net/http (distribution) and nginx answer. The caller
        # looks the size up for Content-Range.
        raise RangeNotSatisfiable({"size": None}, f"range {header[:100]!r} beyond any blob")
    return value


def parse_content_range(header: str) -> tuple[int, int]:
    """An upload chunk's inclusive ``(start, end)`` from ``Content-Range: start-end``."""
    match = _CONTENT_RANGE.fullmatch(header.strip(" \t"))
    if not match:
        raise BlobUploadInvalid(f"malformed Content-Range {header[:100]!r}")
    start, end = parse_decimal(match.group(1)), parse_decimal(match.group(2))
    if start is None or end is None:
        raise RangeInvalid(f"Content-Range {header[:100]!r} is beyond any upload")
    if end < start:
        raise RangeInvalid(f"Content-Range {header[:100]!r} ends before it starts")
    return start, end
