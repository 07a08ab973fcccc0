"""Configuration of the objects backend's two parts (``store: kind: objects``): the S3 bucket
holding blob bytes (``s3:``) and the PostgreSQL database holding everything else
(``database:``). Keys left unset fall back to the standard ``AWS_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .durations import duration_field

# Keys of `s3:` and the AWS variables that stand in for them, first found wins (the names the
# AWS CLI and SDKs read).
AWS_VARIABLES: dict[str, tuple[str, ...]] = {
    "endpoint": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "access_key": ("AWS_ACCESS_KEY_ID",),
    "secret_key": ("AWS_SECRET_ACCESS_KEY",),
    "session_token": ("AWS_SESSION_TOKEN",),
}


class S3Config(BaseModel):
    """The bucket blob bytes are kept in, on any S3-compatible object storage."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = Field(
        None,
        description="Base URL of the S3 API, e.g. http://rgw.internal:7480; unset: AWS"
        " (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`).",
    )
    bucket: str = Field(description="The bucket; it must exist.")
    region: str = Field("us-east-1", description="Region signed into requests (`AWS_REGION`).")
    access_key: str | None = Field(None, description="Access key id (`AWS_ACCESS_KEY_ID`).")
    secret_key: str | None = Field(
        None, repr=False, description="Secret access key (`AWS_SECRET_ACCESS_KEY`)."
    )
    session_token: str | None = Field(
        None, repr=False, description="Session token of temporary credentials."
    )
    prefix: str = Field(
        "", description="Key prefix inside the bucket, so that a bucket can be shared."
    )
    path_style: bool = Field(
        True,
        description="Address the bucket as endpoint/bucket (Ceph, SeaweedFS, MinIO) rather"
        " than bucket.endpoint (virtual hosts, AWS's default).",
    )
    tls_verify: bool = Field(True, description="Verify the endpoint's TLS certificate.")
    ca_file: Path | None = Field(None, description="PEM CA bundle to verify the endpoint with.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect.")
    request_timeout: float = Field(
        30.0, gt=0, description="Seconds one request may wait for an answer or more data."
    )
    retries: int = Field(2, ge=0, le=10, description="Retries of a failed request.")
    part_size: int = Field(
        8 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        le=512 * 1024 * 1024,
        description="Bytes per part of a multipart upload (S3's minimum is 5 MiB).",
    )
    redirect: bool = Field(
        False,
        description="Answer blob GETs with a redirect to a presigned URL of the bucket"
        " (clients then need to reach the endpoint); otherwise stream through ocigate.",
    )
    redirect_expiry: float = Field(
        1200.0, gt=0, le=7 * 86400, description="Lifetime of a presigned URL (`20m`)."
    )

    _parse_redirect_expiry = field_validator("redirect_expiry", mode="before")(duration_field)

    @model_validator(mode="before")
    @classmethod
    def _aws_environment(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        for key, names in AWS_VARIABLES.items():
            if filled.get(key) is None:
                value = next((os.environ[n] for n in names if os.environ.get(n)), None)
                if value is not None:
                    filled[key] = value
        return filled

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"endpoint must be an http:// or https:// URL, not {value!r}")
        return value.rstrip("/") if value else value


class DatabaseConfig(BaseModel):
    """The PostgreSQL database every replica shares."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        repr=False,
        description="postgresql://user:password@host:port/dbname (libpq URL; `?host=/dir`"
        " for a Unix socket).",
    )
    pool_size: int = Field(10, ge=1, le=1000, description="Connections per worker process.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to connect.")
    command_timeout: float = Field(10.0, gt=0, description="Seconds one statement may take.")
    migrate: bool = Field(
        True,
        description="Create or upgrade the schema at start (under a lock, so replicas starting"
        " together migrate once); false: only `ocigate db migrate` does.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("url must be a postgresql:// URL")
        return value
