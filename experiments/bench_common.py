"""What the benchmark scripts share: a timestamped log line, mean ± std table rows, and the
committed results (results.json, summary.md)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

START = time.time()


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S', time.gmtime(time.time() - START))}] {msg}", flush=True)


def mean_std(xs) -> str:
    """Mean ± std over seeds of the finite values; '-' when there is none."""
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    if not xs:
        return "-"
    return f"{np.mean(xs):.3f}" + (f" ± {np.std(xs):.3f}" if len(xs) > 1 else "")


def table_row(labels, group: list[dict], keys) -> str:
    """``| labels... | seeds | mean ± std of each key |`` for one group of runs."""
    return f"| {' | '.join(labels)} | {len(group)} | " + " | ".join(mean_std([r[k] for r in group]) for k in keys) + " |"


def write_results(results: Path, rows: list[dict], lines: list[str]) -> None:
    """results.json (every run) and summary.md (the table), then the table on stdout."""
    results.mkdir(parents=True, exist_ok=True)
    (results / "results.json").write_text(json.dumps(rows, indent=1))
    (results / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
