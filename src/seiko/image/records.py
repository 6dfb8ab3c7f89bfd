"""How an image design lives in the ledger: a small JSON record, never pixels.

A record names the PNG file (relative to the run's folder, so a run folder can be moved),
its SHA-256 (a file changed after it was labelled is caught, not silently re-scored), the
prompt it was drawn for and the seed of its initial noise. The file is content-addressed
(``images/<first 16 hex of the hash>.png``): the same image is stored once.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

IMAGE_DIR = "images"


@dataclass(frozen=True)
class ImageRecord:
    image: str  # path of the PNG, relative to the run folder
    sha256: str
    prompt: str
    seed: int

    def to_text(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_text(cls, text: str) -> "ImageRecord":
        try:
            data = json.loads(text)
            return cls(image=str(data["image"]), sha256=str(data["sha256"]), prompt=str(data["prompt"]),
                       seed=int(data["seed"]))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"design: not an image record ({type(err).__name__}: {err}): {text[:80]!r}") from None


def to_uint8(pixels: Tensor) -> np.ndarray:
    """[B, C, H, W] floats in [0, 1] -> [B, H, W, C] uint8 (C = 1 or 3)."""
    array = (pixels.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return array


def tile(images: np.ndarray, columns: int, gap: int, background: int = 0, border: int = 0) -> np.ndarray:
    """uint8 images [B, H, W, C] in one picture, ``columns`` to a row, ``gap`` pixels apart (and a
    ``border`` before the first row and column), on ``background``."""
    count, h, w, channels = images.shape
    rows = -(-count // columns)
    grid = np.full((border + rows * (h + gap), border + columns * (w + gap), channels), background, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = border + r * (h + gap), border + c * (w + gap)
        grid[top:top + h, left:left + w] = image
    return grid


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def save_images(pixels: Tensor, prompts: Sequence[str], seeds: Sequence[int], root: str | Path) -> list[str]:
    """Write each image as a PNG under ``root/images`` and return the records as ledger text."""
    root = Path(root)
    (root / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    out = []
    for image, prompt, seed in zip(to_uint8(pixels), prompts, seeds):
        data = png_bytes(image)
        digest = hashlib.sha256(data).hexdigest()
        relative = f"{IMAGE_DIR}/{digest[:16]}.png"
        path = root / relative
        if not path.exists():
            path.write_bytes(data)
        out.append(ImageRecord(relative, digest, str(prompt), int(seed)).to_text())
    return out


def read_image(record: ImageRecord, root: str | Path) -> np.ndarray | None:
    """The record's image as uint8 [H, W, C], or None when the file is missing or was changed."""
    from PIL import Image

    path = Path(root) / record.image
    if not path.is_file():
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != record.sha256:
        return None
    array = np.asarray(Image.open(io.BytesIO(data)))
    return array[..., None] if array.ndim == 2 else array[..., :3]


def load_pixels(designs: Sequence[str], root: str | Path, channels: int) -> tuple[Tensor, Tensor]:
    """Ledger designs -> (pixels [B, C, H, W] in [0, 1], ok [B] bool); a missing or changed file
    gives zeros and ok False (it is then infeasible, never a crash)."""
    images, ok = [], []
    for text in designs:
        try:
            image = read_image(ImageRecord.from_text(text), root)
        except ValueError:
            image = None
        ok.append(image is not None)
        images.append(image)
    shape = next((im.shape for im in images if im is not None), None)
    if shape is None:
        return torch.zeros(len(designs), channels, 1, 1), torch.zeros(len(designs), dtype=torch.bool)
    stacked = np.stack([im if im is not None and im.shape == shape else np.zeros(shape, np.uint8) for im in images])
    ok = [o and im.shape == shape for o, im in zip(ok, images)]
    pixels = torch.from_numpy(stacked).permute(0, 3, 1, 2).float() / 255.0
    if pixels.shape[1] != channels:
        pixels = pixels.mean(1, keepdim=True).expand(-1, channels, -1, -1) if channels in (1, 3) else pixels
    return pixels.contiguous(), torch.tensor(ok, dtype=torch.bool)
