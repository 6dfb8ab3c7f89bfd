"""The LAION aesthetic predictor v2 and the paper's aesthetic oracle.

The predictor (``sac+logos+ava1-l14-linearMSE.pth``, from
github.com/christophschuhmann/improved-aesthetic-predictor) is an MLP of five linear layers
with dropout and no activations, on L2-normalised CLIP ViT-L/14 image embeddings: it is linear
in the embedding, and its scores run from about 1 to 10. ``AestheticOracle`` scores the
ledger's PNG files with it (plus Gaussian noise of std ``noise_std``: 0.1 in the paper).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from seiko.config import ConfigError
from seiko.image.clip import OPEN_CLIP_ALIASES, ClipImageEmbedder, _one_line
from seiko.image.oracles import ImageScoreOracle

# TRL's copy of the LAION ViT-L/14 predictor on the Hugging Face hub (the file DDPO uses)
LAION_PREDICTOR = "trl-lib/ddpo-aesthetic-predictor/aesthetic-model.pth"
LAION_CLIP = "openai/clip-vit-large-patch14"
PREDICTOR_KEYS = tuple(f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias"))


class AestheticMLP(nn.Module):
    """LAION's layout: ``layers.{0,2,4,6,7}`` are the linear layers (d -> 1024 -> 128 -> 64 -> 16 -> 1)."""

    def __init__(self, input_dim: int = 768):
        super().__init__()
        self.input_dim = int(input_dim)
        self.layers = nn.Sequential(
            nn.Linear(self.input_dim, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeds: Tensor) -> Tensor:
        """[B, d] -> [B, 1]."""
        return self.layers(embeds)


def _resolve(path_or_hub_file: str | Path, local_files_only: bool, cache_dir: str | None) -> Path:
    """A local file as is; otherwise "owner/repo/filename" through the hub (or its cache)."""
    text = str(path_or_hub_file)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    parts = text.split("/")
    local_looking = (text.startswith(("/", "./", "../", "~")) or len(parts) < 3 or path.exists()
                     or any(p == "" for p in parts))
    if local_looking:
        raise ConfigError(f"oracle.predictor: no file {text!r} (give a local .pth file or a hub reference "
                          f"owner/repo/filename, e.g. {LAION_PREDICTOR})")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id, filename, local_files_only=local_files_only, cache_dir=cache_dir))
    except Exception as err:  # offline, no such repo or file
        raise ConfigError(f"oracle.predictor: no local file {text!r}, and {filename!r} from the hub repo "
                          f"{repo_id!r} could not be had ({_one_line(err)}); give a local path to the "
                          f"predictor's .pth file") from None


def load_aesthetic_mlp(path_or_hub_file: str | Path = LAION_PREDICTOR, local_files_only: bool = False,
                       cache_dir: str | None = None) -> AestheticMLP:
    """An ``AestheticMLP`` from a LAION-format state dict: a local file, or "owner/repo/filename" on
    the hub. The input width is read from the file (768 for the ViT-L/14 predictor)."""
    path = _resolve(path_or_hub_file, local_files_only, cache_dir)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # the LAION file was saved on CUDA
    except Exception as err:
        raise ConfigError(f"oracle.predictor: {str(path)!r} is not a torch state dict ({_one_line(err)})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    keys = set(state) if isinstance(state, dict) else set()
    if keys != set(PREDICTOR_KEYS):
        got = sorted(keys)[:12] if keys else type(state).__name__
        raise ConfigError(f"oracle.predictor: {str(path)!r} is not a LAION aesthetic predictor: expected the keys "
                          f"{', '.join(PREDICTOR_KEYS)}, got {got}")
    weight = state["layers.0.weight"]
    if weight.ndim != 2:
        raise ConfigError(f"oracle.predictor: {str(path)!r}: layers.0.weight must be 2-d, got {tuple(weight.shape)}")
    mlp = AestheticMLP(input_dim=weight.shape[1])
    try:
        mlp.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as err:  # shapes other than 1024/128/64/16/1
        raise ConfigError(f"oracle.predictor: {str(path)!r} has the LAION keys but other shapes "
                          f"({_one_line(err)})") from None
    return mlp.eval()


class AestheticScorer(nn.Module):
    """pixels [B, C, H, W] in [0, 1] -> aesthetic scores [B]; frozen, differentiable in the pixels."""

    def __init__(self, embedder: nn.Module, mlp: AestheticMLP):
        super().__init__()
        dim = getattr(embedder, "embed_dim", None)
        if dim is not None and dim != mlp.input_dim:
            raise ConfigError(f"oracle.predictor takes {mlp.input_dim}-d embeddings but oracle.clip gives {dim}-d "
                              f"(the LAION predictor needs CLIP ViT-L/14, 768-d)")
        self.embedder, self.mlp = embedder, mlp
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "AestheticScorer":
        """Frozen: a parent's ``.train()`` leaves the predictor's dropout off."""
        return super().train(False)

    def embed(self, pixels: Tensor) -> Tensor:
        return self.embedder(pixels)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.mlp(self.embedder(pixels)).squeeze(-1)


def build_embedder(clip: str = LAION_CLIP, backend: str = "transformers",
                   local_files_only: bool = False) -> ClipImageEmbedder:
    """``oracle.clip`` through ``oracle.backend``. For open_clip, ``clip`` is "MODEL" or
    "MODEL:PRETRAINED" (e.g. "ViT-L-14:openai"); the transformers id of ViT-L/14 also works."""
    if backend == "transformers":
        return ClipImageEmbedder.from_transformers(clip, local_files_only=local_files_only)
    if backend == "open_clip":
        if clip in OPEN_CLIP_ALIASES:
            name, pretrained = OPEN_CLIP_ALIASES[clip]
        elif ":" in clip and not clip.startswith("hf-hub:"):
            name, pretrained = clip.rsplit(":", 1)
        else:
            name, pretrained = clip, ("openai" if not clip.startswith("hf-hub:") else None)
        return ClipImageEmbedder.from_open_clip(name, pretrained)
    raise ConfigError(f"oracle.backend must be transformers or open_clip, got {backend!r}")


class AestheticOracle(ImageScoreOracle):
    """The paper's oracle: LAION aesthetic score of the design's image (+ N(0, noise_std²) noise)."""

    def __init__(self, clip: str = LAION_CLIP, predictor: str = LAION_PREDICTOR, backend: str = "transformers",
                 noise_std: float = 0.0, seed: int = 0, batch_size: int = 64, local_files_only: bool = False,
                 device: str | None = None):
        mlp = load_aesthetic_mlp(predictor, local_files_only=local_files_only)
        embedder = build_embedder(str(clip), backend, local_files_only=local_files_only)
        super().__init__(AestheticScorer(embedder, mlp), noise_std=noise_std, seed=seed, batch_size=batch_size,
                         device=device)

    @classmethod
    def from_parts(cls, embedder: nn.Module, mlp: AestheticMLP, noise_std: float = 0.0, seed: int = 0,
                   batch_size: int = 64, device: str | None = None) -> "AestheticOracle":
        """The oracle on parts already made (e.g. ``ClipImageEmbedder.tiny()`` and a small MLP)."""
        oracle = cls.__new__(cls)
        ImageScoreOracle.__init__(oracle, AestheticScorer(embedder, mlp), noise_std=noise_std, seed=seed,
                                  batch_size=batch_size, device=device)
        return oracle
