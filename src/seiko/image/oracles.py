"""Oracles that score images: a frozen scorer on the pixels of the ledger's PNG files.

The ledger holds image records (``seiko.image.records``), not pixels; an image oracle reads
them through the domain it is bound to (``bind``, called when the run is built), so it finds the
files wherever the run folder lives. A missing or changed file scores NaN (infeasible), never
a crash. ``noise_std`` adds Gaussian label noise, as the paper's noisy aesthetic oracle does.

The noise of a design is drawn from a generator keyed on (``seed``, the design's record), not
from one stream: a resumed run, a rank that scores a shard, or a batch in another order gives
every design the noise it would have had in one uninterrupted run (a stream restarted on resume
repeated the first round's noise on the next round's designs).
"""
from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn


@torch.no_grad()
def batched(model: nn.Module, pixels: Tensor, batch_size: int, device) -> Tensor:
    """``model`` on ``pixels`` in chunks of ``batch_size`` on ``device``, without gradients; the
    outputs ([B] or [B, D]) on the CPU, empty when there are no pixels."""
    out = [model(chunk.to(device)).float().cpu() for chunk in pixels.split(batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


class ImageScoreOracle:
    """Labels = ``scorer(pixels)`` (+ noise): ``scorer`` maps [B, C, H, W] in [0, 1] to [B]."""

    def __init__(self, scorer: nn.Module, noise_std: float = 0.0, seed: int = 0, batch_size: int = 64,
                 device: str | None = None):
        if noise_std < 0:
            raise ValueError(f"oracle.noise_std must be >= 0, got {noise_std}")
        self.scorer = scorer.eval().requires_grad_(False)
        self.noise_std, self.batch_size = float(noise_std), int(batch_size)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.seed = int(seed)
        self.load: Callable[[Sequence[str]], tuple[Tensor, Tensor]] | None = None

    def bind(self, domain) -> "ImageScoreOracle":
        """Read designs through ``domain.load_pixels`` (the run folder's images)."""
        self.load = domain.load_pixels
        return self

    @torch.no_grad()
    def score_pixels(self, pixels: Tensor) -> np.ndarray:
        self.scorer.to(self.device)
        return batched(self.scorer, pixels, self.batch_size, self.device).numpy().astype(np.float64)

    def noise(self, design: str) -> float:
        """A standard normal draw that depends only on (``seed``, ``design``)."""
        key = hashlib.sha256(f"{self.seed}\n{design}".encode()).digest()
        return float(np.random.default_rng(int.from_bytes(key[:8], "little")).standard_normal())

    def __call__(self, designs: Sequence[str]) -> list[float]:
        if self.load is None:
            raise RuntimeError("an image oracle reads the run's image files: bind it to the domain first "
                               "(oracle.bind(domain); seiko's runs do this)")
        pixels, ok = self.load(list(designs))
        values = np.full(len(designs), np.nan)
        if ok.any():
            scores = self.score_pixels(pixels[ok])
            if self.noise_std > 0:
                kept = [d for d, good in zip(designs, ok.tolist()) if good]
                scores = scores + self.noise_std * np.array([self.noise(d) for d in kept])
            values[ok.numpy()] = scores
        return values.tolist()
