"""Gaussian (DDPM) diffusion on continuous vectors or images, epsilon-prediction.

Steps are N(mu_theta(x_t, t), beta_t I); two samplers at the same state share the variance,
so the per-step KL is ||mu_theta - mu_ref||^2 / (2 beta_t), the form used in the paper.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seiko.diffusion.base import NoiseFamily
from seiko.diffusion.steps import GaussianStep


class GaussianChain(NoiseFamily):
    """What every Gaussian family shares: no model-independent selection, and a step's sample
    is already reparameterised (mean + std * eps), so the relaxed chain is the chain itself."""

    def selection(self, state, step, generator=None):
        return None

    def advance(self, dist, state, generator=None, context=None):
        return dist.sample(generator)

    def advance_relaxed(self, dist, state, tau, generator=None):
        return dist.rsample(generator)

    def relax(self, state):
        return state


class GaussianDiffusion(GaussianChain):
    def __init__(self, shape: tuple[int, ...] | list[int], num_steps: int = 50,
                 beta_start: float = 1e-4, beta_end: float = 0.2):
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.shape, self.num_steps = tuple(shape), num_steps
        self.betas = torch.linspace(beta_start, beta_end, num_steps)
        self.alphas = 1.0 - self.betas
        self.alpha_bars = torch.cumprod(self.alphas, 0)

    def prior(self, batch, generator=None, device=None):
        return torch.randn((batch, *self.shape), generator=generator, device=device)

    def _t(self, step: int) -> int:
        return self.num_steps - 1 - step

    def model_time(self, step, batch, device=None):
        return torch.full((batch,), self._t(step), dtype=torch.long, device=device)

    def transition(self, output, state, step, selection):
        t = self._t(step)
        beta, alpha, abar = self.betas[t], self.alphas[t], self.alpha_bars[t]
        mean = (state - beta / torch.sqrt(1 - abar) * output) / torch.sqrt(alpha)
        return GaussianStep(mean=mean, std=torch.sqrt(beta).to(state))


    def loss(self, model: nn.Module, x0: Tensor, generator=None) -> Tensor:
        batch = x0.shape[0]
        t = torch.randint(0, self.num_steps, (batch,), generator=generator, device=x0.device)
        abar = self.alpha_bars.to(x0.device)[t].view(batch, *[1] * (x0.dim() - 1))
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        x_t = torch.sqrt(abar) * x0 + torch.sqrt(1 - abar) * noise
        return F.mse_loss(model(x_t, t), noise)
