"""A SHA-256 whose state is saved as bytes and resumed in another process or replica.

A chunked upload may continue on any replica; hashing its bytes as they pass, and keeping the
state in the ledger between PATCHes, verifies the digest at commit without reading the blob back
from the bucket. CPython's ``hashlib`` cannot export its state, and the ``rehash`` package does
not support OpenSSL 3, so this calls libcrypto's low-level ``SHA256_Init/Update/Final`` through
ctypes: ``SHA256_CTX`` is a public, fixed-layout struct (openssl/sha.h, 112 bytes on every
platform OpenSSL supports), so its bytes are the state. ctypes releases the GIL around the
calls, so large updates may run in a thread beside the event loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util

STATE_SIZE = 112  # sizeof(SHA256_CTX): 8 words, Nl, Nh, a 16-word block, num, md_len


def _load() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypto")
    if name is None:
        raise ImportError("libcrypto (OpenSSL) not found: the resumable SHA-256 needs it")
    lib = ctypes.CDLL(name)
    lib.SHA256_Init.argtypes = [ctypes.c_char_p]
    lib.SHA256_Update.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.SHA256_Final.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    for function in (lib.SHA256_Init, lib.SHA256_Update, lib.SHA256_Final):
        function.restype = ctypes.c_int
    return lib


_LIB = _load()


class ResumableSha256:
    """``hashlib.sha256`` with :meth:`state` and :meth:`resume`."""

    __slots__ = ("_ctx",)

    def __init__(self) -> None:
        self._ctx = ctypes.create_string_buffer(STATE_SIZE)
        if _LIB.SHA256_Init(self._ctx) != 1:
            raise RuntimeError("SHA256_Init failed")

    @classmethod
    def resume(cls, state: bytes) -> ResumableSha256:
        """A hash continuing from :meth:`state`'s bytes; an empty state is a new hash."""
        if not state:
            return cls()
        if len(state) != STATE_SIZE:
            raise ValueError(f"a SHA-256 state is {STATE_SIZE} bytes, not {len(state)}")
        hasher = cls.__new__(cls)
        hasher._ctx = ctypes.create_string_buffer(state, STATE_SIZE)
        return hasher

    def state(self) -> bytes:
        """The state after the bytes hashed so far, for :meth:`resume`."""
        return self._ctx.raw

    def update(self, data: bytes, /) -> None:
        # A bytes argument is passed as a pointer to its own buffer: no copy.
        if data and _LIB.SHA256_Update(self._ctx, data, len(data)) != 1:
            raise RuntimeError("SHA256_Update failed")

    def digest(self) -> bytes:
        """The digest of the bytes so far (the hash itself goes on unchanged)."""
        ctx = ctypes.create_string_buffer(self._ctx.raw, STATE_SIZE)
        out = ctypes.create_string_buffer(32)
        if _LIB.SHA256_Final(out, ctx) != 1:
            raise RuntimeError("SHA256_Final failed")
        return out.raw

    def hexdigest(self) -> str:
        return self.digest().hex()

    def copy(self) -> ResumableSha256:
        return ResumableSha256.resume(self.state())
