"""The one OCI error hierarchy.

Every failure a client can cause or see is an :class:`OCIError` carrying its spec code and HTTP
status; the HTTP layer turns it into ``{"errors": [{"code", "message", "detail"}]}`` in one place.

    OCIError
    ├── BlobUnknown            404 BLOB_UNKNOWN
    ├── BlobUploadInvalid      400 BLOB_UPLOAD_INVALID
    ├── BlobUploadUnknown      404 BLOB_UPLOAD_UNKNOWN
    ├── DigestInvalid          400 DIGEST_INVALID
    ├── ManifestBlobUnknown    400 MANIFEST_BLOB_UNKNOWN
    ├── ManifestInvalid        400 MANIFEST_INVALID
    ├── ManifestUnknown        404 MANIFEST_UNKNOWN
    ├── NameInvalid            400 NAME_INVALID
    ├── NameUnknown            404 NAME_UNKNOWN
    ├── SizeInvalid            400 SIZE_INVALID
    ├── TagInvalid             400 TAG_INVALID
    ├── Unauthorized           401 UNAUTHORIZED
    ├── Denied                 403 DENIED
    ├── Unsupported            405 UNSUPPORTED
    ├── TooManyRequests        429 TOOMANYREQUESTS
    ├── RangeInvalid           416 BLOB_UPLOAD_INVALID  (a chunk out of order)
    ├── RangeNotSatisfiable    416 SIZE_INVALID   (a byte range outside the blob)
    ├── PayloadTooLarge        413 SIZE_INVALID
    ├── HeadersTooLarge        431 SIZE_INVALID
    ├── PaginationInvalid      400 UNSUPPORTED
    ├── NotFound               404 UNSUPPORTED    (no such endpoint)
    ├── Unavailable            503 UNAVAILABLE
    ├── BadGateway             502 UNAVAILABLE    (an upstream registry failed or is unreachable)
    └── GatewayTimeout         504 UNAVAILABLE    (an upstream registry did not answer in time)

The spec lists no code for server-side failures; UNAVAILABLE is the one distribution uses (503),
so the gateway errors reuse it with the more precise HTTP status.
"""

from __future__ import annotations

from typing import Any, ClassVar


class OCIError(Exception):
    code: ClassVar[str] = "UNKNOWN"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "unknown error"

    def __init__(self, detail: Any = None, message: str | None = None) -> None:
        self.message = message or self.default_message
        self.detail = detail
        super().__init__(f"{self.code}: {self.message}" + (f" ({detail})" if detail else ""))

    def body(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return entry


def _error(name: str, code: str, status: int, message: str) -> type[OCIError]:
    return type(name, (OCIError,), {"code": code, "status": status, "default_message": message})


BlobUnknown = _error("BlobUnknown", "BLOB_UNKNOWN", 404, "blob unknown to registry")
BlobUploadInvalid = _error("BlobUploadInvalid", "BLOB_UPLOAD_INVALID", 400, "blob upload invalid")
BlobUploadUnknown = _error(
    "BlobUploadUnknown", "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"
)
DigestInvalid = _error(
    "DigestInvalid", "DIGEST_INVALID", 400, "provided digest did not match uploaded content"
)
ManifestBlobUnknown = _error(
    "ManifestBlobUnknown",
    "MANIFEST_BLOB_UNKNOWN",
    400,
    "manifest references a manifest or blob unknown to registry",
)
ManifestInvalid = _error("ManifestInvalid", "MANIFEST_INVALID", 400, "manifest invalid")
ManifestUnknown = _error("ManifestUnknown", "MANIFEST_UNKNOWN", 404, "manifest unknown to registry")
NameInvalid = _error("NameInvalid", "NAME_INVALID", 400, "invalid repository name")
NameUnknown = _error("NameUnknown", "NAME_UNKNOWN", 404, "repository name not known to registry")
SizeInvalid = _error(
    "SizeInvalid", "SIZE_INVALID", 400, "provided length did not match content length"
)
TagInvalid = _error("TagInvalid", "TAG_INVALID", 400, "manifest tag did not match URI")
Unauthorized = _error("Unauthorized", "UNAUTHORIZED", 401, "authentication required")
Denied = _error("Denied", "DENIED", 403, "requested access to the resource is denied")
Unsupported = _error("Unsupported", "UNSUPPORTED", 405, "the operation is unsupported")
TooManyRequests = _error("TooManyRequests", "TOOMANYREQUESTS", 429, "too many requests")
# The spec has no code of its own for 416; these are the closest it lists.
RangeInvalid = _error(
    "RangeInvalid", "BLOB_UPLOAD_INVALID", 416, "chunk does not continue the upload"
)
RangeNotSatisfiable = _error(
    "RangeNotSatisfiable", "SIZE_INVALID", 416, "requested range not satisfiable"
)
PayloadTooLarge = _error("PayloadTooLarge", "SIZE_INVALID", 413, "payload too large")
HeadersTooLarge = _error("HeadersTooLarge", "SIZE_INVALID", 431, "request header fields too large")
PaginationInvalid = _error("PaginationInvalid", "UNSUPPORTED", 400, "invalid pagination parameter")
NotFound = _error("NotFound", "UNSUPPORTED", 404, "no such endpoint")
Unavailable = _error("Unavailable", "UNAVAILABLE", 503, "service unavailable")
BadGateway = _error("BadGateway", "UNAVAILABLE", 502, "upstream registry unavailable")
GatewayTimeout = _error("GatewayTimeout", "UNAVAILABLE", 504, "upstream registry timed out")
