"""Baseline: mol-ga (Tripp & Hernandez-Lobato 2023), the Graph GA of the PMO benchmark, on seiko's rounds.

Why it is here: Graph GA is the baseline every molecule-optimisation paper is measured against
(PMO ranks it near the top), and mol-ga is its maintained implementation. It works on SMILES,
not on the diffusion model's tokens, so it writes its designs directly (``designs``) and reads
the ledger's SMILES (``observe``). Round 0 is ``num`` random ZINC 250k molecules (PMO starts
Graph GA from random ZINC molecules); every later round is one generation: parents drawn from
log-spaced top quantiles of every labelled molecule (``uniform_quantile_sampling``), offspring
by Graph GA crossover and mutation (``graph_ga_blended_generation``). Invalid or infeasible
labels count as 0, as PMO scores them.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from seiko.methods import Method


class MolGAMethod(Method):
    name = "mol_ga"

    def __init__(self, domain, population_size: int = 10_000, frac_mutate: float = 0.1):
        self.domain, self.population_size, self.frac_mutate = domain, int(population_size), float(frac_mutate)
        self.population: list[tuple[float, str]] = []

    @staticmethod
    def _rng(generator: torch.Generator) -> random.Random:
        return random.Random(int(torch.randint(2**62, (1,), generator=generator)))

    def designs(self, round, num, generator, domain):
        from mol_ga.graph_ga.gen_candidates import graph_ga_blended_generation
        from mol_ga.mol_libraries import random_zinc
        from mol_ga.sample_population import uniform_quantile_sampling

        from seiko.chem.metrics import canonical

        rng = self._rng(generator)
        if not self.population:
            smiles = random_zinc(num, rng)
        else:
            parents = uniform_quantile_sampling(self.population, 2 * num, rng)
            smiles = sorted(graph_ga_blended_generation(parents, num, rng, frac_graph_ga_mutate=self.frac_mutate))
        return [c for c in map(canonical, smiles) if c][:num]

    def observe(self, designs, values, rounds):
        scores = np.where(np.isfinite(values), values, 0.0)
        best = np.argsort(-scores, kind="stable")[: self.population_size]
        self.population = [(float(scores[i]), designs[i]) for i in best if designs[i]]

    def propose(self, round, num, generator):
        return self.domain.encode(self.designs(round, num, generator, self.domain))

    def sample_designs(self, num, generator, domain):
        """Evaluation: the next generation's offspring, as written (ZINC's stereocentres and
        charges are outside the diffusion model's vocabulary, so their tokens would lose them)."""
        return self.designs(1, num, generator, domain)
