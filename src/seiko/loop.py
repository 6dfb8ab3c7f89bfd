"""The feedback loop: rounds of sample -> query -> fit reward -> fine-tune, resumable.

Every phase leaves its result on disk before the next starts: designs go into the ledger as
pending queries before the oracle sees them, labels are recorded batch by batch, and the
round's policy is saved before the round is marked finished. ``resume`` therefore re-enters
any round where it stopped and never asks the oracle for a label already bought.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from seiko.distributed import is_rank_zero, wait_for
from seiko.ledger import Ledger
from seiko.methods import Method
from seiko.metrics import novelty, reward_stats, top_k_auc, top_k_mean
from seiko.oracles import AwaitingLabels, call_oracle, query_in_batches
from seiko.progress import RoundDisplay

log = logging.getLogger(__name__)


def best_label(values: np.ndarray) -> float:
    """The best finite label bought (NaN while there is none)."""
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else float("nan")


class FeedbackLoop:
    def __init__(self, *, domain, oracle: Callable, method: Method, ledger: Ledger, budget: list[int],
                 out_dir: str | Path, oracle_batch_size: int = 64, eval_samples: int = 256,
                 eval_with_oracle: bool = True, seed: int = 0, writer=None, display: RoundDisplay | None = None,
                 distinct: bool = False, query_infeasible: bool = True, propose_infeasible: bool = True,
                 distinct_tries: int = 20, sample_chunk: int | None = None):
        if not budget or any(int(b) <= 0 for b in budget):
            raise ValueError(f"budget.per_round must be a non-empty list of positive ints, got {list(budget)}")
        self.domain, self.oracle, self.method, self.ledger = domain, oracle, method, ledger
        self.schedule = [int(sum(budget))] if method.single_round else [int(b) for b in budget]
        self.out_dir = Path(out_dir)
        self.checkpoints = self.out_dir / "checkpoints"
        self.oracle_batch_size, self.eval_samples, self.eval_with_oracle = oracle_batch_size, eval_samples, eval_with_oracle
        self.seed, self.writer = seed, writer
        self.distinct, self.query_infeasible, self.distinct_tries = distinct, query_infeasible, distinct_tries
        self.propose_infeasible, self.sample_chunk = propose_infeasible, sample_chunk
        self.display = display if display is not None else RoundDisplay(enabled=False)
        self.history: list[dict] = []
        self.best: list[tuple[str, float]] = []  # the best labelled designs, for the round's picture
        self.best_shown = 12
        self.rank_zero = is_rank_zero()

    def generator(self, round: int, purpose: int) -> torch.Generator:
        # One stream per (round, purpose): a resumed run draws exactly what the first run drew.
        return torch.Generator().manual_seed(self.seed * 1_000_003 + round * 101 + purpose)

    # ------------------------------------------------------------------ resume
    def _restore(self) -> int:
        done = self.ledger.completed_rounds()
        if done:
            self.method.restore(self.checkpoints / f"round_{done[-1]}.safetensors")
            designs, values, rounds = self._labels()
            self.method.observe(designs, values, rounds)
            self.method.reload(self.domain.encode(designs), values, done[-1], rounds=rounds)
            self.history = json.loads(self.ledger.get_meta("history") or "[]")
        return done[-1] + 1 if done else 0

    def _labels(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Every labelled design, its value and its round, in purchase order."""
        queries = self.ledger.queries(labelled=True)
        designs = [q.design for q in queries]
        values = np.array([q.value for q in queries], dtype=np.float64)
        return designs, values, np.array([q.round for q in queries], dtype=np.int64)

    # ------------------------------------------------------------------ one round
    def run_round(self, round: int) -> dict:
        if not self.rank_zero:
            return self._follow_round(round)
        values = self._labels()[1]
        self.display.start(round, len(self.schedule), queries=len(values), budget=sum(self.schedule),
                           best=best_label(values))
        try:
            return self._lead_round(round)
        finally:
            self.display.close()

    def _lead_round(self, round: int) -> dict:
        """Rank 0's round; each phase is named on the display (the fits name theirs in build._fit)."""
        start = time.time()
        phases = {}  # wall seconds of each phase: where a round's time goes (long designs, big models)
        num = self.schedule[round]
        # sample: designs become pending queries before anyone pays for them
        if self.ledger.round_stage(round) is None:
            self.sample_round(round, num)
            self.ledger.set_round_stage(round, "sampled")
        phases["sample"], mark = time.time() - start, time.time()
        # query: only what is still pending; each batch is recorded as soon as it returns
        pending = self.screen(self.ledger.pending(round))
        if pending and getattr(self.oracle, "external", False):
            path = self.out_dir / self.oracle.export_name.format(round=round)
            self.ledger.export_pending_csv(path, round, columns=lambda ids, designs: self.domain.export_columns(
                ids, designs, path.with_suffix("")))
            raise AwaitingLabels(f"round {round}: {len(pending)} queries exported to {path}; import their labels "
                                 f"with `seiko import-labels {self.out_dir} LABELS.csv`, then rerun with resume=true")
        if pending:
            self.display.phase("query", len(pending), "queries")
            before = self.display.queries
            query_in_batches(self.oracle, self.ledger, pending, self.oracle_batch_size,
                             report=lambda done, total: self.display.advance(done, queries=before + done))
        self.ledger.set_round_stage(round, "labelled")
        phases["query"], mark = time.time() - mark, time.time()
        # fit the reward model on all labels so far, then fine-tune (both inside method.update)
        designs, values, rounds = self._labels()
        self.display.update(queries=len(values), best=best_label(values))
        self.method.observe(designs, values, rounds)
        update_metrics = self.method.update(round, self.domain.encode(designs), values, rounds == round)
        self.method.save(round, self.checkpoints)
        phases["update"], mark = time.time() - mark, time.time()  # reward fit and fine-tuning
        if self.eval_samples > 0:
            self.display.phase("evaluate", self.eval_samples, "samples")
        metrics = self.evaluate(round, designs, values, rounds)
        metrics.update(update_metrics)
        phases["evaluate"] = time.time() - mark
        metrics.update({f"seconds_{k}": v for k, v in phases.items()}, seconds=time.time() - start)
        self.history.append(metrics)
        self.ledger.set_meta("history", json.dumps(self.history))
        self.ledger.set_round_stage(round, "finetuned")
        self.display.done(metrics)
        self._log(round, metrics)
        return metrics

    def sample_round(self, round: int, num: int) -> None:
        """Propose the round's designs and record them as pending queries. With ``sample_chunk``
        they are proposed and recorded a chunk at a time, chunk k from a stream of its own: a run
        stopped while sampling a large round (best-of-N's thousands of long sequences, the
        paper's 8,192 Stable Diffusion images) keeps the chunks it recorded, and the resumed run
        proposes only the rest, exactly as the first run would have. Without it the round is one
        chunk, from the round's stream, as before."""
        self.display.phase("sample", num, "designs")
        chunk = self.sample_chunk or num
        done = len(self.ledger.queries(round))  # chunks already recorded (each in one transaction)
        if done and not self.sample_chunk:
            return  # the whole round was recorded; only its stage was not
        while done < num:
            want = min(chunk, num - done)
            generator = self.generator(round, 0) if done == 0 else self.chunk_generator(round, done // chunk)
            designs = self.propose(round, want, generator)
            self.ledger.add_queries(round, designs, self.method.name)
            self.display.advance(done + len(designs))
            if len(designs) < want:
                break  # propose() ran out of new or feasible designs and said so: the round is short
            done += len(designs)

    def chunk_generator(self, round: int, chunk: int) -> torch.Generator:
        """The stream of a round's chunk k >= 1 (chunk 0 is the round's own, ``generator(round, 0)``)."""
        state = np.random.SeedSequence([self.seed, round, chunk]).generate_state(1, np.uint64)[0]
        return torch.Generator().manual_seed(int(state) & (2**63 - 1))

    def propose(self, round: int, num: int, generator: torch.Generator) -> list[str]:
        """The round's designs. With ``distinct`` (PMO's protocol: a repeat is free and never
        relabelled), a design already in the ledger or earlier in the round is dropped and more
        are proposed; without ``propose_infeasible``, so is a design the domain's own check calls
        infeasible (a molecule failing the filters): it never enters the ledger, so it costs no
        label. At most ``distinct_tries`` proposals; a model that keeps repeating itself (or
        proposing what it may not) then spends less than the round's budget, with a warning,
        rather than looping for ever."""
        designs = self.method.designs(round, num, generator, self.domain)
        if not self.distinct and self.propose_infeasible:
            return designs
        seen, out = {q.design for q in self.ledger.queries()} if self.distinct else set(), []
        for _ in range(self.distinct_tries):
            allowed = (np.ones(len(designs), dtype=bool) if self.propose_infeasible or not designs
                       else np.asarray(self.domain.feasible_designs(designs), dtype=bool))
            for design, ok in zip(designs, allowed):
                if ok and design not in seen and len(out) < num:
                    if self.distinct:
                        seen.add(design)
                    out.append(design)
            if len(out) == num:
                return out
            designs = self.method.designs(round, num - len(out), generator, self.domain)
        kinds = " and ".join(k for k, on in (("distinct", self.distinct), ("feasible", not self.propose_infeasible)) if on)
        log.warning("round %d: only %d %s new designs of %d after %d proposals", round, len(out), kinds, num,
                    self.distinct_tries)
        return out

    def screen(self, pending: list) -> list:
        """With ``query_infeasible`` false, designs outside the domain's feasible set are recorded
        as infeasible without asking the oracle (a docking run saved); they still count as
        queries. Returns what the oracle must still label."""
        if self.query_infeasible or not pending:
            return pending
        feasible = np.asarray(self.domain.feasible_designs([q.design for q in pending]), dtype=bool)
        rejected = [q.id for q, ok in zip(pending, feasible) if not ok]
        if rejected:
            self.ledger.record(rejected, [-np.inf] * len(rejected), [False] * len(rejected))
        return [q for q, ok in zip(pending, feasible) if ok]

    def _follow_round(self, round: int) -> dict:
        """A rank other than 0: take the round's labels from the ledger, then join the fits."""
        wait_for(lambda: self.ledger.round_stage(round) in ("labelled", "fitted", "finetuned"),
                 f"the labels of round {round}")
        designs, values, rounds = self._labels()
        self.method.observe(designs, values, rounds)
        return self.method.update(round, self.domain.encode(designs), values, rounds == round)

    def evaluate(self, round: int, designs: list[str], values: np.ndarray, rounds: np.ndarray) -> dict:
        """Metrics of fresh samples from the round's model and of the labels bought so far."""
        finite = np.isfinite(values)
        this = rounds == round
        labels = np.where(np.isfinite(values), values, 0.0)  # PMO: an invalid design scores 0
        metrics = {"round": round, "queries": int(len(values)),
                   "best_so_far": best_label(values), "top10_so_far": top_k_mean(labels, 10),
                   "top10_auc": top_k_auc(labels, budget=sum(self.schedule)) if len(labels) else float("nan"),
                   "round_feasibility": float(finite[this].mean()) if this.any() else float("nan")}
        if self.eval_samples > 0:
            fresh = self.method.sample_designs(self.eval_samples, self.generator(round, 1), self.domain)
            metrics["feasibility"] = float(self.domain.feasible_designs(fresh).float().mean())
            metrics["diversity"] = self.domain.diversity(fresh)
            metrics["novelty"] = novelty(fresh, designs)
            metrics.update(self.domain.metrics(fresh))
            if self.eval_with_oracle and not getattr(self.oracle, "external", False):  # evaluation labels are not bought: never in the ledger
                stats = reward_stats(call_oracle(self.oracle, fresh).values)
                metrics.update({f"eval_{k}": v for k, v in stats.items()})
            metrics["top_designs"] = [fresh[i] for i in range(min(4, len(fresh)))]
        order = np.argsort(-np.where(np.isfinite(values), values, -np.inf), kind="stable")[:self.best_shown]
        self.best = [(designs[i], float(values[i])) for i in order if np.isfinite(values[i])]
        return metrics

    def _log(self, round: int, metrics: dict) -> None:
        scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and np.isfinite(v)}
        log.info("round %d: %s", round, ", ".join(f"{k}={v:.4g}" for k, v in scalars.items()))
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(f"round/{key}", value, global_step=metrics["queries"])
            if metrics.get("top_designs"):
                self.writer.add_text("round/samples", "\n\n".join(metrics["top_designs"]), round)
            image = self.domain.render([d for d, _ in self.best], [f"{v:.3f}" for _, v in self.best])
            if image is not None:
                self.writer.add_image("round/best_so_far", image, round, dataformats="HWC")
            self.writer.flush()

    # ------------------------------------------------------------------ all rounds
    def run(self) -> list[dict]:
        first = self._restore()
        for round in range(first, len(self.schedule)):
            self.run_round(round)
        return self.history
