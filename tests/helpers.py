"""Oracles for tests, plugged in by ``oracle._target_=helpers.X`` like a user's own, and small shared helpers."""
from __future__ import annotations

import os
import signal

import torch
import torch.nn.functional as F

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


def motif_data(n: int, seed: int, positions: range, vocab: int = 4, length: int = 16):
    """Translation-invariance data for sequence reward models: a background of token 0, and
    y = 1 where tokens 1 _ 2 (gap 2) sit at a position from ``positions``, 0 where the two tokens
    are placed at a wrong spacing (gap 3). Tokens >= 3 never appear. Flat one-hots [n, length * vocab]."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(n, length, dtype=torch.long)
    y = torch.randint(2, (n,), generator=g).float()
    for i in range(n):
        p = positions[int(torch.randint(len(positions), (1,), generator=g))]
        tokens[i, p], tokens[i, p + (2 if y[i] else 3)] = 1, 2
    return F.one_hot(tokens, vocab).float().flatten(1), y


def two_rank_trainer(**limits):
    """A quiet Lightning Trainer of 2 spawned gloo CPU ranks (``limits``: max_steps, max_epochs);
    tensors are shared between the processes in a way that survives spawning."""
    import lightning as L
    from lightning.pytorch.strategies import DDPStrategy

    from seiko.cli_support import use_spawn_safe_sharing

    use_spawn_safe_sharing()
    return L.Trainer(accelerator="cpu", devices=2, strategy=DDPStrategy(start_method="spawn"), logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, **limits)


def experiment_script(name: str):
    """experiments/<name>.py loaded as a module, as the tests of the benchmark scripts read them:
    registered in sys.modules (a script's dataclasses look their module up) and run with
    experiments/ on the path (pmo_benchmark imports bench_common beside it)."""
    import importlib.util
    import sys
    from pathlib import Path

    experiments = Path(__file__).resolve().parents[1] / "experiments"
    spec = importlib.util.spec_from_file_location(name, experiments / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(experiments))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(experiments))
    return module
