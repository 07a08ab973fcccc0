"""What every endpoint handler receives."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings
from ..registry import Registry
from .http import Request, Send


@dataclass(slots=True)
class Call:
    """One request routed to an endpoint: the registry, settings and parsed route."""

    registry: Registry
    settings: Settings
    request: Request
    send: Send
    repo: str
    arg: str
