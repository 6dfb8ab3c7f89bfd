"""Policy checkpoints as safetensors, with the config that rebuilds the network in its metadata.

Nothing is unpickled: weights are plain tensors, and the network is rebuilt from a
``_target_`` that must name a class inside seiko, so loading a checkpoint never runs code
from the file.
"""
from __future__ import annotations

import json
from pathlib import Path

from hydra.utils import instantiate
from safetensors.torch import load_file, save_file
from torch import nn


class CheckpointError(Exception):
    pass


def save_policy(path: str | Path, denoiser: nn.Module, spec: dict) -> Path:
    """Write weights + ``spec`` (``{"denoiser": {_target_, ...}, "family": {...}, ...}``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a denoiser built with its pretrained weights (a LoRA UNet) saves only what it trains
    weights = getattr(denoiser, "checkpoint_state_dict", denoiser.state_dict)()
    state = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
    save_file(state, str(path), metadata={"seiko": json.dumps(spec)})
    return path


def read_spec(path: str | Path) -> dict:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if "seiko" not in meta:
        raise CheckpointError(f"{path} is not a seiko policy checkpoint (no 'seiko' metadata)")
    return json.loads(meta["seiko"])


def _targets(cfg):
    """Every ``_target_`` in a nested spec (a wrapped policy names its inner networks too)."""
    if isinstance(cfg, dict):
        if "_target_" in cfg:
            yield cfg["_target_"]
        for value in cfg.values():
            yield from _targets(value)
    elif isinstance(cfg, list):
        for value in cfg:
            yield from _targets(value)


def _build(cfg: dict):
    for target in [cfg.get("_target_", ""), *_targets(cfg)]:
        if not target.startswith("seiko."):
            raise CheckpointError(f"refusing to build {target!r} from a checkpoint: only seiko classes")
    return instantiate(cfg)


def load_weights(denoiser: nn.Module, path: str | Path) -> nn.Module:
    """The checkpoint's weights into ``denoiser`` (only its adapter, for one that saves only that)."""
    state = load_file(str(path))
    getattr(denoiser, "load_checkpoint_state_dict", denoiser.load_state_dict)(state)
    return denoiser


def load_policy(path: str | Path):
    """Returns (denoiser, family, spec)."""
    spec = read_spec(path)
    denoiser, family = _build(spec["denoiser"]), _build(spec["family"])
    load_weights(denoiser, path)
    return denoiser, family, spec
