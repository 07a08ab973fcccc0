"""What every endpoint handler receives."""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry
from .http import Request, Send
from .options import ApiOptions


@dataclass(slots=True)
class Call:
    """One request routed to an endpoint: the registry, the API's options and the parsed route."""

    registry: Registry
    options: ApiOptions
    request: Request
    send: Send
    repo: str
    arg: str
