"""The CPU image default's frozen scorers, trained in-project, and its oracle.

One small CNN, trained by ``seiko.image.pretrain`` on the train split of the shipped digits
(plus generated non-digits: noise, blobs, flat and inverted images as an eleventh class), gives:

* ``embedder``: its penultimate layer, L2-normalised ([B, 64]) -- the CPU stand-in for the CLIP
  image embedding on which seiko's reward model is fitted. It is trained with an auxiliary head
  that predicts the ink coverage, so the reward is readable from it (as aesthetics are from CLIP).
* ``quality``: its largest digit-class probability ([B] in [0, 1]) -- how clearly the image is a
  handwritten digit at all; the stand-in for "the image stays natural", which the KL terms protect.
* ``reward``: the ink coverage ([B] in [0, 1]: the mean brightness of the strokes on the dark
  background, i.e. how bold the digit is) -- the oracle's score. Computed from the pixels, not
  learned, so a user can read it; bolder digits score higher, but past a point the way up is to
  smear ink into blobs that are no digit at all, which the quality measure sees: the trade-off
  that the aesthetic score and KL regularisation have on Stable Diffusion.

All three take pixels [B, C, H, W] floats in [0, 1] (C = 1 or 3; other sizes are resized to
16x16), are frozen and differentiable in the pixels.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from torch import Tensor, nn
from torch.nn import functional as F

import seiko
from seiko.image.oracles import ImageScoreOracle

ASSET_DIR = Path(seiko.__file__).parent / "assets" / "image_digits"
SCORER_DIR = "scorer"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def _gray16(pixels: Tensor, size: int) -> Tensor:
    """[B, C, H, W] in [0, 1] -> [B, 1, size, size]: channels averaged, resized when not ``size``."""
    if pixels.dim() != 4:
        raise ValueError(f"pixels must be [B, C, H, W], got shape {tuple(pixels.shape)}")
    x = pixels.float()
    if x.shape[1] != 1:
        x = x.mean(1, keepdim=True)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


class DigitNet(nn.Module):
    """A small CNN: 10 digit classes + 1 'not a digit' class, a 64-d embedding, an ink head."""

    def __init__(self, image_size: int = 16, width: int = 32, embed_dim: int = 64, num_classes: int = 10):
        super().__init__()
        self.image_size, self.num_classes = image_size, num_classes
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.SiLU(), nn.Conv2d(w, w, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.SiLU(), nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.SiLU(),
            nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(2 * w * (image_size // 4) ** 2, embed_dim), nn.SiLU())
        self.classify = nn.Linear(embed_dim, num_classes + 1)  # the last class: not a digit
        self.ink = nn.Linear(embed_dim, 1)  # auxiliary: the ink coverage from the (normalised) embedding

    def embed(self, pixels: Tensor) -> Tensor:
        x = _gray16(pixels, self.image_size)
        return F.normalize(self.features(x * 2 - 1), dim=-1)

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(embedding [B, D] unit-norm, logits [B, 11], predicted ink [B])."""
        x = _gray16(pixels, self.image_size)
        h = self.features(x * 2 - 1)
        e = F.normalize(h, dim=-1)
        return e, self.classify(h), self.ink(e).squeeze(-1)


class Embedder(nn.Module):
    """Pixels -> the CNN's penultimate features, L2-normalised [B, D]."""

    def __init__(self, net: DigitNet):
        super().__init__()
        self.net = net

    def forward(self, pixels: Tensor) -> Tensor:
        return self.net.embed(pixels)


class DigitQuality(nn.Module):
    """Pixels -> the largest digit-class probability [B] in [0, 1] (low for non-digits and for
    images that are no one digit clearly)."""

    def __init__(self, net: DigitNet):
        super().__init__()
        self.net = net

    def probabilities(self, pixels: Tensor) -> Tensor:
        """[B, 10]: the softmax over 11 classes, less the 'not a digit' one."""
        return self.net(pixels)[1].softmax(-1)[:, : self.net.num_classes]

    def forward(self, pixels: Tensor) -> Tensor:
        return self.probabilities(pixels).max(-1).values

    def predict(self, pixels: Tensor) -> Tensor:
        """[B] the digit class each image most looks like."""
        return self.probabilities(pixels).argmax(-1)


class InkReward(nn.Module):
    """Pixels -> ink coverage [B] in [0, 1]: the mean gray level (ink is bright on a dark
    background), so bolder strokes score higher. No weights; differentiable."""

    def forward(self, pixels: Tensor) -> Tensor:
        if pixels.dim() != 4:
            raise ValueError(f"pixels must be [B, C, H, W], got shape {tuple(pixels.shape)}")
        return pixels.float().clamp(0, 1).mean(dim=(1, 2, 3))


class Scorer(NamedTuple):
    embedder: nn.Module
    quality: nn.Module
    reward: nn.Module


def save_scorer(net: DigitNet, folder: str | Path, extra: dict | None = None) -> Path:
    """``folder/model.safetensors`` + ``folder/config.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(folder / WEIGHTS))
    config = {"image_size": net.image_size, "width": net.features[0].out_channels,
              "embed_dim": net.classify.in_features, "num_classes": net.num_classes, "reward": "ink_coverage",
              **(extra or {})}
    (folder / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return folder


def load_scorer(folder: str | Path | None = None) -> Scorer:
    """(embedder, quality, reward), frozen, in eval mode, from ``folder`` (an asset folder holding
    ``scorer/``, or the ``scorer/`` folder itself); None: the committed asset folder."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else ASSET_DIR
    if (folder / SCORER_DIR / CONFIG).is_file():
        folder = folder / SCORER_DIR
    if not (folder / CONFIG).is_file():
        raise FileNotFoundError(f"no digit scorer in {folder} (expected {CONFIG} and {WEIGHTS})")
    config = json.loads((folder / CONFIG).read_text())
    net = DigitNet(image_size=int(config["image_size"]), width=int(config["width"]),
                   embed_dim=int(config["embed_dim"]), num_classes=int(config["num_classes"]))
    net.load_state_dict(load_file(str(folder / WEIGHTS)))
    net.eval().requires_grad_(False)
    modules = Scorer(Embedder(net), DigitQuality(net), InkReward())
    for module in modules:
        module.eval().requires_grad_(False)
    return modules


class DigitsOracle(ImageScoreOracle):
    """The CPU image default's oracle: the ink coverage of each image (+ Gaussian noise of
    ``noise_std``); NaN for a missing or changed file. ``folder`` None: the committed assets."""

    def __init__(self, folder: str | Path | None = None, noise_std: float = 0.0, seed: int = 0,
                 batch_size: int = 256, device: str | None = None):
        self.folder = Path(folder) if folder is not None else ASSET_DIR
        super().__init__(load_scorer(self.folder).reward, noise_std=noise_std, seed=seed, batch_size=batch_size,
                         device=device or "cpu")
