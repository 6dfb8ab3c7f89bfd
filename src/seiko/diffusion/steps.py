"""Transition distributions of one denoising step.

Every sampler step returns one of these small objects, so the three things the fine-tuners
need come from one place: the KL to any reference sampler at the same state (both KL terms
of SEIKO), the log-likelihood of a taken transition (PPO), and a reparameterised sample
(backprop through the chain).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class CategoricalStep:
    """Masked (absorbing-state) step: positions in ``update`` are unmasked this step.

    ``logits`` [B, L, V] are the denoiser's predictions of the clean token; only positions in
    ``update`` [B, L] (bool) change, so KL and log-prob sum over those positions only. Which
    positions are unmasked is drawn independently of the model, so it adds nothing to the KL.
    """

    logits: Tensor
    update: Tensor

    @property
    def log_probs(self) -> Tensor:
        return F.log_softmax(self.logits.float(), dim=-1)

    def log_prob(self, next_tokens: Tensor) -> Tensor:
        """log p(next state | state), [B]; ``next_tokens`` [B, L] long."""
        lp = self.log_probs.gather(-1, next_tokens.clamp_max(self.logits.shape[-1] - 1).unsqueeze(-1))
        return (lp.squeeze(-1) * self.update).sum(-1)

    def kl(self, ref: "CategoricalStep") -> Tensor:
        """KL(self || ref) of this step, exact: sum over unmasked positions, [B]."""
        lp, lq = self.log_probs, ref.log_probs
        per_pos = (lp.exp() * (lp - lq)).sum(-1)
        return (per_pos * self.update).sum(-1)

    def sample(self, tokens: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Next state as token ids: ``tokens`` with the ``update`` positions filled in."""
        probs = self.log_probs.exp().flatten(0, 1)
        drawn = torch.multinomial(probs, 1, generator=generator).view(tokens.shape)
        return torch.where(self.update, drawn, tokens)

    def rsample(self, state: Tensor, tau: float = 1.0, hard: bool = True,
                generator: torch.Generator | None = None) -> Tensor:
        """Relaxed next state [B, L, V+1] (last channel = mask) by Gumbel-softmax.

        With ``hard`` the forward value is one-hot and the gradient that of the soft sample
        (straight-through), as DRAKES does, so the reward model always sees valid one-hots.
        """
        u = torch.rand(self.logits.shape, generator=generator, device=self.logits.device)
        gumbel = -torch.log((-torch.log(u.clamp_min(1e-10))).clamp_min(1e-10))
        soft = F.softmax((self.log_probs + gumbel) / tau, dim=-1)
        if hard:
            index = soft.argmax(-1, keepdim=True)
            soft = torch.zeros_like(soft).scatter_(-1, index, 1.0) - soft.detach() + soft
        soft = F.pad(soft, (0, 1))  # mask channel is 0 for a freshly unmasked position
        upd = self.update.unsqueeze(-1).to(soft.dtype)
        return upd * soft + (1 - upd) * state


@dataclass
class GaussianStep:
    """Gaussian step N(mean, std^2) per dimension (DDPM / DDIM with eta > 0)."""

    mean: Tensor
    std: Tensor

    def _reduce(self, x: Tensor) -> Tensor:
        return x.flatten(1).sum(-1)

    def log_prob(self, x_next: Tensor) -> Tensor:
        var = self.std**2
        lp = -((x_next - self.mean) ** 2) / (2 * var) - torch.log(self.std) - 0.5 * math.log(2 * math.pi)
        return self._reduce(lp.expand_as(x_next))

    def kl(self, ref: "GaussianStep") -> Tensor:
        """KL(self || ref), summed over dimensions, [B].

        With equal variances this is ||mu - mu_ref||^2 / (2 sigma^2), the per-step term of the
        paper; the general closed form covers samplers with different variances.
        """
        var, rvar = self.std**2, ref.std**2
        per_dim = torch.log(ref.std / self.std) + (var + (self.mean - ref.mean) ** 2) / (2 * rvar) - 0.5
        return self._reduce(per_dim.expand_as(self.mean))

    def kl_per_dim(self, ref: "GaussianStep") -> Tensor:
        return self.kl(ref) / self.mean[0].numel()

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device)
        return self.mean + self.std * noise

    rsample = sample  # mean + std * eps is already reparameterised
