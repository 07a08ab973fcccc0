"""One S3 bucket (or a prefix of it) through obstore, every call bounded in time, every failure
one error naming the storage.

Bounds (``BucketConfig``): connecting 5 s, each request 30 s (a multipart part of 8 MiB, a ranged
GET window, a small PUT, a delete, a sign), at most 2 retries of a failed request with backoff
(0.1 s doubling to 1 s) and none started after 10 s; on top, every call but a streamed PUT is
cut at ``retry_timeout + request_timeout`` (40 s). A streamed PUT lasts as long as its body; each
of its parts is a request under the bounds above. A refused connection fails in well under a
second; a silent network in at most the total bound.

Credentials, region and endpoint not given are taken from the standard ``AWS_*`` environment
variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``...): obstore's S3Store reads them
itself, explicit arguments winning.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store

from ...oci.errors import Unavailable

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig


class StorageUnavailable(Unavailable):
    """The object storage failed or did not answer in time (503 UNAVAILABLE)."""

    default_message = "object storage unavailable"


@dataclass(frozen=True, slots=True)
class BucketConfig:
    """Where the bucket is and how long any call to it may take (seconds)."""

    bucket: str
    endpoint: str | None = None  # None: AWS_ENDPOINT_URL, else AWS itself
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)  # temporary credentials
    prefix: str = ""  # keys are ``prefix/...``
    path_style: bool = True  # ``endpoint/bucket/key`` rather than ``bucket.endpoint/key``
    tls_verify: bool = True
    ca_file: Path | None = None  # PEM roots trusted beside the system's
    connect_timeout: float = 5.0
    request_timeout: float = 30.0
    max_retries: int = 2
    retry_timeout: float = 10.0
    # Skip SigV4's SHA-256 of each request body (``UNSIGNED-PAYLOAD``): a third less CPU per
    # byte pushed; for TLS endpoints, where TLS already protects the bytes in transit.
    unsigned_payload: bool = False

    @property
    def name(self) -> str:
        """How errors name the storage: endpoint and bucket, never a credential."""
        where = self.endpoint or "s3"
        return f"{where.rstrip('/')}/{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")


def open_store(config: BucketConfig) -> S3Store:
    """An obstore ``S3Store`` for ``config`` (no request made yet)."""
    options: dict[str, Any] = {
        "virtual_hosted_style_request": not config.path_style,
        "unsigned_payload": config.unsigned_payload,
    }
    for key, value in (
        ("endpoint", config.endpoint),
        ("region", config.region),
        ("access_key_id", config.access_key),
        ("secret_access_key", config.secret_key),
        ("session_token", config.session_token),
    ):
        if value is not None:
            options[key] = value
    client: ClientConfig = {
        "connect_timeout": timedelta(seconds=config.connect_timeout),
        "timeout": timedelta(seconds=config.request_timeout),
        "allow_invalid_certificates": not config.tls_verify,
    }
    if config.endpoint is not None:  # else AWS_ALLOW_HTTP decides, beside AWS_ENDPOINT_URL
        client["allow_http"] = config.endpoint.startswith("http://")
    if config.ca_file is not None:
        client["root_certificate"] = config.ca_file.read_bytes()
    retry: RetryConfig = {
        "max_retries": config.max_retries,
        "retry_timeout": timedelta(seconds=config.retry_timeout),
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=1),
            "base": 2,
        },
    }
    return S3Store(config.bucket, client_options=client, retry_config=retry, **options)


class Bucket:
    """The calls the blob store makes, on keys relative to the configured prefix."""

    def __init__(self, config: BucketConfig, store: S3Store | None = None) -> None:
        self.config = config
        self._store = store if store is not None else open_store(config)
        self._prefix = config.prefix.strip("/") + "/" if config.prefix.strip("/") else ""
        self._deadline = config.retry_timeout + config.request_timeout

    def path(self, key: str) -> str:
        return self._prefix + key

    @contextlib.contextmanager
    def _errors(self, operation: str, key: str) -> Iterator[None]:
        try:
            yield
        except TimeoutError:
            reason = f"no answer within {self._deadline:g} s"
            raise self.unavailable(operation, key, reason) from None
        except (BaseError, OSError) as exc:  # obstore raises builtin OSErrors for some
            raise self.unavailable(operation, key, str(exc)) from None

    def unavailable(self, operation: str, key: str, reason: str) -> StorageUnavailable:
        secret = self.config.secret_key
        if secret:
            reason = reason.replace(secret, "********")
        # The first line names the failure; obstore adds the whole request chain after it.
        reason = reason.strip().splitlines()[0][:500] if reason.strip() else "failed"
        return StorageUnavailable(
            {"storage": self.config.name, "operation": operation, "key": key},
            f"object storage {self.config.name} unavailable: {operation} {key}: {reason}",
        )

    async def put(self, key: str, data: bytes) -> None:
        """Store a whole object in one PUT."""
        with self._errors("PUT", key), anyio.fail_after(self._deadline):
            await obstore.put_async(self._store, self.path(key), data, use_multipart=False)

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], *, part_size: int, concurrency: int
    ) -> None:
        """Store an object from a stream as a multipart upload of ``part_size`` parts, at most
        ``concurrency`` in flight (memory about ``(concurrency + 1) * part_size``). The stream's
        own exceptions (and a cancellation) pass through unchanged once the multipart upload is
        aborted: obstore aborts it when its body fails, but not when its future is dropped, so
        the put runs in a task of its own, fed from this one, and a failure or cancellation here
        becomes a failure of the body it reads."""
        # No buffer: a chunk waits in the sender alone, not also in the stream.
        send, receive = anyio.create_memory_object_stream[bytes](0)
        broken: list[BaseException] = []

        async def body() -> AsyncIterator[bytes]:
            async with receive:
                async for chunk in receive:
                    yield chunk
            if broken:
                raise OSError("the upload's body failed")  # obstore aborts on it

        put = asyncio.ensure_future(
            obstore.put_async(
                self._store,
                self.path(key),
                body(),
                use_multipart=True,
                chunk_size=part_size,
                max_concurrency=concurrency,
            )
        )
        try:
            async with send:
                try:
                    async for chunk in chunks:
                        await send.send(chunk)
                except BaseException as exc:
                    broken.append(exc)
                    raise
        except anyio.BrokenResourceError:
            pass  # the put failed and stopped reading: its error is the one to raise
        except BaseException:
            shielded = anyio.CancelScope(shield=True)
            with shielded, anyio.move_on_after(self._deadline), contextlib.suppress(Exception):
                await put  # the abort
            put.cancel()
            raise
        # The body is whole: only the last parts and the completion remain, each bounded.
        with self._errors("PUT", key), anyio.CancelScope(shield=True):
            await put

    async def size(self, key: str) -> int | None:
        """The size of an object (a HEAD); None when it is missing."""
        with self._errors("HEAD", key), anyio.fail_after(self._deadline):
            try:
                meta = await obstore.head_async(self._store, self.path(key))
            except (FileNotFoundError, NotFoundError):
                return None
        return int(meta["size"])

    async def get_range(self, key: str, start: int, end: int) -> bytes | None:
        """Bytes ``start`` to ``end`` (exclusive) of an object; None when it is missing."""
        with self._errors("GET", key), anyio.fail_after(self._deadline):
            try:
                data = await obstore.get_range_async(
                    self._store, self.path(key), start=start, end=end
                )
            except (FileNotFoundError, NotFoundError):  # obstore raises the builtin
                return None
        return data.to_bytes()

    async def delete(self, keys: Sequence[str]) -> None:
        """Delete objects (missing ones are no error)."""
        if not keys:
            return
        with self._errors("DELETE", keys[0]), anyio.fail_after(self._deadline):
            await obstore.delete_async(self._store, [self.path(key) for key in keys])

    async def sign_get(self, key: str, expires: float) -> str:
        """A presigned GET URL of an object, valid ``expires`` seconds."""
        with self._errors("sign", key), anyio.fail_after(self._deadline):
            return await obstore.sign_async(
                self._store, "GET", self.path(key), timedelta(seconds=expires)
            )

    async def keys(self, under: str) -> AsyncIterator[str]:
        """Every key under ``under`` (relative to the prefix), for fsck and tests."""
        with self._errors("LIST", under):
            async for batch in obstore.list(self._store, self.path(under)):
                for meta in batch:
                    yield meta["path"][len(self._prefix) :]
