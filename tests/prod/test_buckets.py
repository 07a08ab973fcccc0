"""The rate limiter on its real shared table: separate read and write budgets per glob, refill,
Retry-After, and two processes drawing on one budget."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from ocigate.layers.ratelimit import RateLimited, RateLimiter
from ocigate.production_config import RateLimitsConfig


def _limiter(tmp_path: Path) -> RateLimiter:
    config = RateLimitsConfig.model_validate(
        {
            "rules": [
                {
                    "repository": "**",
                    "reads": {"rate": 5, "burst": 3},
                    "writes": {"rate": 0.5, "burst": 1},
                },
                {"repository": "free/**"},
            ]
        }
    )
    return RateLimiter(config, tmp_path, upload_expiry=86400)


def test_reads_and_writes_have_separate_budgets(tmp_path: Path) -> None:
    limiter = _limiter(tmp_path)
    for _ in range(3):
        limiter.check("user:alice", "GET", "team/app")
    with pytest.raises(RateLimited) as refused:
        limiter.check("user:alice", "HEAD", "team/app")
    assert refused.value.status == 429 and refused.value.code == "TOOMANYREQUESTS"
    assert refused.value.retry_after == 1  # 1/5 s rounded up to whole seconds
    limiter.check("user:alice", "PUT", "team/app")  # writes: their own bucket
    with pytest.raises(RateLimited) as writes:
        limiter.check("user:alice", "PATCH", "team/app")
    assert writes.value.retry_after == 2  # one token at 0.5/s
    limiter.check("user:bob", "GET", "team/app")  # another client, another budget
    for _ in range(10):
        limiter.check("user:alice", "GET", "free/x")  # a rule without budgets: unlimited
    time.sleep(0.25)
    limiter.check("user:alice", "GET", "team/app")  # refilled at 5/s


def _drain(directory: str, results: multiprocessing.Queue[int]) -> None:
    limiter = _limiter(Path(directory))
    served = 0
    for _ in range(20):
        try:
            limiter.check("10.0.0.1", "GET", "team/app")
            served += 1
        except RateLimited:
            pass
    results.put(served)


def test_processes_share_one_budget(tmp_path: Path) -> None:
    results: multiprocessing.Queue[int] = multiprocessing.Queue()
    workers = [
        multiprocessing.get_context("fork").Process(target=_drain, args=(str(tmp_path), results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(10)
    served = results.get(timeout=5) + results.get(timeout=5)
    assert 3 <= served <= 4  # the burst, and at most one refilled token meanwhile
