"""Which edits can reach the optimum at all? Climbs that ask the oracle itself, from a run's labels.

Why: restarts climb from the ledger's best designs, guided by a reward model. Before blaming the
model, ask whether the moves could get there with a perfect guide: from each of a run's best
labelled designs that are far apart (distinct lineages), take the oracle's best move, again and
again, until no move raises the true value. With ``--blocks 1`` the moves are single-token
substitutions; with ``--blocks W`` they are ``seiko.edits.block_edits`` of width up to W (runs of
one token and copies of a block elsewhere, single substitutions included), as ``edits.blocks``
gives restarts. Infeasible moves are those the oracle rates -inf. This spends tens of thousands
of oracle calls per climb: a diagnosis on a synthetic oracle, not a method.

``--from DESIGN --rank-round R`` climbs from one design instead and, at every step, asks where
the run's own acquisition ranks the improving moves among the new ones (no label yet): the run's
reward config refitted on its labels up to round R, scored as its strategy scores (UCB: mean +
bonus * std). Restarts label only the top ``edits.per_restart`` moves of a design per round.

    .venv/bin/python experiments/oracle_climbs.py RUN --round 2 --lineages 12 --blocks 1 8
    .venv/bin/python experiments/oracle_climbs.py RUN --from DESIGN --rank-round 5 --blocks 8
    .venv/bin/python experiments/oracle_climbs.py RUN --from DESIGN --rank-round 5 --blocks 8 \
        --override reward.log_floor=0.001 --override strategy.acquisition.bonus=0.0

``--override`` (dotted key=value, as on seiko's command line) changes the run's config before the
refit, to ask whether another reward model or bonus would rank the improving moves higher.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def labels_through(run: Path, last_round: int) -> list[tuple[str, float]]:
    """(design, value) of every answered query up to ``last_round``, in purchase order (NaN kept)."""
    from seiko.ledger import Ledger

    with Ledger(run / "ledger.sqlite") as ledger:  # opening it migrates an older ledger
        return [(q.design, q.value) for q in ledger.queries(labelled=True) if q.round <= last_round]


def lineages(run: Path, last_round: int, count: int, apart: int) -> list[tuple[str, float]]:
    """The best feasible labels up to ``last_round``, each at least ``apart`` tokens from those before."""
    labels = {d: v for d, v in labels_through(run, last_round) if np.isfinite(v) and v > 0}
    picked: list[tuple[str, float]] = []
    for design, value in sorted(labels.items(), key=lambda kv: -kv[1]):
        if all(sum(a != b for a, b in zip(design, p)) >= apart for p, _ in picked):
            picked.append((design, value))
        if len(picked) == count:
            break
    return picked


def climb(domain, design: str, value: float, width: int, step=None) -> tuple[float, int, int]:
    """Best-improvement climb under the oracle: (final value, steps, oracle calls).
    ``step(design, value, moves, their values)``, if given, sees every step before it is taken."""
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
        if step is not None:
            step(design, value, cands, values)
        design, value, steps = cands[best], float(values[best]), steps + 1


def acquisition_ranks(run: Path, domain, last_round: int, overrides: list[str] = ()):
    """A ``step`` callback printing where the run's acquisition, refitted on its labels up to
    ``last_round``, ranks the improving moves among the unlabelled ones (0 = first)."""
    import torch
    import torch.nn.functional as F
    from ehrlich_fits import fit_reward_config
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from seiko.cli_support import quiet_lightning
    from seiko.methods import fit_targets

    quiet_lightning()
    cfg = OmegaConf.merge(OmegaConf.load(run / "config.yaml"), OmegaConf.from_dotlist(list(overrides)))
    rows = labels_through(run, last_round)
    labelled = {d for d, _ in rows}
    y, keep = fit_targets(np.array([v for _, v in rows]), cfg.reward.infeasible_value,
                          cfg.reward.get("log_floor"))

    def features(designs):
        return domain.features(F.one_hot(domain.encode(designs), domain.vocab_size).float())
    kept = [d for (d, _), k in zip(rows, keep) if k]
    model, _ = fit_reward_config(cfg, features(kept), torch.as_tensor(y, dtype=torch.float32))
    score = instantiate(cfg.strategy.acquisition).objective(model, torch.Generator().manual_seed(cfg.seed))

    def step(design, value, cands, values):
        new = np.array([c not in labelled for c in cands])
        with torch.no_grad():
            scores = torch.cat([score(features(list(part))) for part in np.array_split(np.array(cands)[new], 8)])
        order = np.argsort(-scores.numpy(), kind="stable")
        ranked = values[new][order]
        improving = np.nonzero(ranked > value)[0]
        feasible = ranked[np.isfinite(ranked)]  # as if a perfect filter dropped the infeasible ones
        print(f"  {design} {value:.3f}: improving moves ranked {improving.tolist()} of {int(new.sum())} "
              f"({np.nonzero(feasible > value)[0].tolist()} of {len(feasible)} feasible); "
              f"{int((~np.isfinite(ranked[:32])).sum())} of the top 32 infeasible", flush=True)
    return step


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--round", type=int, default=2, help="start from labels bought up to this round")
    p.add_argument("--lineages", type=int, default=12, help="starting designs")
    p.add_argument("--apart", type=int, default=8, help="least Hamming distance between starting designs")
    p.add_argument("--blocks", type=int, nargs="+", default=[1, 8], help="widest move (1: single tokens)")
    p.add_argument("--optimum", type=float, default=1.0, help="the oracle's best value (Ehrlich: 1.0)")
    p.add_argument("--from", dest="start", help="climb from this design instead of the run's lineages")
    p.add_argument("--rank-round", type=int, help="print the run's acquisition ranks of the improving moves")
    p.add_argument("--override", action="append", default=[], help="KEY=VALUE on the run's config for the ranks")
    args = p.parse_args(argv)
    from motif_census import domain_of

    domain = domain_of(args.run)
    if args.start:
        starts = [(args.start, float(domain.oracle([args.start])[0]))]
    else:
        starts = lineages(args.run, args.round, args.lineages, args.apart)
    step = None if args.rank_round is None else acquisition_ranks(args.run, domain, args.rank_round, args.override)
    optimum = args.optimum
    for width in args.blocks:
        reached = []
        for design, value in starts:
            final, steps, calls = climb(domain, design, value, width, step)
            reached.append(final)
            print(f"blocks={width}: {value:.3f} -> {final:.3f} in {steps} steps ({calls} oracle calls)", flush=True)
        print(f"blocks={width}: {sum(r >= optimum for r in reached)} of {len(starts)} climbs reach {optimum:g}; "
              f"final values {sorted(np.round(reached, 3).tolist(), reverse=True)}", flush=True)


if __name__ == "__main__":
    main()
