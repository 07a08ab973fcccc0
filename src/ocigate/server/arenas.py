"""Fewer glibc malloc arenas in each worker, so memory stays flat under threaded I/O.

glibc gives every thread that allocates under contention an arena of its own, up to 8 per core,
each holding on to what was freed in it. The object store's client (obstore: Rust, tokio's
worker threads) and the hashing threads allocate the bytes of every part pushed, so a 1 GiB push
left ~50 MB more resident per worker in ``make bench``. Two arenas serve two cores as well; an
operator's own ``MALLOC_ARENA_MAX`` wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's malloc.h
WORKER_ARENAS = 2


def cap_arenas(arenas: int = WORKER_ARENAS) -> bool:
    """Limit this process to ``arenas`` malloc arenas; whether the limit was applied (not on a
    C library without ``mallopt``, nor when ``MALLOC_ARENA_MAX`` is set)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
