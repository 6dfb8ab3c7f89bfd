"""Protein-like sequences scored by an Ehrlich function (Stanton et al. 2024, pytorch-holo).

An Ehrlich function has a banded, sparse transition matrix: a sequence is feasible iff it
never takes a forbidden transition (value -inf otherwise, as for an unfoldable protein), and
its value is the product over spaced motifs of the quantised fraction present; optimum 1.0.
Pretraining data are fresh draws from the function's own feasible Markov chain.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from seiko.domains.base import Domain

# 20 amino acids first, then further letters for functions with more states.
ALPHABET = "ACDEFGHIKLMNPQRSTVWY" + "BJOUXZ" + "abcdefghijklmnopqrstuvwxyz" + "0123456789"


def check_ehrlich(num_states: int, dim: int, num_motifs: int, motif_length: int, quantization: int | None) -> None:
    """Refuse settings pytorch-holo's Ehrlich cannot build or would silently build otherwise than asked.

    holo itself fails with "cannot guarantee a solution satisfying all motifs exists." (the motifs
    must fit side by side, num_motifs * motif_length <= dim, or no design reaches the optimum),
    divides by zero for motif_length 1 (its spacings split the gaps between a motif's elements) or
    quantization 0, and reads a quantization that does not divide motif_length as a coarser one
    (it counts in steps of ceil(motif_length / quantization) elements). Each error names the field.
    """
    for field, value, least in (("num_states", num_states, 1), ("dim", dim, 1), ("num_motifs", num_motifs, 1),
                                ("motif_length", motif_length, 2)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"domain.{field} must be an int, got {value!r}")
        if value < least:
            why = " (a motif is its elements with gaps between them)" if field == "motif_length" else ""
            raise ValueError(f"domain.{field} must be >= {least}{why}, got {value}")
    if num_states > len(ALPHABET):
        raise ValueError(f"domain.num_states must be <= {len(ALPHABET)} (letters to write designs with), got {num_states}")
    if motif_length > dim:
        raise ValueError(f"domain.motif_length must be <= domain.dim ({dim}): a motif must fit in a design, "
                         f"got {motif_length}")
    if num_motifs * motif_length > dim:
        raise ValueError(f"domain.num_motifs * domain.motif_length must be <= domain.dim: all motifs must fit side "
                         f"by side for the optimum to exist, got {num_motifs} * {motif_length} = "
                         f"{num_motifs * motif_length} > {dim}; use domain.num_motifs <= {dim // motif_length} "
                         f"or domain.dim >= {num_motifs * motif_length}")
    if quantization is None:
        return
    divisors = [q for q in range(1, motif_length + 1) if motif_length % q == 0]
    if isinstance(quantization, bool) or not isinstance(quantization, int) or quantization not in divisors:
        acts = ""
        if isinstance(quantization, int) and quantization >= 1:
            acts = f"; holo would read {quantization} as {motif_length // -(-motif_length // quantization)}"
        raise ValueError(f"domain.quantization must be null or a divisor of domain.motif_length ({motif_length}): "
                         f"{', '.join(map(str, divisors))} (levels of a motif's present fraction), "
                         f"got {quantization!r}{acts}")


def _ehrlich(**kwargs):
    from holo.test_functions.closed_form import Ehrlich  # imports botorch: keep it lazy

    return Ehrlich(**kwargs)


class EhrlichOracle:
    """Plain-callable oracle: designs (strings) -> values; -inf infeasible, NaN unparsable."""

    def __init__(self, num_states: int = 32, dim: int = 32, num_motifs: int = 2, motif_length: int = 4,
                 quantization: int | None = 4, epistasis_factor: float = 0.0, noise_std: float = 0.0,
                 seed: int = 0):
        check_ehrlich(num_states, dim, num_motifs, motif_length, quantization)
        self.alphabet = ALPHABET[:num_states]
        self.function = _ehrlich(num_states=num_states, dim=dim, num_motifs=num_motifs,
                                 motif_length=motif_length, quantization=quantization,
                                 epistasis_factor=epistasis_factor, noise_std=noise_std, random_seed=seed)
        self._index = {c: i for i, c in enumerate(self.alphabet)}

    def tokens(self, design: str) -> list[int] | None:
        if len(design) != self.function.dim or any(c not in self._index for c in design):
            return None
        return [self._index[c] for c in design]

    def __call__(self, designs: Sequence[str]) -> np.ndarray:
        values = np.full(len(designs), np.nan)
        parsed = [(i, t) for i, t in enumerate(map(self.tokens, designs)) if t is not None]
        if parsed:
            rows, toks = zip(*parsed)
            with torch.no_grad():
                values[list(rows)] = self.function(torch.tensor(toks), noise=True).double().numpy()
        return values


class ProteinDomain(Domain):
    name = "protein"
    checkpoint_keys = ("num_states", "dim", "seed")  # a checkpoint serves one feasible chain

    def __init__(self, num_states: int = 32, dim: int = 32, num_motifs: int = 2, motif_length: int = 4,
                 quantization: int | None = 4, epistasis_factor: float = 0.0, noise_std: float = 0.0,
                 seed: int = 0):
        self.oracle = EhrlichOracle(num_states, dim, num_motifs, motif_length, quantization,
                                    epistasis_factor, noise_std, seed)
        self.function = self.oracle.function
        self.vocab_size, self.length = num_states, dim
        self.allowed = self.function.transition_matrix > 0  # [V, V]

    def pretraining_data(self, num, generator=None):
        from holo.test_functions.elemental import sample_dmp

        return sample_dmp(initial_dist=self.function.stationary_dist.squeeze(-1),
                          transition_matrix=self.function.transition_matrix, num_steps=self.length,
                          num_samples=num, generator=generator)

    def encode(self, designs):
        rows = [self.oracle.tokens(d) for d in designs]
        bad = [d for d, r in zip(designs, rows) if r is None]
        if bad:
            raise ValueError(f"not a length-{self.length} sequence over {self.oracle.alphabet!r}: {bad[0]!r}")
        return torch.tensor(rows, dtype=torch.long)

    def decode(self, tokens):
        return ["".join(self.oracle.alphabet[i] for i in row) for row in tokens.tolist()]

    def is_feasible(self, tokens):
        return self.allowed[tokens[:, :-1], tokens[:, 1:]].all(-1)

    def default_oracle(self):
        return self.oracle

    def metrics(self, designs):
        from seiko.metrics import mean_pairwise_hamming

        return {"diversity": mean_pairwise_hamming(self.encode(designs))}


class ChainPosteriorDenoiser(nn.Module):
    """The exact denoiser of the Ehrlich chain: p(x_i | unmasked positions) by forward-backward.

    It stands in for the network in tests: a correct masked sampler driven by it can only
    produce feasible sequences.
    """

    def __init__(self, domain: ProteinDomain):
        super().__init__()
        self.register_buffer("transition", domain.function.transition_matrix.double())
        self.register_buffer("initial", domain.function.stationary_dist.squeeze(-1).double())
        self.vocab_size = domain.vocab_size

    def forward(self, x: Tensor, t: Tensor | None = None) -> Tensor:
        tokens = x[..., :-1].argmax(-1).masked_fill(x[..., -1] > 0.5, self.vocab_size) if x.is_floating_point() else x
        masked = tokens == self.vocab_size
        evidence = torch.nn.functional.one_hot(tokens.clamp_max(self.vocab_size - 1), self.vocab_size).double()
        evidence = torch.where(masked.unsqueeze(-1), torch.ones_like(evidence), evidence)
        batch, length, _ = evidence.shape
        alpha = [self.initial * evidence[:, 0]]
        alpha[0] = alpha[0] / alpha[0].sum(-1, keepdim=True)
        for i in range(1, length):
            a = (alpha[-1] @ self.transition) * evidence[:, i]
            alpha.append(a / a.sum(-1, keepdim=True).clamp_min(1e-300))
        beta = [torch.ones_like(alpha[0])]
        for i in range(length - 1, 0, -1):
            b = (evidence[:, i] * beta[0]) @ self.transition.T
            beta.insert(0, b / b.sum(-1, keepdim=True).clamp_min(1e-300))
        post = torch.stack(alpha, 1) * torch.stack(beta, 1)
        return torch.log(post.clamp_min(1e-30)).float()
