"""glibc malloc settings (``ocigate.malloc``), observed through glibc itself."""

from __future__ import annotations

import os
import subprocess
import sys

# Allocates from 16 threads at once, then counts the arenas glibc reports (one <heap> each).
PROGRAM = """
import ctypes, ctypes.util, sys, tempfile, threading
from ocigate.malloc import cap_arenas
applied = cap_arenas() if sys.argv[1] == "cap" else None
barrier = threading.Barrier(16)
def churn():
    barrier.wait()
    for _ in range(2000):
        kept = [bytearray(4096) for _ in range(16)]
        del kept
threads = [threading.Thread(target=churn) for _ in range(16)]
for thread in threads: thread.start()
for thread in threads: thread.join()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    stream = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(stream))
    libc.fclose(ctypes.c_void_p(stream))
    print(applied, open(out.name).read().count("<heap nr="))
"""


def _arenas(mode: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode], env=environ, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    applied, count = out.stdout.split()
    return applied, int(count)


def test_capped_worker_allocates_from_two_arenas_where_threads_would_take_more() -> None:
    _, free = _arenas("free")
    applied, capped = _arenas("cap")
    assert applied == "True"
    assert capped <= 2 < free


def test_an_operators_malloc_arena_max_wins() -> None:
    applied, count = _arenas("cap", MALLOC_ARENA_MAX="3")
    assert applied == "False"
    assert count <= 3


# 64 blocks of 1 MiB on the heap (as after glibc raised its mmap threshold), every other one
# then freed, so each hole lies below a live block: resident memory before and after the trim.
TRIM_PROGRAM = """
import ctypes, ctypes.util
from ocigate.malloc import give_back_freed
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD: 1 MiB blocks come from the heap
def anon():
    line = next(l for l in open("/proc/self/status") if l.startswith("RssAnon:"))
    return int(line.split()[1]) * 1024
blocks = [libc.malloc(1 << 20) for _ in range(64)]
for block in blocks:
    ctypes.memset(block, 1, 1 << 20)
for block in blocks[::2]:
    libc.free(ctypes.c_void_p(block))
before = anon()
gave = give_back_freed()
print(gave, before - anon())
"""


def test_freed_heap_memory_below_live_blocks_goes_back_to_the_system() -> None:
    out = subprocess.run(
        [sys.executable, "-c", TRIM_PROGRAM], env=os.environ, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    gave, released = out.stdout.split()
    assert gave == "True"
    assert int(released) > 30 * 1024 * 1024  # of the 32 MiB freed
