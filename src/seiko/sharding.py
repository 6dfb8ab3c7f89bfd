"""Fits that hand back a plain module whatever the strategy, FSDP included (``trainer=fsdp``).

Lightning's other strategies leave a fitted module whole and on the CPU: their teardown moves
it back. FSDP leaves it as it trained, with its weights views into flat parameters, sharded
across ranks and on the GPU, where the feedback loop's sampling, checkpoints and the next
round's frozen references cannot use it. So after an FSDP fit every rank gathers the full
weights and puts them back into the module as ordinary CPU tensors.

A module may name parts FSDP must leave whole (``unsharded()``): the round's reward model, whose
gpytorch hyperparameters are scalars, which FSDP refuses to shard ("FSDP doesn't support scalar
parameters", seen on an H100); it is frozen and small. For the same reason reward models are
fitted without FSDP (``reward_trainer_config``).
"""
from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

FSDP = "lightning.pytorch.strategies.FSDPStrategy"


def reward_trainer_config(trainer_cfg: DictConfig) -> DictConfig:
    """The trainer for reward-model fits: the run's own, except under FSDP.

    FSDP is there to shard large denoisers. It refuses gpytorch's scalar hyperparameters
    ("FSDP doesn't support scalar parameters", seen on an H100), and a GP's Cholesky factor in
    bf16 is no factor at all; the reward models are small. So under ``trainer=fsdp`` they fit
    data-parallel (DDP, joining the ranks FSDP's launcher started) in full precision.
    """
    if OmegaConf.select(trainer_cfg, "strategy._target_") != FSDP:
        return trainer_cfg
    out = trainer_cfg.copy()
    out.strategy = {"_target_": "lightning.pytorch.strategies.DDPStrategy"}
    out.precision = "32-true"
    return out


def is_fsdp(trainer) -> bool:
    from lightning.pytorch.strategies import FSDPStrategy

    return isinstance(trainer.strategy, FSDPStrategy)


def fit(trainer, module: nn.Module) -> None:
    """``trainer.fit(module)``; under FSDP, then gather the weights back (see the module doc)."""
    if not is_fsdp(trainer):
        trainer.fit(module)
        return
    keep = module.unsharded() if hasattr(module, "unsharded") else []
    if keep:
        trainer.strategy.kwargs["ignored_modules"] = keep
    trainer.fit(module)
    unshard(trainer.strategy.model, module)


def unshard(wrapped: nn.Module, module: nn.Module) -> None:
    """Replace every FSDP-managed parameter and buffer of ``module`` by its full CPU value.

    A collective: every rank calls it and every rank keeps the whole policy.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    # cpu_offload=True would hand the whole state to rank 0 alone; gather, then move.
    state = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True))
    for name, value in state.items():
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        if leaf in owner._parameters and owner._parameters[leaf] is not None:
            old = owner._parameters[leaf]
            owner._parameters[leaf] = nn.Parameter(value.detach().clone(), requires_grad=old.requires_grad)
        elif leaf in owner._buffers and owner._buffers[leaf] is not None:
            owner._buffers[leaf] = value.detach().clone()
    module.cpu()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
