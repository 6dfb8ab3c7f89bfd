"""Molecules: SEIKO against best-of-N, the paper's other strategies and mol-ga on PMO tasks.

Why: PMO (Gao et al. 2022, "Sample efficiency matters") is the benchmark of sample-efficient
molecule optimisation: every distinct canonical SMILES counts against the budget (a repeat is
free: ``domain.distinct_queries``), and the metric is the top-10 AUC (``seiko.metrics.top_k_auc``).
Every method runs here on the same oracle, budget and seeds, side by side.

Every run is ``experiment=pmo`` (the fine-tuning 2 CPU cores afford) with its budget split here.
Protocol choice (docs/molecule-benchmark.md): ``budget.query_infeasible=false`` for every method,
so a molecule failing the MOSES filters is never sent to the oracle and scores 0, as PMO scores
an invalid one; ``mol_ga_pmo`` is mol-ga with every molecule scored, PMO's own protocol, whose
AUC is comparable with the published numbers. Both AUCs are reported: over every label, and over
feasible molecules only (filter failures as 0), with the share of labels spent on infeasible ones
and the feasibility of each method's final samples.

Runs live in <out>/<task>/<method>/seed<s>/; finished runs are skipped, interrupted ones resumed.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from bench_common import PeakRSS, say, table_row, write_results

TASKS = ["osimertinib_mpo", "zaleplon_mpo", "median1", "deco_hop", "isomers_c9h10n2o2pf2cl"]
# a method: (strategy, extra overrides)
METHODS = {"best_of_n": ("best_of_n", []), "non_adaptive": ("non_adaptive", []), "greedy": ("greedy", []),
           "ucb": ("ucb", []),
           # the chemist's reward model: a Tanimoto GP on fingerprints, which only PPO can fine-tune on
           "ucb_tanimoto": ("ucb", ["domain.features=fingerprint", "reward=gp_tanimoto", "finetune=policy_gradient"]),
           "bootstrap": ("bootstrap", []), "ts": ("ts", []), "online_ppo": ("online_ppo", []),
           "mol_ga": ("mol_ga", []), "mol_ga_pmo": ("mol_ga", ["budget.query_infeasible=true"]),
           # the molecule preset: SEIKO-UCB with infilled proposals, the screen and a firmer KL hold
           "seiko": ("ucb", ["experiment=pmo_seiko"])}
SCREEN = "budget.query_infeasible=false"


def schedule(method: str, budget: int, round_size: int, per_round: list[int] | None = None) -> list[int]:
    """Rounds: one for the single-round methods; mol-ga as PMO runs Graph GA (120, then 70 a
    generation); SEIKO's in rounds of ``round_size``, the first two of half that, or exactly
    ``per_round`` when given (the docking benchmark's 4 rounds of 64)."""
    if method in ("best_of_n", "non_adaptive"):
        return [budget]
    if per_round and not method.startswith("mol_ga"):
        if sum(per_round) != budget:
            raise SystemExit(f"--per-round {per_round} sums to {sum(per_round)}, not --budget {budget}")
        return list(per_round)
    first, size = (120, 70) if method.startswith("mol_ga") else (round_size // 2, round_size)
    rounds = [min(first, budget)]
    while sum(rounds) < budget:
        step = size if len(rounds) > 1 or method.startswith("mol_ga") else first
        rounds.append(min(step, budget - sum(rounds)))
    return rounds


def overrides(task: str, method: str, seed: int, per_round: list[int], extra: list[str]) -> list[str]:
    strategy, variant = METHODS[method]
    experiment = [v for v in variant if v.startswith("experiment=")] or ["experiment=pmo"]  # a preset on pmo
    variant = [v for v in variant if not v.startswith("experiment=")]
    return [*experiment, f"oracle={task}", f"strategy={strategy}", f"seed={seed}", SCREEN, *variant,
            f"budget.per_round=[{','.join(map(str, per_round))}]", "progress=false", "logger=none", *extra]


def finished(run_dir: Path, per_round: list[int]) -> bool:
    path = run_dir / "summary.json"
    s = json.loads(path.read_text()) if path.is_file() else {}
    return s.get("status") == "finished" and s.get("rounds") == len(per_round)


def read(run_dir: Path, budget: int) -> dict:
    from seiko.chem.filters import passes_filters
    from seiko.ledger import Ledger
    from seiko.metrics import top_k_auc, top_k_mean

    bench = json.loads((run_dir / "bench.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        designs, values, _ = ledger.labelled_arrays()
    values = np.where(np.isfinite(values), values, 0.0)
    feasible = np.array([passes_filters(d) for d in designs], dtype=bool)
    kept = np.where(feasible, values, 0.0)
    history = summary.get("history", [])
    # every planned round ran (the run's own resolved config says which): a run whose proposer found no
    # more distinct (feasible) designs buys fewer than the budget and is read as PMO reads an early stop
    from omegaconf import OmegaConf

    complete = finished(run_dir, list(OmegaConf.load(run_dir / "config.yaml").budget.per_round))
    return dict(bench, queries=len(values), complete=complete, auc=top_k_auc(values, budget), auc_feasible=top_k_auc(kept, budget),
                top1=float(values.max()) if len(values) else float("nan"), top10=top_k_mean(values),
                top10_feasible=top_k_mean(kept), infeasible_labels=float(1 - feasible.mean()) if len(values) else 1.0,
                sample_feasibility=summary.get("final", {}).get("feasibility"),
                seconds=sum(h.get("seconds", 0.0) for h in history), rounds=len(history))


def aggregate(out: Path, results: Path, budget: int) -> None:
    rows = [read(p.parent, budget) for p in sorted(out.glob("*/*/seed*/summary.json")) if (p.parent / "bench.json").is_file()]
    rows = [r for r in rows if r["queries"] >= budget or r["complete"]]  # one stopped part-way has no AUC at it
    if not rows:
        return
    lines = [f"Top-10 AUC at {budget} calls (mean ± std over seeds); 'feasible': filter-failing molecules as 0.", "",
             "| task | method | seeds | AUC | AUC feasible | top-1 | top-10 | infeasible labels | final samples feasible | s / run "
             "| peak GB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        for method in METHODS:
            group = [r for r in rows if r["task"] == task and r["method"] == method]
            if group:
                lines.append(table_row((task, method), group, ("auc", "auc_feasible", "top1", "top10",
                                                             "infeasible_labels", "sample_feasibility", "seconds",
                                                             "peak_rss_gb")))
    write_results(results, rows, lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=TASKS)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--round-size", type=int, default=200, help="SEIKO's rounds (the first two: half)")
    p.add_argument("--per-round", nargs="+", type=int, help="SEIKO's rounds exactly (summing to --budget)")
    p.add_argument("--out", default="experiments/runs/pmo", help="run directories (git-ignored)")
    p.add_argument("--results", default="experiments/results/pmo", help="summary.md and results.json (committed)")
    p.add_argument("--override", action="append", default=[], metavar="K=V", help="Hydra override (repeatable)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--aggregate-only", action="store_true")
    args = p.parse_args(argv)
    out, failed = Path(args.out), []
    if not args.aggregate_only:
        import torch

        torch.set_num_threads(args.threads)
        from seiko.api import compose, run
        from seiko.cli_support import quiet_lightning

        quiet_lightning()
        for task in args.tasks:
            for method in args.methods:
                for seed in args.seeds:
                    per_round = schedule(method, args.budget, args.round_size, args.per_round)
                    run_dir = out / task / method / f"seed{seed}"
                    if finished(run_dir, per_round):
                        continue
                    run_dir.mkdir(parents=True, exist_ok=True)
                    bench = dict(task=task, method=method, seed=seed)
                    (run_dir / "bench.json").write_text(json.dumps(bench))
                    ov = overrides(task, method, seed, per_round, args.override)
                    resume = ["resume=true"] if (run_dir / "ledger.sqlite").exists() else []
                    t0 = time.time()
                    try:
                        with PeakRSS() as memory:
                            run(compose(ov + resume), run_dir, overrides=ov)
                        # the peak of this process's part of the run (all of it, unless it was resumed)
                        (run_dir / "bench.json").write_text(json.dumps(dict(bench, peak_rss_gb=round(memory.peak_gb, 3))))
                        r = read(run_dir, args.budget)
                        say(f"{task} {method} seed{seed}: AUC {r['auc']:.3f} (feasible {r['auc_feasible']:.3f}), "
                            f"top-1 {r['top1']:.3f}, {time.time() - t0:.0f}s")
                    except Exception:  # one broken run must not stop the rest; listed at the end
                        traceback.print_exc()
                        failed.append(f"{task} {method} seed{seed}")
    aggregate(out, Path(args.results), args.budget)
    if failed:
        say("failed: " + "; ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
