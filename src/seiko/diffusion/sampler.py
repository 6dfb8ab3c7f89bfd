"""Running the reverse chain: plain sampling, trajectories for PPO, relaxed rollouts for backprop.

All three walk the same steps of a ``NoiseFamily``; they differ in what they keep.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from seiko.diffusion.base import NoiseFamily


@dataclass
class Trajectory:
    """States s_0 (noise) .. s_T (sample), the model-independent selections, and log-probs."""

    states: list[Tensor]
    selections: list[Tensor | None]
    log_probs: Tensor  # [T, B] under the sampling model
    context: object = None  # what a conditional chain was drawn for (``NoiseFamily.start``)

    @property
    def final(self) -> Tensor:
        return self.states[-1]

    def to(self, device) -> "Trajectory":
        move = lambda x: None if x is None else x.to(device)  # noqa: E731
        return Trajectory([move(s) for s in self.states], [move(s) for s in self.selections],
                          self.log_probs.to(device), self.context)


@dataclass
class Rollout:
    """A relaxed sample with the per-sequence KL to each reference, summed over steps."""

    final: Tensor
    kl: dict[str, Tensor] = field(default_factory=dict)
    context: object = None


def _call(model: nn.Module, state: Tensor, time: Tensor, use_checkpoint: bool, context=None) -> Tensor:
    """One denoiser call; a conditional chain's context (prompts) is passed on, an unconditional
    denoiser keeps its two-argument signature."""
    args = (state, time) if context is None else (state, time, context)
    if use_checkpoint and torch.is_grad_enabled():
        return checkpoint(model, *args, use_reentrant=False)
    return model(*args)


@torch.no_grad()
def sample(model: nn.Module, family: NoiseFamily, num: int, generator: torch.Generator | None = None,
           trajectory: bool = False, device=None, purpose: str = "query", context=None):
    """Draw ``num`` samples (``family.finish`` of the final states); with ``trajectory`` keep
    every state for PPO. ``purpose``: what they are for (``NoiseFamily.start``). A recorded
    ``context`` replays its chains instead (``NoiseFamily.start_from``)."""
    if context is None:
        state, context = family.start(num, generator, device, purpose)
    else:
        state, context = family.start_from(context, device)
        num = state.shape[0]
    states, selections, log_probs = [state], [], []
    for step in range(family.num_steps):
        sel = family.selection(state, step, generator)
        out = _call(model, state, family.model_time(step, num, state.device), False, context)
        dist = family.transition(out, state, step, sel)
        state = family.advance(dist, state, generator, context)
        if trajectory:
            states.append(state)
            selections.append(sel)
            log_probs.append(dist.log_prob(state))
    if not trajectory:
        return family.finish(state, context)
    return Trajectory(states, selections, torch.stack(log_probs), context)


def trajectory_log_probs(model: nn.Module, family: NoiseFamily, traj: Trajectory,
                         refs: Mapping[str, nn.Module] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Log-probs [T, B] of the recorded transitions under ``model``, and per-step KL [T, B] to refs."""
    log_probs, kls = [], {name: [] for name in (refs or {})}
    batch = traj.final.shape[0]
    for step in range(family.num_steps):
        state, sel = traj.states[step], traj.selections[step]
        time = family.model_time(step, batch, state.device)
        dist = family.transition(_call(model, state, time, False, traj.context), state, step, sel)
        log_probs.append(dist.log_prob(traj.states[step + 1]))
        for name, ref in (refs or {}).items():
            with torch.no_grad():
                ref_dist = family.transition(_call(ref, state, time, False, traj.context), state, step, sel)
            kls[name].append(dist.kl(ref_dist))
    return torch.stack(log_probs), {k: torch.stack(v) for k, v in kls.items()}


def relaxed_rollout(model: nn.Module, family: NoiseFamily, num: int, refs: Mapping[str, nn.Module],
                    generator: torch.Generator | None = None, grad_steps: int | None = None,
                    tau: float = 1.0, use_checkpoint: bool = True, device=None, purpose: str = "train",
                    start: Tensor | None = None) -> Rollout:
    """A reparameterised sample whose final state carries gradients of the last ``grad_steps`` steps.

    Randomised truncation (AlignProp, SEIKO): earlier states are detached, so memory grows with
    ``grad_steps`` only; the KL terms of every step still get their direct gradient.

    ``start`` (tokens [num, L], the same number of positions masked in every row; masked families
    only) enters the chain where exactly those positions are still masked, as ``family.infill``
    does: the rollout is a fill of those positions, and its KL terms cover the fill's steps alone.
    """
    if start is None:
        first = 0
        state, context = family.start(num, generator, device, purpose)
    else:
        first, context = family.entry_step(start), None
        state = start.to(device) if device is not None else start
    grad_steps = family.num_steps - first if grad_steps is None else grad_steps
    first_grad = family.num_steps - grad_steps
    state = family.relax(state)
    kl = {name: torch.zeros(len(state), device=state.device) for name in refs}
    for step in range(first, family.num_steps):
        if step <= first_grad:  # the state entering step first_grad carries no gradient either
            state = state.detach()
        sel = family.selection(state, step, generator)
        time = family.model_time(step, num, state.device)
        dist = family.transition(_call(model, state, time, use_checkpoint, context), state, step, sel)
        for name, ref in refs.items():
            with torch.no_grad():
                ref_dist = family.transition(_call(ref, state.detach(), time, False, context), state, step, sel)
            kl[name] = kl[name] + dist.kl(ref_dist)
        state = family.advance_relaxed(dist, state, tau, generator)
    return Rollout(final=state, kl=kl, context=context)


def random_truncation(num_steps: int, rng: random.Random) -> int:
    """Number of final steps to backpropagate through, uniform on 1..num_steps."""
    return rng.randint(1, num_steps)
