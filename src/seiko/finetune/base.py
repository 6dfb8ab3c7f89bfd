"""What both fine-tuners share: frozen references, the two KL weights, optimiser, data.

The objective of a round is  E_p[r_hat + bonus] - kl_pretrained * KL(p || p_pre)
- kl_previous * KL(p || p_{i-1}): both KL terms of the paper, each with its own weight (the
public code dropped the first after round one).
"""
from __future__ import annotations

import copy
import math

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from seiko.sharding import is_fsdp


def frozen(module: nn.Module) -> nn.Module:
    """A frozen copy of a reference; a view that shares the policy's weights with its adapters
    switched (``seiko.image.policy.AdapterView``) is frozen by construction and never copied."""
    if getattr(module, "shares_weights", False):
        return module
    ref = copy.deepcopy(module).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


class Finetuner(L.LightningModule):
    def __init__(self, denoiser: nn.Module, family, pretrained: nn.Module, previous: nn.Module | None,
                 kl_pretrained: float = 0.01, kl_previous: float = 0.01, lr: float = 1e-4,
                 weight_decay: float = 0.0, batch_size: int = 32, steps: int = 20, seed: int = 0,
                 labelled: tuple[Tensor, object] | None = None):
        super().__init__()
        self.labelled = labelled  # (designs, labels) bought so far: what fills start from (backprop)
        for name, value in dict(kl_pretrained=kl_pretrained, kl_previous=kl_previous).items():
            if value < 0:
                raise ValueError(f"finetune.{name} must be >= 0, got {value}")
        self.denoiser, self.family = denoiser, family
        self.refs = nn.ModuleDict({"pretrained": frozen(pretrained)})
        if previous is not None and kl_previous > 0:
            self.refs["previous"] = frozen(previous)
        self.weights = {"pretrained": kl_pretrained, "previous": kl_previous}
        self.lr, self.weight_decay = lr, weight_decay
        self.batch_size, self.steps, self.seed = batch_size, steps, seed

    def train_dataloader(self):
        # One item per optimiser step; the item is the step's seed, so runs are reproducible.
        # Under DDP Lightning splits the items: N workers take steps/N steps of N x batch_size.
        return DataLoader(list(range(self.steps)), batch_size=None, shuffle=False)

    def generator(self, index: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + int(index))

    def kl_penalty(self, kl: dict[str, Tensor]) -> Tensor:
        return sum(self.weights[name] * value.mean() for name, value in kl.items())

    def log_kl(self, kl: dict[str, Tensor]) -> None:
        """KL per sequence (summed over steps) and per dimension (position or pixel)."""
        dims = getattr(self.family, "length", None) or math.prod(getattr(self.family, "shape", (1,)))
        for name, value in kl.items():
            self.log(f"finetune/kl_{name}", value.mean())
            self.log(f"finetune/kl_{name}_per_dim", value.mean() / dims)

    def score(self, design: Tensor) -> Tensor:
        """The round's objective on designs, in 32-bit whatever the trainer's precision: a reward
        model (a GP's kernel, its Cholesky factor) is no longer one in bf16."""
        with torch.autocast(self.device.type, enabled=False):
            return self.objective(self.features(design.float()))

    def unsharded(self) -> list[nn.Module]:
        """What FSDP must leave whole (``seiko.sharding``): the frozen reward model."""
        objective = getattr(self, "objective", None)
        return [objective] if isinstance(objective, nn.Module) else []

    def clip_norm(self, optimizer, max_norm: float) -> None:
        """Gradient-norm clipping; under FSDP by FSDP itself, since the norm of sharded gradients
        is a collective (Lightning's FSDP precision plugin refuses norm clipping)."""
        if is_fsdp(self.trainer):
            self.trainer.strategy.model.clip_grad_norm_(max_norm)
        else:
            self.clip_gradients(optimizer, gradient_clip_val=max_norm, gradient_clip_algorithm="norm")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            self.clip_norm(optimizer, gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def on_fit_start(self):
        # FSDP moves only what it shards, and moves it without telling the module its device.
        self.to(self.trainer.strategy.root_device)

    def configure_optimizers(self):
        trainable = [p for p in self.denoiser.parameters() if p.requires_grad]  # not a frozen support reference
        return torch.optim.AdamW(trainable, lr=self.lr, weight_decay=self.weight_decay)
