"""The Python API: compose a config, build a loop (optionally with your own oracle), run rounds.

    from seiko.api import compose, build_loop, run
    cfg = compose(["strategy=ucb", "budget.per_round=[32,64]"])
    loop = build_loop(cfg, "outputs/notebook", oracle=my_assay)   # any callable designs -> values
    for r in range(len(loop.schedule)):
        print(loop.run_round(r))
"""
from __future__ import annotations

import json
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
        if loop.rank_zero:  # outputs are rank 0's to write; other ranks only join the fits
            _write_outputs(cfg, loop, out_dir, status, overrides)
        if loop.writer is not None:
            loop.writer.close()
        loop.ledger.close()
    return json.loads((out_dir / "summary.json").read_text()) if loop.rank_zero else {"status": status}


def _write_outputs(cfg: DictConfig, loop, out_dir: Path, status: str, overrides: Sequence[str]) -> None:
    if loop.ledger.num_labelled():
        plot_reward(loop.ledger, loop.history, out_dir / "reward_vs_queries.png",
                    title=f"{cfg.domain.name} / {cfg.strategy.name}")
    extra = {"status": status, "domain": cfg.domain.name, "strategy": cfg.strategy.name,
             "seed": cfg.seed, "overrides": list(overrides)}
    write_summary(loop.ledger, loop.history, out_dir / "summary.json", extra)


__all__ = ["compose", "build_loop", "run"]
