"""DDIM with stochasticity eta on Stable Diffusion's noise schedule, conditioned on prompts.

Each of the ``num_steps`` steps is a Gaussian N(mu_theta(x_t), sigma_t^2 I) with

    x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)
    sigma_t = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev)
    mu = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma_t^2) eps

(a = alpha-bar, the scheduler's ``alphas_cumprod``), exactly diffusers' ``DDIMScheduler.step``
with ``eta``; two policies at the same state share sigma_t, so the KL of a step is
||mu - mu_ref||^2 / (2 sigma_t^2), the paper's term. SD's schedule does not set the last step's
alpha to one (``set_alpha_to_one: false``), so sigma_t > 0 at every step and every KL is finite.

The chain is conditioned: ``start`` draws the prompts (``PromptSet``, by purpose: query,
train or evaluate) and one seed per sample, whose generator alone draws that sample's initial
noise, so a record's (prompt, seed) names its starting point. ``finish`` hands the domain the
final latents with their prompts and seeds (``ImageBatch``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seiko.diffusion.gaussian import GaussianChain
from seiko.diffusion.steps import GaussianStep

SEED_RANGE = 2**31 - 1


@dataclass
class Conditioning:
    """What a conditional chain is run for: one prompt and one seed per sample."""

    prompts: list[str]
    seeds: list[int]


@dataclass
class ImageBatch:
    """Final states of a conditional chain, with what they were drawn for."""

    latents: Tensor
    prompts: list[str]
    seeds: list[int]

    def __len__(self) -> int:
        return len(self.prompts)


class DDIMDiffusion(GaussianChain):
    def __init__(self, shape: tuple[int, ...] | list[int], prompts=None, num_steps: int = 50, eta: float = 1.0,
                 scheduler: dict | None = None, eval_seed: int = 0):
        from diffusers import DDIMScheduler

        from seiko.image.components import SD_SCHEDULER

        if num_steps < 1:
            raise ValueError(f"domain.family.num_steps must be >= 1, got {num_steps}")
        if not 0.0 < eta <= 1.0:
            raise ValueError(f"domain.family.eta must be in (0, 1] (eta 0 is deterministic: no KL), got {eta}")
        self.shape, self.num_steps, self.eta = tuple(shape), int(num_steps), float(eta)
        self.prompts, self.eval_seed = prompts, int(eval_seed)
        self.scheduler = DDIMScheduler(**{**SD_SCHEDULER, **(scheduler or {})})
        self.scheduler.set_timesteps(self.num_steps)
        self.timesteps = self.scheduler.timesteps.clone().long()  # descending: step 0 is the noisiest
        abar = self.scheduler.alphas_cumprod.double()
        prev = self.timesteps - self.scheduler.config.num_train_timesteps // self.num_steps
        final = self.scheduler.final_alpha_cumprod.double()
        self.abar = abar[self.timesteps]
        self.abar_prev = torch.where(prev >= 0, abar[prev.clamp_min(0)], final)
        var = (1 - self.abar_prev) / (1 - self.abar) * (1 - self.abar / self.abar_prev)
        self.sigma = (self.eta * var.sqrt())
        self.train_abar = abar.float()

    # -------------------------------------------------------------- conditioning
    def start(self, batch, generator=None, device=None, purpose="query"):
        if self.prompts is None:
            prompts = [""] * batch
        else:
            prompts = self.prompts.draw(batch, generator or torch.Generator().manual_seed(0), purpose)
        if purpose == "evaluate":  # fixed seeds: every round's evaluation starts from the same noise
            seeds = [self.eval_seed + i for i in range(batch)]
        else:
            # on the generator's device: the fine-tuner's is the GPU's
            seeds = torch.randint(SEED_RANGE, (batch,), generator=generator,
                                  device=generator.device if generator is not None else None).tolist()
        noise = torch.stack([torch.randn(self.shape, generator=torch.Generator().manual_seed(s)) for s in seeds]) \
            if batch else torch.zeros(0, *self.shape)
        return noise.to(device), Conditioning(prompts, seeds)

    def prompted(self, prompts: list[str]) -> "DDIMDiffusion":
        """The same chain with every sample drawn for one of ``prompts`` (``seiko sample --prompt``)."""
        import copy

        from seiko.image.prompts import PromptSet

        chain = copy.copy(self)
        chain.prompts = PromptSet(query=list(prompts), train=list(prompts), evaluate=list(prompts),
                                  template=None, template_prob=0.0)
        return chain

    def finish(self, state, context):
        return ImageBatch(state, list(context.prompts), list(context.seeds))

    def prior(self, batch, generator=None, device=None):
        return self.start(batch, generator, device)[0]

    def model_time(self, step, batch, device=None):
        return self.timesteps[step].expand(batch).to(device)

    # -------------------------------------------------------------- steps
    def transition(self, output, state, step, selection):
        dtype = state.dtype
        abar, abar_prev, sigma = (float(v[step]) for v in (self.abar, self.abar_prev, self.sigma))
        eps = output.to(dtype)
        x0 = (state - (1 - abar) ** 0.5 * eps) / abar ** 0.5
        mean = abar_prev ** 0.5 * x0 + max(1 - abar_prev - sigma**2, 0.0) ** 0.5 * eps
        return GaussianStep(mean=mean, std=torch.tensor(sigma, dtype=dtype, device=state.device))

    def loss(self, model: nn.Module, x0: Tensor, generator=None, context=None) -> Tensor:
        """Epsilon-prediction loss at a uniform training timestep of the 1000 (SD's own)."""
        batch = x0.shape[0]
        t = torch.randint(0, len(self.train_abar), (batch,), generator=generator,
                          device=generator.device if generator is not None else None).to(x0.device)
        abar = self.train_abar.to(x0.device)[t].view(batch, *[1] * (x0.dim() - 1))
        noise = torch.randn(x0.shape, generator=generator,
                            device=generator.device if generator is not None else None).to(x0.device)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        out = model(x_t, t) if context is None else model(x_t, t, context)
        return F.mse_loss(out, noise)
