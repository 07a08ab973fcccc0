"""Configuration of the web UI.

```yaml
ui:
  enabled: true          # default: on for the embedded and objects stores, off for gateways
  path: /ui/
  session_secret: "…"    # signs login cookies; default: DATA_DIR/ui-session.key
  session_ttl: 43200     # seconds a login lasts
  page_size: 50          # repositories or tags on one page
```
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Paths the API owns: the UI may not be mounted over them.
_RESERVED = ("/v2/", "/token/", "/healthz/", "/readyz/", "/metrics/")


class UiConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = Field(
        None, description="serve the UI; unset: on for stored backends, off for gateways"
    )
    path: str = Field("/ui/", description="where the UI is mounted: /NAME/ (segments a-z0-9_-)")
    # A plain string kept out of repr, as the other secrets: the workers receive the settings
    # serialised, and a SecretStr would reach them masked.
    session_secret: str | None = Field(
        None,
        min_length=32,
        repr=False,
        description="signs login cookies; the same on every replica. Unset: a random key"
        " kept in DATA_DIR/ui-session.key, shared by the workers of one data directory",
    )
    session_ttl: int = Field(43200, ge=60, le=30 * 86400, description="login lifetime (s)")
    page_size: int = Field(50, ge=1, le=1000, description="repositories or tags per page")

    @field_validator("path")
    @classmethod
    def _mount_point(cls, value: str) -> str:
        if not re.fullmatch(r"(/[a-z0-9_-]+)+/", value):
            raise ValueError("ui.path must look like /ui/ (lowercase segments, both slashes)")
        if any(value.startswith(reserved) for reserved in _RESERVED):
            raise ValueError(f"ui.path {value} is a path of the registry API")
        return value
