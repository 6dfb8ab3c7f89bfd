"""One display per feedback round: its phase and how far it got, readable in a terminal and in a log.

Every fit used to print Lightning's own bar per epoch, so a run's log held thousands of bars and
none said which round or phase it belonged to. A ``RoundDisplay`` instead keeps one line per
round, ``round 3/16 [fit reward] 12/50 epochs | queries 500/2000 | best 0.42``, redrawn in place
on a terminal, and ends it with a one-line summary of the round. When stderr is not a terminal
(CI, ``> run.log``) carriage returns would pile up in the file, so it writes one plain line per
phase change and the summary instead.

The loop drives it (``start``, ``phase``, ``advance``, ``done``). Fits happen deep inside a
method's ``update``; they reach the round's display through ``active()`` and ``FitProgress``,
a Lightning callback that reports epochs or steps to it. Only global rank 0 displays anything.
"""
from __future__ import annotations

import math
import sys
import time

from lightning.pytorch.callbacks import Callback

from seiko.distributed import is_rank_zero

_active: RoundDisplay | None = None


def active() -> RoundDisplay:
    """The display of the round in progress, or a silent one outside any round (and on ranks > 0)."""
    return _active if _active is not None else RoundDisplay(enabled=False)


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


class RoundDisplay:
    """One round's line. ``enabled=False`` (config ``progress: false``) writes nothing at all."""

    def __init__(self, enabled: bool = True, stream=None, min_interval: float = 0.2):
        self.enabled = enabled and is_rank_zero()
        self._stream, self.min_interval = stream, min_interval
        self._open, self._drawn_at, self._started = False, 0.0, time.time()
        self.round = self.rounds = self.queries = self.budget = 0
        self.best, self.name, self.done_count, self.total, self.unit = math.nan, "", 0, None, ""

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr  # looked up late: pytest swaps it

    @property
    def live(self) -> bool:
        """Redraw one line in place (a terminal) rather than append lines (a log file)."""
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    # ------------------------------------------------------------------ driven by the loop
    def start(self, round: int, rounds: int, *, queries: int, budget: int, best: float) -> None:
        global _active
        if not self.enabled:
            return
        _active = self
        self.round, self.rounds, self.queries, self.budget, self.best = round, rounds, queries, budget, best
        self._started = time.time()

    def phase(self, name: str, total: int | None = None, unit: str = "") -> None:
        """A new phase of the round (sample, query, fit reward, fine-tune, evaluate)."""
        if not self.enabled or _active is not self:
            return
        self.name, self.done_count, self.total, self.unit = name, 0, total, unit
        if self.live:
            self._draw(force=True)
        else:
            self._write(self._line(progress=f"{total} {unit}" if total else "") + "\n")

    def expect(self, total: int | None, unit: str) -> None:
        """How much the current phase has to do, once known (a fit learns it when it starts)."""
        if self.enabled and _active is self:
            self.done_count, self.total, self.unit = 0, total, unit
            if self.live:
                self._draw(force=True)

    def advance(self, done: int, **state) -> None:
        """``done`` of the phase's total finished; ``state`` updates ``queries`` or ``best``."""
        if not self.enabled or _active is not self:
            return
        self.done_count = done
        for key, value in state.items():
            setattr(self, key, value)
        if self.live:
            self._draw()

    def update(self, **state) -> None:
        """New ``queries`` or ``best`` between phases."""
        for key, value in state.items():
            setattr(self, key, value)

    def done(self, metrics: dict) -> None:
        """The round's one-line summary; the display goes quiet until the next ``start``."""
        if not self.enabled or _active is not self:
            return
        parts = [f"round {self.round + 1}/{self.rounds} done in {time.time() - self._started:.1f}s",
                 f"queries {metrics.get('queries', self.queries)}/{self.budget}",
                 f"best {_number(metrics.get('best_so_far', self.best))}"]
        if "eval_reward_mean" in metrics:
            parts.append(f"samples: mean {_number(metrics['eval_reward_mean'])} "
                         f"max {_number(metrics.get('eval_reward_max'))}")
        if "feasibility" in metrics:
            parts.append(f"feasible {_number(metrics['feasibility'])}")
        self._write(("\r" if self._open else "") + " | ".join(parts) + ("\x1b[K" if self.live else "") + "\n")
        self._open = False
        self.close()

    def close(self) -> None:
        """End the round's line (also when the round failed or stopped for lab labels)."""
        global _active
        if _active is self:
            if self._open:
                self._write("\n")
            self._open, _active = False, None

    # ------------------------------------------------------------------ drawing
    def _line(self, progress: str) -> str:
        head = f"round {self.round + 1}/{self.rounds} [{self.name}]" + (f" {progress}" if progress else "")
        return f"{head} | queries {self.queries}/{self.budget} | best {_number(self.best)}"

    def _draw(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._drawn_at < self.min_interval:
            return
        self._drawn_at = now
        progress = "" if not self.total else (f"{self.done_count}/{self.total} {self.unit}" if self.done_count
                                              else f"{self.total} {self.unit}")
        self._write("\r" + self._line(progress) + "\x1b[K")
        self._open = True

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


class FitProgress(Callback):
    """Reports a fit's epochs (or, for one-epoch fits, its steps) to the round's display.

    It holds no reference to the display, so trainers that pickle their callbacks (DDP spawn)
    can carry it; in those worker processes no round is active and it does nothing.
    """

    def on_train_start(self, trainer, pl_module) -> None:
        epochs = trainer.max_epochs or 0
        if epochs > 1:
            active().expect(epochs, "epochs")
        else:
            steps = trainer.num_training_batches
            active().expect(int(steps) if math.isfinite(steps) else None, "steps")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (trainer.max_epochs or 0) <= 1:
            active().advance(batch_idx + 1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if (trainer.max_epochs or 0) > 1:
            active().advance(trainer.current_epoch + 1)
