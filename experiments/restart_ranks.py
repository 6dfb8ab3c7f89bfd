"""Where a run's own restarts rank the moves that would raise its best label.

Why: restarts label the top ``edits.per_restart`` (times ``edits.focus`` per stalled round) new
edits of the ledger's best design, ranked by the round's acquisition, among the block edits the
pretrained model supports at ``edits.eps``. When a run sits on a plateau, this asks whether the
improving moves were there to find (supported, not yet labelled) and how far down the ranking
they lay. Unlike ``oracle_climbs.py --rank-round`` it rebuilds the run's own method (its reward
fit, acquisition and support check), so the ranks are those the next round's restarts used.
The oracle labels every block edit of the design (about 11,000 on the 4-motif benchmark): a
diagnosis on a synthetic oracle, not a method.

    .venv/bin/python experiments/restart_ranks.py RUN ROUND
    .venv/bin/python experiments/restart_ranks.py RUN --plateau N

``--plateau N`` asks instead whether the plateau is a dead end: for N of the distinct designs
that share the run's best label (drawn at random, seed 0), how many of their block edits the
oracle labels higher, supported or not. Zero for all of them means no restart of that lineage,
however focused, can raise the best label by one move.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch


@contextmanager
def rebuilt(run: Path):
    """The run's loop rebuilt from its config.yaml in a scratch folder, and its ledger's labels
    (design, value, round) in the order they were bought."""
    from omegaconf import OmegaConf

    from seiko.api import build_loop
    from seiko.cli_support import quiet_lightning
    from seiko.ledger import Ledger

    quiet_lightning()
    cfg = OmegaConf.load(run / "config.yaml")
    cfg.progress = False
    scratch = Path(tempfile.mkdtemp())
    try:
        with Ledger(run / "ledger.sqlite") as ledger:  # opening it migrates an older ledger
            rows = [(q.design, q.value, q.round) for q in ledger.queries(labelled=True)]
        yield build_loop(cfg, scratch / "run"), rows
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def restart_ranks(run: Path, last_round: int) -> str:
    from seiko.edits import block_edits, supported

    with rebuilt(run) as (loop, rows):
        upto = [(d, float(v)) for d, v, r in rows if r <= last_round]
        following = {d: float(v) for d, v, r in rows if r == last_round + 1}
        method, domain = loop.method, loop.domain
        values = np.array([v for _, v in upto])
        method.labelled = (domain.encode([d for d, _ in upto]), values)
        method.objective = method.fit_objective(last_round, *method.labelled)
        finite = np.where(np.isfinite(values), values, -np.inf)
        design, best = upto[int(np.argmax(finite))][0], float(finite.max())  # the first best, as restarts take it
        tokens = domain.encode([design])[0]
        width = max(method.edit_blocks, 1)
        cands = block_edits(tokens, width, domain.vocab_size)
        names = domain.decode(cands)
        truth = np.array(domain.oracle(names), dtype=float)
        labelled = {d for d, _ in upto}
        new = np.array([n not in labelled for n in names])
        ok = supported(method.edit_reference, method.family, tokens, cands, method.edit_eps).numpy()
        with torch.no_grad():
            score = torch.cat([method.score(cands[i:i + 4096]) for i in range(0, len(cands), 4096)]).numpy()
        pool = np.nonzero(new & ok)[0]
        order = pool[np.argsort(-score[pool], kind="stable")]
        ranks = [k for k, i in enumerate(order) if truth[i] > best]
        bought = [following[n] for n in names if n in following]
        return (f"{design} {best:.4f} after round {last_round}: {len(cands)} moves, {len(pool)} new and supported at "
                f"eps {method.edit_eps:g}; improving ones ranked {ranks} (to {[float(truth[order[k]]) for k in ranks]}); "
                f"improving but unsupported {int(((truth > best) & ~ok).sum())}; round {last_round + 1} labelled "
                f"{len(bought)} of these moves, best {max(bought, default=float('nan')):.4f}")


def plateau_exits(run: Path, count: int) -> str:
    from seiko.edits import block_edits

    with rebuilt(run) as (loop, rows):
        domain, width = loop.domain, max(loop.method.edit_blocks, 1)
        first: dict[str, tuple[float, int]] = {}
        for design, value, round in rows:
            first.setdefault(design, (float(value), round))
        best = max(v for v, _ in first.values() if np.isfinite(v))
        plateau = [(d, r) for d, (v, r) in first.items() if v == best]
        picks = np.random.default_rng(0).permutation(len(plateau))[:count]
        lines = [f"best label {best:.4f}: {len(plateau)} distinct designs; {len(picks)} checked "
                 f"(block edits of up to {width} tokens)"]
        for i in sorted(picks, key=lambda i: plateau[i][1]):
            design, round = plateau[i]
            cands = block_edits(domain.encode([design])[0], width, domain.vocab_size)
            truth = np.array(domain.oracle(domain.decode(cands)), dtype=float)
            lines.append(f"{design} (round {round}): {len(cands)} moves, {int((truth > best).sum())} improving")
        return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a run directory (config.yaml, ledger.sqlite)")
    p.add_argument("round", type=int, nargs="?", help="rank with the reward model fitted on labels up to this round")
    p.add_argument("--plateau", type=int, metavar="N", help="instead: improving moves of N designs at the best label")
    args = p.parse_args(argv)
    if (args.round is None) == (args.plateau is None):
        p.error("give either ROUND or --plateau N")
    print(plateau_exits(args.run, args.plateau) if args.plateau is not None else restart_ranks(args.run, args.round), flush=True)


if __name__ == "__main__":
    main()
