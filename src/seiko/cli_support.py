"""Small pieces shared by the command-line entry points: where configs live, trainers, resolvers."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def _config_dir() -> Path:
    packaged = Path(str(resources.files("seiko"))) / "configs"  # wheel install
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "configs"


CONFIG_DIR = _config_dir()
ASSET_DIR = Path(__file__).resolve().parent / "assets"


def motif_gap(dim: int, num_motifs: int, least: int) -> int:
    """The longest gap between two positions of one Ehrlich motif (a motif spans at most
    dim / num_motifs positions), but at least ``least``: the pair rewards' reach follows the
    length, and the length-32 benchmark keeps the 15 it was tuned and committed with. A bad
    num_motifs is left to the domain's own one-line check."""
    return max(int(least), int(dim) // max(int(num_motifs), 1) - 1)


if not OmegaConf.has_resolver("seiko_asset"):
    OmegaConf.register_new_resolver("seiko_asset", lambda name: str(ASSET_DIR / name))
if not OmegaConf.has_resolver("seiko_motif_gap"):
    OmegaConf.register_new_resolver("seiko_motif_gap", motif_gap)


def quiet_lightning() -> None:
    """Keep Lightning's per-fit banners (devices, tips) out of a run's output; warnings stay."""
    import logging
    import warnings

    import lightning.pytorch  # noqa: F401  (it sets its loggers' level on import: import it first)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|log_every_n_steps|does not have many workers|eval mode|run with no optimizer).*")  # the last: manual fits (SparseLinearRewardModel)


def use_spawn_safe_sharing() -> None:
    """Share tensors with spawned DDP workers through files, not file descriptors.

    Passing descriptors failed here ("unable to resize file ... Invalid argument") when the
    workers unpickled the fine-tuner; the file-system strategy works everywhere.
    """
    import torch.multiprocessing

    torch.multiprocessing.set_sharing_strategy("file_system")


def build_trainer(trainer_cfg: DictConfig, logger_dir: str | None = None, name: str = "", **overrides):
    """A fresh Lightning Trainer from the ``trainer`` config group for one fit.

    Every optimisation (pretraining, reward fit, fine-tuning) goes through here, so swapping
    ``trainer=cpu|gpu|ddp|fsdp`` changes all of them without code changes.
    """
    import lightning as L  # noqa: F401  (cold import is slow; only runs that train pay it)
    from hydra.utils import instantiate

    logger = False
    if logger_dir is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        logger = TensorBoardLogger(logger_dir, name=name, version="")
    if OmegaConf.select(trainer_cfg, "strategy.start_method") == "spawn":
        use_spawn_safe_sharing()
    return instantiate(trainer_cfg, logger=logger, **overrides)
