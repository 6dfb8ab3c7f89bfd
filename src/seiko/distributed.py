"""Which process may talk to the oracle and write the ledger, when every rank runs the loop.

With launchers that start each rank as a copy of the script (Lightning's popen launcher for
``ddp``/``fsdp``, torchrun, SLURM), every rank runs the FeedbackLoop. Only global rank 0
samples queries, calls the oracle and writes the ledger; the other ranks wait until the
round's labels are committed and read them from the ledger, then join the collective fits.
No label is bought twice, and no second process writes the ledger.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable

log = logging.getLogger(__name__)


def global_rank() -> int:
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var) is not None:
            return int(os.environ[var])
    local, node = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("NODE_RANK", 0))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1)))
    return node * per_node + local


def is_rank_zero() -> bool:
    return global_rank() == 0


class LauncherGone(RuntimeError):
    """The process that started this rank exited: nobody will ever commit what it waits for."""


def wait_for(condition: Callable[[], bool], what: str, poll: float = 1.0) -> None:
    """Block until ``condition()``; rank 0 may be waiting on a slow oracle, so no time limit.

    But not forever: Lightning's popen launcher starts the other ranks as children of rank 0,
    and torchrun or SLURM as children of their agent. Once that parent is gone (rank 0 failed
    or was killed) this rank is an orphan, and it stops instead of waiting, and holding its
    parent's output pipes open, for good.
    """
    parent, start = os.getppid(), time.time()
    while not condition():
        if os.getppid() != parent:
            raise LauncherGone(f"rank {global_rank()}: the process that started it (pid {parent}) exited while "
                               f"it waited for {what}; resume=true carries on from the ledger")
        if time.time() - start > 60:
            log.info("rank %d waiting for %s", global_rank(), what)
            start = time.time()
        time.sleep(poll)
