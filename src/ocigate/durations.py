"""Durations as people write them: ``90``, ``90s``, ``30m``, ``1h``, ``1h30m``, ``2d`` (seconds
when no unit is given)."""

from __future__ import annotations

import re
from typing import Any

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ValueError naming it when it is not a duration."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    parts = _PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        raise ValueError(f"not a duration: {text!r} (e.g. 90, 90s, 30m, 1h, 1h30m, 2d)")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def duration_field(value: Any) -> Any:
    """A pydantic ``before`` validator's half: text parsed as a duration, anything else (a
    number) left for the field's own type to check."""
    return parse_duration(value) if isinstance(value, str) else value
