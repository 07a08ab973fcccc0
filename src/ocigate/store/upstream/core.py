"""The request core every upstream concern shares: the client, scoped calls, failure
translation and collapsing of identical reads.

Errors: 4xx OCI bodies keep their code; 401/403 become DENIED naming the upstream; 429 stays
TOOMANYREQUESTS; refused/reset connections and 5xx become 502, timeouts 504, 503 stays 503, all
with code UNAVAILABLE (the spec lists no server-side code; distribution uses UNAVAILABLE). See
``errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Hashable
from typing import Any, TypeVar

from ...client import ClientOptions, RegistryClient, Response
from ...context import request_context
from ...oci.errors import BlobUploadInvalid, OCIError, Unsupported
from .collapse import Collapser
from .errors import upstream_error

T = TypeVar("T")
R = TypeVar("R", bound=Hashable)  # part of the collapsing key


def scope(repo: str, push: bool = False) -> str:
    """The token scope of a request on ``repo``."""
    return f"repository:{repo}:{'pull,push' if push else 'pull'}"


class UpstreamCore:
    """One upstream's client and the calls made through it."""

    def __init__(self, options: ClientOptions) -> None:
        self.client = RegistryClient(options)
        self.name = self.client.base
        self._collapser = Collapser()

    async def fail(
        self,
        response: Response,
        missing: type[OCIError],
        invalid: type[OCIError] = BlobUploadInvalid,
    ) -> OCIError:
        """The error for a failed ``response``: ``missing`` for a bare 404, ``invalid`` for
        another bare 4xx."""
        forwarding = self.client.options.forward_credentials
        return await upstream_error(response, self.name, missing, invalid, forwarding)

    async def call(
        self,
        method: str,
        url: str,
        repo: str,
        *,
        ok: tuple[int, ...],
        missing: type[OCIError],
        invalid: type[OCIError] = BlobUploadInvalid,
        push: bool = False,
        **kwargs: Any,
    ) -> Response:
        """A request whose response is read whole (small) and checked against ``ok``."""
        response = await self.client.request(method, url, scope=scope(repo, push), **kwargs)
        if response.status_code not in ok:
            raise await self.fail(response, missing, invalid)
        await self.client.read(response)
        return response

    async def delete(
        self,
        url: str,
        repo: str,
        missing: type[OCIError],
        invalid: type[OCIError] = Unsupported,
    ) -> None:
        """A DELETE the upstream must accept (200, 202 or 204)."""
        await self.call(
            "DELETE", url, repo, ok=(200, 202, 204), missing=missing, invalid=invalid, push=True
        )

    def collapsed(
        self, fetch: Callable[[str, R], Coroutine[Any, Any, T]], repo: str, reference: R
    ) -> Coroutine[Any, Any, T]:
        """``fetch(repo, reference)`` shared with concurrent identical reads (see ``collapse``);
        the client's credentials are part of the question when they are what the upstream sees."""
        forwarding = self.client.options.forward_credentials
        forwarded = request_context().authorization if forwarding else None
        key = (fetch.__qualname__, repo, reference, forwarded)
        return self._collapser.run(key, lambda: fetch(repo, reference))
