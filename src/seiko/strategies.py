"""Exploration strategies: how a fitted reward model becomes the round's objective.

Each SEIKO round the diffusion model is fine-tuned to maximise an *optimistic* reward
r_hat(x) + g(x) built from the reward model fitted on all labels so far.  A strategy
maps that model to the function x [B, D] -> [B] the fine-tuner maximises (it must stay
differentiable wrt x: the fine-tuner backpropagates through its sampling chain).

* ``NonAdaptive``: posterior mean, the whole label budget in a single round.
* ``Greedy``: posterior mean every round (no exploration bonus).
* ``UCB``: mean + bonus * std, the paper's main variant.  With the Bayesian last layer
  the std uses the Gram matrix, so the bonus shrinks where labels accumulate; the public
  SEIKO code used a sample covariance instead (see ``seiko.reward.bayes_linear``).
* ``Bootstrap``: over ensemble heads, mean + bonus * std, or max (SEIKO's bootstrap code).
* ``ThompsonSampling``: one posterior function draw per round.

``bonus`` is the paper's c (exploration strength, >= 0).  ``rounds`` tells the loop
whether to follow the budget's round schedule or spend it all in one round.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch
from torch import Tensor

from seiko.reward.base import RewardModel

Objective = Callable[[Tensor], Tensor]


class Strategy(ABC):
    name: str = "strategy"
    rounds: str = "schedule"

    def __init__(self, bonus: float = 1.0) -> None:
        if not bonus >= 0:  # also rejects NaN
            raise ValueError(f"{type(self).__name__}: bonus must be >= 0, got {bonus}")
        self.bonus = float(bonus)

    @abstractmethod
    def objective(self, model: RewardModel, generator: torch.Generator) -> Objective:
        """The optimistic reward x [B, D] -> [B] to maximise this round (model already fitted)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bonus={self.bonus})"


def _mean(model: RewardModel) -> Objective:
    return lambda x: model.predict(x).mean


class Greedy(Strategy):
    """Posterior mean each round: adaptive but no optimism (bonus unused)."""

    name = "greedy"

    def __init__(self, bonus: float = 0.0) -> None:
        super().__init__(bonus)

    def objective(self, model: RewardModel, generator: torch.Generator) -> Objective:
        return _mean(model)


class NonAdaptive(Greedy):
    """Posterior mean, whole budget in one round (offline baseline; bonus unused)."""

    name, rounds = "non_adaptive", "single"


class UCB(Strategy):
    """mean + bonus * std; ``max_bonus`` clips the bonus term (reward units), as SEIKO's code did."""

    name = "ucb"

    def __init__(self, bonus: float = 1.0, max_bonus: float | None = None) -> None:
        super().__init__(bonus)
        if max_bonus is not None and not max_bonus >= 0:
            raise ValueError(f"UCB: max_bonus must be >= 0 or None, got {max_bonus}")
        self.max_bonus = max_bonus

    def objective(self, model: RewardModel, generator: torch.Generator) -> Objective:
        c, clip = self.bonus, self.max_bonus

        def f(x: Tensor) -> Tensor:
            p = model.predict(x)
            g = c * p.std
            return p.mean + (g if clip is None else g.clamp(max=clip))

        return f


class Bootstrap(Strategy):
    """Optimism from ensemble heads: ``mean_std`` = mean + bonus * std over heads, ``max`` = max."""

    name = "bootstrap"
    REDUCES = ("mean_std", "max")

    def __init__(self, bonus: float = 1.0, reduce: str = "mean_std") -> None:
        super().__init__(bonus)
        if reduce not in self.REDUCES:
            raise ValueError(f"Bootstrap: reduce must be one of {self.REDUCES}, got {reduce!r}")
        self.reduce = reduce

    def objective(self, model: RewardModel, generator: torch.Generator) -> Objective:
        if not model.has_heads:
            raise NotImplementedError(f"Bootstrap needs a reward model with heads; {type(model).__name__} "
                                      "has no heads; use reward=ensemble")
        c, reduce = self.bonus, self.reduce

        def f(x: Tensor) -> Tensor:
            h = model.heads(x)  # [M, B]
            return h.amax(0) if reduce == "max" else h.mean(0) + c * h.std(0)

        return f


class ThompsonSampling(Strategy):
    """One posterior function, drawn when ``objective`` is called (once per round).

    The draw's own spread is the exploration, so ``bonus`` is unused."""

    name = "thompson"
    needs_draws = True  # the reward model must draw posterior functions (not the Tanimoto GP)

    def objective(self, model: RewardModel, generator: torch.Generator) -> Objective:
        return model.sample_function(generator)


__all__ = ["Strategy", "NonAdaptive", "Greedy", "UCB", "Bootstrap", "ThompsonSampling"]
