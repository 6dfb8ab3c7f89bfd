"""Which edits can reach the optimum at all? Climbs that ask the oracle itself, from a run's labels.

Why: restarts climb from the ledger's best designs, guided by a reward model. Before blaming the
model, ask whether the moves could get there with a perfect guide: from each of a run's best
labelled designs that are far apart (distinct lineages), take the oracle's best move, again and
again, until no move raises the true value. With ``--blocks 1`` the moves are single-token
substitutions; with ``--blocks W`` they are ``seiko.edits.block_edits`` of width up to W (runs of
one token and copies of a block elsewhere, single substitutions included), as ``edits.blocks``
gives restarts. Infeasible moves are those the oracle rates -inf. This spends tens of thousands
of oracle calls per climb: a diagnosis on a synthetic oracle, not a method.

    .venv/bin/python experiments/oracle_climbs.py RUN --round 2 --lineages 12 --blocks 1 8
"""
from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import numpy as np


def lineages(run: Path, last_round: int, count: int, apart: int) -> list[tuple[str, float]]:
    """The best feasible labels up to ``last_round``, each at least ``apart`` tokens from those before."""
    rows = sqlite3.connect(run / "ledger.sqlite").execute(
        "select design, value from queries where round <= ? and value is not null", (last_round,))
    labels = {d: float(v) for d, v in rows if np.isfinite(float(v)) and float(v) > 0}
    picked: list[tuple[str, float]] = []
    for design, value in sorted(labels.items(), key=lambda kv: -kv[1]):
        if all(sum(a != b for a, b in zip(design, p)) >= apart for p, _ in picked):
            picked.append((design, value))
        if len(picked) == count:
            break
    return picked


def climb(domain, design: str, value: float, width: int) -> tuple[float, int, int]:
    """Best-improvement climb under the oracle: (final value, steps, oracle calls)."""
    from seiko.edits import block_edits

    steps = calls = 0
    while True:
        cands = domain.decode(block_edits(domain.encode([design])[0], width, domain.vocab_size))
        values = np.array(domain.oracle(cands), dtype=float)
        calls += len(cands)
        values[~np.isfinite(values)] = -np.inf
        best = int(values.argmax())
        if values[best] <= value:
            return value, steps, calls
        design, value, steps = cands[best], float(values[best]), steps + 1


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--round", type=int, default=2, help="start from labels bought up to this round")
    p.add_argument("--lineages", type=int, default=12, help="starting designs")
    p.add_argument("--apart", type=int, default=8, help="least Hamming distance between starting designs")
    p.add_argument("--blocks", type=int, nargs="+", default=[1, 8], help="widest move (1: single tokens)")
    p.add_argument("--optimum", type=float, default=1.0, help="the oracle's best value (Ehrlich: 1.0)")
    args = p.parse_args(argv)
    from motif_census import domain_of

    domain = domain_of(args.run)
    starts = lineages(args.run, args.round, args.lineages, args.apart)
    optimum = args.optimum
    for width in args.blocks:
        reached = []
        for design, value in starts:
            final, steps, calls = climb(domain, design, value, width)
            reached.append(final)
            print(f"blocks={width}: {value:.3f} -> {final:.3f} in {steps} steps ({calls} oracle calls)", flush=True)
        print(f"blocks={width}: {sum(r >= optimum for r in reached)} of {len(starts)} climbs reach {optimum:g}; "
              f"final values {sorted(np.round(reached, 3).tolist(), reverse=True)}", flush=True)


if __name__ == "__main__":
    main()
