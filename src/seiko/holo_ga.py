"""Baseline: pytorch-holo's own genetic algorithm (``holo.optim.DiscreteEvolution``) on seiko's rounds.

Why a second GA: holo-bench reports Ehrlich results with this optimiser, so comparing against
it, rather than only against seiko's ``GeneticMethod``, puts seiko's numbers on the scale the
Ehrlich literature uses. It is started from feasible sequences (round 0 is the pretrained
model's samples, about 95% feasible; holo-bench starts from ``Ehrlich.initial_solution``) and
spends the same budget: each round's designs are one generation of particles, their labels the
particles' losses (negated; infeasible = +inf), and one ``DiscreteEvolution.step`` makes the
next round's designs: the best ``survival_quantile`` survive, the rest are recombined from
survivors, then every particle mutates. Holo-bench's example sets mutation and recombination
to 1 / length, the defaults here.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from seiko.methods import DiffusionMethod, Method


class HoloEvolutionMethod(Method):
    name = "holo_ga"

    def __init__(self, initial: DiffusionMethod, vocab_size: int, length: int, mutation_prob: float | None = None,
                 recombine_prob: float | None = None, survival_quantile: float = 0.1, seed: int = 0):
        self.initial, self.vocab, self.seed = initial, list(range(vocab_size)), seed
        self.mutation_prob = 1.0 / length if mutation_prob is None else float(mutation_prob)
        self.recombine_prob = 1.0 / length if recombine_prob is None else float(recombine_prob)
        self.survival_quantile = float(survival_quantile)
        self.next: Tensor | None = None  # the generation that the next round labels

    def evolve(self, round: int, particles: Tensor, values: np.ndarray) -> Tensor:
        """One ``DiscreteEvolution.step`` on a labelled generation; the next generation."""
        from holo.optim import DiscreteEvolution  # imports botorch: keep it lazy

        param = torch.nn.Parameter(particles[0].float().clone())
        quantile = min(max(self.survival_quantile, 2.0 / len(particles)), 0.99)  # holo needs 2 survivors
        optimizer = DiscreteEvolution([param], self.vocab, mutation_prob=self.mutation_prob,
                                      recombine_prob=self.recombine_prob, num_particles=len(particles),
                                      survival_quantile=quantile)
        optimizer.state[param]["particles"] = particles.float().clone()  # start from this generation
        loss = torch.as_tensor(np.where(np.isfinite(values), -values, np.inf), dtype=torch.float32)
        torch.manual_seed(self.seed * 7919 + round)  # holo draws from the global generator: fix it per round
        optimizer.step(lambda _: loss)
        return optimizer.state[param]["particles"].round().long()

    def update(self, round, designs, values, round_mask):
        mask = torch.from_numpy(round_mask)
        self.next = self.evolve(round, designs[mask], values[round_mask])
        finite = values[round_mask][np.isfinite(values[round_mask])]
        return {"ga/generation_best": float(finite.max()) if len(finite) else float("nan")}

    def reload(self, designs, values, round=-1, rounds=None):
        """The next generation is a function of the last round's labels: rebuild it from the ledger."""
        if round >= 0 and rounds is not None:
            mask = rounds == round
            self.next = self.evolve(round, designs[torch.from_numpy(mask)], values[mask])

    def propose(self, round, num, generator):
        if self.next is None or round == 0:
            return self.initial.propose(round, num, generator)
        if len(self.next) == num:
            return self.next
        pick = torch.randint(len(self.next), (num,), generator=generator)  # a round of another size
        return self.next[pick]

    def sample(self, num, generator):
        """Fresh designs: draws from the current generation (the GA has no model to sample)."""
        pool = self.next if self.next is not None else self.initial.propose(0, num, generator)
        return pool[torch.randint(len(pool), (num,), generator=generator)]
