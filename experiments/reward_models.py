"""Reward-model accuracy: how well each reward config predicts Ehrlich labels it has not seen.

Why: SEIKO fine-tunes on r_hat + bonus, so a reward model that ranks designs wrongly steers every
round wrongly, whatever the strategy. Each model (a `reward=` config, fitted exactly as the loop
fits it: same hyperparameters, same number of epochs, a bare Lightning Trainer) is trained on N
feasible sequences drawn from the Ehrlich function's chain and scored on 2,000 fresh ones:
RMSE, Spearman rank correlation, and *top-20 label*: the mean true label of the 20 test designs
the model ranks highest (the designs an acquisition would chase), next to the best possible.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

FIELDS = ["motifs", "model", "labels", "seed", "rmse", "spearman", "top20_label", "top20_best", "fit_seconds"]


def evaluate(motifs: int, name: str, n: int, seed: int, num_test: int = 2000) -> dict:
    import torch
    from ehrlich_fits import chain_labels, fit_reward_config
    from scipy.stats import spearmanr

    from seiko.api import compose

    x, y = chain_labels(n + num_test, 1000 + seed, motifs)
    cfg = compose([f"reward={name}", f"seed={seed}", f"domain.num_motifs={motifs}"])
    model, seconds = fit_reward_config(cfg, x[:n], y[:n])
    with torch.no_grad():
        pred = model.predict(x[n:]).mean.numpy()
    truth = y[n:].numpy()
    return dict(motifs=motifs, model=name, labels=n, seed=seed, rmse=float(np.sqrt(np.mean((pred - truth) ** 2))),
                spearman=float(spearmanr(pred, truth)[0]), top20_label=float(truth[np.argsort(-pred)[:20]].mean()),
                top20_best=float(np.sort(truth)[-20:].mean()), fit_seconds=seconds)


def markdown(rows: list[dict]) -> str:
    lines = ["# Reward-model accuracy on held-out Ehrlich labels", "",
             "Mean ± std over seeds; 2,000 held-out feasible chain samples. *top-20 label*: mean true label "
             "of the 20 test designs ranked highest by the model (*best possible* in the last column).", "",
             "| motifs | model | labels | RMSE | Spearman | top-20 label | best possible | fit s |",
             "|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["motifs"], r["labels"], r["model"]) for r in rows})
    for m, n, name in keys:
        g = [r for r in rows if (r["motifs"], r["labels"], r["model"]) == (m, n, name)]

        def cell(k, digits=3):
            v = np.array([r[k] for r in g])
            return f"{v.mean():.{digits}f} ± {v.std(ddof=1) if len(v) > 1 else 0:.{digits}f}"
        lines.append(f"| {m} | {name} | {n} | {cell('rmse', 4)} | {cell('spearman')} | {cell('top20_label')} | "
                     f"{np.mean([r['top20_best'] for r in g]):.3f} | {np.mean([r['fit_seconds'] for r in g]):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--motifs", nargs="+", type=int, default=[2, 4])
    p.add_argument("--models", nargs="+", default=["gp", "ensemble", "cnn", "gp_pairs", "bayes_linear"])
    p.add_argument("--sizes", nargs="+", type=int, default=[250, 1000, 2000])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared machine)")
    p.add_argument("--results", default="experiments/results/reward_models")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    from seiko.cli_support import quiet_lightning

    quiet_lightning()
    rows = []
    for motifs in args.motifs:
        for n in args.sizes:
            for name in args.models:
                for seed in args.seeds:
                    rows.append(evaluate(motifs, name, n, seed))
                    r = rows[-1]
                    print(f"m={motifs} {name} N={n} seed={seed}: rmse {r['rmse']:.4f} spearman {r['spearman']:.3f} "
                          f"top20 {r['top20_label']:.3f}/{r['top20_best']:.3f} ({r['fit_seconds']:.1f}s)", flush=True)
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    (out / "results.md").write_text(markdown(rows))
    print(f"wrote {out / 'results.md'}")


if __name__ == "__main__":
    main()
