"""Checks of a composed config that Hydra cannot make, each failing with one line naming the field."""
from __future__ import annotations

import re

from omegaconf import DictConfig, ListConfig


# reward.infeasible_value as a rule: k standard deviations of the feasible labels below the lowest
INFEASIBLE_RULE = re.compile(r"min-(\d+(?:\.\d*)?)std")


class ConfigError(ValueError):
    """A bad setting; the CLI prints its message as one line and exits with status 2."""


def _number(cfg: DictConfig, path: str, minimum: float, strict: bool = False, *,
            at_most: float | None = None, below: float | None = None, why: str = "") -> None:
    """A number >= minimum (> with ``strict``), and <= ``at_most`` or < ``below`` if given; ``why``
    says in the error what the bound means."""
    node = cfg
    for part in path.split("."):
        node = node.get(part) if isinstance(node, DictConfig) else None
    if node is None:
        return
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise ConfigError(f"{path} must be a number, got {node!r}")
    if node < minimum or (strict and node == minimum):
        raise ConfigError(f"{path} must be {'>' if strict else '>='} {minimum}, got {node}")
    if at_most is not None and node > at_most:
        raise ConfigError(f"{path} must be <= {at_most:g} ({why}), got {node}")
    if below is not None and node >= below:
        raise ConfigError(f"{path} must be < {below:g} ({why}), got {node}")


def validate(cfg: DictConfig) -> None:
    budget = cfg.budget.per_round
    if not isinstance(budget, (list, ListConfig)) or len(budget) == 0:
        raise ConfigError(f"budget.per_round must be a non-empty list of positive ints, got {budget!r}")
    for i, b in enumerate(budget):
        if isinstance(b, bool) or not isinstance(b, int) or b <= 0:
            raise ConfigError(f"budget.per_round[{i}] must be a positive int, got {b!r}")
    _number(cfg, "budget.oracle_batch_size", 1)
    chunk = cfg.budget.get("sample_chunk")
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ConfigError(f"budget.sample_chunk must be null or a positive int, got {chunk!r}")
    _number(cfg, "finetune.kl_pretrained", 0)
    _number(cfg, "finetune.kl_previous", 0)
    _number(cfg, "finetune.support_eps", 0, below=1, why="a probability floor")
    _number(cfg, "finetune.lr", 0, strict=True)
    _number(cfg, "finetune.batch_size", 1)
    _number(cfg, "finetune.steps", 1)
    _number(cfg, "finetune.fills", 0, at_most=1, why="a share of each step's rollouts")
    _number(cfg, "finetune.fill_starts", 1)
    _number(cfg, "strategy.bonus", 0)
    for share in ("edits.fraction", "edits.restarts"):
        _number(cfg, share, 0, at_most=1, why="a share of each round's proposals")
    _number(cfg, "edits.eps", 0, strict=True, below=1, why="a probability floor")
    for key, what in (("steps", "edits in turn per proposal"), ("per_restart", "new edits of each restarted design"),
                      ("candidates", "fills drawn per design"), ("masked", "most positions re-masked per fill")):
        value = cfg.get("edits", {}).get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"edits.{key} must be an int >= 1 ({what}), got {value!r}")
    blocks = cfg.get("edits", {}).get("blocks", 0)
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0 or blocks == 1:
        raise ConfigError(f"edits.blocks must be 0 (single tokens) or an int >= 2 (longest block a restart "
                          f"may move), got {blocks!r}")
    _number(cfg, "edits.focus", 1, why="a factor on edits.per_restart per stalled round")
    moves = cfg.get("edits", {}).get("moves", "enumerate")
    if moves not in ("enumerate", "infill"):
        raise ConfigError(f"edits.moves must be enumerate (rank every token move) or infill (the policy fills "
                          f"re-masked positions), got {moves!r}")
    _number(cfg, "edits.span", 0, at_most=1, why="a share of the re-maskings")
    _number(cfg, "reward.log_floor", 0, strict=True)
    _number(cfg, "reward.max_epochs", 1)
    _number(cfg, "eval.num_samples", 0)
    fill = cfg.reward.get("infeasible_value")
    if isinstance(fill, bool) or not (fill is None or isinstance(fill, (int, float))
                                      or isinstance(fill, str) and INFEASIBLE_RULE.fullmatch(fill)):
        raise ConfigError(f"reward.infeasible_value must be a number, null or 'min-<k>std' (e.g. min-1std), got {fill!r}")
    if cfg.eval.with_oracle not in (True, False, "auto"):
        raise ConfigError(f"eval.with_oracle must be true, false or auto, got {cfg.eval.with_oracle!r}")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise ConfigError(f"seed must be an int, got {cfg.seed!r}")
    if cfg.strategy.method not in {"seiko", "best_of_n", "online_ppo", "genetic", "holo_ga", "mol_ga"}:
        raise ConfigError(f"strategy.method must be seiko, best_of_n, online_ppo, genetic, holo_ga or mol_ga, "
                          f"got {cfg.strategy.method!r}")
    if cfg.strategy.method == "holo_ga":
        for key in ("mutation_prob", "recombine_prob"):
            _number(cfg, f"strategy.{key}", 0, strict=True, below=1, why="a probability per position")
        _number(cfg, "strategy.survival_quantile", 0, strict=True, below=1, why="a share of each generation")
    if cfg.strategy.method == "online_ppo" and cfg.finetune.name != "policy_gradient":
        raise ConfigError(f"finetune: online_ppo feeds labels to PPO and needs finetune=policy_gradient, "
                          f"got {cfg.finetune.name}")
