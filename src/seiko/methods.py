"""What proposes each round's designs and what it learns from their labels.

``SeikoMethod`` is the paper's algorithm (its strategies differ only in the acquisition);
the baselines share the same interface, so the loop, the ledger and the budget are the same
for every comparison.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from seiko.checkpoint import save_policy
from seiko.config import INFEASIBLE_RULE
from seiko.diffusion import SupportConstrained, sample


class Method(ABC):
    name: str = "method"
    single_round: bool = False  # spend the whole budget in one round (non_adaptive, best-of-N)

    @abstractmethod
    def propose(self, round: int, num: int, generator: torch.Generator) -> Tensor:
        """Designs (tokens) to buy labels for in this round."""

    def designs(self, round: int, num: int, generator: torch.Generator, domain) -> list[str]:
        """The round's designs as text (what the ledger holds); a method that writes designs
        directly (a molecule GA on SMILES) overrides this rather than ``propose``."""
        return domain.decode(self.propose(round, num, generator))

    def observe(self, designs: list[str], values: np.ndarray, rounds: np.ndarray) -> None:
        """Every label so far with its design as text, before ``update`` (and on resume): for a
        method that reads the ledger's designs rather than their tokens."""

    def update(self, round: int, designs: Tensor, values: np.ndarray, round_mask: np.ndarray) -> dict:
        """Learn from every label bought so far (``round_mask`` marks this round's)."""
        return {}

    def reload(self, designs: Tensor, values: np.ndarray, round: int = -1, rounds: np.ndarray | None = None) -> None:
        """Rebuild state that lives in the ledger, not in a checkpoint (on resume after ``round``;
        ``rounds`` holds each label's round)."""

    def sample(self, num: int, generator: torch.Generator) -> Tensor:
        """Fresh designs from the current model, for evaluation."""
        return self.propose(-1, num, generator)

    def sample_designs(self, num: int, generator: torch.Generator, domain) -> list[str]:
        """``sample`` as text; a method that writes designs directly overrides this too."""
        return domain.decode(self.sample(num, generator))

    def save(self, round: int, directory: Path) -> Path | None:
        return None

    def restore(self, path: Path) -> None:
        pass


def kl_reference(denoiser: nn.Module, name: str) -> nn.Module:
    """A frozen reference policy for the KL terms ("pretrained", "previous"): a denoiser that can
    give one sharing its weights (a LoRA UNet with its adapters switched) does; any other is copied."""
    make = getattr(denoiser, "kl_reference", None)
    return make(name) if make is not None else copy.deepcopy(denoiser).eval()


class DiffusionMethod(Method):
    """Samples from a diffusion policy; the base of SEIKO, best-of-N and online PPO."""

    name = "best_of_n"

    def __init__(self, denoiser: nn.Module, family, spec: dict, single_round: bool = True, device: str = "cpu"):
        self.denoiser, self.family, self.spec = denoiser, family, spec
        self.pretrained = kl_reference(denoiser, "pretrained")
        self.single_round, self.device = single_round, torch.device(device)

    def propose(self, round, num, generator):
        """Samples of the policy; round -1 (evaluation) draws them for evaluation (a conditional
        family's evaluation prompts and fixed seeds). On ``device`` (config ``device``): each fit
        hands the policy back on the CPU (Lightning's teardown), and Stable Diffusion's queries
        would take hours there."""
        self.denoiser.to(self.device).eval()
        return sample(self.denoiser, self.family, num, generator, purpose="evaluate" if round < 0 else "query",
                      device=self.device)

    def save(self, round, directory):
        path = save_policy(Path(directory) / f"round_{round}.safetensors", self.denoiser, self.spec)
        if hasattr(self.denoiser, "export_adapter"):  # also in the layout its own library reads
            self.denoiser.export_adapter(Path(directory) / f"round_{round}_lora")
        return path

    def restore(self, path):
        from seiko.checkpoint import load_weights

        load_weights(self.denoiser, path)


class FinetunedMethod(DiffusionMethod):
    """A diffusion policy fine-tuned every round, with the previous round's policy as KL reference."""

    def __init__(self, denoiser, family, spec, *, finetune_factory: Callable, fit_policy: Callable,
                 single_round: bool = False, seed: int = 0, device: str = "cpu"):
        super().__init__(denoiser, family, spec, single_round, device)
        self.finetune_factory, self.fit_policy, self.seed = finetune_factory, fit_policy, seed
        self.previous = kl_reference(denoiser, "previous")

    def restore(self, path):
        super().restore(path)
        self.previous = kl_reference(self.denoiser, "previous")  # the restored round is the next reference

    def finetune(self, round: int, **inputs) -> dict:
        """Fit the round's fine-tuner, then make its result the next round's reference."""
        finetuner = self.finetune_factory(self.denoiser, self.family, self.pretrained, self.previous,
                                          seed=self.seed + round, **inputs)
        metrics = self.fit_policy(finetuner, round)
        self.previous = kl_reference(self.denoiser, "previous")
        return metrics


class RoundObjective(nn.Module):
    """The round's optimistic reward, r_hat + bonus, in units of the labels' spread.

    A module rather than a closure so that it pickles (DDP with spawned workers) and moves with
    the fine-tuner to its device; a Thompson draw is made lazily from a fixed seed, so every
    worker maximises the same posterior sample. Dividing by the labels' std lets one set of KL
    weights work for oracles of any scale.
    """

    def __init__(self, model: nn.Module, acquisition, seed: int, scale: float):
        super().__init__()
        self.model = model.requires_grad_(False)
        self.acquisition, self.seed, self.scale = acquisition, seed, scale
        self._fn = None

    def forward(self, x: Tensor) -> Tensor:
        if self._fn is None:
            self._fn = self.acquisition.objective(self.model, torch.Generator().manual_seed(self.seed))
        return self._fn(x) / self.scale

    def __getstate__(self):
        return {**super().__getstate__(), "_fn": None}


def infeasible_fill(feasible: np.ndarray, infeasible_value: float | str) -> float:
    """The label an infeasible design is fitted with.

    A number is used as is. ``"min-<k>std"`` puts it k standard deviations of the feasible
    labels below the lowest one: a penalty on the oracle's own scale, so one setting steers
    away from infeasible designs as firmly on a function whose labels span 0.01 as on one
    whose labels span 1 (a fixed -0.1 is a cliff on the first and a bump on the second).
    With fewer than two feasible labels there is no scale yet, and the lowest label (or 0)
    is used.
    """
    if not isinstance(infeasible_value, str):
        return float(infeasible_value)
    match = INFEASIBLE_RULE.fullmatch(infeasible_value)
    if match is None:
        raise ValueError(f"reward.infeasible_value must be a number, null or 'min-<k>std', got {infeasible_value!r}")
    if len(feasible) == 0:
        return 0.0
    return float(feasible.min() - float(match.group(1)) * (feasible.std() if len(feasible) > 1 else 0.0))


def impute(values: np.ndarray, infeasible_value: float | str | None) -> tuple[np.ndarray, np.ndarray]:
    """Labels for fitting: infeasible ones set to ``infeasible_fill`` (or dropped if None)."""
    finite = np.isfinite(values)
    if infeasible_value is None:
        return values[finite], finite
    return np.where(finite, values, infeasible_fill(values[finite], infeasible_value)), np.ones_like(finite)


def fit_targets(values: np.ndarray, infeasible_value: float | str | None,
                log_floor: float | None) -> tuple[np.ndarray, np.ndarray]:
    """What the reward model is fitted to, and which labels it keeps: ``impute``d labels, in log
    space when ``log_floor`` is set (a product of terms is a sum in log space)."""
    y, keep = impute(values, infeasible_value)
    return (y if log_floor is None else np.log(np.maximum(y, log_floor))), keep


def best_rose(values: np.ndarray, round_mask: np.ndarray) -> bool:
    """Whether the round's best finite label beats every earlier one (a first round always does)."""
    finite = np.isfinite(values)
    new, old = values[round_mask & finite], values[~round_mask & finite]
    return len(new) > 0 and (len(old) == 0 or new.max() > old.max())


def stalled_rounds(values: np.ndarray, rounds: np.ndarray) -> int:
    """Rounds in a row, up to the last, in which the best label did not rise (``best_rose``)."""
    stalled = 0
    for r in np.unique(rounds):
        seen = rounds <= r
        stalled = 0 if best_rose(values[seen], rounds[seen] == r) else stalled + 1
    return stalled


class SeikoMethod(FinetunedMethod):
    """Fit r_hat and its uncertainty on all labels, then fine-tune on the optimistic reward.

    With ``edit_fraction`` > 0 (not in the paper) that share of each round's proposals is
    replaced by its acquisition-best single-token edit, repeated up to ``edit_steps`` times
    (``seiko.edits``). A share ``edit_restarts`` of each round is instead new edits of the best
    labelled designs, ``edit_per_restart`` of each, moving blocks of up to ``edit_blocks`` tokens
    when that is >= 2; ``edit_focus`` > 1 multiplies ``edit_per_restart`` by itself for each round
    in a row in which the best label did not rise (``stalled_rounds``). With ``edit_moves`` (an
    ``InfillMoves``) both kinds of edit are fills that the round's policy draws for re-masked
    positions (``seiko.infill``) instead of enumerated token moves. With ``log_floor`` the
    reward model is fitted to log(max(label, floor)): an oracle that is a product of terms
    (Ehrlich motifs) becomes a sum, which the models learn term by term.
    """

    def __init__(self, denoiser, family, spec, *, domain, reward_factory: Callable, acquisition,
                 finetune_factory: Callable, fit_reward: Callable, fit_policy: Callable,
                 infeasible_value: float | None = 0.0, single_round: bool = False, seed: int = 0,
                 edit_fraction: float = 0.0, edit_eps: float = 1e-3, edit_steps: int = 1,
                 edit_restarts: float = 0.0, edit_per_restart: int = 1, edit_blocks: int = 0,
                 edit_focus: float = 1.0, edit_moves=None, log_floor: float | None = None, device: str = "cpu"):
        super().__init__(denoiser, family, spec, finetune_factory=finetune_factory, fit_policy=fit_policy,
                         single_round=single_round, seed=seed, device=device)
        self.name = getattr(acquisition, "name", type(acquisition).__name__).lower()
        self.domain, self.reward_factory, self.acquisition = domain, reward_factory, acquisition
        self.fit_reward, self.infeasible_value = fit_reward, infeasible_value
        self.edit_fraction, self.edit_eps, self.edit_steps = edit_fraction, edit_eps, edit_steps
        self.edit_restarts, self.edit_per_restart, self.log_floor = edit_restarts, edit_per_restart, log_floor
        self.edit_blocks, self.edit_focus, self.edit_moves = edit_blocks, edit_focus, edit_moves
        self.stalled = 0  # rounds in a row in which the best label did not rise
        self.labelled: tuple[Tensor, np.ndarray] | None = None  # every label so far, for restarts
        self.objective: RoundObjective | None = None  # the last fitted round's, for edits

    @property
    def edit_reference(self) -> nn.Module:
        """The pretrained network that decides which tokens an edit may place (``edits.eps``).

        Not ``self.pretrained`` when that is support-constrained (``finetune.support_eps``): its
        outputs hide every token below the support's eps, so an ``edits.eps`` below it would
        silently act as the support's eps, and edits could never reach the rarer transitions
        that the policy itself may not sample.
        """
        return self.pretrained.reference if isinstance(self.pretrained, SupportConstrained) else self.pretrained

    def features(self, designs: Tensor) -> Tensor:
        return self.domain.embed(designs)

    def score(self, tokens: Tensor) -> Tensor:
        """The last fitted round's acquisition on designs: what edits and restarts rank by."""
        return self.objective(self.features(tokens))

    def fit_objective(self, round: int, designs: Tensor, values: np.ndarray) -> RoundObjective:
        """Fit the reward model on every label so far; the round's optimistic reward."""
        y, keep = fit_targets(values, self.infeasible_value, self.log_floor)
        if len(y) < 2:
            raise RuntimeError(f"round {round}: fewer than 2 usable labels to fit the reward model")
        model = self.reward_factory()
        model.set_data(self.features(designs[torch.from_numpy(keep)]), torch.as_tensor(y, dtype=torch.float32))
        self.fit_reward(model, round)
        return RoundObjective(model, self.acquisition, self.seed * 7919 + round, float(np.std(y)) or 1.0)

    def update(self, round, designs, values, round_mask):
        self.labelled = (designs, values)
        self.stalled = 0 if best_rose(values, round_mask) else self.stalled + 1
        self.objective = self.fit_objective(round, designs, values)
        return self.finetune(round, objective=self.objective, features=self.domain.features, labelled=(designs, values))

    def reload(self, designs, values, round=-1, rounds=None):
        """Edits need the last round's objective: refit it from the ledger (same seed, same labels)."""
        if (self.edit_fraction > 0 or self.edit_restarts > 0) and round >= 0:
            if rounds is not None:  # as update() counted it up to ``round``
                done = rounds <= round
                self.stalled = stalled_rounds(values[done], rounds[done])
            self.labelled = (designs, values)
            self.objective = self.fit_objective(round, designs, values)

    def propose(self, round, num, generator):
        if self.objective is None or (self.edit_restarts == 0 and self.edit_fraction == 0):
            return super().propose(round, num, generator)  # round 0 (nothing fitted yet), or no edits: samples
        self.denoiser.eval()
        restarts = self.restarts(int(self.edit_restarts * num + 0.5), generator)
        designs = super().propose(round, num - len(restarts), generator)
        count = int(self.edit_fraction * len(designs) + 0.5)
        if count and self.edit_moves is not None:
            edited = self.edit_moves.improve(self.denoiser, self.family, designs[:count], self.score, generator)
            designs = torch.cat([edited, designs[count:]])
        elif count:
            from seiko.edits import climb

            edited = climb(designs[:count], self.edit_reference, self.family, self.edit_eps, self.score,
                           self.edit_steps)  # no_grad inside
            designs = torch.cat([edited, designs[count:]])
        return torch.cat([restarts, designs])

    def restarts(self, count: int, generator: torch.Generator | None = None) -> Tensor:
        """``count`` new edits of the best distinct labelled designs, ``edit_per_restart`` of each,
        best designs first (edits.restarts); a design whose edits are all labelled gives way to
        the next. ``generator`` draws the policy's fills when the moves are infilled."""
        designs, values = self.labelled
        if count == 0:
            return designs[:0]
        from seiko.edits import allowed_substitutions, best_new_edits, block_edits, single_edits, supported

        order = np.argsort(-np.where(np.isfinite(values), values, -np.inf), kind="stable")
        taken, best = set(), []
        for i in order:
            key = designs[i].numpy().tobytes()
            if key not in taken and np.isfinite(values[i]):
                best.append(i)
            taken.add(key)
        per = float(self.edit_per_restart)  # times focus per stalled round, up to the whole share
        for _ in range(self.stalled):
            if per >= count:
                break
            per *= self.edit_focus
        per = min(count, int(per + 0.5))
        width, out, left = -(-count // per), [], count
        for start in range(0, len(best), width):
            starts = designs[torch.as_tensor(best[start:start + width], dtype=torch.long)]
            if self.edit_moves is not None:  # the round's policy fills re-masked positions: on its support
                cands, check = self.edit_moves(self.denoiser, self.family, starts, generator, keep=per), None
            elif self.edit_blocks >= 2:
                cands = [block_edits(s, self.edit_blocks, self.domain.vocab_size) for s in starts]
                check = lambda b, e: supported(self.edit_reference, self.family, starts[b], e, self.edit_eps)  # noqa: E731
            else:
                allowed = allowed_substitutions(self.edit_reference, self.family, starts, self.edit_eps)
                cands, check = [single_edits(s, a) for s, a in zip(starts, allowed)], None
            out.append(best_new_edits(starts, cands, self.score, taken, per, left, check))
            left -= len(out[-1])
            if left == 0:
                break
        return torch.cat(out) if out else designs[:0]

    def sample(self, num, generator):
        """Evaluation measures the policy itself: no edits."""
        return DiffusionMethod.propose(self, -1, num, generator)


class OnlinePPOMethod(FinetunedMethod):
    """Baseline: the true labels of each round's samples go straight into PPO; no reward model.

    PPO needs each labelled design's sampling trajectory. It is rebuilt from the ledger's design
    (``domain.chain_inputs``) by the family (``trajectory_of``): a fresh unmasking order for
    tokens, a replay of the recorded seed by the policy that drew it for images; so a resumed
    run or a lab's imported labels train it as an uninterrupted run would.
    """

    name = "online_ppo"

    def __init__(self, denoiser, family, spec, *, domain, finetune_factory: Callable, fit_policy: Callable,
                 infeasible_value: float = 0.0, minibatch: int = 32, seed: int = 0, device: str = "cpu"):
        super().__init__(denoiser, family, spec, finetune_factory=finetune_factory, fit_policy=fit_policy, seed=seed,
                         device=device)
        self.domain, self.infeasible_value, self.minibatch = domain, infeasible_value, minibatch
        self.texts: list[str] = []

    def observe(self, designs, values, rounds):
        self.texts = list(designs)

    def update(self, round, designs, values, round_mask):
        if len(self.texts) != len(values):
            raise RuntimeError("online PPO reads the ledger's designs: observe() them before update()")
        inputs = self.domain.chain_inputs([t for t, m in zip(self.texts, round_mask) if m])
        rewards = torch.as_tensor(impute(values[round_mask], self.infeasible_value)[0], dtype=torch.float32)
        generator = torch.Generator().manual_seed(self.seed * 7919 + round)
        self.denoiser.to(self.device)
        self.previous.to(self.device).eval()
        rollouts = [self.family.trajectory_of(inputs[i:i + self.minibatch], generator, model=self.previous,
                                              device=self.device) for i in range(0, len(rewards), self.minibatch)]
        return self.finetune(round, rollouts=rollouts, rewards=list(rewards.split(self.minibatch)))


class GeneticMethod(Method):
    """Baseline: a genetic algorithm on the same budget, seeded with pretrained-model samples.

    Parents are the best feasible labels in the ledger; children come from uniform crossover
    of two parents and per-position mutation.
    """

    name = "genetic"

    def __init__(self, initial: DiffusionMethod, vocab_size: int, num_parents: int = 32,
                 mutation_rate: float = 0.05, crossover: float = 0.5):
        self.initial, self.vocab_size = initial, vocab_size
        self.num_parents, self.mutation_rate, self.crossover = num_parents, mutation_rate, crossover
        self.parents: Tensor | None = None

    def update(self, round, designs, values, round_mask):
        finite = np.isfinite(values)
        order = np.argsort(-np.where(finite, values, -np.inf), kind="stable")[: self.num_parents]
        order = order[finite[order]]
        self.parents = designs[torch.from_numpy(order)] if len(order) else None
        return {"ga/best_parent": float(values[order[0]]) if len(order) else float("nan")}

    def reload(self, designs, values, round=-1, rounds=None):
        self.update(-1, designs, values, np.zeros(len(values), dtype=bool))

    def propose(self, round, num, generator):
        if self.parents is None or round == 0:
            return self.initial.propose(round, num, generator)
        n = len(self.parents)
        a = self.parents[torch.randint(n, (num,), generator=generator)]
        b = self.parents[torch.randint(n, (num,), generator=generator)]
        take_b = torch.rand(a.shape, generator=generator) < self.crossover
        child = torch.where(take_b, b, a)
        mutate = torch.rand(child.shape, generator=generator) < self.mutation_rate
        random_tokens = torch.randint(self.vocab_size, child.shape, generator=generator)
        return torch.where(mutate, random_tokens, child)

    def sample(self, num, generator):
        return self.propose(1, num, generator)
