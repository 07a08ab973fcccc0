"""glibc malloc settings that keep a worker's memory flat under large transfers.

Arenas: glibc gives every thread that allocates under contention an arena of its own, up to 8 per
core, each holding on to what was freed in it. The object store's client (obstore: Rust, tokio's
worker threads) and the hashing threads allocate the bytes of every part pushed, so a 1 GiB push
left ~50 MB more resident per worker in ``make bench``. Two arenas serve two cores as well; an
operator's own ``MALLOC_ARENA_MAX`` wins.

Trimming: glibc returns freed heap memory to the system only from the heap's top, and a push's
megabyte-sized pieces end up below small objects allocated later, so after a 1 GiB push ~35 MB
stayed resident in the worker that took it. ``malloc_trim`` gives back every free page, wherever
it lies; called once per multipart upload it costs well under a millisecond.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from typing import Any

M_ARENA_MAX = -8  # glibc's malloc.h
WORKER_ARENAS = 2


@functools.cache
def _glibc_function(name: str) -> Any:
    """``name`` from the C library, or None (not found, or not glibc)."""
    library = ctypes.util.find_library("c")
    return None if library is None else getattr(ctypes.CDLL(library), name, None)


def cap_arenas(arenas: int = WORKER_ARENAS) -> bool:
    """Limit this process to ``arenas`` malloc arenas; whether the limit was applied (not on a
    C library without ``mallopt``, nor when ``MALLOC_ARENA_MAX`` is set)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = _glibc_function("mallopt")
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, arenas))


def give_back_freed() -> bool:
    """Return this process's free heap pages to the system; whether any were."""
    trim = _glibc_function("malloc_trim")
    return trim is not None and bool(trim(0))
