"""Putting the events feature around a store: the outbox to use, the layer, the deliverer."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from ..registry import Registry
from .config import EventsConfig
from .database import EVENTS_DB, connect_outbox
from .layer import EventsLayer
from .outbox import Outbox
from .webhooks import Deliverer


def build_events(
    config: EventsConfig,
    store: Registry,
    store_outbox: Outbox | None,
    data_dir: Path,
    background: list[Callable[[], Coroutine[Any, Any, None]]] | None,
) -> EventsLayer:
    """The events layer over ``store``; webhook delivery is appended to ``background``.

    ``store_outbox`` is the outbox of the store's own metadata database, whose transactions
    write the events the layer stages; None when it has none: the layer then appends its
    events to ``events.db`` in ``data_dir``.
    """
    if store_outbox is None:
        data_dir.mkdir(parents=True, exist_ok=True)
        outbox: Outbox = connect_outbox(data_dir / EVENTS_DB)
    else:
        outbox = store_outbox
    if background is not None and config.webhooks:
        background.append(Deliverer(config, outbox).run_forever)
    return EventsLayer(store, config, outbox, staged=store_outbox is not None)
