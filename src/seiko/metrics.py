"""Metrics of a batch of sampled designs: reward, feasibility, diversity, novelty."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import Tensor


def mean_pairwise_hamming(tokens: Tensor) -> float:
    """Mean Hamming distance over distinct pairs, as a fraction of the length."""
    n = tokens.shape[0]
    if n < 2:
        return 0.0
    diff = (tokens.unsqueeze(0) != tokens.unsqueeze(1)).float().mean(-1)
    return float(diff.sum() / (n * (n - 1)))


def novelty(designs: Iterable[str], seen: Iterable[str]) -> float:
    """Fraction of designs never labelled before (not in the ledger)."""
    designs, seen = list(designs), set(seen)
    return float(np.mean([d not in seen for d in designs])) if designs else 0.0


def reward_stats(values: np.ndarray) -> dict[str, float]:
    """Mean and max over feasible values (infeasible ones count in ``feasibility`` only)."""
    finite = values[np.isfinite(values)]
    return {
        "reward_mean": float(finite.mean()) if finite.size else float("nan"),
        "reward_max": float(finite.max()) if finite.size else float("nan"),
        "feasibility": float(np.isfinite(values).mean()) if values.size else float("nan"),
    }


__all__ = ["mean_pairwise_hamming", "novelty", "reward_stats", "torch"]
