"""Motif census of an Ehrlich run: which motif elements its labels (or samples) carry, round by round.

Why: a best label says how far a run got, not what stops it. On an Ehrlich function the value is
a product over motifs of the fraction of each motif present (quantised), so a plateau is a
motif missing an element. For every motif this prints its elements and spacing, the chain's
probability of each link (element k+1 at its offset after element k: (T^s)[a_k, a_k+1]), and
per round how many designs hold the motif complete and how many hold all but one element
(with the element most often missing), at its best placement.

    .venv/bin/python experiments/motif_census.py RUN_DIR [RUN_DIR ...]
    .venv/bin/python experiments/motif_census.py RUN_DIR --samples samples.tsv   # from `seiko sample`
"""
from __future__ import annotations

import argparse
import collections
import itertools
import sqlite3
from pathlib import Path

import torch


def domain_of(run_dir: Path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    return instantiate(OmegaConf.load(run_dir / "config.yaml").domain.problem)


def motif_layout(domain) -> list[tuple[str, list[int], list[float]]]:
    """(motif letters, offsets, link probabilities) per motif."""
    f, letters = domain.function, domain.oracle.alphabet
    T = f.transition_matrix.double()
    out = []
    for motif, spacing in zip(f.motifs, f.spacings):
        offsets = [0, *itertools.accumulate(int(s) for s in spacing)]
        links = [float(torch.linalg.matrix_power(T, int(s))[a, b]) for a, b, s in zip(motif[:-1], motif[1:], spacing)]
        out.append(("".join(letters[int(i)] for i in motif), offsets, links))
    return out


def best_hits(design: str, motif: str, offsets: list[int]) -> tuple[bool, ...]:
    """Which elements are present at the placement that matches most of them."""
    places = range(len(design) - offsets[-1])
    return max((tuple(design[p + o] == m for m, o in zip(motif, offsets)) for p in places), key=sum)


def census(designs: list[str], layout) -> list[str]:
    cells = []
    for motif, offsets, _ in layout:
        hits = [best_hits(d, motif, offsets) for d in designs]
        missing = collections.Counter(motif[h.index(False)] for h in hits if sum(h) == len(motif) - 1)
        one_short = sum(missing.values())
        top = f" (missing {missing.most_common(1)[0][0]} in {missing.most_common(1)[0][1]})" if missing else ""
        cells.append(f"{motif}: complete {sum(all(h) for h in hits)}, one short {one_short}{top}")
    both = sum(all(all(best_hits(d, m, o)) for m, o, _ in layout) for d in designs)
    return cells + [f"all complete {both}"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories (config.yaml + ledger.sqlite)")
    p.add_argument("--samples", type=Path, help="census a `seiko sample` TSV instead of the ledger")
    args = p.parse_args(argv)
    for run in args.runs:
        layout = motif_layout(domain_of(run))
        print(run)
        for motif, offsets, links in layout:
            print(f"  motif {motif} offsets {offsets} link probabilities " + " ".join(f"{x:.2g}" for x in links))
        if args.samples:
            designs = [line.split("\t")[0] for line in args.samples.read_text().splitlines()[1:] if line]
            print(f"  {args.samples.name} ({len(designs)}): " + "; ".join(census(designs, layout)))
            continue
        rows = sqlite3.connect(run / "ledger.sqlite").execute("select round, design from queries order by id")
        by_round = collections.defaultdict(list)
        for round, design in rows:
            by_round[round].append(design)
        for round, designs in sorted(by_round.items()):
            print(f"  round {round} ({len(designs)}): " + "; ".join(census(designs, layout)))


if __name__ == "__main__":
    main()
