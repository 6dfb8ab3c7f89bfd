"""Oracles for tests, plugged in by ``oracle._target_=helpers.X`` like a user's own, and small shared helpers."""
from __future__ import annotations

import os
import signal

import torch

from seiko.domains.protein import EhrlichOracle

TINY_FUNCTION = dict(num_states=8, dim=12, num_motifs=1, motif_length=3, quantization=3, seed=0)


class CountingOracle:
    """The tiny Ehrlich oracle; appends one line per design it labels to ``log``.

    With ``crash_at_call`` the process SIGKILLs itself on that call, before labelling: a real
    run killed mid-round, at a reproducible point.
    """

    def __init__(self, log: str, crash_at_call: int | None = None):
        self.log, self.crash_at_call, self.calls = log, crash_at_call, 0
        self.function = EhrlichOracle(**TINY_FUNCTION)

    def __call__(self, designs):
        self.calls += 1
        if self.crash_at_call is not None and self.calls == self.crash_at_call:
            os.kill(os.getpid(), signal.SIGKILL)
        values = self.function(designs)
        with open(self.log, "a") as f:
            f.writelines(d + "\n" for d in designs)
        return values


def failing_oracle(designs):
    """Raises on every batch that contains a design starting with 'A' (recorded, not fatal)."""
    if any(d.startswith("A") for d in designs):
        raise RuntimeError("assay plate dropped")
    return EhrlichOracle(**TINY_FUNCTION)(designs)


def nan_oracle(designs):
    return [float("nan")] * len(designs)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fit_reward(model, x, y, epochs: int):
    """Set a reward model's data and fit it for ``epochs`` (``RewardModel.fit_labels``)."""
    return model.fit_labels(x, y, epochs)
