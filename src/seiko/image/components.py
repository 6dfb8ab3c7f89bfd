"""Stable Diffusion's parts: loaded from a folder or hub id, or built small in code.

Both paths give the same diffusers and transformers classes (UNet2DConditionModel,
AutoencoderKL, CLIPTextModel, CLIPTokenizer, DDIMScheduler), so the CPU default and the tests
run the code that drives Stable Diffusion v1.5, only smaller. Nothing here downloads unless
``load_parts`` is given a hub id on a machine that can reach the hub.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from seiko.config import ConfigError

# Stable Diffusion v1.5's scheduler (its scheduler_config.json): what `tiny_parts` uses too.
SD_SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "clip_sample": False, "set_alpha_to_one": False,
                "steps_offset": 1, "prediction_type": "epsilon"}


@dataclass
class Parts:
    unet: nn.Module
    vae: nn.Module | None  # None: the diffusion runs on pixels (latents are images)
    text_encoder: nn.Module
    tokenizer: object
    scheduler: object

    @property
    def vae_scale(self) -> float:
        return float(self.vae.config.scaling_factor) if self.vae is not None else 1.0


def quiet() -> None:
    """No per-file progress bars from diffusers and transformers while loading (a run's log is
    one display per round)."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()


def load_parts(model: str, local_files_only: bool = False, vae: bool = True) -> Parts:
    """Every part from a diffusers folder (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
    ``scheduler/``) or a hub id; a model that cannot be had is one line naming ``domain.model``."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    quiet()
    where = Path(model).expanduser()
    source = str(where) if where.exists() else model
    if where.exists() and not (where / "unet").is_dir():
        raise ConfigError(f"domain.model: {model} is a folder without unet/ (a diffusers Stable Diffusion folder "
                          f"has unet/, vae/, text_encoder/, tokenizer/, scheduler/)")
    try:
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", local_files_only=local_files_only)
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", local_files_only=local_files_only)
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", local_files_only=local_files_only)
        scheduler = DDIMScheduler.from_pretrained(source, subfolder="scheduler", local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())[:300]
        raise ConfigError(f"domain.model: cannot load Stable Diffusion from {model!r} (not a diffusers folder here, "
                          f"and the hub did not give it: {reason})") from err
    return Parts(unet, load_vae(model, local_files_only) if vae else None, text_encoder, tokenizer, scheduler)


def save_parts(parts: Parts, directory: str | Path) -> Path:
    """The diffusers folder layout that ``load_parts`` (and ``StableDiffusionPipeline``) read."""
    quiet()
    directory = Path(directory)
    parts.unet.save_pretrained(directory / "unet")
    if parts.vae is not None:
        parts.vae.save_pretrained(directory / "vae")
    parts.text_encoder.save_pretrained(directory / "text_encoder")
    parts.tokenizer.save_pretrained(directory / "tokenizer")
    parts.scheduler.save_pretrained(directory / "scheduler")
    return directory


# ---------------------------------------------------------------- a CLIP tokenizer built in code
def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (GPT-2's) reversible map of bytes to printable characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def build_tokenizer(words: Iterable[str], directory: str | Path | None = None, max_length: int = 77):
    """A real ``CLIPTokenizer`` whose BPE vocabulary is every byte plus each of ``words`` as one token.

    Any text tokenizes (unknown words fall back to byte pieces); the words of the prompts the
    model is meant for become single tokens, as common words are in CLIP's own vocabulary.
    """
    from transformers import CLIPTokenizer

    base = list(_bytes_to_unicode().values())
    vocab = base + [c + "</w>" for c in base]
    merges: list[str] = []
    seen_merges = set()
    for word in sorted({w.lower() for text in words for w in text.split() if w.isalpha()}):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merge = f"{current} {piece}"
            current = current + piece
            if merge not in seen_merges:
                seen_merges.add(merge)
                merges.append(merge)
                vocab.append(current)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    table = {token: i for i, token in enumerate(dict.fromkeys(vocab))}
    target = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="seiko-tokenizer-"))
    target.mkdir(parents=True, exist_ok=True)
    (target / "vocab.json").write_text(json.dumps(table))
    (target / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(str(target / "vocab.json"), str(target / "merges.txt"), model_max_length=max_length)


# ---------------------------------------------------------------- small parts, as diffusers' tests build them
def tiny_parts(words: Iterable[str] = ("a", "photo", "of", "cat", "dog"), seed: int = 0, sample_size: int = 16,
               channels: tuple[int, ...] = (32, 64), cross_attention_dim: int = 32, vae: bool = True,
               image_channels: int = 3, latent_channels: int = 4, text_layers: int = 2) -> Parts:
    """A Stable Diffusion in miniature (random weights): the shapes of diffusers' own pipeline
    tests. ``sample_size`` is the UNet's (latent) resolution; with ``vae`` the images are twice it."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(words)
    in_channels = latent_channels if vae else image_channels
    groups = min(32, channels[0])
    down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(channels) - 1)
    up = ("CrossAttnUpBlock2D",) * (len(channels) - 1) + ("UpBlock2D",)
    unet = UNet2DConditionModel(block_out_channels=tuple(channels), layers_per_block=1, sample_size=sample_size,
                                in_channels=in_channels, out_channels=in_channels, down_block_types=down,
                                up_block_types=up, cross_attention_dim=cross_attention_dim,
                                norm_num_groups=groups, attention_head_dim=4)
    autoencoder = None
    if vae:
        autoencoder = AutoencoderKL(block_out_channels=[32, 64], in_channels=image_channels,
                                    out_channels=image_channels, latent_channels=latent_channels,
                                    down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                                    norm_num_groups=32, sample_size=sample_size * 2)
    text_config = CLIPTextConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                 pad_token_id=tokenizer.pad_token_id, hidden_size=cross_attention_dim,
                                 intermediate_size=2 * cross_attention_dim, num_attention_heads=4,
                                 num_hidden_layers=text_layers, vocab_size=len(tokenizer),
                                 max_position_embeddings=tokenizer.model_max_length, projection_dim=cross_attention_dim)
    text_encoder = CLIPTextModel(text_config)
    return Parts(unet, autoencoder, text_encoder, tokenizer, DDIMScheduler(**SD_SCHEDULER))


def load_vae(model: str, local_files_only: bool = False):
    """The VAE of a diffusers folder or hub id (None when a folder has no ``vae/``: pixel space)."""
    from diffusers import AutoencoderKL

    quiet()
    where = Path(model).expanduser()
    if where.exists() and not (where / "vae").is_dir():
        return None
    try:
        return AutoencoderKL.from_pretrained(str(where) if where.exists() else model, subfolder="vae",
                                             local_files_only=local_files_only)
    except (OSError, ValueError) as err:
        raise ConfigError(f"domain.model: cannot load the VAE of {model!r} ({' '.join(str(err).split())[:300]})") from err
