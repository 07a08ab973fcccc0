"""Token buckets shared by every worker process: a fixed table in a memory-mapped file.

Each bucket is a slot chosen by a hash of its key, holding the key's hash, the tokens left and
when they were counted; an update holds an ``flock`` on the file (a few microseconds). Two keys
meeting in one slot of the 65,536 reset each other's bucket, which only ever lets a client have
a fresh budget early, never refuses one wrongly for another's use.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import time
from pathlib import Path

SLOTS = 65536
_SLOT = struct.Struct("<Qdd")  # key hash, tokens, monotonic time they were counted at
_SIZE = SLOTS * _SLOT.size


class SharedBuckets:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)  # the app may be built before its store
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size != _SIZE:
            os.ftruncate(self._fd, _SIZE)
        self._map = mmap.mmap(self._fd, _SIZE)

    def take(self, key: str, rate: float, burst: float) -> float:
        """Take one token: 0.0 when there was one, else the seconds until there will be."""
        with _Locked(self, key, rate, burst) as (offset, tokens, now):
            if tokens >= 1:
                _SLOT.pack_into(self._map, offset, _hash(key), tokens - 1, now)
                return 0.0
            _SLOT.pack_into(self._map, offset, _hash(key), tokens, now)
            return (1 - tokens) / rate

    def give_back(self, key: str, rate: float, burst: float) -> None:
        with _Locked(self, key, rate, burst) as (offset, tokens, now):
            _SLOT.pack_into(self._map, offset, _hash(key), min(burst, tokens + 1), now)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


class _Locked:
    """The slot of ``key`` under the file lock: (offset, tokens now, now)."""

    def __init__(self, buckets: SharedBuckets, key: str, rate: float, burst: float) -> None:
        self.buckets = buckets
        self.key = key
        self.rate = rate
        self.burst = burst

    def __enter__(self) -> tuple[int, float, float]:
        fcntl.flock(self.buckets._fd, fcntl.LOCK_EX)
        hashed = _hash(self.key)
        offset = (hashed % SLOTS) * _SLOT.size
        owner, tokens, then = _SLOT.unpack_from(self.buckets._map, offset)
        now = time.monotonic()
        if owner != hashed or then > now:  # a new key, or left by an earlier boot
            return offset, self.burst, now
        return offset, min(self.burst, tokens + (now - then) * self.rate), now

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.buckets._fd, fcntl.LOCK_UN)


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
