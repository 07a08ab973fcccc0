"""The worker's cap on glibc malloc arenas, observed through glibc's own ``malloc_info``."""

from __future__ import annotations

import os
import subprocess
import sys

# Allocates from 16 threads at once, then counts the arenas glibc reports (one <heap> each).
PROGRAM = """
import ctypes, ctypes.util, sys, tempfile, threading
from ocigate.server.arenas import cap_arenas
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
