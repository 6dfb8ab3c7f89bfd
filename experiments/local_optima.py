"""Are a run's best labels local optima of the oracle under feasible token edits?

Why: edits (``edits.fraction``) climb one token at a time, and on an Ehrlich function a design can
sit where no single substitution the chain allows raises the true value, while two do (an element
whose slot needs its neighbour changed first, or a motif that has to move). This asks the run's own
oracle, not the reward model: for each of the ledger's best distinct designs it reports the best
true value over every chain-feasible single edit and over every pair of them in turn. A run
whose best labels have no better single edit has stalled for a reason no reward model can fix
with one-token edits.

Edits and restarts draw only from the tokens the run's pretrained model allows in context
(conditional >= ``edits.eps``), a smaller set than the chain allows. ``--support-eps`` counts,
for each eps given, the allowed single edits that raise the true value: where that is 0 at
the run's ``edits.eps``, the edit the design needs is one the run could never propose.

    .venv/bin/python experiments/local_optima.py RUN [--top 5] [--support-eps 1e-3 1e-4]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from motif_census import best_hits, motif_layout
from near_optimum import edits


def best_value(oracle, designs: list[str]) -> float:
    values = np.array(oracle(designs), dtype=float)
    return float(np.nanmax(values)) if np.isfinite(values).any() else float("nan")


def support_edits(cfg, domain):
    """design, eps -> the single edits the run's pretrained model allows (what edits draw from)."""
    from seiko.checkpoint import load_policy
    from seiko.edits import allowed_substitutions, single_edits

    denoiser, family, _ = load_policy(cfg.domain.pretrained)

    def allowed_at(design: str, eps: float) -> list[str]:
        tokens = domain.encode([design])
        allowed = allowed_substitutions(denoiser.eval(), family, tokens, eps)
        return domain.decode(single_edits(tokens[0], allowed[0]))
    return allowed_at


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("--top", type=int, default=5, help="best distinct labelled designs to examine")
    p.add_argument("--edit-eps", type=float, default=1e-3, help="chain probability an edit's transitions need")
    p.add_argument("--support-eps", type=float, nargs="*", default=[],
                   help="for each: improving single edits among those the pretrained model allows at it")
    args = p.parse_args(argv)
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from seiko.ledger import Ledger

    cfg = OmegaConf.load(args.run / "config.yaml")
    domain = instantiate(cfg.domain.problem)
    layout, letters, T = motif_layout(domain), domain.oracle.alphabet, domain.function.transition_matrix
    labels: dict[str, float] = {}
    with Ledger(args.run / "ledger.sqlite") as ledger:  # opening it migrates an older ledger
        answered = [(q.design, q.value) for q in ledger.queries(labelled=True)]
    for design, value in answered:
        if np.isfinite(value):
            labels[design] = max(value, labels.get(design, -np.inf))
    rows = sorted(labels.items(), key=lambda kv: -kv[1])[:args.top]
    allowed_at = support_edits(cfg, domain) if args.support_eps else None
    print("design | label | motif elements present | best single edit | best two edits"
          + "".join(f" | improving of allowed at {eps:g}" for eps in args.support_eps))
    for design, value in rows:
        singles = edits(design, letters, T, args.edit_eps)
        doubles = sorted({d for s in singles for d in edits(s, letters, T, args.edit_eps)} - {design})
        hits = [sum(best_hits(design, m, o)) for m, o, _ in layout]
        support = ""
        for eps in args.support_eps:
            allowed = np.array(domain.oracle(allowed_at(design, eps)), dtype=float)
            support += f" | {int((allowed > value).sum())} of {len(allowed)} ({int((~np.isfinite(allowed)).sum())} infeasible)"
        print(f"{design} | {value:.3f} | {hits} | {best_value(domain.oracle, singles):.3f} ({len(singles)}) | "
              f"{best_value(domain.oracle, doubles):.3f} ({len(doubles)}){support}", flush=True)


if __name__ == "__main__":
    main()
