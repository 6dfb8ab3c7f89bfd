"""Proposal cost: seconds and memory for one round's proposals, enumerated token moves against infill.

Why: the enumerated moves (``edits.moves=enumerate``) score every single-token or block move of a
design, so their cost grows with length x vocabulary (single) or length^2 x width (blocks); infilled
moves (``edits.moves=infill``) cost a few policy passes per fill, whatever the length. At
holo-bench's own size (32 states, length 256, 4 motifs of length 8, quantization 8) this is where
enumeration has to break and infill must not.

Each case builds the benchmark preset through the real code path (``seiko.api.compose`` /
``build_loop``) at the given length, labels one round of feasible chain samples with the Ehrlich
oracle, fits the round's reward model, then times ``method.propose`` for the next round (125
designs: half restarts from the best labels, half fresh samples with their fraction edits). The
denoiser is the preset's architecture after a few pretraining steps: the cost of a proposal does
not depend on how well it was trained. Time is the proposing process's CPU time (one thread), so
other jobs on the machine do not inflate it; a case whose proposals take more than ``--limit`` CPU
seconds is stopped and reported as such. Each case runs in a child process of its own, so that its
peak memory is its own.

    .venv/bin/python experiments/proposal_cost.py                  # writes experiments/results/proposal_cost.md
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

CASES = [  # (name, length, motif length, overrides)
    ("enumerate, blocks 8 (ehrlich_seiko_best)", 32, 4, ["experiment=ehrlich_seiko_best"]),
    ("infill (ehrlich_seiko)", 32, 4, ["experiment=ehrlich_seiko"]),
    ("enumerate, single tokens", 256, 8, ["experiment=ehrlich_seiko_best", "edits.blocks=0"]),
    ("enumerate, blocks 8 (ehrlich_seiko_best)", 256, 8, ["experiment=ehrlich_seiko_best"]),
    ("infill (ehrlich_seiko)", 256, 8, ["experiment=ehrlich_seiko"]),
]


def measure(length: int, motif_length: int, overrides: list[str], limit: float, queue) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from seiko.api import build_loop, compose

    cfg = compose(overrides + [f"domain.dim={length}", f"domain.motif_length={motif_length}",
                               f"domain.quantization={motif_length}", "domain.pretrained=null",
                               "domain.pretrain_steps=20", "progress=false", "logger=none", "eval.num_samples=0"])
    with tempfile.TemporaryDirectory() as tmp:
        loop = build_loop(cfg, tmp)
        method, domain = loop.method, loop.domain
        designs = domain.pretraining_data(125, torch.Generator().manual_seed(0))
        values = np.asarray(domain.default_oracle()(domain.decode(designs)), dtype=np.float64)
        values = values + 1e-3 * np.arange(len(values)) / len(values)  # distinct labels: a definite best
        method.labelled = (designs, values)
        method.objective = method.fit_objective(0, designs, values)
        # only the proposals are timed and limited, not the setup above; in CPU seconds of this
        # one-thread process, which other jobs on the machine do not inflate as they do wall time
        signal.signal(signal.SIGPROF, _stop)
        signal.setitimer(signal.ITIMER_PROF, limit)
        start, wall = time.process_time(), time.time()
        try:
            proposals = len(method.propose(1, 125, torch.Generator().manual_seed(1)))
            seconds, wall = time.process_time() - start, time.time() - wall
        except _Stopped:
            proposals = seconds = wall = None
        signal.setitimer(signal.ITIMER_PROF, 0)
        loop.ledger.close()
    queue.put({"cpu_seconds": seconds, "wall_seconds": wall, "proposals": proposals,
               "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20})


class _Stopped(Exception):
    pass


def _stop(signum, frame):
    raise _Stopped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=float, default=600.0, help="CPU seconds before a case's proposals are stopped")
    p.add_argument("--lengths", nargs="+", type=int, default=[32, 256])
    p.add_argument("--out", default="experiments/results/proposal_cost.md")
    args = p.parse_args(argv)
    rows = []
    for name, length, motif, overrides in [c for c in CASES if c[1] in args.lengths]:
        queue = mp.get_context("spawn").Queue()
        child = mp.get_context("spawn").Process(target=measure, args=(length, motif, overrides, args.limit, queue))
        child.start()  # a child per case: each case's peak memory is its own
        child.join()
        result = queue.get() if not queue.empty() else {"cpu_seconds": None, "error": f"exit {child.exitcode}"}
        rows.append(dict(case=name, length=length, **result))
        print(json.dumps(rows[-1]), flush=True)
    lines = ["# Proposal cost: one round's 125 proposals (CPU seconds of one thread)", "",
             "| length | moves | CPU seconds | wall seconds | proposals | peak memory (GB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("error"):
            cpu = wall = r["error"]
        elif r["cpu_seconds"] is None:
            cpu, wall = f"> {args.limit:.0f} (stopped)", "–"
        else:
            cpu, wall = f"{r['cpu_seconds']:.1f}", f"{r['wall_seconds']:.1f}"
        memory = f"{r['peak_rss_gb']:.2f}" if "peak_rss_gb" in r else "–"
        lines.append(f"| {r['length']} | {r['case']} | {cpu} | {wall} | {r.get('proposals') or '–'} | {memory} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
