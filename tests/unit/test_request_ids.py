"""Request ids: unique within a process and across the worker processes forked from it."""

from __future__ import annotations

import multiprocessing
import re

from ocigate.context import new_request_id


def _child_ids(queue: multiprocessing.Queue[list[str]]) -> None:
    queue.put([new_request_id() for _ in range(3)])


def test_ids_are_unique_here_and_in_forked_workers() -> None:
    mine = [new_request_id() for _ in range(1000)]
    assert len(set(mine)) == len(mine)
    assert all(re.fullmatch(r"[0-9a-f]{16}", value) for value in mine)
    context = multiprocessing.get_context("fork")  # how the server starts its workers
    queue: multiprocessing.Queue[list[str]] = context.Queue()
    children = [context.Process(target=_child_ids, args=(queue,)) for _ in range(2)]
    for child in children:
        child.start()
    theirs = [queue.get(timeout=30) for _ in children]
    for child in children:
        child.join(30)
    prefixes = {value[:8] for value in mine} | {ids[0][:8] for ids in theirs}
    assert len(prefixes) == 3  # each process its own prefix, so no id repeats across them
    assert not set(mine) & {value for ids in theirs for value in ids}
