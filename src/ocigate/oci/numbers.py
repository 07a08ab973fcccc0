"""Decimal numbers from requests (``n``, ``Range``, ``Content-Range``, ``Content-Length``).

``str.isdigit`` and ``int`` accept far more than HTTP does: superscripts and other Unicode
digits, ``_`` separators, surrounding blanks; and ``int`` refuses more than 4,300 digits with a
ValueError. Here a number is 1 to 19 ASCII digits worth at most what an int64 holds (the range
of every size and offset the store, SQLite and other registries keep).
"""

from __future__ import annotations

MAX_DIGITS = 19
MAX_VALUE = 2**63 - 1
_DIGITS = frozenset("0123456789")


def parse_decimal(text: str) -> int | None:
    """``text`` as a non-negative integer, or None when it is not one within the limits."""
    if not 0 < len(text) <= MAX_DIGITS or not _DIGITS.issuperset(text):
        return None
    value = int(text)
    return value if value <= MAX_VALUE else None
