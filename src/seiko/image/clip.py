"""CLIP image embeddings that stay differentiable in the pixels.

The aesthetic oracle and the fine-tuner's reward both read L2-normalised CLIP image
embeddings; the fine-tuner backpropagates the reward through them into the diffusion sampler,
so the preprocessing here is plain torch (no PIL, no torchvision): resize with torch's
interpolation, then CLIP's mean and std.

Two backends give the same module: transformers' ``CLIPVisionModelWithProjection`` (the
default; it needs no torchvision) and open_clip (optional: ``import open_clip`` imports
torchvision, whose PyPI build fails beside CPU torch). ``ClipImageEmbedder.tiny`` builds a
small random CLIP vision tower in code, for tests and CPU runs; nothing here downloads unless
given a hub id on a machine that can reach the hub.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seiko.config import ConfigError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# transformers hub id -> (open_clip model name, pretrained tag) for the same weights
OPEN_CLIP_ALIASES = {"openai/clip-vit-large-patch14": ("ViT-L-14", "openai"),
                     "openai/clip-vit-base-patch32": ("ViT-B-32", "openai"),
                     "openai/clip-vit-base-patch16": ("ViT-B-16", "openai")}


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}"


def preprocess(pixels: Tensor, size: int = 224) -> Tensor:
    """[B, C, H, W] floats in [0, 1] (C = 1 is repeated to 3) -> CLIP's input [B, 3, size, size].

    Bicubic resize with antialiasing (as CLIP's own image processor, but on tensors, so the
    gradient reaches ``pixels``), then CLIP's per-channel mean and std."""
    if pixels.ndim != 4 or pixels.shape[1] not in (1, 3):
        raise ValueError(f"pixels must be [B, 1 or 3, H, W], got {tuple(pixels.shape)}")
    x = pixels if pixels.is_floating_point() else pixels.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class ClipImageEmbedder(nn.Module):
    """pixels [B, C, H, W] in [0, 1] -> L2-normalised CLIP image embeddings [B, D] (float32).

    The weights are frozen (and the module stays in eval mode), but the output is
    differentiable in the pixels."""

    def __init__(self, model: nn.Module, image_size: int, embed_dim: int, backend: str = "transformers"):
        super().__init__()
        if backend not in ("transformers", "open_clip"):
            raise ConfigError(f"oracle.backend must be transformers or open_clip, got {backend!r}")
        self.model, self.backend = model, backend
        self.image_size, self.embed_dim = int(image_size), int(embed_dim)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "ClipImageEmbedder":
        """Frozen: a parent's ``.train()`` leaves CLIP in eval mode."""
        return super().train(False)

    def forward(self, pixels: Tensor) -> Tensor:
        dtype = next(self.model.parameters()).dtype
        x = preprocess(pixels, self.image_size).to(dtype)
        if self.backend == "transformers":
            embeds = self.model(pixel_values=x).image_embeds
        else:
            embeds = self.model.encode_image(x)
        embeds = embeds.float()
        return embeds / torch.linalg.vector_norm(embeds, dim=-1, keepdim=True).clamp_min(1e-12)

    @classmethod
    def from_transformers(cls, name_or_path: str, local_files_only: bool = False) -> "ClipImageEmbedder":
        """transformers' ``CLIPVisionModelWithProjection`` (its ``image_embeds``) from a folder or hub id."""
        from transformers import AutoConfig, CLIPConfig, CLIPVisionConfig, CLIPVisionModelWithProjection

        name = str(name_or_path)
        try:
            config = AutoConfig.from_pretrained(name, local_files_only=local_files_only)
        except Exception as err:  # no folder, hub unreachable
            raise ConfigError(f"oracle.clip: cannot load the CLIP model {name!r} ({_one_line(err)}); give a local "
                              f"folder (save_pretrained) or a hub id on a machine that reaches the hub") from None
        if isinstance(config, CLIPConfig):  # a whole CLIP (text + vision): its vision tower and projection
            vision = config.vision_config
            vision.projection_dim = config.projection_dim  # the top level's, which sub-configs may not repeat
        elif isinstance(config, CLIPVisionConfig):
            vision = config
        else:
            raise ConfigError(f"oracle.clip: {name!r} is a {getattr(config, 'model_type', type(config).__name__)} "
                              f"model, not CLIP")
        try:
            model = CLIPVisionModelWithProjection.from_pretrained(name, config=vision,
                                                                  local_files_only=local_files_only)
        except Exception as err:  # missing or mismatched weights
            raise ConfigError(f"oracle.clip: cannot load the CLIP vision weights of {name!r} "
                              f"({_one_line(err)})") from None
        config = model.config
        return cls(model, image_size=config.image_size, embed_dim=config.projection_dim, backend="transformers")

    @classmethod
    def from_open_clip(cls, model_name: str = "ViT-L-14", pretrained: str = "openai") -> "ClipImageEmbedder":
        """An open_clip model's image tower (optional backend: open_clip imports torchvision)."""
        try:
            import open_clip
        except Exception as err:  # ImportError, or torchvision failing to import beside CPU torch
            raise ConfigError(f"oracle.backend=open_clip: open_clip does not import ({_one_line(err)}); it needs "
                              f"a torchvision that works with this torch; use oracle.backend=transformers "
                              f"(the same OpenAI CLIP weights, no torchvision)") from None
        try:
            model = open_clip.create_model(model_name, pretrained=pretrained)
        except Exception as err:
            raise ConfigError(f"oracle.clip: cannot load open_clip model {model_name!r} pretrained={pretrained!r} "
                              f"({_one_line(err)})") from None
        size = model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        dim = getattr(model.visual, "output_dim", None)
        if dim is None:
            with torch.no_grad():
                dim = model.encode_image(torch.zeros(1, 3, size, size)).shape[-1]
        return cls(model, image_size=size, embed_dim=dim, backend="open_clip")

    @classmethod
    def tiny(cls, seed: int = 0, image_size: int = 32, embed_dim: int = 32) -> "ClipImageEmbedder":
        """A small random CLIP vision tower built in code (same classes as ViT-L/14), for tests."""
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=image_size, patch_size=max(1, image_size // 4),
                                  projection_dim=embed_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIPVisionModelWithProjection(config)
        return cls(model, image_size=image_size, embed_dim=embed_dim, backend="transformers")
