from __future__ import annotations

import numpy as np
import pytest
import torch

from seiko.ledger import Ledger
from seiko.oracles import call_oracle, query_in_batches


class CountingOracle:
    """Scores a design by its length; optionally raises on designs containing 'boom'."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def __call__(self, designs):
        self.calls.append(list(designs))
        if any("boom" in d for d in designs):
            raise RuntimeError("lab robot\njammed")
        return [float(len(d)) for d in designs]

    @property
    def num_designs(self):
        return sum(len(c) for c in self.calls)


def test_call_oracle_ok_and_nan():
    r = call_oracle(lambda ds: [1.0, float("nan"), float("-inf")], ["a", "b", "c"])
    assert r.error is None and r.values.dtype == np.float64
    assert r.values[0] == 1.0 and np.isnan(r.values[1]) and r.values[2] == -np.inf
    assert r.feasible.tolist() == [True, False, False]


def test_call_oracle_torch_tensor():
    r = call_oracle(lambda ds: torch.tensor([0.5, float("nan")], dtype=torch.float32,
                                            requires_grad=True), ["a", "b"])
    assert r.error is None and r.values.dtype == np.float64
    assert r.values[0] == 0.5 and np.isnan(r.values[1])
    assert r.feasible.tolist() == [True, False]
    col = call_oracle(lambda ds: np.array([[1.0], [2.0]]), ["a", "b"])  # (n, 1) accepted
    assert col.error is None and col.values.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("oracle, exc", [
    (lambda ds: (_ for _ in ()).throw(RuntimeError("lab\ndown")), "RuntimeError: lab down"),
    (lambda ds: [1.0], "ValueError: oracle returned shape (1,)"),
    (lambda ds: ["x", "y"], "ValueError"),
    (lambda ds: None, "ValueError: oracle returned shape ()"),
])
def test_call_oracle_failures_never_raise(oracle, exc):
    r = call_oracle(oracle, ["a", "b"])
    assert r.error.startswith(exc) and "\n" not in r.error
    assert np.isnan(r.values).all() and r.values.shape == (2,)
    assert r.feasible.tolist() == [False, False]


def test_query_in_batches_records_each_batch_and_never_rebuys():
    led = Ledger(":memory:")
    led.add_queries(0, ["a", "bb", "ccc", "dddd", "eeeee"], "s")
    oracle = CountingOracle()
    reports = []
    assert query_in_batches(oracle, led, led.pending(0), batch_size=2, report=lambda *r: reports.append(r)) == 5
    assert [len(c) for c in oracle.calls] == [2, 2, 1]
    assert reports == [(2, 5), (4, 5), (5, 5)]  # after each recorded batch: the round's display
    designs, values, feasible = led.labelled_arrays()
    assert values.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0] and feasible.all()
    # Resume with a stale list of queries: nothing is bought twice.
    stale = led.queries(0)
    assert query_in_batches(oracle, led, stale, batch_size=2, report=lambda *r: reports.append(r)) == 0
    assert len(reports) == 3
    assert oracle.num_designs == 5


def test_query_in_batches_records_after_every_batch():
    led = Ledger(":memory:")
    led.add_queries(0, ["a", "b", "c", "d"], "s")
    seen = []

    def oracle(ds):
        seen.append(led.num_labelled())  # what a crash right now would leave behind
        return [1.0] * len(ds)

    query_in_batches(oracle, led, led.pending(), batch_size=1)
    assert seen == [0, 1, 2, 3]


def test_failed_batch_is_recorded_and_others_labelled():
    led = Ledger(":memory:")
    ids = led.add_queries(0, ["a", "b", "boom", "d", "e"], "s")
    oracle = CountingOracle()
    assert query_in_batches(oracle, led, led.pending(), batch_size=2) == 5
    qs = {q.id: q for q in led.queries()}
    failed = [qs[ids[2]], qs[ids[3]]]
    assert all(np.isnan(q.value) and q.feasible is False for q in failed)
    assert all(q.error == "RuntimeError: lab robot jammed" for q in failed)
    for i in (0, 1, 4):
        assert qs[ids[i]].value == 1.0 and qs[ids[i]].feasible and qs[ids[i]].error is None
    assert led.pending() == [] and len(oracle.calls) == 3
    assert query_in_batches(oracle, led, list(qs.values()), batch_size=2) == 0
    assert len(oracle.calls) == 3
