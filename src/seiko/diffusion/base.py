"""The noise-family interface shared by all domains.

A family turns a denoiser's output at a state into the step's transition distribution
(``seiko.diffusion.steps``), and says how to corrupt clean data for pretraining. Sampling,
KL to references, PPO log-likelihoods and relaxed rollouts are written once, in
``seiko.diffusion.sampler``, against this interface.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class NoiseFamily(ABC):
    num_steps: int

    @abstractmethod
    def prior(self, batch: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """The starting state x_T of the reverse chain (hard representation)."""

    def start(self, batch: int, generator: torch.Generator | None = None, device=None, purpose: str = "query"):
        """(x_T, context): the prior state and what the chain is conditioned on (None: nothing).

        ``purpose`` says what the samples are for: "query" (designs to label), "train" (the
        fine-tuner's rollouts) or "evaluate" (fresh samples for metrics); a conditional family
        draws its prompts by it, an unconditional one ignores it.
        """
        return self.prior(batch, generator, device), None

    def start_from(self, context, device=None):
        """(x_T, context) for a recorded ``context`` (a chain that draws its randomness per
        sample, from seeds in the context, is replayed by it; others cannot be)."""
        raise NotImplementedError(f"{type(self).__name__} draws its noise from a shared generator: "
                                  f"a chain cannot be replayed from its context")

    def finish(self, state: Tensor, context):
        """What a finished chain hands the domain's ``decode``: the final state itself, unless
        the chain was conditioned (then the state with its conditioning)."""
        return state

    @abstractmethod
    def selection(self, state: Tensor, step: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Model-independent randomness of a step (which positions unmask); None if none."""

    @abstractmethod
    def model_time(self, step: int, batch: int, device=None) -> Tensor:
        """The time input the denoiser gets at sampler step ``step`` (0 = first step from noise)."""

    @abstractmethod
    def transition(self, output: Tensor, state: Tensor, step: int, selection: Tensor | None):
        """The step's distribution: a CategoricalStep or GaussianStep."""

    @abstractmethod
    def advance(self, dist, state: Tensor, generator: torch.Generator | None = None, context=None) -> Tensor:
        """A hard sample of the next state (``context``: the chain's, from ``start``)."""

    @abstractmethod
    def advance_relaxed(self, dist, state: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
        """A reparameterised sample of the next state (soft for categorical steps)."""

    @abstractmethod
    def relax(self, state: Tensor) -> Tensor:
        """The hard prior state in the representation ``advance_relaxed`` works in."""

    @abstractmethod
    def loss(self, model: nn.Module, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Pretraining loss (a bound on -log p(x0) per dimension, up to constants)."""
