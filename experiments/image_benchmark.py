"""Images, CPU stand-in: SEIKO's strategies and the baselines on the digits model, side by side.

Why: the paper's image table (aesthetic score after 15,360 queries; SEIKO-UCB 8.17, bootstrap
7.77, non-adaptive 7.22, greedy 6.24) needs a GPU and Stable Diffusion's weights. This script
runs the same comparison on ``domain=image`` (the project's small model on handwritten digits,
its frozen in-project scorer as the oracle), every method on the same oracle, budget and seeds,
through the code path Stable Diffusion uses. Reported per method: the oracle's mean score of the
final model's fresh samples (the paper's metric), the best and top-10 labels bought, the share of
labels spent on images that fail the quality check (infeasible: no longer a legible digit), and
the quality and feasibility of the final samples (what the KL terms protect).

Nothing is tuned: every method runs with the domain's defaults and the budget below. Runs live in
<out>/<method>/seed<s>/; finished runs are skipped, interrupted ones resumed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from bench_common import say, table_row, write_results

# a method: (strategy, extra overrides); the token GAs do not apply to images
METHODS = {"best_of_n": ("best_of_n", []), "non_adaptive": ("non_adaptive", []), "greedy": ("greedy", []),
           "ucb": ("ucb", []), "bootstrap": ("bootstrap", []), "ts": ("ts", []), "online_ppo": ("online_ppo", [])}


def overrides(method: str, seed: int, per_round: list[int], extra: list[str]) -> list[str]:
    strategy, variant = METHODS[method]
    # the domain's reward model (clip_linear), except bootstrap's heads (reward=ensemble), as chosen by the configs
    return ["domain=image", f"strategy={strategy}", f"seed={seed}", *variant,
            f"budget.per_round=[{','.join(map(str, per_round))}]", "progress=false", "logger=none",
            "eval.with_oracle=true", *extra]


def finished(run_dir: Path, rounds: int) -> bool:
    path = run_dir / "summary.json"
    s = json.loads(path.read_text()) if path.is_file() else {}
    return s.get("status") == "finished" and s.get("rounds") == rounds


def read(run_dir: Path) -> dict:
    from seiko.ledger import Ledger
    from seiko.metrics import top_k_mean

    bench = json.loads((run_dir / "bench.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        designs, values, _ = ledger.labelled_arrays()
    history = summary.get("history", [])
    last = history[-1] if history else {}
    feasible = np.array([h.get("round_feasibility", np.nan) for h in history])
    return dict(bench, queries=len(values), top1=float(np.nanmax(values)) if len(values) else float("nan"),
                top10=top_k_mean(np.where(np.isfinite(values), values, 0.0)),
                infeasible_labels=float(1 - np.nanmean(feasible)) if len(feasible) else float("nan"),
                final_score=last.get("eval_reward_mean"), final_quality=last.get("quality"),
                final_feasibility=last.get("feasibility"), kl_pretrained=last.get("finetune/kl_pretrained"),
                seconds=sum(h.get("seconds", 0.0) for h in history), rounds=len(history))


def aggregate(out: Path, results: Path, budget: int) -> None:
    rows = [read(p.parent) for p in sorted(out.glob("*/seed*/summary.json")) if (p.parent / "bench.json").is_file()]
    rows = [r for r in rows if r["queries"] >= budget]
    if not rows:
        return
    lines = [f"Digits stand-in, {budget} labels (mean ± std over seeds). 'score': the oracle's mean on 64 fresh "
             "samples of the final model; 'quality', 'feasible': of the same samples.", "",
             "| method | seeds | final score | best label | top-10 labels | infeasible labels | final quality | "
             "final feasible | s / run |", "|---|---|---|---|---|---|---|---|---|"]
    for method in METHODS:
        group = [r for r in rows if r["method"] == method]
        if group:
            lines.append(table_row((method,), group, ("final_score", "top1", "top10", "infeasible_labels",
                                                      "final_quality", "final_feasibility", "seconds")))
    write_results(results, rows, lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--per-round", nargs="+", type=int, default=[64, 128, 256],
                   help="SEIKO's rounds; best_of_n and non_adaptive spend their sum in one")
    p.add_argument("--out", default="experiments/runs/image", help="run directories (git-ignored)")
    p.add_argument("--results", default="experiments/results/image", help="summary.md and results.json (committed)")
    p.add_argument("--override", action="append", default=[], metavar="K=V", help="Hydra override (repeatable)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--aggregate-only", action="store_true")
    args = p.parse_args(argv)
    out, failed, budget = Path(args.out), [], sum(args.per_round)
    if not args.aggregate_only:
        import torch

        torch.set_num_threads(args.threads)
        from seiko.api import compose, run
        from seiko.cli_support import quiet_lightning

        quiet_lightning()
        for seed in args.seeds:
            for method in args.methods:
                rounds = 1 if method in ("best_of_n", "non_adaptive") else len(args.per_round)
                run_dir = out / method / f"seed{seed}"
                if finished(run_dir, rounds):
                    continue
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / "bench.json").write_text(json.dumps(dict(method=method, seed=seed)))
                ov = overrides(method, seed, args.per_round, args.override)
                resume = ["resume=true"] if (run_dir / "ledger.sqlite").exists() else []
                t0 = time.time()
                try:
                    run(compose(ov + resume), run_dir, overrides=ov)
                    r = read(run_dir)
                    say(f"{method} seed{seed}: final score {r['final_score']}, best {r['top1']:.3f}, "
                        f"quality {r['final_quality']}, {time.time() - t0:.0f}s")
                except Exception:  # one broken run must not stop the rest; listed at the end
                    traceback.print_exc()
                    failed.append(f"{method} seed{seed}")
    aggregate(out, Path(args.results), budget)
    if failed:
        say("failed: " + "; ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
