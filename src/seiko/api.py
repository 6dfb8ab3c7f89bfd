"""The Python API: compose a config, build a loop (optionally with your own oracle), run rounds.

    from seiko.api import compose, build_loop, run
    cfg = compose(["strategy=ucb", "budget.per_round=[32,64]"])
    loop = build_loop(cfg, "outputs/notebook", oracle=my_assay)   # any callable designs -> values
    for r in range(len(loop.schedule)):
        print(loop.run_round(r))
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from seiko.build import build_loop
from seiko.cli_support import CONFIG_DIR
from seiko.config import validate
from seiko.oracles import AwaitingLabels
from seiko.outputs import plot_reward, write_summary


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """The config the CLI would build from these overrides (without Hydra's run directory)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    OmegaConf.resolve(cfg.domain)
    validate(cfg)
    return cfg


def run(cfg: DictConfig, out_dir: str | Path, oracle=None, overrides: Sequence[str] = ()) -> dict:
    """Run (or resume) every round, then write summary.json and reward_vs_queries.png."""
    out_dir = Path(out_dir)
    loop = build_loop(cfg, out_dir, oracle=oracle)
    status = "finished"
    try:
        loop.run()
    except AwaitingLabels:
        status = "awaiting_labels"
        raise
    except BaseException:
        status = "failed"  # the ledger keeps every label bought; resume=true carries on
        raise
    finally:
        extra = {"status": status, "domain": cfg.domain.name, "strategy": cfg.strategy.name,
                 "seed": cfg.seed, "overrides": list(overrides)}
        if loop.ledger.num_labelled():
            plot_reward(loop.ledger, loop.history, out_dir / "reward_vs_queries.png",
                        title=f"{cfg.domain.name} / {cfg.strategy.name}")
        summary = write_summary(loop.ledger, loop.history, out_dir / "summary.json", extra)
        if loop.writer is not None:
            loop.writer.close()
        loop.ledger.close()
    return summary


__all__ = ["compose", "build_loop", "run"]
