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
noise and then the noise of every one of its steps, so a record's (prompt, seed) and the policy
that drew it name its whole trajectory: ``trajectory_of`` replays it, which is how online PPO
gets the trajectories of designs it reads back from the ledger (a trajectory of SD's latents is
3 MB an image, too much to keep for a round). ``finish`` hands the domain the final latents
with their prompts and seeds (``ImageBatch``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

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
    noise: list[torch.Generator] | None = field(default=None, repr=False, compare=False)  # one a sample

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: slice) -> "Conditioning":
        """The samples ``index`` (a slice) as their own conditioning, noise generators fresh."""
        return Conditioning(self.prompts[index], self.seeds[index])


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
        return self.start_from(Conditioning(prompts, seeds), device)

    def start_from(self, context, device=None):
        """The initial noise of each (prompt, seed), from a generator of that seed alone, which
        then draws that sample's step noise (``advance``)."""
        noise = [torch.Generator().manual_seed(int(s)) for s in context.seeds]
        state = torch.stack([torch.randn(self.shape, generator=g) for g in noise]) \
            if noise else torch.zeros(0, *self.shape)
        return state.to(device), Conditioning(list(context.prompts), list(context.seeds), noise)

    def advance(self, dist, state, generator=None, context=None):
        """x_{t-1} = mu + sigma z, with each sample's z from its own seed's generator (so a
        record replays), or from ``generator`` for a chain started without seeds."""
        if context is None or context.noise is None:
            return dist.sample(generator)
        z = torch.stack([torch.randn(self.shape, generator=g) for g in context.noise])
        return dist.mean + dist.std * z.to(device=state.device, dtype=dist.mean.dtype)

    def trajectory_of(self, context, generator=None, model: nn.Module | None = None, device=None):
        """The trajectory ``model`` (the policy that drew them) took for each (prompt, seed) of
        ``context``: the chain replayed on ``device``, with its log-probs under ``model``."""
        from seiko.diffusion.sampler import sample

        if model is None:
            raise ValueError("a DDIM trajectory is replayed by the policy that drew it: pass model=")
        return sample(model, self, len(context), trajectory=True, device=device, context=context)

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
