"""Designs one token from the optimum: how many a policy samples, and would the reward model pick the fix?

Why: when a run plateaus below the optimum, either the acquisition does not value the missing
element or the policy never proposes it. This takes samples of a saved round (`seiko sample`),
keeps those with every motif complete but one, which lacks exactly one element whose position
is free, writes that element in (the *fix*), labels designs and fixes with the run's oracle,
fits the run's reward config on the ledger's labels up to a round, and reports how often
mean + bonus * std ranks the fix above the design, for several bonuses.

With ``--edits N`` it also asks whether single-token edits ranked by the acquisition would find
the fix: for each of the first N samples, every substitution whose transitions from the left and
into the right neighbour the chain allows with probability >= ``--edit-eps`` is scored, and the
best-scoring edit is checked against the optimum.

    .venv/bin/seiko sample RUN --round 5 --num 10000 --out samples.tsv
    .venv/bin/python experiments/near_optimum.py RUN samples.tsv --through-round 5
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from motif_census import best_hits, motif_layout


def fix(design: str, layout) -> str | None:
    """The design with its one missing motif element written in; None if not one element short."""
    hits = [best_hits(design, motif, offsets) for motif, offsets, _ in layout]
    short = [i for i, h in enumerate(hits) if not all(h)]
    if len(short) != 1 or sum(hits[short[0]]) != len(hits[short[0]]) - 1:
        return None
    motif, offsets, _ = layout[short[0]]
    k = hits[short[0]].index(False)
    for p in range(len(design) - offsets[-1]):
        if all(design[p + o] == m for j, (m, o) in enumerate(zip(motif, offsets)) if j != k):
            fixed = design[:p + offsets[k]] + motif[k] + design[p + offsets[k] + 1:]
            if all(all(best_hits(fixed, m, o)) for m, o, _ in layout):  # the element's slot was free
                return fixed
    return None


def edits(design: str, letters: str, T: torch.Tensor, eps: float) -> list[str]:
    """Every single-token substitution the chain allows next to both neighbours (prob >= eps)."""
    idx = {a: i for i, a in enumerate(letters)}
    out = []
    for p, here in enumerate(design):
        for t, token in enumerate(letters):
            left_ok = p == 0 or T[idx[design[p - 1]], t] >= eps
            right_ok = p == len(design) - 1 or T[t, idx[design[p + 1]]] >= eps
            if token != here and left_ok and right_ok:
                out.append(design[:p] + token + design[p + 1:])
    return out


def best_edits_at_optimum(model, domain, layout, designs: list[str], bonuses, eps: float):
    """Per bonus: how many designs' acquisition-best edit completes every motif, and for designs
    one token from the optimum, the fix's rank among the design's edits (1 = the best)."""
    letters, T = domain.oracle.alphabet, domain.function.transition_matrix
    found, ranks = dict.fromkeys(bonuses, 0), {b: [] for b in bonuses}
    for d in designs:
        cands = edits(d, letters, T, eps)
        with torch.no_grad():
            post = model.predict(features(domain, cands))
        fixed = fix(d, layout)
        for b in bonuses:
            score = post.mean + b * post.std
            best = cands[int(score.argmax())]
            found[b] += all(all(best_hits(best, m, o)) for m, o, _ in layout)
            if fixed in cands:
                ranks[b].append(int((score > score[cands.index(fixed)]).sum()) + 1)
    return found, ranks


def features(domain, designs) -> torch.Tensor:
    """What the loop feeds the reward model: the domain's features of one-hot tokens."""
    tokens = domain.encode(list(designs))
    return domain.features(torch.nn.functional.one_hot(tokens, domain.vocab_size).float())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path)
    p.add_argument("samples", type=Path, help="`seiko sample` TSV")
    p.add_argument("--through-round", type=int, required=True, help="fit on the labels of rounds <= this")
    p.add_argument("--bonus", nargs="+", type=float, default=[0.0, 1.0, 3.0, 10.0])
    p.add_argument("--override", action="append", default=[], help="reward override, e.g. reward.model.kernel=linear")
    p.add_argument("--edits", type=int, default=0, help="score the single-token edits of the first N samples")
    p.add_argument("--edit-eps", type=float, default=1e-3, help="chain probability an edit's transitions need")
    args = p.parse_args(argv)
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from seiko.cli_support import quiet_lightning
    from seiko.ledger import Ledger

    quiet_lightning()
    cfg = OmegaConf.merge(OmegaConf.load(args.run / "config.yaml"), OmegaConf.from_dotlist(args.override))
    domain = instantiate(cfg.domain.problem)
    layout = motif_layout(domain)
    samples = [line.split("\t")[0] for line in args.samples.read_text().splitlines()[1:] if line]
    pairs = [(d, f) for d in samples if (f := fix(d, layout)) is not None]
    print(f"{len(samples)} samples, {len(pairs)} one element from every motif complete")
    if not pairs:
        return
    designs, fixes = zip(*pairs)
    values, fixed_values = domain.oracle(list(designs)), domain.oracle(list(fixes))
    print(f"labels: designs mean {np.nanmean(np.where(np.isfinite(values), values, np.nan)):.3f}; fixes "
          f"{dict(zip(*np.unique(fixed_values, return_counts=True)))}")
    with Ledger(args.run / "ledger.sqlite") as ledger:  # opening it migrates an older ledger
        rows = [(q.design, q.value) for q in ledger.queries(labelled=True) if q.round <= args.through_round]
    y = np.array([v for _, v in rows])
    y = np.where(np.isfinite(y), y, 0.0)  # as reward.infeasible_value=0
    model = instantiate(cfg.reward.model)
    model.fit_labels(features(domain, [d for d, _ in rows]), torch.tensor(y, dtype=torch.float32),
                     cfg.reward.max_epochs)
    with torch.no_grad():
        a, b = model.predict(features(domain, designs)), model.predict(features(domain, fixes))
    print(f"reward model on {len(rows)} labels: std design {a.std.mean():.4f} fix {b.std.mean():.4f}")
    for bonus in args.bonus:
        wins = ((b.mean + bonus * b.std) > (a.mean + bonus * a.std)).float().mean()
        print(f"  bonus {bonus:g}: the fix ranks higher for {wins:.0%} of the designs")
    if args.edits:
        head = samples[: args.edits]
        found, ranks = best_edits_at_optimum(model, domain, layout, head, args.bonus, args.edit_eps)
        near = sum(fix(d, layout) is not None for d in head)
        print(f"edits of the first {len(head)} samples ({near} one token from the optimum):")
        for bonus, n in found.items():
            r = np.array(ranks[bonus])
            rank = f"; the fix's median rank among its design's edits {np.median(r):.0f}" if len(r) else ""
            print(f"  bonus {bonus:g}: the acquisition's best edit is the optimum for {n}{rank}")


if __name__ == "__main__":
    main()
