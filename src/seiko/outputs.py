"""What a run leaves behind besides the ledger: summary.json, the reward plot, sweep tables."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from hydra.experimental.callback import Callback

from seiko.ledger import Ledger


def best_so_far(ledger: Ledger) -> tuple[np.ndarray, np.ndarray]:
    """Queries spent (1..N) and the best feasible label bought up to each, in purchase order."""
    _, values, _ = ledger.labelled_arrays()
    best = np.maximum.accumulate(np.where(np.isfinite(values), values, -np.inf)) if len(values) else values
    return np.arange(1, len(values) + 1), best


def plot_reward(ledger: Ledger, history: list[dict], path: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    queries, best = best_so_far(ledger)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step(queries, np.where(np.isfinite(best), best, np.nan), where="post", label="best label so far")
    rounds = [h for h in history if "eval_reward_mean" in h]
    if rounds:
        ax.plot([h["queries"] for h in rounds], [h["eval_reward_mean"] for h in rounds], "o-",
                label="mean true reward of fresh samples")
        ax.plot([h["queries"] for h in rounds], [h["eval_reward_max"] for h in rounds], "s--",
                label="max true reward of fresh samples")
    ax.set_xlabel("oracle queries spent")
    ax.set_ylabel("true reward")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def write_summary(ledger: Ledger, history: list[dict], path: Path, extra: dict) -> dict:
    designs, values, feasible = ledger.labelled_arrays()
    finite = np.isfinite(values)
    best = int(np.argmax(np.where(finite, values, -np.inf))) if finite.any() else None
    final = history[-1] if history else {}
    summary = dict(extra, queries=len(values), rounds=len(history),
                   best_value=float(values[best]) if best is not None else None,
                   best_design=designs[best] if best is not None else None,
                   label_feasibility=float(feasible.mean()) if len(feasible) else None,
                   final={k: v for k, v in final.items() if k != "top_designs"}, history=history)
    path.write_text(json.dumps(_clean(summary), indent=2))
    return summary


SWEEP_COLUMNS = ["job", "overrides", "queries", "best_value", "final.eval_reward_mean", "final.eval_reward_max",
                 "final.feasibility", "final.diversity"]


class SweepSummary(Callback):
    """Hydra callback: after a multirun, one table comparing its runs (CSV and Markdown)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        rows = []
        for summary_path in sorted(root.glob("*/summary.json"), key=lambda p: p.parent.name):
            s = json.loads(summary_path.read_text())
            row = {"job": summary_path.parent.name, "overrides": " ".join(s.get("overrides", []))}
            for col in SWEEP_COLUMNS[2:]:
                node = s
                for part in col.split("."):
                    node = node.get(part) if isinstance(node, dict) else None
                row[col] = node
            rows.append(row)
        if not rows:
            return
        with open(root / "sweep_summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=SWEEP_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
        lines = ["| " + " | ".join(SWEEP_COLUMNS) + " |", "|" + "---|" * len(SWEEP_COLUMNS)]
        lines += ["| " + " | ".join(fmt(r[c]) for c in SWEEP_COLUMNS) + " |" for r in rows]
        (root / "sweep_summary.md").write_text("\n".join(lines) + "\n")
        print(f"sweep summary: {root / 'sweep_summary.md'}")
