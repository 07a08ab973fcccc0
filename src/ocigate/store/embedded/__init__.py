"""The embedded backend: local blob files (``blobstore``) + SQLite (``metadata``) under the
registry logic (``store.core``), assembled as ``EmbeddedStore``; ``fsck`` checks its directory."""

from .store import EmbeddedStore

__all__ = ["EmbeddedStore"]
