"""What the benchmark scripts share: a timestamped log line, mean ± std table rows, the peak
memory of a run, and the committed results (results.json, summary.md)."""
from __future__ import annotations

import json
import os
import threading
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
    return f"| {' | '.join(labels)} | {len(group)} | " + " | ".join(mean_std([r.get(k) for r in group]) for k in keys) + " |"


def write_results(results: Path, rows: list[dict], lines: list[str]) -> None:
    """results.json (every run) and summary.md (the table), then the table on stdout."""
    results.mkdir(parents=True, exist_ok=True)
    (results / "results.json").write_text(json.dumps(rows, indent=1))
    (results / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


class PeakRSS:
    """The peak resident memory of this process while the block runs, in GB (``.peak_gb``).

    Sampled from /proc/self/statm every ``every`` seconds by a thread, so one benchmark process
    running many runs in turn measures each one (``ru_maxrss`` only knows the process's peak so
    far). Linux only, as the benchmark machines are.
    """

    def __init__(self, every: float = 0.2):
        self.every, self.peak_gb = every, 0.0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss_gb(self) -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page / 1e9

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self.peak_gb = max(self.peak_gb, self._rss_gb())

    def __enter__(self) -> "PeakRSS":
        self.peak_gb = self._rss_gb()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_gb = max(self.peak_gb, self._rss_gb())
