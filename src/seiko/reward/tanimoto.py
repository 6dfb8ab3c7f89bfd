"""The Tanimoto (MinMax) kernel on count fingerprints, the usual GP kernel for molecules.

k(a, b) = sum_i min(a_i, b_i) / sum_i max(a_i, b_i), the Jaccard similarity of multisets,
positive definite on non-negative vectors (Ralaivola et al. 2005; GAUCHE, Griffiths et al. 2023).
With min = (a + b - |a - b|) / 2 and max = (a + b + |a - b|) / 2 both sums come from row sums
and one L1 distance matrix, so no [N, M, D] tensor is ever built. It has no lengthscale; a
ScaleKernel around it gives the output scale. The empty molecule (all zeros) is similar to
nothing, and to itself 1.
"""
from __future__ import annotations

import gpytorch
import torch
from torch import Tensor


class TanimotoKernel(gpytorch.kernels.Kernel):
    has_lengthscale = False
    is_stationary = False

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False, **params):
        if diag:
            return torch.ones(x1.shape[:-1], dtype=x1.dtype, device=x1.device)
        total = x1.sum(-1, keepdim=True) + x2.sum(-1).unsqueeze(-2)
        l1 = torch.cdist(x1, x2, p=1)
        both_empty = total == 0
        return torch.where(both_empty, torch.ones_like(total), (total - l1) / (total + l1).clamp_min(1e-12))
