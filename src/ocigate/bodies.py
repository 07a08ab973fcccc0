"""Reading a streamed body whole into memory, but never more than a cap: shared by the server's
request bodies and the upstream client's response bodies."""

from __future__ import annotations

from collections.abc import AsyncIterable


async def join_capped(pieces: AsyncIterable[bytes], limit: int) -> bytes | None:
    """The pieces joined, or None as soon as they come to more than ``limit`` bytes."""
    parts: list[bytes] = []
    total = 0
    async for piece in pieces:
        total += len(piece)
        if total > limit:
            return None
        parts.append(piece)
    return b"".join(parts)
