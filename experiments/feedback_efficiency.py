"""Feedback efficiency: how much true reward each strategy reaches per oracle label.

Why: SEIKO's claim is about labels, not compute. Every strategy gets the same label budgets on
one Ehrlich protein problem (32 states, length 32, motif length 4, quantization 4, 2 or 4 motifs; or
holo-bench's own size with --dim 256 --motif-length 8 --quantization 8);
we record the best label bought within each budget and the mean/max true reward and feasibility
of fresh samples from the model as it stands at that budget.

Round-based methods run once per seed, in rounds whose cumulative sums hit every budget
(500/1000/2000 -> 250,250,500,1000), read at the round ending at each budget; best_of_n and
non_adaptive spend their budget in one round, so they run once per budget. Runs live in
<out>/m<motifs>[_f<function>][_l<dim>]/<method>/seed<s>[/b<budget>]/ (seiko's ledger and summary, plus bench.json: where
to read them). Finished runs are skipped and interrupted ones resumed, so the benchmark can be
stopped and continued; --aggregate-only rebuilds the results from whatever runs exist.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

# a method is a strategy, or a variant: a strategy with extra overrides (its own runs and rows)
# ``_frozen``: the same with the policy held at the pretrained model (lr 1e-12: no fine-tuning), which
# shows what fine-tuning itself adds; the other ``seiko_best_no_*`` rows drop one part of the preset.
FROZEN = "finetune.lr=1e-12"
# ehrlich_seiko as it was before fill rollouts became its default: fresh rollouts, 15 steps a round
# (the committed seiko_infill* rows were made with it)
FRESH = ["finetune.fills=0.0", "finetune.steps=15"]
VARIANTS = {"bootstrap_cnn": ("bootstrap", ["reward=cnn"]), "ucb_pairs": ("ucb", ["reward=gp_pairs"]),
            "ucb_sparse": ("ucb", ["reward=sparse_pairs"]),
            "seiko_infill": ("ucb", ["experiment=ehrlich_seiko", *FRESH]),
            "seiko_infill_frozen": ("ucb", ["experiment=ehrlich_seiko", *FRESH, FROZEN]),
            # half of each fine-tuning step's rollouts are fills of the best labels (finetune.fills)
            "seiko_infill_fills": ("ucb", ["experiment=ehrlich_seiko", "finetune.fills=0.5", "finetune.steps=15"]),
            # every rollout a fill, four times the steps: the preset as it is now
            "seiko_infill_fills60": ("ucb", ["experiment=ehrlich_seiko", "finetune.fills=1.0", "finetune.steps=60"]),
            # the preset frozen at its own settings, one step: a frozen policy's proposals do not depend on the
            # fine-tuner, and at length 256 sixty steps at lr 1e-12 would cost minutes a round for nothing
            "seiko_infill_fills60_frozen": ("ucb", ["experiment=ehrlich_seiko", "finetune.steps=1", FROZEN]),
            "seiko_best": ("ucb", ["experiment=ehrlich_seiko_best"]),
            "seiko_best_frozen": ("ucb", ["experiment=ehrlich_seiko_best", FROZEN]),
            "seiko_best_no_edits": ("ucb", ["experiment=ehrlich_seiko_best", "edits.fraction=0"]),
            "seiko_best_no_restarts": ("ucb", ["experiment=ehrlich_seiko_best", "edits.restarts=0"]),
            "seiko_best_no_support": ("ucb", ["experiment=ehrlich_seiko_best", "finetune.support_eps=0"])}
METHODS = ["best_of_n", "non_adaptive", "greedy", "ucb", "bootstrap", "bootstrap_cnn", "ucb_pairs", "ucb_sparse", "ts", "online_ppo",
           "genetic", "holo_ga", "seiko_best", "seiko_best_frozen", "seiko_best_no_edits", "seiko_best_no_restarts",
           "seiko_best_no_support", "seiko_infill", "seiko_infill_frozen", "seiko_infill_fills",
           "seiko_infill_fills60", "seiko_infill_fills60_frozen"]
SINGLE_ROUND = {"best_of_n", "non_adaptive"}
SIZE = {"dim": 32, "motif_length": 4, "quantization": 4}  # the benchmark's; bench.json of older runs lacks them
DEFAULT_OUT = "experiments/runs/feedback"
DEFAULT_RESULTS = "experiments/results/feedback"
FIELDS = ["function", "motifs", "method", "budget", "seed", "best", "infeasible_labels", "eval_reward_mean",
          "eval_reward_max", "feasibility", "diversity", "novelty", "seconds", "rounds", "dim"]
STATS = ["eval_reward_mean", "eval_reward_max", "feasibility", "diversity", "novelty"]  # from the round's history
START = time.time()


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S', time.gmtime(time.time() - START))}] {msg}", flush=True)


def split(total: int, parts: int) -> list[int]:
    """``total`` queries in ``parts`` rounds as equal as integers allow."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def schedule(budgets: list[int], first_rounds: int, round_size: int | None = None) -> list[int]:
    """Queries per round so that cumulative sums hit every budget.

    By default the first budget is split into ``first_rounds`` rounds (so adaptive methods get
    feedback before the first read-out) and every later gap is one round. With ``round_size``,
    every gap is split into rounds of at most that many queries: more, smaller rounds, i.e. more
    chances to adapt for the same labels, at the cost of one reward fit and fine-tuning each.
    """
    b = [0] + sorted(set(budgets))
    if round_size:
        return [q for x, y in zip(b, b[1:]) for q in split(y - x, -(-(y - x) // round_size))]
    return [q for q in split(b[1], first_rounds) if q > 0] + [y - x for x, y in zip(b[1:], b[2:])]


def plan(args) -> list[dict]:
    """Every run the benchmark needs: its directory, rounds and the budgets to read it at."""
    runs, budgets = [], sorted(set(args.budgets))
    # seed-major: a benchmark stopped early still compares every method on its first seeds
    for function, motifs, seed, method in itertools.product(args.functions, args.motifs, args.seeds, args.methods):
        # domain.seed 0 keeps the folders of the runs made before other functions existed
        folder = f"m{motifs}" + (f"_f{function}" if function else "") + (f"_l{args.dim}" if args.dim != SIZE["dim"] else "")
        base = Path(args.out, folder, method, f"seed{seed}")
        key = dict(function=function, motifs=motifs, method=method, seed=seed, dim=args.dim,
                   motif_length=args.motif_length, quantization=args.quantization)
        if method in SINGLE_ROUND:
            runs += [dict(key, dir=base / f"b{b}", per_round=[b], budgets=[b]) for b in budgets]
        else:
            runs.append(dict(key, dir=base, per_round=schedule(budgets, args.first_rounds, args.round_size), budgets=budgets))
    return runs


def load_summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def is_finished(run_dir: Path, per_round: list[int]) -> bool:
    """Not status alone: seiko.api.run writes "finished" even when interrupted, so count the rounds."""
    s = load_summary(run_dir)
    return s.get("status") == "finished" and s.get("queries") == sum(per_round) and s.get("rounds") == len(per_round)


def overrides_for(spec: dict, extra: list[str]) -> list[str]:
    strategy, variant = VARIANTS.get(spec["method"], (spec["method"], []))
    function = [f"domain.seed={spec['function']}"] if spec.get("function", 0) else []
    size = {k: spec.get(k, v) for k, v in SIZE.items()}
    domain = ["domain.num_states=32", f"domain.dim={size['dim']}", f"domain.motif_length={size['motif_length']}",
              f"domain.quantization={size['quantization']}"]
    ov = [f"strategy={strategy}", *variant, *domain, *function, f"domain.num_motifs={spec['motifs']}", f"seed={spec['seed']}",
          f"budget.per_round=[{','.join(map(str, spec['per_round']))}]", "progress=false", "logger=none"]
    return ov + extra  # the pair rewards' reach follows domain.dim (domain.max_motif_gap)


def run_spec(spec: dict, extra: list[str]) -> None:
    """One seiko run: fresh, or resumed from its ledger (same config, or seiko refuses)."""
    from seiko.api import compose, run

    run_dir, overrides = spec["dir"], overrides_for(spec, extra)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = ["resume=true"] if (run_dir / "ledger.sqlite").exists() else []
    (run_dir / "bench.json").write_text(json.dumps({k: v for k, v in spec.items() if k != "dir"}))
    run(compose(overrides + resume), run_dir, overrides=overrides)


def read_run(run_dir: Path) -> tuple[dict, list[dict], np.ndarray]:
    """The run's bench.json, rows at every budget it has completed, and its best-so-far curve."""
    from seiko.ledger import Ledger
    from seiko.outputs import best_so_far

    bench = json.loads((run_dir / "bench.json").read_text())
    if not (run_dir / "ledger.sqlite").is_file():
        return bench, [], np.empty(0)
    with Ledger(run_dir / "ledger.sqlite") as ledger:
        _, best = best_so_far(ledger)
        values = ledger.labelled_arrays()[1]  # in purchase order, as best
        history = json.loads(ledger.get_meta("history") or "[]")  # completed rounds only
    rows, seconds = [], 0.0
    for rounds, h in enumerate(history, 1):
        seconds += h.get("seconds", float("nan"))
        if h["queries"] in bench["budgets"]:
            b, n = best[h["queries"] - 1], h["queries"]
            rows.append(dict({k: bench[k] for k in ("motifs", "method", "seed")}, function=bench.get("function", 0),
                             budget=n, best=b if np.isfinite(b) else float("nan"), seconds=seconds, rounds=rounds,
                             dim=bench.get("dim", SIZE["dim"]),
                             infeasible_labels=float(np.mean(~np.isfinite(values[:n]))),  # labels bought and wasted
                             **{k: h.get(k, float("nan")) for k in STATS}))
    return bench, rows, best


def mean_std(values) -> str:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return "–" if not len(v) else f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def write_markdown(rows: list[dict], path: Path) -> None:
    keys = sorted({(r.get("function", 0), r["motifs"], METHODS.index(r["method"]), r["method"], r["budget"]) for r in rows})
    lengths = ", ".join(str(d) for d in sorted({r.get("dim", SIZE["dim"]) for r in rows}))
    lines = [f"# Feedback efficiency (Ehrlich protein, 32 states, length {lengths})", "",
             "Mean ± std over seeds. *function*: the Ehrlich function's `domain.seed`. *best*: best true label "
             "bought within the budget; *infeasible labels*: share of the labels bought so far that went to "
             "infeasible designs; *eval*: true reward of fresh samples from the model at that budget (feasible "
             "ones; *feasibility* is their fraction). *found 1.0*: seeds whose best label is the optimum.", "",
             "| function | motifs | method | budget | seeds | best | best (max over seeds) | found 1.0 | infeasible labels "
             "| eval mean | eval max | feasibility |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for function, motifs, _, method, budget in keys:
        g = [r for r in rows if (r.get("function", 0), r["motifs"], r["method"], r["budget"]) == (function, motifs, method, budget)]
        best = np.array([r["best"] for r in g], dtype=float)
        top = f"{np.nanmax(best):.3f}" if np.isfinite(best).any() else "–"
        found = int(np.sum(np.nan_to_num(best, nan=-1.0) >= 1.0 - 1e-9))
        lines.append(f"| {function} | {motifs} | {method} | {budget} | {len(g)} | {mean_std(best)} | {top} | {found}/{len(g)} | "
                     f"{mean_std([r.get('infeasible_labels', float('nan')) for r in g])} | "
                     f"{mean_std([r['eval_reward_mean'] for r in g])} | {mean_std([r['eval_reward_max'] for r in g])} "
                     f"| {mean_std([r['feasibility'] for r in g])} |")
    path.write_text("\n".join(lines) + "\n")


def write_summary(rows: list[dict], path: Path) -> None:
    """One line per function, motifs and method over the seeds that reached its largest budget: best
    label at every budget (mean over those seeds), and at the largest budget the seeds at 1.0, the
    infeasible share of the labels bought, and the fresh samples' mean reward and feasibility."""
    keys = sorted({(r["function"], r["motifs"], METHODS.index(r["method"]), r["method"]) for r in rows})
    budgets = sorted({r["budget"] for r in rows})
    lines = ["| function | motifs | method | seeds | " + " | ".join(f"best @{b}" for b in budgets) +
             " | found 1.0 | infeasible labels | sample reward | feasible samples (lowest seed) | s / round |",
             "|---|---|---|---|" + "---|" * len(budgets) + "---|---|---|---|---|"]
    for function, motifs, _, method in keys:
        g = [r for r in rows if (r["function"], r["motifs"], r["method"]) == (function, motifs, method)]
        last = max(r["budget"] for r in g)
        done = {r["seed"] for r in g if r["budget"] == last}  # seeds still running stay out of the line
        g = [r for r in g if r["seed"] in done]
        best = []
        for b in budgets:
            v = np.array([r["best"] for r in g if r["budget"] == b], dtype=float)
            best.append(f"{np.nanmean(v):.3f}" if np.isfinite(v).any() else "–")
        end = [r for r in g if r["budget"] == last]
        found = sum(r["best"] >= 1.0 - 1e-9 for r in end if np.isfinite(r["best"]))
        feas = np.array([r["feasibility"] for r in end], dtype=float)
        lines.append(f"| {function} | {motifs} | {method} | {len(end)} | " + " | ".join(best) +
                     f" | {found}/{len(end)} | {np.mean([r['infeasible_labels'] for r in end]):.3f} | "
                     f"{np.nanmean([r['eval_reward_mean'] for r in end]):.3f} | "
                     f"{np.nanmean(feas):.3f} ({np.nanmin(feas):.3f}) | {per_round(end):.0f} |")
    path.write_text("\n".join(lines) + "\n")


def per_round(rows: list[dict]) -> float:
    """Mean wall seconds per round (sampling, querying, fitting and fine-tuning) over ``rows``;
    the runs' machine and its sharing set the scale."""
    return float(np.nanmean([r["seconds"] / r["rounds"] for r in rows])) if rows else float("nan")


def plot(curves: dict, path: Path) -> None:
    """Best-so-far vs queries, mean over seeds (seeds that got that far); no feasible label yet = 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: E402

    motifs = sorted({m for m, _ in curves})  # (function, motifs) pairs
    fig, axes = plt.subplots(1, len(motifs), figsize=(6 * len(motifs), 4), squeeze=False)
    for ax, m in zip(axes[0], motifs):
        for method in sorted({x for k, x in curves if k == m}, key=METHODS.index):
            seeds = [np.where(np.isfinite(c), c, 0.0) for c in curves[(m, method)] if len(c)]
            padded = np.full((len(seeds), max(map(len, seeds), default=0)), np.nan)
            for i, c in enumerate(seeds):
                padded[i, : len(c)] = c
            ax.plot(np.arange(1, padded.shape[1] + 1), np.nanmean(padded, 0), drawstyle="steps-post",
                    label=f"{method} (n={len(seeds)})")
        ax.set(title=f"function {m[0]}, {m[1]} motifs", xlabel="oracle queries", ylabel="best true label so far", ylim=(-0.02, 1.02))
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def aggregate(out: Path, results: Path) -> list[dict]:
    """Rebuild the tables and the plot from every run under ``out`` (finished or not)."""
    rows, curves, largest = [], {}, {}
    for path in sorted(out.glob("m*/*/seed*/**/bench.json")):
        bench, run_rows, best = read_run(path.parent)
        rows += run_rows
        key = ((bench.get("function", 0), bench["motifs"]), bench["method"], bench["seed"])
        if len(best) >= len(largest.get(key, ())):  # single-round methods: the largest budget's run
            largest[key] = best
    for (m, method, _), best in largest.items():
        curves.setdefault((m, method), []).append(best)
    for r in rows:  # best-of-N draws one stream from p_pre: its best at B queries is a prefix of its largest run
        best = largest.get(((r["function"], r["motifs"]), r["method"], r["seed"]))
        if r["method"] == "best_of_n" and best is not None and len(best) >= r["budget"]:
            r["best"] = float(best[r["budget"] - 1]) if np.isfinite(best[r["budget"] - 1]) else float("nan")
    results.mkdir(parents=True, exist_ok=True)
    rows.sort(key=lambda r: (r["function"], r["motifs"], METHODS.index(r["method"]), r["budget"], r["seed"]))
    with open(results / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    write_markdown(rows, results / "results.md")
    write_summary(rows, results / "summary.md")
    if curves:
        plot(curves, results / "best_so_far.png")
    say(f"{len(rows)} rows from {out} -> {results}/results.csv, results.md, summary.md, best_so_far.png")
    return rows


def run_all(args, extra: list[str]) -> list[str]:
    """Every planned run in turn: finished ones skipped, interrupted ones resumed; the failures."""
    runs, failed = plan(args), []
    say(f"{len(runs)} runs under {args.out}; extra overrides: {extra or 'none'}")
    for i, spec in enumerate(runs, 1):
        tag = (f"({i}/{len(runs)}) f={spec['function']} m={spec['motifs']} {spec['method']} seed={spec['seed']} "
               f"rounds={spec['per_round']}")
        if is_finished(spec["dir"], spec["per_round"]):
            same = load_summary(spec["dir"]).get("overrides") == overrides_for(spec, extra)
            say(f"{tag}: finished, skipped" + ("" if same else " (WARNING: it ran with other overrides)"))
            continue
        say(f"{tag}: {'resuming' if (spec['dir'] / 'ledger.sqlite').exists() else 'starting'}")
        t0 = time.time()
        try:
            run_spec(spec, extra)
            bests = ", ".join(f"best@{r['budget']}={r['best']:.3f}" for r in read_run(spec["dir"])[1])
            say(f"{tag}: done in {time.time() - t0:.0f}s; {bests}")
        except Exception:  # one broken run should not stop the benchmark; listed at the end
            traceback.print_exc()
            failed.append(tag)
            say(f"{tag}: FAILED after {time.time() - t0:.0f}s")
    if failed:
        say(f"{len(failed)} runs failed: " + "; ".join(failed))
    return failed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--motifs", nargs="+", type=int, default=[2, 4])
    p.add_argument("--functions", nargs="+", type=int, default=[0], help="Ehrlich functions (domain.seed); each "
                                                                         "needs its chain's pretrained checkpoint")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--budgets", nargs="+", type=int, default=[500, 1000, 2000])
    p.add_argument("--dim", type=int, default=SIZE["dim"], help="sequence length (holo-bench's own: 256; "
                                                                   "needs its checkpoint, make pretrain-holo)")
    p.add_argument("--motif-length", type=int, default=SIZE["motif_length"])
    p.add_argument("--quantization", type=int, default=SIZE["quantization"])
    p.add_argument("--first-rounds", type=int, default=2, help="rounds the first budget is split into (default 2)")
    p.add_argument("--round-size", type=int, default=None, help="split every budget gap into rounds of at most N "
                                                                "queries (overrides --first-rounds)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"run directories (default {DEFAULT_OUT})")
    p.add_argument("--results", help=f"tables and plot (default {DEFAULT_RESULTS}, or <out>/results for another --out)")
    p.add_argument("--finetune-steps", type=int, default=None, help="shortcut for --override finetune.steps=N")
    p.add_argument("--override", action="append", default=[], metavar="K=V", help="Hydra override (repeatable)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's); 1 on a shared "
                                                             "machine, where oversubscription slows fits 10-50x")
    p.add_argument("--aggregate-only", action="store_true", help="only rebuild the results from existing runs")
    args = p.parse_args(argv)
    failed, extra = [], args.override + ([f"finetune.steps={args.finetune_steps}"] if args.finetune_steps else [])
    if not args.aggregate_only:
        import torch

        torch.set_num_threads(args.threads or torch.get_num_threads())
        from seiko.cli_support import quiet_lightning

        quiet_lightning()
        failed = run_all(args, extra)
    default = DEFAULT_RESULTS if args.out == DEFAULT_OUT else args.out + "/results"
    aggregate(Path(args.out), Path(args.results or default))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
