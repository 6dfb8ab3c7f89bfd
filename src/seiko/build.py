"""Turn a composed config into a ready FeedbackLoop (the CLI and the Python API share this)."""
from __future__ import annotations

import copy
import hashlib
import json
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seiko import progress, sharding
from seiko.checkpoint import load_policy
from seiko.cli_support import build_trainer, quiet_lightning
from seiko.config import ConfigError
from seiko.distributed import is_rank_zero
from seiko.ledger import Ledger
from seiko.loop import FeedbackLoop
from seiko.methods import DiffusionMethod, GeneticMethod, OnlinePPOMethod, SeikoMethod

def load_pretrained(cfg: DictConfig, domain, out_dir: Path):
    """The pretrained policy: the committed checkpoint, or a short pretraining when it is null."""
    denoiser_cfg = OmegaConf.to_container(cfg.domain.denoiser, resolve=True)
    family_cfg = OmegaConf.to_container(cfg.domain.family, resolve=True)
    if denoiser_cfg.get("vocab_size", domain.vocab_size) != domain.vocab_size:
        raise ConfigError(f"domain.denoiser.vocab_size: {denoiser_cfg['vocab_size']}, but the domain has "
                          f"{domain.vocab_size} tokens")
    if cfg.domain.pretrained:
        if not Path(cfg.domain.pretrained).is_file():
            raise ConfigError(f"domain.pretrained: no checkpoint at {cfg.domain.pretrained}; rebuild it with "
                              f"`make pretrain` (`make pretrain-molecule` for molecules) or set domain.pretrained=null "
                              f"to pretrain briefly in the run")
        denoiser, family, spec = load_policy(cfg.domain.pretrained)
        problem, run = spec.get("problem", {}), OmegaConf.to_container(cfg.domain.problem, resolve=True)
        wrong = [k for k in domain.checkpoint_keys if k in problem and problem[k] != run.get(k)]
        if wrong:
            raise ConfigError(f"domain.pretrained was trained with {', '.join(f'{k}={problem[k]}' for k in wrong)}, "
                              f"which this run's domain does not match")
        return denoiser, family, {k: spec[k] for k in ("denoiser", "family", "problem") if k in spec}
    denoiser = instantiate(denoiser_cfg)
    spec = {"denoiser": denoiser_cfg, "family": family_cfg,
            "problem": OmegaConf.to_container(cfg.domain.problem, resolve=True)}
    if getattr(denoiser, "loads_weights", False):  # e.g. Stable Diffusion's UNet from its folder: nothing to pretrain
        return denoiser, instantiate(family_cfg), spec
    from seiko.policy import DiffusionPolicy

    policy = DiffusionPolicy(denoiser, instantiate(family_cfg), domain=domain, seed=cfg.seed)
    trainer = build_trainer(cfg.trainer, max_steps=cfg.domain.pretrain_steps, enable_progress_bar=False)
    sharding.fit(trainer, policy)
    return policy.denoiser.cpu(), policy.family, spec


FIT_PHASES = {"reward": "fit reward", "finetune": "fine-tune"}  # how the round's display names a fit


def _fit(cfg: DictConfig, out_dir: Path, kind: str, module, round: int, **trainer_kwargs) -> dict:
    """One fit of a round (``kind`` reward or finetune): a phase on the round's display, which
    ``FitProgress`` keeps up to date; Lightning's own per-epoch bars only with ``verbose=true``."""
    logger_dir = str(out_dir / "tb") if cfg.logger.enabled else None
    trainer_cfg = sharding.reward_trainer_config(cfg.trainer) if kind == "reward" else cfg.trainer
    progress.active().phase(FIT_PHASES.get(kind, kind))
    trainer = build_trainer(trainer_cfg, logger_dir=logger_dir, name=f"round_{round}/{kind}",
                            enable_progress_bar=bool(cfg.get("verbose", False)),
                            callbacks=[progress.FitProgress()], **trainer_kwargs)
    sharding.fit(trainer, module)
    return {f"{kind}/{k.split('/')[-1]}": float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}


def constrain_support(cfg: DictConfig, denoiser, family, spec: dict):
    """With ``finetune.support_eps`` > 0, the fine-tuned policy is a ``SupportConstrained`` one:
    tokens the pretrained model gives less than eps are masked at every step. Its checkpoints
    hold both networks, so ``seiko sample`` rebuilds it from the round's file alone."""
    eps = cfg.finetune.get("support_eps") or 0.0
    if eps == 0.0:
        return denoiser, spec
    if not hasattr(family, "mask_id"):
        raise ConfigError(f"finetune.support_eps: a support mask needs categorical (masked) diffusion, "
                          f"not {type(family).__name__}; set it to 0")
    from seiko.diffusion import SupportConstrained

    wrapped = SupportConstrained(denoiser, copy.deepcopy(denoiser), eps)
    return wrapped, dict(spec, denoiser={"_target_": "seiko.diffusion.SupportConstrained", "policy": spec["denoiser"],
                                         "reference": spec["denoiser"], "eps": eps})


def sampling_device(cfg: DictConfig) -> str:
    """``device``: where the policy samples its queries and evaluation designs (fits run where
    ``trainer`` puts them). Edits and restarts score token moves on the CPU, so they need it there."""
    import torch

    device = str(cfg.get("device", "cpu"))
    if device == "cpu":
        return device
    if not device.startswith("cuda"):
        raise ConfigError(f"device: cpu or cuda[:N], got {device!r}")
    if not torch.cuda.is_available():
        raise ConfigError(f"device={device}: this machine has no CUDA device (device=cpu samples on the CPU)")
    edits = cfg.get("edits", {})
    if float(edits.get("fraction", 0) or 0) > 0 or float(edits.get("restarts", 0) or 0) > 0:
        raise ConfigError(f"device={device}: edits and restarts (edits.fraction, edits.restarts) run on the CPU; "
                          f"use device=cpu with them")
    return device


def build_method(cfg: DictConfig, domain, denoiser, family, spec, out_dir: Path):
    method = cfg.strategy.method
    device = sampling_device(cfg)
    if method in ("genetic", "holo_ga") and domain.vocab_size < 1:
        raise ConfigError(f"strategy={method} mutates tokens; domain={domain.name} designs are not token sequences "
                          f"(use best_of_n, non_adaptive, greedy, ucb, bootstrap or ts)")
    if method == "online_ppo" and not hasattr(family, "trajectory_of"):
        raise ConfigError(f"strategy=online_ppo needs the sampling trajectory of every labelled design, which "
                          f"{type(family).__name__} cannot rebuild from a design; it is not available for "
                          f"domain={domain.name}")
    if method == "best_of_n":
        return DiffusionMethod(denoiser, family, spec, single_round=True, device=device)
    if method == "holo_ga":
        from seiko.holo_ga import HoloEvolutionMethod

        return HoloEvolutionMethod(DiffusionMethod(denoiser, family, spec, device=device), domain.vocab_size, domain.length,
                                   cfg.strategy.mutation_prob, cfg.strategy.recombine_prob,
                                   cfg.strategy.survival_quantile, seed=cfg.seed)
    if method == "mol_ga":
        from seiko.mol_ga import MolGAMethod

        if not domain.smiles:
            raise ConfigError(f"strategy=mol_ga edits molecules as SMILES; domain={domain.name} designs are not "
                              f"molecules (use strategy=genetic or holo_ga)")
        return MolGAMethod(domain, cfg.strategy.population_size, cfg.strategy.frac_mutate)
    if method == "genetic":
        return GeneticMethod(DiffusionMethod(denoiser, family, spec, device=device), domain.vocab_size,
                             cfg.strategy.num_parents, cfg.strategy.mutation_rate, cfg.strategy.crossover)
    denoiser, spec = constrain_support(cfg, denoiser, family, spec)
    if (cfg.finetune.get("fills") or 0) > 0 and not hasattr(family, "entry_step"):
        raise ConfigError(f"finetune.fills: fills re-mask token positions, which needs categorical (masked) "
                          f"diffusion, not {type(family).__name__}; set it to 0")
    finetune_factory = instantiate(cfg.finetune.module)
    if not domain.differentiable_features and getattr(finetune_factory.func, "differentiates_reward", False):
        raise ConfigError(f"finetune: {cfg.finetune.name} differentiates the reward in the tokens, but "
                          f"the domain's reward-model features are not differentiable (domain.features="
                          f"{cfg.domain.get('features')}); use finetune=policy_gradient")
    clip = {"gradient_clip_val": cfg.finetune.grad_clip} if cfg.finetune.get("grad_clip") else {}
    fit_policy = partial(_fit, cfg, out_dir, "finetune", max_epochs=1, **clip)
    if method == "online_ppo":
        return OnlinePPOMethod(denoiser, family, spec, domain=domain, finetune_factory=finetune_factory,
                               fit_policy=fit_policy,
                               infeasible_value=cfg.reward.infeasible_value, minibatch=cfg.strategy.minibatch,
                               seed=cfg.seed, device=device)
    if method != "seiko":
        raise ConfigError(f"strategy.method: unknown method {method!r}")
    edits = edit_settings(cfg, family)
    if edits["edit_blocks"] > getattr(domain, "length", edits["edit_blocks"]):
        raise ConfigError(f"edits.blocks ({edits['edit_blocks']}) is longer than the designs ({domain.length})")
    if edits["edit_moves"] is not None and edits["edit_moves"].masked > getattr(domain, "length", 0):
        raise ConfigError(f"edits.masked ({edits['edit_moves'].masked}) is longer than the designs ({domain.length})")
    acquisition = instantiate(cfg.strategy.acquisition)
    if getattr(acquisition, "needs_draws", False) and cfg.reward.model.get("kernel") == "tanimoto":
        raise ConfigError("strategy=ts draws posterior functions from Fourier features, which the Tanimoto kernel "
                          "(reward=gp_tanimoto) has not; use strategy=ucb or bootstrap with it")
    fit_reward = lambda model, round: _fit(cfg, out_dir, "reward", model, round,  # noqa: E731
                                           max_epochs=cfg.reward.max_epochs)
    return SeikoMethod(denoiser, family, spec, domain=domain, reward_factory=partial(instantiate, cfg.reward.model),
                       acquisition=acquisition, finetune_factory=finetune_factory, fit_reward=fit_reward,
                       fit_policy=fit_policy, infeasible_value=cfg.reward.infeasible_value,
                       single_round=getattr(acquisition, "rounds", "schedule") == "single", seed=cfg.seed,
                       log_floor=cfg.reward.get("log_floor"), device=device, **edits)


def edit_settings(cfg: DictConfig, family) -> dict:
    """``edits.*`` for SeikoMethod; edits need a categorical (masked) family."""
    edits = cfg.get("edits", {})
    fraction, restarts = float(edits.get("fraction", 0.0) or 0.0), float(edits.get("restarts", 0.0) or 0.0)
    for name, share in (("fraction", fraction), ("restarts", restarts)):
        if share > 0 and not hasattr(family, "mask_id"):
            raise ConfigError(f"edits.{name}: token edits need categorical (masked) diffusion, "
                              f"not {type(family).__name__}; set it to 0")
    moves = None
    if edits.get("moves", "enumerate") == "infill":
        if not hasattr(family, "infill"):
            raise ConfigError(f"edits.moves: infill needs a family that can re-draw masked positions, "
                              f"not {type(family).__name__}; use edits.moves=enumerate")
        from seiko.infill import InfillMoves

        moves = InfillMoves(int(edits.get("candidates", 8)), int(edits.get("masked", 4)), float(edits.get("span", 0.5)))
    return {"edit_fraction": fraction, "edit_eps": float(edits.get("eps", 1e-3)),
            "edit_steps": int(edits.get("steps", 1)), "edit_restarts": restarts,
            "edit_per_restart": int(edits.get("per_restart", 1)), "edit_blocks": int(edits.get("blocks", 0)),
            "edit_focus": float(edits.get("focus", 1.0)), "edit_moves": moves}


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _constructor_error(key: str, target, err: BaseException) -> str:
    message = _one_line(err)
    if message.startswith(key.split(".")[0] + "."):  # it names its field already (domain.num_motifs: ...)
        return message
    hint = " (its arguments: +oracle.NAME=VALUE)" if key == "oracle" and isinstance(err, TypeError) else ""
    return f"{key}: {target}: {type(err).__name__}: {message}{hint}"


@contextmanager
def _naming(key: str, target):
    """Building the domain or the oracle: a bad setting becomes one ConfigError naming the field
    instead of Hydra's four-line InstantiationException trace.

    Only what says the setting is wrong is translated: a ``_target_`` that does not import or is
    not callable, and a ValueError or TypeError from its constructor. Anything else raised while
    building is a bug, and keeps its own exception and trace.
    """
    try:
        yield
    except InstantiationException as err:
        cause = err.__cause__
        if cause is None:  # Hydra's own complaint, e.g. "Expected a callable target, got ... module"
            raise ConfigError(f"{key}._target_: {_one_line(err).split(' full_key: ')[0]}") from err
        if isinstance(cause, ImportError):
            root = cause.__cause__ or cause
            raise ConfigError(f"{key}._target_: cannot import {target!r} "
                              f"({type(root).__name__}: {_one_line(root)})") from err
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(_constructor_error(key, target, cause)) from err
        raise
    except (ValueError, TypeError) as err:  # a class oracle's constructor runs outside Hydra
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(_constructor_error(key, target, err)) from err


def build_domain(cfg: DictConfig):
    """``cfg.domain.problem``; a bad domain setting is one line naming it (``domain.num_motifs ...``)."""
    with _naming("domain.problem", cfg.domain.problem.get("_target_")):
        return instantiate(cfg.domain.problem)


def build_oracle(oracle_cfg: DictConfig):
    """A class target is instantiated (its instance is the oracle); a function target is the oracle."""
    import inspect

    with _naming("oracle", oracle_cfg.get("_target_")):
        built = instantiate(oracle_cfg, _partial_=True)
        return built() if inspect.isclass(built.func) else built


def config_fingerprint(cfg: DictConfig) -> str:
    """What must not change between a run and its resume (not progress bars or eval settings)."""
    keep = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("domain", "strategy", "reward", "finetune", "budget")}
    # settings added later enter only when set away from their default, so older ledgers resume
    if keep["reward"].get("log_floor", 0) is None:
        del keep["reward"]["log_floor"]
    for key, default in (("propose_infeasible", True), ("sample_chunk", None)):
        if keep["budget"].get(key, default) == default:
            keep["budget"].pop(key, None)
    keep["domain"].pop("max_motif_gap", None)  # derived: the pair rewards' max_gap that reads it is kept
    if not keep["finetune"].get("fills"):  # fill rollouts off: their settings do nothing
        for part in (keep["finetune"], keep["finetune"].get("module", {})):
            for key in ("fills", "fill_starts", "fill_masked", "fill_span"):
                part.pop(key, None)
    edits = cfg.get("edits", {})
    if (edits.get("fraction") or 0) > 0 or (edits.get("restarts") or 0) > 0:
        keep["edits"] = OmegaConf.to_container(edits, resolve=True)
        for key, default in (("steps", 1), ("restarts", 0.0), ("per_restart", 1), ("blocks", 0), ("focus", 1.0),
                             ("moves", "enumerate")):
            if keep["edits"].get(key) == default:
                del keep["edits"][key]
        if "moves" not in keep["edits"]:  # the infill settings matter only to infilled moves
            for key in ("candidates", "masked", "span"):
                keep["edits"].pop(key, None)
    keep["seed"] = cfg.seed
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_loop(cfg: DictConfig, out_dir: str | Path, oracle=None) -> FeedbackLoop:
    """``oracle``: any callable designs -> values; it replaces cfg.oracle and the domain's own."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ledger_path = out_dir / "ledger.sqlite"
    rank_zero = is_rank_zero()
    if ledger_path.exists() and not cfg.resume and rank_zero:
        raise ConfigError(f"resume: {out_dir} already holds a ledger; pass resume=true to continue it, "
                          f"or choose another run_name")
    if cfg.resume and not ledger_path.exists() and rank_zero:
        raise ConfigError(f"resume: no ledger in {out_dir} to resume (check run_name)")
    torch.manual_seed(cfg.seed)
    torch.set_flush_denormal(True)
    quiet_lightning()
    domain = build_domain(cfg)
    domain.attach(out_dir)
    own_oracle = oracle is None and not cfg.oracle.get("_target_")
    if oracle is None:
        oracle = build_oracle(cfg.oracle) if cfg.oracle.get("_target_") else domain.default_oracle()
    if not callable(oracle):
        raise ConfigError(f"oracle: {oracle!r} is not callable")
    if hasattr(oracle, "bind"):  # an oracle that reads designs through the domain (image files)
        oracle.bind(domain)
    fingerprint = config_fingerprint(cfg)
    if cfg.resume:
        with Ledger(ledger_path) as existing:
            stored = existing.get_meta("config")
        if stored is not None and stored != fingerprint:
            raise ConfigError(f"resume: the config differs from the one {out_dir} was started with "
                              f"(domain, strategy, reward, finetune, budget or seed changed)")
    denoiser, family, spec = load_pretrained(cfg, domain, out_dir)
    method = build_method(cfg, domain, denoiser, family, spec, out_dir)
    # The ledger is created last, so a run that fails to start leaves nothing to refuse next time.
    # Other ranks start once rank 0 is inside its first fit, so the ledger exists by then.
    ledger = Ledger(ledger_path)
    if rank_zero:
        ledger.set_meta("config", fingerprint)
        OmegaConf.save(cfg, out_dir / "config.yaml", resolve=True)  # `seiko sample` rebuilds the domain from it
    own_oracle = own_oracle or getattr(oracle, "synthetic", False)  # cheap to evaluate with (PMO tasks)
    with_oracle = own_oracle if cfg.eval.with_oracle == "auto" else bool(cfg.eval.with_oracle)
    writer = None
    if cfg.logger.enabled and rank_zero:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tb"))
    return FeedbackLoop(domain=domain, oracle=oracle, method=method, ledger=ledger,
                        budget=list(cfg.budget.per_round), out_dir=out_dir,
                        oracle_batch_size=cfg.budget.oracle_batch_size, eval_samples=cfg.eval.num_samples,
                        eval_with_oracle=with_oracle, seed=cfg.seed, writer=writer,
                        display=progress.RoundDisplay(enabled=bool(cfg.progress)),
                        distinct=bool(cfg.domain.get("distinct_queries", False)),
                        query_infeasible=bool(cfg.budget.get("query_infeasible", True)),
                        propose_infeasible=bool(cfg.budget.get("propose_infeasible", True)),
                        sample_chunk=cfg.budget.get("sample_chunk"))
