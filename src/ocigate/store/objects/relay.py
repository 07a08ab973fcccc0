"""Blob reads of a plain-HTTP S3 endpoint with one ranged GET, through ocigate's own client.

obstore reads a blob window by window (4 MiB each), every byte copied from Rust into a Python
``bytes`` and again into the client's socket: 0.9-1.1 CPU-seconds per GiB pulled here. This
reader sends one GET for the whole range asked (a presigned URL, so no request signing of its
own), on a keep-alive connection of :class:`ocigate.client.pool.Pool`, and hands the socket
to the HTTP server (``Stream.detach``), whose kernel splice moves the bytes from S3's socket to
the client's without them entering Python (``make bench``: 0.35-0.40 CPU-seconds per GiB).

Only for a blob held in one segment (all but those over ``segment_size``, 4 GiB) and an
``http://`` endpoint: TLS bytes cannot be spliced, so there obstore reads.
Presigned URLs are kept for half their validity (``Range`` is not part of the signature), so
signing is rare. Bounded like the bucket's own calls: connecting ``connect_timeout``, then each
read of the response ``request_timeout``; a failure is a ``StorageUnavailable`` naming the
storage, a missing object None (a damaged store), as with ``Bucket.get_range``.
"""

from __future__ import annotations

import ssl
import time
from collections import OrderedDict

from ...client.connection import TransportError
from ...client.pool import Pool
from ...oci.digest import Digest
from ...oci.numbers import parse_decimal
from ...registry import Stream
from ..upstream.blobs import ResponseStream
from .bucket import Bucket

SIGNED_KEPT = 4096  # presigned URLs remembered (one per blob recently read)


class SegmentReader:
    def __init__(self, bucket: Bucket, expiry: float = 1200.0) -> None:
        config = bucket.config
        self._bucket = bucket
        self._expiry = expiry
        self._read_timeout = config.request_timeout
        # The pool never opens TLS (plain-http endpoints only), but wants a context.
        self._pool = Pool(ssl.create_default_context(), config.connect_timeout, self._read_timeout)
        self._signed: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def _url(self, key: str) -> str:
        now = time.monotonic()
        kept = self._signed.get(key)
        if kept is not None and kept[1] > now:
            self._signed.move_to_end(key)
            return kept[0]
        url = await self._bucket.sign_get(key, self._expiry)
        self._signed[key] = (url, now + self._expiry / 2)
        if len(self._signed) > SIGNED_KEPT:
            self._signed.popitem(last=False)
        return url

    async def open(
        self, key: str, digest: Digest, size: int, start: int, length: int
    ) -> Stream | None:
        """``length`` (> 0) bytes from ``start`` of the one-segment blob stored under ``key``."""
        url = await self._url(key)
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        try:
            response = await self._pool.request("GET", url, headers, None)
        except TransportError as exc:
            raise self._bucket.unavailable("GET", key, str(exc)) from None
        status = response.status_code
        told = parse_decimal(response.headers.get("content-length", ""))
        if status in (200, 206) and told == length and (status == 206 or start == 0):
            stream = ResponseStream(response, 0, length, self._read_timeout)
            return Stream(digest, size, start, length, stream, stream.detach)
        await response.aclose()
        if status == 404:
            return None
        if status == 403:  # e.g. the clocks disagree: sign anew next time
            self._signed.pop(key, None)
        reason = f"answered {status} with {told} bytes for {length} asked"
        raise self._bucket.unavailable("GET", key, reason)

    async def close(self) -> None:
        await self._pool.aclose()
