"""Fill quality: is the fine-tuned policy a better mutation operator than the pretrained one?

Why: issue 15 asks the fine-tuned model to carry the result, and the frozen-policy ablations
keep matching the full runs. This asks the question directly, without a reward model in the
way: take a finished run, and at several rounds re-mask positions of the run's best labelled
designs (as ``edits.moves=infill`` does: 1..``masked`` positions, a span or anywhere) and let
two policies fill them: that round's fine-tuned policy (its checkpoint), and the pretrained
model under the same support constraint (what the ``_frozen`` runs use). The true oracle scores
every fill (the Ehrlich function is synthetic), so the table says how often each operator
improves a start design, by how much, and how often it breaks feasibility. No fill is ranked.

    .venv/bin/python experiments/fill_quality.py experiments/runs/ablation/m4/seiko_best/seed* \
        --out experiments/results/fill_quality
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from seiko.checkpoint import load_policy
from seiko.diffusion import SupportConstrained
from seiko.infill import remask
from seiko.ledger import Ledger

FIELDS = ["run", "round", "policy", "starts", "fills", "start_mean", "fill_mean", "improved", "best_gain", "feasible"]


def starts_at(queries: list, round: int, num: int) -> tuple[list[str], np.ndarray]:
    """The ``num`` best feasible labelled designs bought up to ``round`` (distinct), from the
    ledger's labelled queries."""
    best = {}
    for q in queries:
        if q.round <= round and q.value is not None and np.isfinite(q.value):
            best[q.design] = max(q.value, best.get(q.design, -np.inf))
    top = sorted(best.items(), key=lambda kv: -kv[1])[:num]
    return [d for d, _ in top], np.array([v for _, v in top])


def score(domain, tokens: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """True labels (NaN where infeasible) and feasibility of ``tokens``."""
    values = np.asarray(domain.default_oracle()(domain.decode(tokens)), dtype=float)
    feasible = domain.is_feasible(tokens).numpy()
    return np.where(feasible, values, np.nan), feasible


def re_masking(cfg) -> tuple[int, float]:
    """The run's own re-masking if it infilled, else ehrlich_seiko's (1..8 positions, half of them spans)."""
    infilled = cfg.edits.get("moves") == "infill"
    return (int(cfg.edits.masked), float(cfg.edits.span)) if infilled else (8, 0.5)


def compare(run: Path, rounds: list[int], num_starts: int, per: int, seed: int) -> list[dict]:
    """At each round: the round's fine-tuned policy against the support-constrained pretrained one."""
    cfg = OmegaConf.load(run / "config.yaml")
    domain = instantiate(cfg.domain.problem)
    pretrained, family, _ = load_policy(cfg.domain.pretrained)
    eps = float(cfg.finetune.support_eps or 0.0)
    frozen = SupportConstrained(pretrained, pretrained, eps) if eps > 0 else pretrained
    masked, span = re_masking(cfg)
    with Ledger(run / "ledger.sqlite") as ledger:
        queries = ledger.queries(labelled=True)
    rows = []
    for round in rounds:
        checkpoint = run / "checkpoints" / f"round_{round}.safetensors"
        if not checkpoint.is_file():
            continue
        designs, labels = starts_at(queries, round, num_starts)
        tokens = domain.encode(designs)
        for name, policy in (("fine-tuned", load_policy(checkpoint)[0]), ("pretrained", frozen)):
            rows.append(measure(domain, family, policy, name, tokens, labels, per, masked, span, seed + round,
                                run=str(run), round=round))
    return rows


def measure(domain, family, policy, name: str, tokens: torch.Tensor, labels: np.ndarray, per: int, masked: int,
            span: float, seed: int, **key) -> dict:
    """Fills of every start by ``policy`` (the same re-maskings for every policy at one seed)."""
    gen = torch.Generator().manual_seed(seed)
    masks = remask(len(tokens) * per, tokens.shape[1], masked, span, gen)
    with torch.no_grad():
        fills = family.infill(policy.eval(), tokens.repeat_interleave(per, 0), masks, gen)
    values, feasible = score(domain, fills)
    gain = np.nan_to_num(values, nan=-np.inf) - np.repeat(labels, per)
    per_start = np.nan_to_num(values, nan=-1.0).reshape(len(tokens), per).max(1) - labels
    return dict(key, policy=name, starts=len(tokens), fills=len(fills), start_mean=float(labels.mean()),
                fill_mean=float(np.nan_to_num(values, nan=0.0).mean()), improved=float(np.mean(gain > 1e-9)),
                best_gain=float(np.mean(np.maximum(per_start, 0))), feasible=float(feasible.mean()))


def refit(run: Path, rounds: list[int], fills: list[float], num_starts: int, per: int, seed: int,
          extra: list[str] = ()) -> list[dict]:
    """Round k's fine-tuning redone from round k-1's policy on the labels up to round k, once per
    ``finetune.fills``, each policy's fills measured as in ``compare`` (same starts, same masks)."""
    import tempfile

    from seiko.api import build_loop, compose

    summary = json.loads((run / "summary.json").read_text())
    masked, span = re_masking(OmegaConf.load(run / "config.yaml"))  # the fills trained are the fills measured
    with Ledger(run / "ledger.sqlite") as ledger:
        queries = ledger.queries(labelled=True)
    rows = []
    for round in rounds:
        labelled = [q for q in queries if q.round <= round]
        designs = [q.design for q in labelled]
        values = np.array([np.nan if q.value is None else q.value for q in labelled], dtype=float)
        in_round = np.array([q.round == round for q in labelled])
        start_designs, labels = starts_at(queries, round, num_starts)
        for f in fills:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = compose(summary["overrides"] + [f"finetune.fills={f}", f"edits.masked={masked}", f"edits.span={span}",
                                                      *extra])
                loop = build_loop(cfg, tmp)
                method, domain = loop.method, loop.domain
                method.restore(run / "checkpoints" / f"round_{round - 1}.safetensors")
                method.update(round, domain.encode(designs), values, in_round)
                name = " ".join([f"fills={f}", *extra])
                rows.append(measure(domain, method.family, method.denoiser, name, domain.encode(start_designs),
                                    labels, per, masked, span, seed + round, run=str(run), round=round))
    return rows


def table(rows: list[dict]) -> str:
    """Mean over runs, per round and policy."""
    lines = ["| round | policy | runs | start label | fill label (infeasible = 0) | fills improving their start "
             "| best gain per start | fills feasible |", "|---|---|---|---|---|---|---|---|"]
    for round in sorted({r["round"] for r in rows}):
        for policy in dict.fromkeys(r["policy"] for r in rows):
            g = [r for r in rows if r["round"] == round and r["policy"] == policy]
            if g:
                m = {k: np.mean([r[k] for r in g]) for k in FIELDS[5:]}
                lines.append(f"| {round} | {policy} | {len(g)} | {m['start_mean']:.3f} | {m['fill_mean']:.3f} | "
                             f"{m['improved']:.3f} | {m['best_gain']:.3f} | {m['feasible']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="finished run folders (ledger.sqlite, checkpoints/, config.yaml)")
    p.add_argument("--rounds", nargs="+", type=int, default=[3, 7, 11, 15])
    p.add_argument("--starts", type=int, default=8, help="best labelled designs re-masked at each round")
    p.add_argument("--per", type=int, default=64, help="fills of each start, per policy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--refit", nargs="+", type=float, default=None, metavar="FILLS",
                   help="instead: redo each round's fine-tuning from the previous round's policy with these "
                        "finetune.fills values, and compare their fills")
    p.add_argument("--override", action="append", default=[], metavar="K=V", help="with --refit: more overrides")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.refit:
        from seiko.cli_support import quiet_lightning

        quiet_lightning()
        rows = [r for run in args.runs
                for r in refit(run, args.rounds, args.refit, args.starts, args.per, args.seed, args.override)]
    else:
        rows = [r for run in args.runs for r in compare(run, args.rounds, args.starts, args.per, args.seed)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    (args.out / "table.md").write_text(table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
