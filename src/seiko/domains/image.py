"""Images drawn by a text-conditioned latent (or pixel) diffusion model: Stable Diffusion, or
the project's small CPU stand-in, through the same code.

Designs are PNG files in the run folder, named in the ledger by a record (path, SHA-256, prompt,
seed; ``seiko.image.records``), never pixels. The reward model reads image embeddings (CLIP's
for SD): ``encode`` turns ledger designs into those embeddings (cached by the file's hash),
``features`` turns the fine-tuner's final latents into the same embeddings differentiably
(the VAE's decoder, then the embedder), so a reward fitted on labelled images is the one the
policy is pushed up. Feasible = the file is there unchanged and, with a ``quality`` model, the
image scores at least ``quality_threshold`` on it (a digit still legible, a photo still one).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from seiko.diffusion.ddim import Conditioning
from seiko.domains.base import Domain, Oracle
from seiko.image.oracles import batched
from seiko.image.records import ImageRecord, load_pixels, save_images, tile, to_uint8


class ImageDomain(Domain):
    name = "image"
    vocab_size = 0  # not a token domain: edits, genetic and holo_ga baselines are refused by build
    length = 0

    def __init__(self, model: str | None, embedder: nn.Module, oracle=None, quality: nn.Module | None = None,
                 quality_threshold: float = 0.5, channels: int = 3, vae: bool = True,
                 local_files_only: bool = False, batch_size: int = 32):
        from seiko.image.components import load_vae

        self.embedder = embedder.eval().requires_grad_(False)
        self.quality = quality.eval().requires_grad_(False) if quality is not None else None
        self.quality_threshold, self.channels, self.batch_size = float(quality_threshold), int(channels), batch_size
        self.vae = load_vae(model, local_files_only) if (vae and model is not None) else None
        self.vae_scale = float(self.vae.config.scaling_factor) if self.vae is not None else 1.0
        if self.vae is not None:
            self.vae.requires_grad_(False).eval()
        self.oracle = oracle
        self.root: Path | None = None
        self._read: dict[str, tuple[Tensor, bool, float]] = {}  # design -> (embedding, file ok, quality)

    # ------------------------------------------------------------------ files
    def attach(self, run_dir) -> None:
        self.root = Path(run_dir)

    def _root(self) -> Path:
        if self.root is None:
            raise RuntimeError("an image domain stores its designs in the run folder: attach(run_dir) first")
        return self.root

    def load_pixels(self, designs: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Ledger designs -> (pixels [B, C, H, W] in [0, 1], ok [B]); what image oracles read."""
        return load_pixels(designs, self._root(), self.channels)

    def export_columns(self, ids, designs, directory) -> dict[str, list[str]]:
        """For a human rater: each pending image copied to ``directory/<id>.png``, and the CSV's
        ``image`` (that file, relative to the CSV) and ``prompt`` columns."""
        import shutil

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        images, prompts = [], []
        for id_, record in zip(ids, self.records(designs)):
            target = directory / f"{id_}.png"
            shutil.copyfile(self._root() / record.image, target)
            images.append(f"{directory.name}/{target.name}")
            prompts.append(record.prompt)
        return {"image": images, "prompt": prompts}

    # ------------------------------------------------------------------ latents <-> pixels
    def to_pixels(self, latents: Tensor) -> Tensor:
        """Final latents -> pixels in [0, 1], differentiably (the VAE's decoder, or none)."""
        if self.vae is None:
            return ((latents + 1) / 2).clamp(0, 1)
        self.vae.to(latents.device)
        images = self.vae.decode(latents.to(self.vae.dtype) / self.vae_scale).sample.float()
        return ((images + 1) / 2).clamp(0, 1)

    def decode(self, batch) -> list[str]:
        """An ``ImageBatch`` -> PNG files in the run folder and their ledger records."""
        pixels = torch.cat([self.to_pixels(chunk).detach().cpu() for chunk in batch.latents.split(self.batch_size)]) \
            if len(batch) else torch.zeros(0, self.channels, 1, 1)
        with torch.no_grad():
            return save_images(pixels, batch.prompts, batch.seeds, self._root())

    def _assess(self, designs: Sequence[str]) -> list[tuple[Tensor, bool, float]]:
        """(embedding, file ok, quality) of each design, its file read and its models run once
        (cached by the record, which names the file's hash): the loop encodes, screens and
        measures the same designs. A missing or changed file embeds as zeros and is not ok."""
        todo = [d for d in dict.fromkeys(designs) if d not in self._read]
        if todo:
            pixels, ok = self.load_pixels(todo)
            emb = self._batched(self.embedder, pixels)
            emb[~ok] = 0.0
            quality = self._batched(self.quality, pixels) if self.quality is not None else torch.ones(len(todo))
            self._read.update(zip(todo, zip(emb, ok.tolist(), quality.tolist())))
        return [self._read[d] for d in designs]

    def _batched(self, model: nn.Module, pixels: Tensor) -> Tensor:
        return batched(model, pixels, self.batch_size, next(model.parameters()).device)

    def encode(self, designs: Sequence[str]) -> Tensor:
        """Ledger designs -> their embeddings [B, D] (what the reward model reads)."""
        if not designs:
            return torch.zeros(0, 0)
        return torch.stack([emb for emb, _, _ in self._assess(designs)])

    def embed(self, designs: Tensor) -> Tensor:
        return designs  # ``encode`` already gave embeddings

    def chain_inputs(self, designs: Sequence[str]) -> Conditioning:
        """Each record's (prompt, seed): with the policy that drew it, its whole trajectory."""
        recs = self.records(designs)
        return Conditioning([r.prompt for r in recs], [r.seed for r in recs])

    def features(self, latents: Tensor) -> Tensor:
        self.embedder.to(latents.device)
        return self.embedder(self.to_pixels(latents))

    # ------------------------------------------------------------------ feasibility and metrics
    def is_feasible(self, pixels: Tensor) -> Tensor:
        """Bool [B] for pixels [B, C, H, W] in [0, 1]: quality >= threshold (all, without a model)."""
        if self.quality is None:
            return torch.ones(pixels.shape[0], dtype=torch.bool)
        return self._batched(self.quality, pixels) >= self.quality_threshold

    def feasible_designs(self, designs: Sequence[str]) -> Tensor:
        """The file is there unchanged and, with a quality model, the image passes it."""
        return torch.tensor([ok and (self.quality is None or q >= self.quality_threshold)
                             for _, ok, q in self._assess(designs)], dtype=torch.bool)

    def metrics(self, designs: Sequence[str]) -> dict[str, float]:
        if self.quality is None or not designs:
            return {}
        quality = [q for _, ok, q in self._assess(designs) if ok]
        return {"quality": float(np.mean(quality)) if quality else float("nan")}

    def diversity(self, designs: Sequence[str]) -> float:
        """Mean pairwise cosine distance of the images' embeddings."""
        emb = self.encode(designs)
        if len(emb) < 2:
            return float("nan")
        emb = torch.nn.functional.normalize(emb, dim=-1)
        sim = emb @ emb.T
        n = len(emb)
        return float((1 - (sim.sum() - sim.diagonal().sum()) / (n * (n - 1))))

    def render(self, designs: Sequence[str], legends: Sequence[str]):
        """The designs as one grid image (uint8 [H, W, 3]), four to a row."""
        if not designs:
            return None
        pixels, ok = self.load_pixels(designs)
        images = to_uint8(pixels[ok])
        if len(images) == 0:
            return None
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        return tile(images, columns=min(4, len(images)), gap=2, background=255)

    # ------------------------------------------------------------------ the rest of the interface
    def pretraining_data(self, num, generator=None):
        raise NotImplementedError("the image domain's model is pretrained outside the run "
                                  "(its own folder, or python -m seiko.image.pretrain)")

    def default_oracle(self) -> Oracle:
        if self.oracle is None:
            raise ValueError("oracle: the image domain has no oracle of its own here; choose one "
                             "(oracle=aesthetic) or pass a callable")
        return self.oracle

    @staticmethod
    def records(designs: Sequence[str]) -> list[ImageRecord]:
        return [ImageRecord.from_text(d) for d in designs]
