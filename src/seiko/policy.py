"""The diffusion policy as a LightningModule: pretraining on a domain's data, and sampling."""
from __future__ import annotations

import math

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from seiko.diffusion import NoiseFamily, sample


class DomainStream(IterableDataset):
    """Endless batches of fresh pretraining designs, so the denoiser never overfits a sample."""

    def __init__(self, domain, batch_size: int, seed: int = 0):
        self.domain, self.batch_size, self.seed = domain, batch_size, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        generator = torch.Generator().manual_seed(self.seed + (info.id if info else 0))
        while True:
            yield self.domain.pretraining_data(self.batch_size, generator)


class DiffusionPolicy(L.LightningModule):
    """A denoiser with its noise family; pretrained by the family's denoising loss."""

    def __init__(self, denoiser: nn.Module, family: NoiseFamily, lr: float = 1e-3, weight_decay: float = 0.01,
                 warmup_steps: int = 200, domain=None, batch_size: int = 256, seed: int = 0):
        super().__init__()
        self.denoiser, self.family, self.domain = denoiser, family, domain
        self.lr, self.weight_decay, self.warmup_steps = lr, weight_decay, warmup_steps
        self.batch_size, self.seed = batch_size, seed

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        return self.denoiser(x, t)

    def train_dataloader(self):
        return DataLoader(DomainStream(self.domain, self.batch_size, self.seed), batch_size=None)

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        loss = self.family.loss(self.denoiser, batch)
        self.log("pretrain/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.denoiser.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = max(self.trainer.max_steps, self.warmup_steps + 1)

        def schedule(step: int) -> float:  # linear warm-up, then cosine to 5% of the peak
            if step < self.warmup_steps:
                return (step + 1) / self.warmup_steps
            progress = (step - self.warmup_steps) / (total - self.warmup_steps)
            return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    @torch.no_grad()
    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        was_training = self.denoiser.training
        self.denoiser.eval()
        out = sample(self.denoiser, self.family, num, generator, device=self.device)
        self.denoiser.train(was_training)
        return out
