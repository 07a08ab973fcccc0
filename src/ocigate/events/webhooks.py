"""Delivering the outbox to webhooks: CloudEvents 1.0 structured JSON by HTTP POST.

Every worker process runs one :class:`Deliverer`; they share the outbox through its leases,
so any number of them (or a restart) delivers each event at least once, and each (webhook,
repository) lane strictly in order. A failed attempt is retried with exponential backoff; after
``events.max_attempts`` failures the delivery is dead-lettered (``ocigate events list --dead``,
``ocigate events replay ID``). Deliveries go out on ocigate's own HTTP/1.1 client (the one
the gateway uses), one keep-alive pool per webhook.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import socket
import ssl
import time
import uuid

import anyio
import anyio.to_thread

from ..client.connection import TransportError
from ..client.pool import Pool
from .config import EventsConfig, Webhook
from .outbox import Claim, Outbox

log = logging.getLogger("ocigate.events")
run = anyio.to_thread.run_sync
BATCH = 32
PRUNE_EVERY = 600.0  # seconds
ERROR_PREVIEW = 200  # bytes of a refusing receiver's answer kept in the delivery's error


def signature(secret: str, body: bytes) -> str:
    """The ``X-Ocigate-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Deliverer:
    def __init__(self, config: EventsConfig, outbox: Outbox) -> None:
        self.config = config
        self.outbox = outbox
        self.webhooks = {w.name: w for w in config.webhooks}
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # A lease outlives the slowest attempt, so a live holder never loses its claim.
        self.lease = 2 * max((w.timeout for w in config.webhooks), default=10.0) + 5.0
        tls = ssl.create_default_context()
        self.pools = {w.name: Pool(tls, w.timeout, w.timeout) for w in config.webhooks}

    async def run_forever(self) -> None:
        pruned = 0.0
        try:
            while True:
                try:
                    busy = await self.step()
                    if time.monotonic() - pruned > PRUNE_EVERY:
                        pruned = time.monotonic()
                        await run(self.outbox.prune, self.config.retention, list(self.webhooks))
                except Exception:
                    log.exception("event delivery failed")
                    busy = 0
                if not busy:
                    await anyio.sleep(self.config.poll_interval)
        finally:
            for pool in self.pools.values():
                await pool.aclose()

    async def step(self) -> int:
        """Fan new events out to the webhooks, deliver one batch; how many were attempted."""
        for webhook in self.webhooks.values():
            while await run(self.outbox.fan_out, webhook.name, webhook.accepts) > 0:
                pass
        claims = await run(self.outbox.claim, self.owner, self.lease, BATCH, list(self.webhooks))
        # One claim per lane at most: attempts of one batch may run concurrently.
        await asyncio.gather(*(self._deliver(claim) for claim in claims))
        return len(claims)

    async def _deliver(self, claim: Claim) -> None:
        webhook = self.webhooks[claim.endpoint]
        error = await self._post(webhook, claim.event.encode())
        if error is None:
            await run(self.outbox.delivered, claim, self.owner)
            return
        retry_in = self.config.retry_in(claim.attempts + 1)
        log.warning(
            "event %s to %s failed (attempt %d): %s%s",
            claim.seq,
            webhook.name,
            claim.attempts + 1,
            error,
            "; dead-lettered" if retry_in is None else "",
        )
        await run(self.outbox.failed, claim, self.owner, error, retry_in)

    async def _post(self, webhook: Webhook, body: bytes) -> str | None:
        headers = {"content-type": "application/cloudevents+json; charset=utf-8"}
        headers.update(webhook.headers)
        if webhook.secret:
            headers["x-ocigate-signature"] = signature(webhook.secret, body)
        status = 0
        try:
            # `timeout` bounds the whole attempt, however slowly the receiver trickles.
            async with asyncio.timeout(webhook.timeout):
                response = await self.pools[webhook.name].request(
                    "POST", webhook.url, headers, body
                )
                status = response.status_code
                if 200 <= status < 300:
                    await response.aclose()
                    return None
                preview = b""
                async for piece in response.aiter_raw():
                    preview += piece
                    if len(preview) >= ERROR_PREVIEW:
                        break
                await response.aclose()
        except TimeoutError:
            if 200 <= status < 300:
                return None  # accepted; only the rest of its answer was slow
            return f"Timeout: no answer within {webhook.timeout:g}s"
        except (TransportError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
        text = preview[:ERROR_PREVIEW].decode(errors="replace")
        return f"HTTP {status}: {text}"
