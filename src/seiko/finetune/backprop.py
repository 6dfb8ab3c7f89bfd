"""Fine-tuning by differentiating the optimistic reward through the sampling chain.

Categorical steps are relaxed with straight-through Gumbel-softmax, so the reward model sees
one-hot inputs while gradients flow through the soft sample (as DRAKES). Gradients go through
the last K steps only, K uniform on 1..T each optimiser step (randomised truncation), and
each denoiser call is checkpointed, so memory is that of K steps of activations at most.
"""
from __future__ import annotations

import random
from typing import Callable

from torch import Tensor

from seiko.diffusion.sampler import random_truncation, relaxed_rollout
from seiko.finetune.base import Finetuner


class BackpropFinetuner(Finetuner):
    differentiates_reward = True  # its reward model must read features differentiable in the tokens

    def __init__(self, *args, objective: Callable[[Tensor], Tensor], features: Callable[[Tensor], Tensor],
                 truncation: int | str = "random", tau: float = 1.0, gradient_checkpointing: bool = True,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if truncation != "random" and not (isinstance(truncation, int) and truncation >= 1):
            raise ValueError(f"finetune.truncation must be 'random' or an int >= 1, got {truncation!r}")
        self.objective, self.features = objective, features
        self.truncation, self.tau, self.gradient_checkpointing = truncation, tau, gradient_checkpointing
        self._rng = random.Random(self.seed)

    def training_step(self, index, batch_idx):
        steps = self.family.num_steps
        grad_steps = random_truncation(steps, self._rng) if self.truncation == "random" else min(self.truncation, steps)
        rollout = relaxed_rollout(self.denoiser, self.family, self.batch_size, self.refs, self.generator(index),
                                  grad_steps=grad_steps, tau=self.tau,
                                  use_checkpoint=self.gradient_checkpointing, device=self.device)
        design = rollout.final[..., :-1] if hasattr(self.family, "mask_id") else rollout.final
        reward = self.score(design)
        loss = -reward.mean() + self.kl_penalty(rollout.kl)
        self.log("finetune/objective", reward.mean(), prog_bar=True)
        self.log("finetune/loss", loss)
        self.log_kl(rollout.kl)
        return loss
