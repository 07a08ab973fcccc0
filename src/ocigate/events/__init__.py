"""Events: every change the registry makes, recorded durably and delivered to webhooks.

- ``config``: the ``events:`` settings (webhooks, their filters, retry policy).
- ``layer``: the registry layer deciding which CloudEvents describe each change.
- ``staging``: how a change's events reach a store transaction that writes them with it.
- ``outbox``: what an event is, and the ``Outbox`` protocol (cursors, leased deliveries, lanes).
- ``sqlite_outbox``: the outbox in SQLite, and what a SQLite store's transaction writes.
- ``database``: where a data directory keeps its outbox, and opening it.
- ``webhooks``: the delivery workers POSTing the outbox to each webhook.
- ``build``: ``build_events``, the layer and its deliverer around a store.
- ``cli``: ``ocigate events status | list | replay``.
"""
