"""What the benchmark scripts share: a timestamped log line, and a mean ± std cell for a table."""
from __future__ import annotations

import time

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
