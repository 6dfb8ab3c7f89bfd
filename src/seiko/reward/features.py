"""Feature maps applied to designs before a kernel.

``PairFeatures`` turns a (soft) one-hot sequence into the presence of every gapped token pair:
phi[a, b, g] = 1 when some position l holds token a and position l + g holds token b
(g = 1 .. max_gap, capped at the length - 1, so one config serves any length).

Why: a spaced motif (Ehrlich functions, binding sites) is a set of such pairs, and a pair
feature is the same wherever the motif sits, so a kernel on these features is translation
invariant. A GP's posterior std on these features is higher on designs that contain pairs the
ledger has never seen: the novelty a UCB bonus should pay for, which a kernel on raw one-hots
(whose distances only count mismatched positions) does not see.

For soft inputs the count c = sum_l p_l(a) p_{l+g}(b) is differentiable; presence is
min(c, 1), exact on hard one-hots.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PairFeatures(nn.Module):
    def __init__(self, vocab_size: int, max_gap: int) -> None:
        super().__init__()
        if vocab_size < 1 or max_gap < 1:
            raise ValueError(f"PairFeatures needs vocab_size >= 1 and max_gap >= 1; got {vocab_size}, {max_gap}")
        self.vocab_size, self.max_gap = vocab_size, max_gap

    def out_dim(self, length: int) -> int:
        return self.vocab_size * self.vocab_size * min(self.max_gap, length - 1)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, L * V] (soft) one-hots -> [B, V * V * min(max_gap, L - 1)] pair presences in [0, 1]."""
        if x.ndim != 2 or x.shape[1] % self.vocab_size:
            raise ValueError(f"PairFeatures expects [B, L * {self.vocab_size}] inputs; got {tuple(x.shape)}")
        p = x.reshape(x.shape[0], -1, self.vocab_size)
        if p.shape[1] < 2:
            raise ValueError(f"PairFeatures needs sequences of length >= 2; got {p.shape[1]}")
        gaps = range(1, min(self.max_gap, p.shape[1] - 1) + 1)
        counts = [torch.einsum("bla,blc->bac", p[:, :-g], p[:, g:]) for g in gaps]
        return torch.stack(counts, 1).reshape(x.shape[0], -1).clamp(max=1.0)
