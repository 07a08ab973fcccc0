"""The upstream store: a :class:`Registry` that forwards every operation to another OCI registry.

Bytes are streamed both ways (blobs and upload chunks never sit whole in memory); manifests are
forwarded byte-exact. Each concern is a module of its own, over one request core (``core``:
the client, scopes, failure translation, collapsed reads):

- ``blobs``: stat and get, relayed as a stream verified against the digest, or redirected;
- ``uploads``: signed upload ids (``upload_tokens``), chunks checked to continue the upload,
  commit, cancel and mount;
- ``manifests``: get, head, put with several tags, delete, tag deletion by digest;
- ``listings``: tags and the catalog, paged safely;
- ``referrers``: the upstream's own referrers API and the probe telling whether it has one.
  Without one, the gateway wraps this store in ``layers.referrers_tags``, which keeps the
  referrers tag schema.

Errors are told honestly (``errors``): nothing turns an outage into "unknown".
"""

from __future__ import annotations

from ...client import ClientOptions
from .blobs import UpstreamBlobs
from .core import UpstreamCore
from .listings import UpstreamListings
from .manifests import UpstreamManifests
from .referrers import UpstreamReferrers
from .upload_tokens import UploadSigner
from .uploads import UpstreamUploads


class UpstreamStore:
    """Forwards the :class:`Registry` protocol to one upstream registry: each method is the
    one of the concern that serves it (no forwarding layer of its own, so no cost per call)."""

    def __init__(
        self,
        options: ClientOptions,
        signing_key: bytes,
        max_manifest_size: int = 4 * 1024 * 1024,
        *,
        pass_redirects: bool = False,
    ) -> None:
        core = UpstreamCore(options)
        self.client = core.client
        self.name = core.name
        blobs = UpstreamBlobs(core, pass_redirects)
        uploads = UpstreamUploads(core, UploadSigner(signing_key, self.name), blobs)
        listings = UpstreamListings(core)
        manifests = UpstreamManifests(core, max_manifest_size, blobs, listings)
        referrers = UpstreamReferrers(core, listings)
        self.has_referrers_api = referrers.has_api
        self.stat_blob = blobs.stat
        self.get_blob = blobs.get
        self.delete_blob = blobs.delete
        self.start_upload = uploads.start
        self.upload_status = uploads.status
        self.write_upload = uploads.write
        self.commit_upload = uploads.commit
        self.cancel_upload = uploads.cancel
        self.mount_blob = uploads.mount
        self.get_manifest = manifests.get
        self.stat_manifest = manifests.stat
        self.put_manifest = manifests.put
        self.delete_manifest = manifests.delete
        self.delete_tag = manifests.delete_tag
        self.list_tags = listings.tags
        self.list_tag_details = manifests.tag_details
        self.list_referrers = referrers.find
        self.list_repositories = listings.repositories

    async def close(self) -> None:
        await self.client.aclose()
