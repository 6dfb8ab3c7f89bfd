"""The CPU image default's data: scikit-learn's handwritten digits, which ship inside its wheel.

1,797 grayscale digits (UCI optdigits: 43 writers), 8x8 with 17 gray levels, upsampled
bilinearly to 16x16 and scaled to [0, 1] (ink is bright, background dark, as in the source).
Nothing is downloaded. The train / held-out split is a fixed permutation (``SPLIT_SEED``), so
the pretraining, the scorer and the tests see the same held-out images on every machine.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

IMAGE_SIZE = 16
CHANNELS = 1
NUM_CLASSES = 10
SPLIT_SEED = 0
HELD_OUT = 297  # 1,500 train, 297 held out

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_PROMPTS = tuple(f"a handwritten digit {word}" for word in DIGIT_WORDS)


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)


def load_digits_images(size: int = IMAGE_SIZE) -> tuple[Tensor, Tensor]:
    """All 1,797 digits as (pixels [N, 1, size, size] floats in [0, 1], labels [N] int64 in 0..9)."""
    images, labels = _raw()
    pixels = torch.from_numpy(images / 16.0).unsqueeze(1)
    if size != 8:
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    return pixels.clamp(0, 1).contiguous(), torch.from_numpy(labels)


def split_indices(seed: int = SPLIT_SEED, held_out: int = HELD_OUT) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of the 1,797 digits: a fixed permutation, disjoint, covering all."""
    order = np.random.default_rng(seed).permutation(len(_raw()[1]))
    return np.sort(order[held_out:]), np.sort(order[:held_out])


def digits_split(split: str = "train", size: int = IMAGE_SIZE) -> tuple[Tensor, Tensor]:
    """The ``train`` (1,500) or ``held_out`` (297) digits: (pixels [N, 1, size, size] in [0, 1], labels [N])."""
    if split not in ("train", "held_out"):
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
    pixels, labels = load_digits_images(size)
    index = torch.from_numpy(split_indices()[0 if split == "train" else 1])
    return pixels[index], labels[index]


def prompt_of(labels) -> list[str]:
    """The prompt of each class label."""
    return [DIGIT_PROMPTS[int(y)] for y in labels]


def label_of(prompt: str) -> int | None:
    """The digit a prompt asks for (its class), or None when it names none of the ten."""
    words = prompt.lower().split()
    found = [i for i, word in enumerate(DIGIT_WORDS) if word in words]
    return found[-1] if found else None
