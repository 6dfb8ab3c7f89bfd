"""Ranks other than 0 wait for rank 0's labels, but not after the process that started them died."""
from __future__ import annotations

import pytest

from seiko import distributed
from seiko.distributed import LauncherGone, wait_for


def test_wait_for_returns_once_the_condition_holds():
    answers = iter([False, False, True])
    wait_for(lambda: next(answers), "a test", poll=0.0)
    assert next(answers, "done") == "done"


def test_an_orphaned_rank_stops_waiting(monkeypatch):
    """Lightning's popen launcher starts ranks as children of rank 0: a new parent pid means rank 0
    is gone (the CI hang: rank 0 failed, rank 1 waited forever holding the test's pipes)."""
    parents = iter([100, 100, 1])
    monkeypatch.setattr(distributed.os, "getppid", lambda: next(parents))
    calls = []
    with pytest.raises(LauncherGone, match=r"pid 100\) exited while it waited for the labels of round 3"):
        wait_for(lambda: calls.append(1) is not None, "the labels of round 3", poll=0.0)
    assert len(calls) == 2  # checked twice, then noticed the new parent
