"""The oracle contract and a caller that never loses a label.

An oracle is any plain callable ``designs: list[str] -> floats`` (list, numpy array
or torch tensor) of the same length; NaN or -inf marks an infeasible design.
Oracles are external and fallible, so ``call_oracle`` turns every failure into a
recorded, infeasible batch instead of an exception that would abort a round, and
``query_in_batches`` writes each batch to the ledger as soon as it is labelled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seiko.ledger import Ledger, Query

log = logging.getLogger(__name__)

Oracle = Callable[[list[str]], Any]


@dataclass
class OracleResult:
    values: np.ndarray  # float64, len == len(designs)
    feasible: np.ndarray  # bool: finite value
    error: str | None  # set when the oracle raised or returned something malformed


def _to_float_array(out: Any) -> np.ndarray:
    """Convert a list / numpy array / torch tensor to a flat float64 array."""
    if hasattr(out, "detach") and hasattr(out, "cpu"):  # torch tensor, without importing torch
        out = out.detach().cpu().double().numpy()
    arr = np.asarray(out, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:  # (n, 1) column output is common; accept it
        arr = arr[:, 0]
    return arr


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}"[:500]


def call_oracle(oracle: Oracle, designs: Sequence[str]) -> OracleResult:
    """Call the oracle on one batch; never raises for an oracle failure.

    An exception, wrong length or non-numeric output gives all-NaN values,
    feasible False and a one-line ``error`` ("ExcType: message").
    """
    designs = list(designs)
    n = len(designs)
    if n == 0:
        return OracleResult(np.empty(0), np.empty(0, dtype=bool), None)
    try:
        values = _to_float_array(oracle(designs))
        if values.shape != (n,):
            raise ValueError(f"oracle returned shape {values.shape} for {n} designs")
    except Exception as e:  # noqa: BLE001 - any oracle failure becomes a failed batch
        error = _one_line(e)
        log.warning("oracle failed on a batch of %d designs: %s", n, error)
        return OracleResult(np.full(n, np.nan), np.zeros(n, dtype=bool), error)
    return OracleResult(values, np.isfinite(values), None)


def query_in_batches(oracle: Oracle, ledger: Ledger, queries: Sequence[Query], batch_size: int,
                     report: Callable[[int, int], None] | None = None) -> int:
    """Label the given queries batch by batch, recording each batch right away.

    A crash mid-round loses at most the batch in flight. Queries the ledger already
    holds a label for are skipped (state is re-read, not trusted from ``queries``),
    so resuming never buys a label twice. Returns the number of queries recorded,
    failed batches included (they are recorded as infeasible with their error).
    ``report(done, total)`` is called after each recorded batch (the round's display).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pending = {q.id: q for q in ledger.pending()}
    todo, seen = [], set()
    for q in queries:
        if q.id in pending and q.id not in seen:
            seen.add(q.id)
            todo.append(pending[q.id])
    done = 0
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        result = call_oracle(oracle, [q.design for q in batch])
        ledger.record([q.id for q in batch], result.values.tolist(),
                      result.feasible.tolist(), error=result.error)
        done += len(batch)
        if report is not None:
            report(done, len(todo))
    return done


class AwaitingLabels(Exception):
    """Raised when a round's queries went to an external oracle (a lab) and await import."""


class LabOracle:
    """An oracle that is a lab: the pending batch is exported to CSV and the run stops.

    Import the labels with ``seiko import-labels RUN_DIR labels.csv`` and continue with
    ``resume=true``; the loop picks up exactly where it stopped.
    """

    external = True

    def __init__(self, export_name: str = "pending_round_{round}.csv"):
        self.export_name = export_name

    def __call__(self, designs):
        raise RuntimeError("LabOracle is not called directly: its batches go through the ledger's CSV export")
