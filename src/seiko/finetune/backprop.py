"""Fine-tuning by differentiating the optimistic reward through the sampling chain.

Categorical steps are relaxed with straight-through Gumbel-softmax, so the reward model sees
one-hot inputs while gradients flow through the soft sample (as DRAKES). Gradients go through
the last K steps only, K uniform on 1..T each optimiser step (randomised truncation), and
each denoiser call is checkpointed, so memory is that of K steps of activations at most.

``fills`` > 0 (not in the paper) makes that share of each step's rollouts fills instead of fresh
samples: ``fill_masked`` positions of one of the ``fill_starts`` best labelled designs are
re-masked (a span or anywhere, as ``seiko.infill`` does) and the policy's fill of them is
rewarded, with both KL terms over the fill's steps. Why: with ``edits.moves=infill`` the policy
proposes by filling re-masked best designs, yet fresh rollouts never show it such a context, so
fine-tuning barely changes its fills (experiments/fill_quality.py); these rollouts train the
policy on the very move it is asked to make.
"""
from __future__ import annotations

import random
from typing import Callable

import torch
from torch import Tensor

from seiko.diffusion.sampler import random_truncation, relaxed_rollout
from seiko.finetune.base import Finetuner


class BackpropFinetuner(Finetuner):
    differentiates_reward = True  # its reward model must read features differentiable in the tokens

    def __init__(self, *args, objective: Callable[[Tensor], Tensor], features: Callable[[Tensor], Tensor],
                 truncation: int | str = "random", tau: float = 1.0, gradient_checkpointing: bool = True,
                 fills: float = 0.0, fill_starts: int = 16, fill_masked: int = 8, fill_span: float = 0.5,
                 **kwargs):
        super().__init__(*args, **kwargs)
        if truncation != "random" and not (isinstance(truncation, int) and truncation >= 1):
            raise ValueError(f"finetune.truncation must be 'random' or an int >= 1, got {truncation!r}")
        if not 0.0 <= fills <= 1.0:
            raise ValueError(f"finetune.fills must be in [0, 1], got {fills}")
        if fills > 0 and (fill_starts < 1 or fill_masked < 1):
            raise ValueError(f"finetune.fill_starts and edits.masked must be >= 1, got {fill_starts} and {fill_masked}")
        self.fills, self.fill_masked, self.fill_span = float(fills), int(fill_masked), float(fill_span)
        self.starts = self._best(fill_starts) if fills > 0 else None
        self.objective, self.features = objective, features
        self.truncation, self.tau, self.gradient_checkpointing = truncation, tau, gradient_checkpointing
        self._rng = random.Random(self.seed)

    def _best(self, num: int) -> Tensor | None:
        """The ``num`` best distinct feasible labelled designs (None before any)."""
        if self.labelled is None:
            return None
        designs, values = self.labelled
        values = torch.as_tensor(values, dtype=torch.float64)
        order = [i for i in torch.argsort(values, descending=True).tolist() if torch.isfinite(values[i])]
        seen, keep = set(), []
        for i in order:
            key = tuple(designs[i].tolist())
            if key not in seen:
                seen.add(key)
                keep.append(i)
            if len(keep) == num:
                break
        return designs[keep] if keep else None

    def _grad_steps(self, steps: int) -> int:
        return random_truncation(steps, self._rng) if self.truncation == "random" else min(self.truncation, steps)

    def _rollout(self, num: int, generator: torch.Generator, start: Tensor | None = None):
        steps = self.family.num_steps - (0 if start is None else self.family.entry_step(start))
        return relaxed_rollout(self.denoiser, self.family, num, self.refs, generator,
                               grad_steps=self._grad_steps(steps), tau=self.tau,
                               use_checkpoint=self.gradient_checkpointing, device=self.device, start=start)

    def fill_starts(self, num: int, generator: torch.Generator) -> Tensor:
        """``num`` best labelled designs with ``fill_masked`` positions (one k for all) re-masked."""
        from seiko.infill import remask

        length = self.starts.shape[1]
        k = int(torch.randint(1, min(self.fill_masked, length) + 1, (1,), generator=generator))
        rows = self.starts[torch.randint(len(self.starts), (num,), generator=generator)]
        masks = remask(num, length, k, self.fill_span, generator, exact=True)
        return rows.masked_fill(masks, self.family.mask_id).to(self.device)

    def training_step(self, index, batch_idx):
        generator = self.generator(index)
        num_fills = int(round(self.fills * self.batch_size)) if self.starts is not None else 0
        rollouts = []
        if num_fills < self.batch_size:
            rollouts.append(self._rollout(self.batch_size - num_fills, generator))
        if num_fills:
            # the re-maskings come from a CPU generator of their own: the same on any device
            picks = torch.Generator().manual_seed(self.seed * 1_000_003 + int(index) + 7)
            rollouts.append(self._rollout(num_fills, generator, self.fill_starts(num_fills, picks)))
        final = torch.cat([r.final for r in rollouts])
        kl = {name: torch.cat([r.kl[name] for r in rollouts]) for name in rollouts[0].kl}
        design = final[..., :-1] if hasattr(self.family, "mask_id") else final
        reward = self.score(design)
        loss = -reward.mean() + self.kl_penalty(kl)
        self.log("finetune/objective", reward.mean(), prog_bar=True)
        self.log("finetune/loss", loss)
        self.log_kl(kl)
        return loss
