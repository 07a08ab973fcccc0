"""Events: every change the registry makes, recorded durably and delivered to webhooks.

- ``config``: the ``events:`` settings (webhooks, their filters, retry policy).
- ``layer``: the registry layer deciding which CloudEvents describe each change.
- ``sqlite_outbox``: the durable outbox (events, per-webhook cursors, leased deliveries) in SQLite.
- ``webhooks``: the delivery workers POSTing the outbox to each webhook.
- ``cli``: ``ocigate events status | list | replay``.
"""
