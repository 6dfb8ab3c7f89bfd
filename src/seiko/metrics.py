"""Metrics of a batch of sampled designs (reward, feasibility, diversity, novelty) and of the
labels bought so far (PMO's top-k mean and top-k AUC, which any domain can report)."""
from __future__ import annotations

import heapq
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



def _oracle_values(values: Iterable[float]) -> np.ndarray:
    """Values as a 1-D float array, NaN and -inf replaced by 0.

    PMO's oracle scores an invalid molecule 0, so a failed evaluation (NaN)
    or a "worst possible" -inf must count as 0 too; otherwise NaN would
    poison every later top-k mean and -inf would make the AUC -inf.
    """
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values,
                     dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {arr.shape}")
    arr = arr.copy()
    arr[np.isnan(arr) | np.isneginf(arr)] = 0.0
    return arr


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def _mean_desc(top: Iterable[float]) -> float:
    # PMO takes np.mean of the top values sorted in descending order; doing
    # the same keeps results identical down to floating-point summation order.
    return float(np.mean(sorted(top, reverse=True)))


def top_k_mean(values: Iterable[float], k: int = 10) -> float:
    """Mean of the ``k`` largest values (all of them if fewer than ``k``).

    This is PMO's "avg_top10" for k=10.  NaN and -inf count as 0, as in
    :func:`top_k_auc`.  An empty input gives 0.0, the value PMO's AUC starts
    from before the first oracle call.
    """
    _check_positive_int("k", k)
    arr = _oracle_values(values)
    if arr.size == 0:
        return 0.0
    return _mean_desc(heapq.nlargest(k, arr.tolist()))


def top_k_auc(
    values_in_call_order: Iterable[float],
    budget: int,
    k: int = 10,
    freq: int = 100,
) -> float:
    """PMO's top-k AUC (``top_auc(buffer, k, finish=True, freq, budget)``).

    PMO (Gao et al. 2022) ranks optimisers by the area under the curve of
    "mean of the top-10 values found so far" against the number of oracle
    calls, divided by the budget, so that finding good molecules *early*
    counts.  ``values_in_call_order`` are the oracle values of the distinct
    molecules in the order they were first scored (PMO's ``mol_buffer``
    sorted by call index; invalid molecules already 0).  Exactly as PMO's
    code does:

    * every ``freq`` calls (checkpoints ``freq, 2*freq, ...`` strictly below
      ``min(n, budget)``, n = number of values) take the mean of the top-k
      values so far (of all of them while fewer than k) and add the
      trapezoid ``freq * (now + prev) / 2``, starting from ``prev = 0`` at
      call 0, so the first segment ramps up from (0, 0);
    * a last trapezoid runs from the last checkpoint to call n, using the
      top-k mean of all n values;
    * a run that stopped before the budget (``n < budget``) is extended flat
      at its last top-k mean up to ``budget`` (PMO's ``finish=True``);
    * the sum is divided by ``budget``.

    Because of the ramp from (0, 0), a constant sequence of value v with
    n >= budget scores ``v * (1 - freq / (2 * budget))`` (0.95 v for budget
    1000 and freq 100), not v: that is PMO's definition, kept on purpose.

    Deviations, only where PMO's behaviour is undefined or accidental:
    NaN and -inf count as 0 (PMO scores invalid molecules 0); values past
    the first ``budget`` are ignored (PMO's oracle stops scoring at the
    budget, and its ``top_auc`` would otherwise credit extra calls and can
    exceed the maximum); an empty sequence gives 0.0 (PMO's would be NaN).
    """
    _check_positive_int("budget", budget)
    _check_positive_int("k", k)
    _check_positive_int("freq", freq)
    arr = _oracle_values(values_in_call_order)[:budget]
    n = int(arr.size)
    if n == 0:
        return 0.0

    total = 0.0
    prev = 0.0
    called = 0
    heap: list[float] = []  # min-heap holding the k largest values so far
    seen = 0

    def advance_to(idx: int) -> None:
        nonlocal seen
        for x in arr[seen:idx].tolist():
            if len(heap) < k:
                heapq.heappush(heap, x)
            elif x > heap[0]:
                heapq.heapreplace(heap, x)
        seen = idx

    for idx in range(freq, min(n, budget), freq):
        advance_to(idx)
        now = _mean_desc(heap)
        total += freq * (now + prev) / 2
        prev = now
        called = idx
    advance_to(n)
    now = _mean_desc(heap)
    total += (n - called) * (now + prev) / 2
    if n < budget:
        total += (budget - n) * now
    return total / budget


__all__ = ["mean_pairwise_hamming", "novelty", "reward_stats", "top_k_auc", "top_k_mean", "torch"]
