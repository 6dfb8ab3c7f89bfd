"""Compute cost of seiko on this machine: where a round's time goes, and how reward fitting scales.

Why: labels are the scarce resource SEIKO economises, but a user still has to know what a
round costs in seconds and memory, and how the reward model's refit (every round, on *all*
labels so far) grows with the ledger. The exact GP is cubic in the labels, which is why it
fits a random subset beyond reward.model.max_exact (4000); the ensemble is linear.

(a) the default run (`compose([])`, progress and logger off): seconds per round split into
    phases (sampling the round's designs, oracle queries, reward fit, fine-tuning, saving the
    policy, evaluation samples; "other" is the rest: features, copies), and peak RSS.
(b) reward-model fit time vs number of labels N: one-hot features of feasible 32x32 Ehrlich
    sequences (D=1024) labelled by the Ehrlich oracle, fitted with a bare Lightning Trainer
    for the config's reward.max_epochs, as the loop does.

Peak memory is ru_maxrss: the process's peak so far, so it only ever grows; (a) runs first,
and (b)'s sizes run in ascending order, so a rise in (b) belongs to the size that caused it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from collections import defaultdict
from pathlib import Path

PHASES = ["sample", "query", "reward_fit", "finetune", "save", "evaluate", "other"]


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class PhaseTimer:
    """Wall time of wrapped callables, counted only at the outermost level: sampling inside
    evaluation counts as evaluation, and the phases of a round never overlap."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.depth = 0

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            if self.depth:
                return fn(*args, **kwargs)
            self.depth, start = 1, time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[name] += time.perf_counter() - start
                self.depth = 0
        return timed


def default_run(overrides: list[str], runs_dir: Path) -> dict:
    """(a) Every round of the default run, timed by phase (the loop's own 'seconds' is the total)."""
    import seiko.loop
    from seiko.api import build_loop, compose

    cfg = compose(["progress=false", "logger=none", *overrides])
    run_dir = runs_dir / time.strftime("default-%Y%m%d-%H%M%S")
    rss_before, start = maxrss_mb(), time.perf_counter()
    loop = build_loop(cfg, run_dir)
    setup = time.perf_counter() - start
    timer, method = PhaseTimer(), loop.method
    for phase, owner, attr in [("sample", method, "propose"), ("reward_fit", method, "fit_reward"),
                               ("finetune", method, "fit_policy"), ("save", method, "save"),
                               ("evaluate", loop, "evaluate")]:
        if hasattr(owner, attr):  # baselines have no reward model or fine-tuning
            setattr(owner, attr, timer.wrap(phase, getattr(owner, attr)))
    query = seiko.loop.query_in_batches
    seiko.loop.query_in_batches = timer.wrap("query", query)
    rounds = []
    try:
        for r in range(len(loop.schedule)):
            timer.totals.clear()
            h = loop.run_round(r)
            phases = {p: timer.totals.get(p, 0.0) for p in PHASES[:-1]}
            phases["other"] = h["seconds"] - sum(phases.values())
            rounds.append(dict(round=r, queries=h["queries"], seconds=h["seconds"], phases=phases,
                               maxrss_mb=maxrss_mb(), best_so_far=h["best_so_far"],
                               eval_reward_mean=h.get("eval_reward_mean")))
            print(f"  round {r}: {h['queries']} labels, {h['seconds']:.1f}s, peak RSS {maxrss_mb():.0f} MB", flush=True)
    finally:
        seiko.loop.query_in_batches = query
        loop.ledger.close()
    return dict(overrides=overrides, run_dir=str(run_dir), strategy=cfg.strategy.name, reward=cfg.reward.name,
                finetune=cfg.finetune.name, finetune_steps=cfg.finetune.steps, budget=list(cfg.budget.per_round),
                eval_samples=cfg.eval.num_samples, setup_seconds=setup, total_seconds=time.perf_counter() - start,
                maxrss_before_mb=rss_before, maxrss_mb=maxrss_mb(), rounds=rounds)


def fit_scaling(models: list[str], sizes: list[int], seed: int) -> list[dict]:
    """(b) Fit time of each reward model on N labels, plus one posterior (mean + std) with its
    gradient on 256 designs, the call fine-tuning repeats (for the GP it includes the Cholesky)."""
    from ehrlich_fits import chain_labels, fit_reward_config

    from seiko.api import compose

    x, y = chain_labels(max(sizes) + 256, seed)
    query = x[-256:]
    rows = []
    for name in models:
        cfg = compose([f"reward={name}", f"seed={seed}"])
        for n in sorted(sizes):
            model, fit = fit_reward_config(cfg, x[:n], y[:n])
            start = time.perf_counter()
            q = query.clone().requires_grad_()
            post = model.predict(q)
            (post.mean + post.std).sum().backward()
            posterior = time.perf_counter() - start
            n_fit = model.x_fit.shape[0] if hasattr(model, "x_fit") else n
            rows.append(dict(model=name, labels=n, fitted_on=n_fit, epochs=cfg.reward.max_epochs, fit_seconds=fit,
                             seconds_per_epoch=fit / cfg.reward.max_epochs, posterior_seconds=posterior,
                             maxrss_mb=maxrss_mb()))
            print(f"  {name} N={n} (fitted on {n_fit}): fit {fit:.2f}s, posterior {posterior:.3f}s, "
                  f"peak RSS {maxrss_mb():.0f} MB", flush=True)
    return rows


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# Compute cost", "",
             f"{m['cpus']} CPUs, torch threads: {m['torch_threads']}, load average {m['loadavg']} at the start "
             f"(a busy machine inflates every time), torch {m['torch']}, Python {m['python']}. "
             f"Written by `experiments/compute.py` on {report['date']}.", ""]
    run = report.get("default_run")
    if run:
        lines += ["## (a) Default run, seconds per round by phase", "",
                  f"strategy={run['strategy']}, reward={run['reward']}, finetune={run['finetune']} "
                  f"({run['finetune_steps']} steps), budget.per_round={run['budget']}, eval.num_samples="
                  f"{run['eval_samples']}; overrides: {' '.join(run['overrides']) or 'none'}.", "",
                  f"Setup (load the pretrained policy, build the loop) {run['setup_seconds']:.1f}s; total "
                  f"{run['total_seconds']:.1f}s. Peak RSS {run['maxrss_mb']:.0f} MB "
                  f"({run['maxrss_before_mb']:.0f} MB after imports, before the run).", "",
                  "| round | labels so far | seconds | " + " | ".join(PHASES) + " | peak RSS MB |",
                  "|---" * (len(PHASES) + 4) + "|"]
        for r in run["rounds"]:
            lines.append(f"| {r['round']} | {r['queries']} | {r['seconds']:.1f} | "
                         + " | ".join(f"{r['phases'][p]:.1f}" for p in PHASES) + f" | {r['maxrss_mb']:.0f} |")
        lines.append("")
    fits = report.get("reward_fit")
    if fits:
        lines += ["## (b) Reward-model fit time vs labels", "",
                  "One-hot features of feasible Ehrlich sequences (D=1024), Ehrlich labels (2 motifs); "
                  "*posterior*: mean + std and its gradient on 256 designs (GP: includes the Cholesky). "
                  "The GP is exact up to max_exact labels and fits a random subset beyond (*fitted on*).", "",
                  "| model | labels | fitted on | epochs | fit s | s / epoch | posterior s | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['labels']} | {r['fitted_on']} | {r['epochs']} | {r['fit_seconds']:.2f} | "
                  f"{r['seconds_per_epoch']:.3f} | {r['posterior_seconds']:.3f} | {r['maxrss_mb']:.0f} |" for r in fits]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", type=int, default=[250, 500, 1000, 2000, 4000, 10000],
                   help="numbers of labels for the reward-model fits")
    p.add_argument("--models", nargs="+", default=["gp", "ensemble"], help="reward configs to time")
    p.add_argument("--run-override", action="append", default=[], metavar="KEY=VALUE",
                   help="Hydra override for the default run (repeatable), e.g. budget.per_round=[16,16]")
    p.add_argument("--skip-run", action="store_true", help="skip (a), the default run")
    p.add_argument("--skip-fit", action="store_true", help="skip (b), the reward-model fits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's); 1 on a shared machine, where oversubscribed "
                        "threads slow small fits by 10-50x")
    p.add_argument("--runs-dir", default="experiments/runs/compute", help="scratch for the default run")
    p.add_argument("--results", default="experiments/results", help="where compute.md and compute.json go")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from seiko.cli_support import quiet_lightning

    quiet_lightning()
    machine = dict(cpus=os.cpu_count(), torch_threads=torch.get_num_threads(), torch=torch.__version__,
                   loadavg=" ".join(f"{v:.2f}" for v in os.getloadavg()), python=platform.python_version())
    report = dict(date=time.strftime("%Y-%m-%d %H:%M"), machine=machine)
    start = time.time()
    if not args.skip_run:
        print("(a) default run", flush=True)
        report["default_run"] = default_run(args.run_override, Path(args.runs_dir))
    if not args.skip_fit:
        print("(b) reward-model fits", flush=True)
        report["reward_fit"] = fit_scaling(args.models, args.sizes, args.seed)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "compute.json").write_text(json.dumps(report, indent=2))
    (results / "compute.md").write_text(markdown(report))
    print(f"done in {time.time() - start:.0f}s: {results / 'compute.md'}, {results / 'compute.json'}")


if __name__ == "__main__":
    main()
