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


class BlobUnknown(OCIError):
    code = "BLOB_UNKNOWN"
    status = 404
    default_message = "blob unknown to registry"


class BlobUploadInvalid(OCIError):
    code = "BLOB_UPLOAD_INVALID"
    status = 400
    default_message = "blob upload invalid"


class BlobUploadUnknown(OCIError):
    code = "BLOB_UPLOAD_UNKNOWN"
    status = 404
    default_message = "blob upload unknown to registry"


class DigestInvalid(OCIError):
    code = "DIGEST_INVALID"
    status = 400
    default_message = "provided digest did not match uploaded content"


class ManifestBlobUnknown(OCIError):
    code = "MANIFEST_BLOB_UNKNOWN"
    status = 400
    default_message = "manifest references a manifest or blob unknown to registry"


class ManifestInvalid(OCIError):
    code = "MANIFEST_INVALID"
    status = 400
    default_message = "manifest invalid"


class ManifestUnknown(OCIError):
    code = "MANIFEST_UNKNOWN"
    status = 404
    default_message = "manifest unknown to registry"


class NameInvalid(OCIError):
    code = "NAME_INVALID"
    status = 400
    default_message = "invalid repository name"


class NameUnknown(OCIError):
    code = "NAME_UNKNOWN"
    status = 404
    default_message = "repository name not known to registry"


class SizeInvalid(OCIError):
    code = "SIZE_INVALID"
    status = 400
    default_message = "provided length did not match content length"


class TagInvalid(OCIError):
    code = "TAG_INVALID"
    status = 400
    default_message = "manifest tag did not match URI"


class Unauthorized(OCIError):
    code = "UNAUTHORIZED"
    status = 401
    default_message = "authentication required"


class Denied(OCIError):
    code = "DENIED"
    status = 403
    default_message = "requested access to the resource is denied"


class Unsupported(OCIError):
    code = "UNSUPPORTED"
    status = 405
    default_message = "the operation is unsupported"


class TooManyRequests(OCIError):
    code = "TOOMANYREQUESTS"
    status = 429
    default_message = "too many requests"


# The spec has no code of its own for 416; these two are the closest it lists.
class RangeInvalid(OCIError):
    code = "BLOB_UPLOAD_INVALID"
    status = 416
    default_message = "chunk does not continue the upload"


class RangeNotSatisfiable(OCIError):
    code = "SIZE_INVALID"
    status = 416
    default_message = "requested range not satisfiable"


class PayloadTooLarge(OCIError):
    code = "SIZE_INVALID"
    status = 413
    default_message = "payload too large"


class HeadersTooLarge(OCIError):
    code = "SIZE_INVALID"
    status = 431
    default_message = "request header fields too large"


class PaginationInvalid(OCIError):
    code = "UNSUPPORTED"
    status = 400
    default_message = "invalid pagination parameter"


class NotFound(OCIError):
    code = "UNSUPPORTED"
    status = 404
    default_message = "no such endpoint"


class Unavailable(OCIError):
    code = "UNAVAILABLE"
    status = 503
    default_message = "service unavailable"


class BadGateway(OCIError):
    code = "UNAVAILABLE"
    status = 502
    default_message = "upstream registry unavailable"


class GatewayTimeout(OCIError):
    code = "UNAVAILABLE"
    status = 504
    default_message = "upstream registry timed out"
