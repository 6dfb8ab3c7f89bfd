"""Reward model interface: r_hat(x) with an epistemic uncertainty g(x).

Every SEIKO round refits a reward model on *all* labels so far and then fine-tunes the
diffusion model to maximise an optimistic reward built from it (see ``seiko.strategies``)
by backpropagating through the sampling chain.  Hence every ``predict`` and every
``sample_function`` here must be differentiable with respect to the input features ``x``
(a float tensor [B, D]: a flattened one-hot or *soft* one-hot of a design).

Fitting is Lightning's job: the loop calls ``model.set_data(x, y)`` then
``trainer.fit(model)``.  Networks are built lazily in ``set_data`` because the input
dimension is only known there.  Labels are standardised inside ``set_data`` (oracle
rewards have arbitrary scales, hyperparameter defaults should not) and every prediction
is returned in the original units.  Under DDP every rank holds the same full data, so
models either train full batch or use a plain shuffled DataLoader whose result does not
depend on how (or whether) Lightning shards it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset


@dataclass
class Posterior:
    """Posterior of the reward at a batch of designs, in the labels' original units."""

    mean: Tensor  # [B]
    std: Tensor  # [B] epistemic std (>= 0), excludes observation noise


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (network initialisation) under a fixed seed without touching global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class RewardModel(L.LightningModule, ABC):
    """Base class: label bookkeeping, standardisation, default data loader."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        # Training data live in non-persistent buffers: they follow .to(device) but their
        # shape changes every round, so they stay out of the state_dict.
        self.register_buffer("x_train", torch.empty(0, 0), persistent=False)
        self.register_buffer("y_train", torch.empty(0), persistent=False)

    # ------------------------------------------------------------------ data
    def set_data(self, x: Tensor, y: Tensor) -> None:
        """Store all labels so far (x [N, D], y [N]) and (re)build the model for them."""
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise ValueError("set_data expects tensors x [N, D] and y [N]")
        if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"set_data expects x [N, D] and y [N]; got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"set_data got no labels (x has shape {tuple(x.shape)})")
        if not torch.isfinite(y).all() or not torch.isfinite(x).all():
            raise ValueError("set_data got non-finite values in x or y")
        x = x.detach().to(self.y_mean.device, torch.float32)
        y = y.detach().to(self.y_mean.device, torch.float32)
        mean, std = y.mean(), y.std(correction=0)
        self.y_mean = mean
        self.y_std = std if std > 1e-8 else torch.ones_like(std)
        self.x_train = x
        self.y_train = (y - mean) / self.y_std
        self._build(self.x_train, self.y_train)
        self.train()  # predict() switches to eval; fitting starts in train mode

    def fit_labels(self, x: Tensor, y: Tensor, max_epochs: int) -> "RewardModel":
        """``set_data`` then fit on the CPU with a bare, silent Lightning Trainer; returns self.

        For a notebook, a test or a benchmark: labels at hand, no run directory, no logger.
        The feedback loop fits through its configured trainer instead (``trainer`` group).
        """
        self.set_data(x, y)
        L.Trainer(accelerator="cpu", max_epochs=max_epochs, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False).fit(self)
        return self

    @property
    def n_labels(self) -> int:
        return self.x_train.shape[0]

    @property
    def input_dim(self) -> int:
        return self.x_train.shape[1]

    def _check_fitted(self, x: Tensor | None = None) -> None:
        if self.n_labels == 0:
            raise RuntimeError(f"{type(self).__name__}: call set_data(x, y) (and fit) first")
        if x is not None and (x.ndim != 2 or x.shape[1] != self.input_dim):
            raise ValueError(f"expected x of shape [B, {self.input_dim}], got {tuple(x.shape)}")

    def _unstandardise(self, mean: Tensor, std: Tensor | None = None) -> Posterior | Tensor:
        out = mean * self.y_std + self.y_mean
        return out if std is None else Posterior(out, std * self.y_std)

    def train_dataloader(self) -> DataLoader:
        """Shuffled mini-batches (or one full batch) of ``_train_tensors()``, seeded."""
        self._check_fitted()
        tensors = self._train_tensors()
        bs = getattr(self.hparams, "batch_size", None) or self.n_labels
        gen = torch.Generator().manual_seed(int(getattr(self.hparams, "seed", 0)))
        return DataLoader(TensorDataset(*tensors), batch_size=bs, shuffle=True, generator=gen)

    def _train_tensors(self) -> tuple[Tensor, ...]:
        return self.x_train, self.y_train

    # ------------------------------------------------------------------ model API
    @abstractmethod
    def _build(self, x: Tensor, y: Tensor) -> None:
        """Build the model for standardised data (x [N, D], y [N])."""

    @abstractmethod
    def predict(self, x: Tensor) -> Posterior:
        """Posterior mean and epistemic std at x [B, D], differentiable wrt x."""

    @abstractmethod
    def sample_function(self, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
        """One posterior draw as a deterministic, differentiable function x [B, D] -> [B]."""

    def heads(self, x: Tensor) -> Tensor:
        """Per-member predictions [M, B] for ensembles (bootstrap exploration)."""
        raise NotImplementedError(f"{type(self).__name__} has no heads; use reward=ensemble")

    @property
    def has_heads(self) -> bool:
        return type(self).heads is not RewardModel.heads
