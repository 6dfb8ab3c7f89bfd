"""Round cost at holo-bench's size: where one round's seconds go, with and without fill rollouts.

Why: at length 256 a fresh rollout of the backprop fine-tuner runs 256 denoiser steps (three
networks each: the policy and both KL references), so fine-tuning, not the proposals, is what
breaks a CPU round; a fill rollout (``finetune.fills``) runs only its few masked steps. This runs
the first round of ``experiment=ehrlich_seiko`` at length 256 (4 motifs of 8, quantization 8,
pair gaps up to 63, the longest inside a motif of that function) once per ``--fills`` value and
reports the seconds of each phase that the loop records (``seconds_sample``, ``_query``,
``_update`` = reward fit and fine-tuning, ``_evaluate``).

    .venv/bin/python experiments/round_cost.py --fills 0 1.0 --out experiments/results/round_cost_l256.md

It needs the length-256 checkpoint (``make pretrain-holo``); its quality does not change the cost.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

SIZE = ["domain.dim=256", "domain.motif_length=8", "domain.quantization=8", "domain.num_motifs=4"]
PHASES = ["sample", "query", "update", "evaluate"]


def one_round(fills: float, per_round: int, steps: int, eval_samples: int, extra: list[str]) -> dict:
    from seiko.api import build_loop, compose

    overrides = ["experiment=ehrlich_seiko", *SIZE, f"budget.per_round=[{per_round}]", f"finetune.steps={steps}",
                 f"eval.num_samples={eval_samples}", f"finetune.fills={fills}", "progress=false", "logger=none", *extra]
    with tempfile.TemporaryDirectory() as tmp:
        metrics = build_loop(compose(overrides), tmp).run_round(0)
    return {"fills": fills, **{p: metrics[f"seconds_{p}"] for p in PHASES}, "total": metrics["seconds"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fills", nargs="+", type=float, default=[0.0, 1.0])
    p.add_argument("--per-round", type=int, default=64)
    p.add_argument("--finetune-steps", type=int, default=2, help="fine-tuning steps (the preset's 60 scale it)")
    p.add_argument("--eval", type=int, default=32, help="evaluation samples")
    p.add_argument("--override", action="append", default=[], metavar="K=V")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from seiko.cli_support import quiet_lightning

    quiet_lightning()
    rows = [one_round(f, args.per_round, args.finetune_steps, args.eval, args.override) for f in args.fills]
    lines = [f"One round of {args.per_round} at length 256, {args.finetune_steps} fine-tuning steps, {args.eval} "
             f"evaluation samples, {args.threads} thread(s); wall seconds per phase.", "",
             "| finetune.fills | sample | query | update (fit + fine-tune) | evaluate | round |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['fills']:g} | " + " | ".join(f"{r[k]:.1f}" for k in PHASES + ["total"]) + " |" for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
