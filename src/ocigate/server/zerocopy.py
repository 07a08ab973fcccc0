"""Copying a file or a socket into a client's socket without the bytes entering Python.

A regular file goes out with ``sendfile``; anything else (the gateway's upstream socket) is
``splice``d through a pipe. Both run on the event loop with non-blocking descriptors, waiting for
readiness on *duplicates* of the descriptors: the loop refuses to watch a descriptor its
transport owns, and a duplicate also keeps the socket from closing (and its number from being
reused by another connection) while a copy is under way.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
import stat
from collections.abc import Awaitable, Callable

PIPE_SIZE = 1024 * 1024  # splice's pipe: the default 64 KiB costs four times the system calls
# A source socket wakes the loop only once this much has arrived (SO_RCVLOWAT; less for the
# last bytes): a fast source otherwise wakes it for every few segments, and each wake-up (an
# epoll round, a future, a timer) cost more CPU than the kernel's copy (0.6 CPU-s per GiB
# relayed from S3 in ``make bench``). 1 MiB, the pipe's size, rather than 256 KiB: 0.30-0.31 ->
# 0.23-0.24 CPU-s per GiB in ``make bench`` (Linux grows the receive buffer to fit the mark).
SOURCE_LOWAT = 1024 * 1024
_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK


class CopyTimeout(TimeoutError):
    """The source gave no bytes for the whole timeout."""


class ClientGone(ConnectionError):
    """The receiving socket was closed or reset, or took no bytes for the whole timeout."""


_GONE = (BrokenPipeError, ConnectionResetError)


async def copy_fd(
    out_fd: int, in_fd: int, offset: int | None, count: int, stall: float, source_stall: float
) -> None:
    """Write ``count`` bytes of ``in_fd`` (from ``offset`` when it is a file) to the socket
    ``out_fd``. Raises ``ClientGone`` for the receiver's failures (among them taking no bytes
    for ``stall`` seconds), and for the source's: ``ConnectionError`` when it ends early,
    ``CopyTimeout`` when a socket sends nothing for ``source_stall`` seconds."""
    out = os.dup(out_fd)
    try:
        if stat.S_ISREG(os.fstat(in_fd).st_mode):
            await _sendfile(out, in_fd, offset or 0, count, stall)
        else:
            source = os.dup(in_fd)
            try:
                await _splice(out, source, count, stall, source_stall)
            finally:
                os.close(source)
    finally:
        os.close(out)


RELAY_CHUNK = 256 * 1024


async def relay_fd(
    write: Callable[[bytes], None],
    drain: Callable[[], Awaitable[None]],
    in_fd: int,
    offset: int | None,
    count: int,
    source_stall: float,
) -> None:
    """Copy ``count`` bytes of ``in_fd`` through ``write`` (a TLS transport, which the kernel
    cannot write for us), waiting on ``drain`` between chunks."""
    regular = stat.S_ISREG(os.fstat(in_fd).st_mode)
    position = offset or 0
    source = in_fd if regular else os.dup(in_fd)
    try:
        while count > 0:
            try:
                if regular:
                    data = os.pread(source, min(count, RELAY_CHUNK), position)
                else:
                    data = os.read(source, min(count, RELAY_CHUNK))
            except BlockingIOError:
                await _wait(source, None, source_stall)
                continue
            if not data:
                raise ConnectionError("the source ended before the bytes to send")
            position += len(data)
            count -= len(data)
            write(data)
            await drain()
    finally:
        if not regular:
            os.close(source)


async def _sendfile(out: int, in_fd: int, offset: int, count: int, stall: float) -> None:
    while count > 0:
        try:
            sent = os.sendfile(out, in_fd, offset, count)
        except BlockingIOError:
            await _wait(None, out, stall)
            continue
        except _GONE as exc:
            raise ClientGone(str(exc)) from exc
        if sent == 0:
            raise ConnectionError("file ended before the bytes to send")
        offset += sent
        count -= sent


async def _splice(out: int, source: int, count: int, stall: float, source_stall: float) -> None:
    pipe_out, pipe_in = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):  # a smaller pipe only costs more calls
            fcntl.fcntl(pipe_in, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        capacity = fcntl.fcntl(pipe_in, fcntl.F_GETPIPE_SZ)
        # The source socket is this copy's alone (handed over, closed after it).
        lowat = _low_water(source, min(count, SOURCE_LOWAT, capacity)) if count else 1
        in_pipe = 0
        while count > 0 or in_pipe:
            progressed = False
            if count > 0 and in_pipe < capacity:
                with contextlib.suppress(BlockingIOError):
                    moved = os.splice(source, pipe_in, min(count, capacity - in_pipe), flags=_FLAGS)
                    if moved == 0:
                        raise ConnectionError("the source closed before the bytes to send")
                    count -= moved
                    in_pipe += moved
                    progressed = True
            if in_pipe:
                try:
                    in_pipe -= os.splice(pipe_out, out, in_pipe, flags=_FLAGS)
                    progressed = True
                except BlockingIOError:
                    pass
                except _GONE as exc:
                    raise ClientGone(str(exc)) from exc
            if not progressed:
                if count > 0 and in_pipe < capacity:
                    if lowat > count:  # never wait for bytes that are not coming
                        lowat = _low_water(source, count)
                    await _wait(source, out if in_pipe else None, source_stall)
                else:
                    await _wait(None, out, stall)
    finally:
        os.close(pipe_out)
        os.close(pipe_in)


def _low_water(sock: int, size: int) -> int:
    """Set how many bytes ``sock`` must hold to be readable; what is in force (1 when the
    descriptor is no socket or refuses)."""
    try:
        with socket.fromfd(sock, socket.AF_INET, socket.SOCK_STREAM) as view:  # a duplicate
            view.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
    except OSError:
        return 1
    return size


async def _wait(readable: int | None, writable: int | None, stall: float) -> None:
    """Until ``readable`` has bytes or ``writable`` has room (either, when both are given)."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    if readable is not None:
        loop.add_reader(readable, _wake, waiter)
    if writable is not None:
        loop.add_writer(writable, _wake, waiter)
    # Waiting only for room, the receiver is the one stalling; else it is the source.
    stalled = (
        ClientGone("the client took no bytes within the timeout")
        if readable is None
        else CopyTimeout("the source sent no bytes within the timeout")
    )
    timer = loop.call_later(stall, _expire, waiter, stalled)
    try:
        await waiter
    finally:
        timer.cancel()
        if readable is not None:
            loop.remove_reader(readable)
        if writable is not None:
            loop.remove_writer(writable)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _expire(waiter: asyncio.Future[None], error: Exception) -> None:
    if not waiter.done():
        waiter.set_exception(error)
